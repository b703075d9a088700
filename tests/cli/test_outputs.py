"""No command writes over what it reads, and a refused command changes nothing (issue 16, points 1 and 2).

Every case runs ``archsearch.cli.main`` in this process and compares the SHA-256 of the study (and its
data file) before and after.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from archsearch.cli import main

from ..conftest import downgrade

TINY = ["--strategy", "random", "--steps", "2", "--children-per-step", "3", "--max-epochs", "2", "--quiet"]


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished study on the user's own .npz data, made once."""
    folder = tmp_path_factory.mktemp("made")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 3))
    np.savez(folder / "data.npz", X=x, y=(x[:, 0] > 0).astype(int))
    assert main(["search", "--data", str(folder / "data.npz"), *TINY, "--study", str(folder / "s.db")]) == 0
    return folder


@pytest.fixture
def study(made: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private copy of the study and its data in the working directory (the data keeps its stored path)."""
    shutil.copy(made / "s.db", tmp_path / "s.db")
    monkeypatch.chdir(tmp_path)
    return tmp_path / "s.db"


def refused(capsys: pytest.CaptureFixture, argv: list[str], *needles: str) -> str:
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own refusals
        code = exc.code
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, err
    return err


@pytest.mark.parametrize(
    "argv",
    [
        ["report", "s.db", "-o", "s.db"],
        ["report", "s.db", "-o", "s.db-wal"],
        ["report", "s.db", "-o", "s.db-shm"],
        ["report", "s.db", "-o", "s.db.children/report.html"],
        ["report", "s.db", "-o", "{data}"],
        ["export", "s.db", "--out", "s.db"],
        ["export", "s.db", "--out", "s.db.children"],
        ["sample", "--n", "3", "--study", "new.db", "--plot", "s.db"],
        ["compare", "--benchmark", "nas-bench-macro", "--seeds", "1", "--budget", "5", "--out", "s.db", "--quiet"],
    ],
)
def test_an_output_onto_the_study_or_its_data_is_refused(study, made, capsys, argv):
    (study.parent / "s.db.children").mkdir()
    before, data = sha(study), sha(made / "data.npz")
    argv = [arg.replace("{data}", str(made / "data.npz")) for arg in argv]
    refused(capsys, argv, "--")
    assert sha(study) == before and sha(made / "data.npz") == data
    assert not Path("new.db").exists()


@pytest.mark.parametrize("link", ["symlink", "hardlink"])
@pytest.mark.parametrize("command", ["report", "export"])
def test_a_link_to_the_study_is_refused(study, capsys, link, command):
    target = Path("out.html") if command == "report" else Path("out") / "model.py"
    target.parent.mkdir(exist_ok=True)
    (os.symlink if link == "symlink" else os.link)(study, target)
    before = sha(study)
    flag = "-o" if command == "report" else "--out"
    refused(capsys, [command, "s.db", flag, str(target if command == "report" else target.parent)], "s.db")
    assert sha(study) == before


def test_an_output_onto_another_study_is_refused(study, capsys):
    shutil.copy(study, "other.db")
    before = sha(Path("other.db"))
    refused(capsys, ["report", "s.db", "-o", "other.db"], "other.db", "SQLite")
    assert sha(Path("other.db")) == before


@pytest.mark.parametrize("name", ["x.html", "x.png", "x"])
def test_default_output_names_never_equal_the_study(study, capsys, name):
    os.replace(study, name)
    before = sha(Path(name))
    assert main(["report", name]) == 0
    assert main(["export", name, "--no-onnx"]) == 0
    out = capsys.readouterr().out
    assert sha(Path(name)) == before
    report = Path(f"{name}.html" if name.endswith(".html") else Path(name).with_suffix(".html"))
    assert report.read_text().startswith("<!DOCTYPE html>") and str(report) in out
    exported = Path(name).with_suffix("") if Path(name).suffix else Path(name + "-export")
    assert (exported / "model.py").exists()


def test_sample_plot_default_beside_a_study_named_png(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["sample", "--n", "3", "--study", "x.png", "--quiet"]) == 0
    assert capsys.readouterr().out.count("x.png.png") == 1
    assert Path("x.png.png").read_bytes()[:4] == b"\x89PNG" and Path("x.png.json").exists()
    assert Path("x.png").read_bytes()[:16] == b"SQLite format 3\x00"


def test_sample_numbers_file_onto_the_study_is_refused(study, capsys):
    os.replace(study, "x.json")  # the plot x.png would put its numbers in x.json
    before = sha(Path("x.json"))
    refused(capsys, ["sample", "--n", "3", "--study", "x.json", "--plot", "x.png"], "x.json")
    assert sha(Path("x.json")) == before and not Path("x.png").exists()


def test_compare_out_onto_an_existing_file(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    Path("notes.txt").write_text("mine\n")
    refused(capsys, ["compare", "--benchmark", "nas-bench-macro", "--out", "notes.txt", "--quiet"], "notes.txt")
    assert Path("notes.txt").read_text() == "mine\n"


# -- a refused resume changes nothing ---------------------------------------------------------------


def test_resume_refusals_leave_every_byte(study, made, capsys, monkeypatch):
    before = sha(study)
    refused(capsys, ["resume", "s.db", "--steps", "1"], "--steps", "fewer than the 2 steps")
    refused(capsys, ["resume", "s.db", "--workers", "3", "--executor", "inline"], "--workers")
    refused(capsys, ["resume", "s.db", "--steps", "0"], "--steps")
    refused(capsys, ["resume", "s.db", "--address", "auto"], "--address")
    with open(study, "rb") as held:  # another process is running the study
        fcntl.flock(held.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        refused(capsys, ["resume", "s.db", "--steps", "3"], "another process")
    assert sha(study) == before
    data = made / "data.npz"
    original = data.read_bytes()
    try:
        data.write_bytes(original + b"\0")  # the data file changed since the search
        refused(capsys, ["resume", "s.db", "--steps", "3"], "changed")
    finally:
        data.write_bytes(original)
    assert sha(study) == before
    assert main(["resume", "s.db", "--steps", "3", "--quiet"]) == 0  # and it still resumes
    assert sha(study) != before


def test_a_refused_resume_of_an_older_study_does_not_upgrade_it(study, capsys):
    downgrade(study, 2, refits=False)  # as an older archsearch left it: schema 2, no refits table
    before = sha(study)
    refused(capsys, ["resume", "s.db", "--steps", "1"], "--steps")
    assert main(["best", "s.db"]) == 0
    assert main(["trials", "s.db"]) == 0
    assert sha(study) == before


def test_a_refused_search_leaves_no_study(tmp_path, monkeypatch, capsys):
    from archsearch.study import Study

    monkeypatch.chdir(tmp_path)

    def refuse(self, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003
        from archsearch.errors import ArchsearchError

        raise ArchsearchError("refused for the test")

    monkeypatch.setattr(Study, "_prepare_run", refuse)
    refused(capsys, ["search", "--task", "moons", *TINY, "--study", "new.db"], "refused for the test")
    assert sorted(os.listdir()) == []


def test_a_refused_resume_after_a_kill_leaves_the_file_and_its_wal(study, capsys):
    """A killed run leaves commits in the -wal file; a read-write connection would copy them into the study
    when it closes, so a refused resume must read through a read-only one."""
    import sqlite3

    writer = sqlite3.connect(study, isolation_level=None)
    writer.execute("PRAGMA wal_autocheckpoint=0")
    writer.execute("INSERT INTO meta (key, value) VALUES ('note', 'a commit the run left in its -wal')")
    shutil.copy(study, "killed.db")  # the files as a SIGKILL would leave them
    shutil.copy(f"{study}-wal", "killed.db-wal")
    writer.close()
    before = sha(Path("killed.db")), sha(Path("killed.db-wal"))
    assert Path("killed.db-wal").stat().st_size > 0
    refused(capsys, ["resume", "killed.db", "--steps", "1"], "--steps")
    assert main(["best", "killed.db"]) == 0 and main(["trials", "killed.db"]) == 0
    assert (sha(Path("killed.db")), sha(Path("killed.db-wal"))) == before
    assert main(["resume", "killed.db", "--quiet"]) == 0  # and it resumes, the -wal's commits with it


def test_an_output_onto_a_fifo_is_refused_without_waiting_for_it(study, capsys):
    os.mkfifo("pipe.html")
    before = sha(study)
    refused(capsys, ["report", "s.db", "-o", "pipe.html"], "not a regular file")
    assert sha(study) == before


def test_the_report_never_writes_through_a_stale_partial_link(study, capsys):
    os.symlink(study, ".r.html.partial")  # a name a naive temporary file would take
    before = sha(study)
    assert main(["report", "s.db", "-o", "r.html"]) == 0
    assert sha(study) == before and Path("r.html").read_text().startswith("<!DOCTYPE html>")
    assert [p.name for p in Path(".").iterdir() if p.name.endswith(".partial")] == [".r.html.partial"]


def test_a_sample_study_named_json_gets_a_default_plot_whose_numbers_do_not_collide(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["sample", "--n", "3", "--study", "x.json", "--quiet"]) == 0
    assert Path("x.json.png").read_bytes()[:4] == b"\x89PNG" and Path("x.json.json").exists()
    assert Path("x.json").read_bytes()[:16] == b"SQLite format 3\x00"


def test_a_path_claimed_between_the_check_and_the_creation_is_refused(tmp_path, monkeypatch):
    from archsearch.errors import ArchsearchError
    from archsearch.study import _storage

    path = tmp_path / "s.db"
    checks = iter([lambda p: path.write_bytes(b"another search's study")])  # it appears right after the check
    real = _storage.check_new_study_path
    monkeypatch.setattr(_storage, "check_new_study_path", lambda p: next(checks, real)(p))
    with pytest.raises(ArchsearchError, match="already exists"):
        _storage.Storage.create(path, {"steps": 1})
    assert path.read_bytes() == b"another search's study"


def test_a_config_nested_without_end_is_one_line(study, capsys):
    import sqlite3

    with sqlite3.connect(study) as db:
        config = db.execute("SELECT value FROM meta WHERE key = 'config'").fetchone()[0]
        deep = config[:-1] + ', "x": ' + "[" * 900 + "]" * 900 + "}"
        db.execute("UPDATE meta SET value = ? WHERE key = 'config'", (deep,))
    db.close()
    for command in (["best", "s.db"], ["trials", "s.db"], ["resume", "s.db"]):
        refused(capsys, command, "nested deeper")

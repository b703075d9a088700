"""A study file is input: tampered, damaged and read-only studies (issue 16, points 4 and 5).

Every command on a tampered file either works or says in one line what is wrong, naming the study,
and never changes the file. Read-only studies (file or directory) are read without writing; resuming
one is refused in one line.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import shutil
import sqlite3
import tempfile
import warnings
from pathlib import Path

import pytest
import torch

from archsearch import ArchsearchError, Study
from archsearch.cli import main
from archsearch.evaluation import BatchedTrainer, TrainConfig
from archsearch.space import CNNSpace, MLPSpace, SearchSpace
from archsearch.strategies import RandomSearch
from archsearch.tasks import get_task

from ..conftest import FakeEvaluator, fraction_of_wide_layers

COMMANDS = ("best", "trials", "report", "export", "resume")


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int, int]:
    """A finished study with trained weights (2 steps of 3 moons children); its best trial and another."""
    path = tmp_path_factory.mktemp("template") / "s.db"
    moons = get_task("moons")
    study = Study.create(
        path, moons, steps=2, children_per_step=3, evaluator=BatchedTrainer(moons, TrainConfig(max_epochs=2))
    )
    study.run(progress=False)
    best = study.best().number
    other = next(t.number for t in study.trials() if t.number != best)
    study.close()
    return path, best, other


def _copy(template: tuple[Path, int, int], folder: Path) -> Path:
    path = folder / "study.db"
    shutil.copyfile(template[0], path)
    return path


def _sql(path: Path, statement: str, *args: object) -> None:
    """Run ``statement`` on the study as someone editing it would."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute(statement, args)
    db.close()


def _blob(value: object) -> bytes:
    buffer = io.BytesIO()
    torch.save(value, buffer)
    return buffer.getvalue()


def _overwrite_page(path: Path, table: str) -> None:
    """Garbage over the root page of ``table``: what a bad disk sector or a stray write leaves."""
    db = sqlite3.connect(path)
    (root,) = db.execute("SELECT rootpage FROM sqlite_master WHERE name = ?", (table,)).fetchone()
    (size,) = db.execute("PRAGMA page_size").fetchone()
    db.close()
    with open(path, "r+b") as file:
        file.seek((root - 1) * size)
        file.write(bytes(range(256)) * (size // 256))


def _not_utf8(at: bytes, by: bytes):  # noqa: ANN202 -- a tamper function
    """Tamper: the bytes after ``at`` in the schema's records replaced by ``by``, not UTF-8 (SQLite quotes
    such text in its messages, and the schema's names are read as text)."""

    def tamper(path: Path, best: int, other: int) -> None:
        data = bytearray(path.read_bytes())
        start = data.index(at) + len(at)
        data[start : start + len(by)] = by
        path.write_bytes(bytes(data))

    return tamper


def _config(**changes: object):  # noqa: ANN202 -- a tamper function
    """Tamper: the stored config with ``changes``."""

    def tamper(path: Path, best: int, other: int) -> None:
        db = sqlite3.connect(path, isolation_level=None)
        config = json.loads(db.execute("SELECT value FROM meta WHERE key = 'config'").fetchone()[0])
        db.execute("UPDATE meta SET value = ? WHERE key = 'config'", (json.dumps({**config, **changes}),))
        db.close()

    return tamper


def _trial(column: str, value: object, which: str = "other", loose: bool = False):  # noqa: ANN202
    """Tamper: one column of the best trial or of another one set to ``value``."""

    def tamper(path: Path, best: int, other: int) -> None:
        number = best if which == "best" else other
        db = sqlite3.connect(path, isolation_level=None)
        if loose:  # without the table's constraints, any value fits any column
            db.executescript(
                "CREATE TABLE t AS SELECT * FROM trials; DROP TABLE trials; ALTER TABLE t RENAME TO trials;"
            )
        db.execute(f"UPDATE trials SET {column} = ? WHERE number = ?", (value, number))
        db.close()

    return tamper


def _statement(sql: str, *args: object):  # noqa: ANN202
    """Tamper: one SQL statement."""
    return lambda path, best, other: _sql(path, sql.format(best=best, other=other), *args)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _run(capsys: pytest.CaptureFixture, command: str, path: Path) -> tuple[int, str, str]:
    extra = {
        "report": ["-o", str(path.parent / "r.html")],
        "export": ["--out", str(path.parent / "exported"), "--no-onnx"],
    }
    with warnings.catch_warnings(record=True) as warned:  # pytest would keep them off stderr, where users see them
        warnings.simplefilter("always")
        code = main([command, str(path), *extra.get(command, []), *(["--quiet"] if command == "resume" else [])])
    out, err = capsys.readouterr()
    return code, out, err + "".join(f"warning: {w.message}\n" for w in warned)


def _refused(capsys: pytest.CaptureFixture, command: str, path: Path, *fragments: str) -> str:
    before = _sha(path)
    code, _, err = _run(capsys, command, path)
    assert code == 2, f"{command}: exit {code}\n{err}"
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert str(path) in err and all(f in err for f in fragments), err
    assert _sha(path) == before, f"{command} changed the study file"
    return err


def _works(capsys: pytest.CaptureFixture, command: str, path: Path) -> None:
    before = _sha(path)
    code, _, err = _run(capsys, command, path)
    assert code == 0 and err == "", f"{command}: exit {code}\n{err}"
    assert _sha(path) == before, f"{command} changed the study file"


# (name, tamper(path, best, other), commands that refuse, what their line says, commands that still work)
READS = ("best", "trials", "report", "resume")  # what reads every trial
MLP = '{{"kind": "mlp", "layers": {}}}'
PICKLE = pickle.dumps({"os": "system"}, protocol=4)  # not what torch.save writes
CASES = [
    ("schema version not a number", _statement("UPDATE meta SET value = 'x' WHERE key = 'schema_version'"),
     COMMANDS, "schema version", ()),
    ("config not JSON", _statement("UPDATE meta SET value = '{{' WHERE key = 'config'"),
     COMMANDS, "config is not valid JSON", ()),
    ("config not an object", _statement("UPDATE meta SET value = '[1]' WHERE key = 'config'"),
     COMMANDS, "config is not a JSON object", ()),
    ("config steps of a wrong type", _config(steps="a"), COMMANDS, "config.steps", ()),
    ("config children per step beyond any bound", _config(children_per_step=10**12),
     COMMANDS, "config.children_per_step", ()),
    ("config without a task", _config(task=None), COMMANDS, "config.task is missing", ()),
    ("config space not an object", _config(space="mlp"), COMMANDS, "config.space", ()),
    ("config space far outside its bounds", _config(space={"kind": "mlp", "max_layers": 10**9}),
     COMMANDS, "max_layers", ()),
    ("config task of a wrong type", _config(task={"name": "moons", "noise": "a"}),
     ("best", "report", "export", "resume"), "task.noise", ("trials",)),
    ("config task far outside its bounds", _config(task={"name": "moons", "n_samples": 10**12}),
     ("best", "report", "export", "resume"), "task.n_samples", ("trials",)),
    ("reward NULL", _trial("reward", None, loose=True), READS, "reward is not a finite number", ("export",)),
    ("reward text", _trial("reward", "abc", loose=True), READS, "reward is not a finite number", ()),
    ("reward infinite", _trial("reward", float("inf")), READS, "reward is not a finite number", ()),
    ("curve with NaN", _trial("val_curve", "[0.5, NaN]"), READS, "val_curve is not a JSON list of finite numbers", ()),
    ("curve not a list", _trial("train_loss", '{"a": 1}'), READS, "train_loss is not a JSON list", ()),
    ("architecture not JSON", _trial("architecture", "{"), READS, "architecture", ()),
    ("units far outside the space", _trial("architecture", MLP.format('[{"activation": "tanh", "units": 1000000000}]'),
     "best"), COMMANDS, "not in the study's space", ()),
    ("more layers than the space has", _trial("architecture", MLP.format(json.dumps([{"activation": "relu", "units": 4}]
     * 40)), "best"), COMMANDS, "not in the study's space", ()),
    ("arch_hash of another architecture", _trial("arch_hash", "0123456789abcdef"), READS, "arch_hash", ()),
    ("step of text", _trial("step", "x", loose=True), READS, "step", ()),
    ("status unknown", _trial("status", "great"), READS, "status", ()),
    ("a trial deleted", _statement("DELETE FROM trials WHERE number = {other}"), READS, "is missing", ("export",)),
    ("checkpoint deleted", _statement("DELETE FROM checkpoints"),
     ("resume",), "the checkpoint of step 1 is missing; trials and best still work", ("best", "trials", "report",
                                                                                      "export")),
    ("checkpoint garbled", _statement("UPDATE checkpoints SET state = X'00112233'"),
     ("resume",), "the checkpoint of step 1 cannot be read", ("best", "trials", "export")),
    ("checkpoint a bare pickle", _statement("UPDATE checkpoints SET state = ?", PICKLE),  # torch warns, we do not
     ("resume",), "the checkpoint of step 1 cannot be read", ("best", "trials")),
    ("step metrics garbled", _statement("UPDATE steps SET metrics = 'garbage' WHERE step = 0"),
     ("report",), "the metrics of step 0", ("best", "trials", "export")),
    ("weights garbled", _statement("UPDATE models SET weights = X'504b0304deadbeef'"),
     ("report", "export"), "cannot be read", ("best", "trials")),
    ("weights a bare pickle", _statement("UPDATE models SET weights = ?", PICKLE),
     ("report", "export"), "cannot be read", ("best", "trials")),
    ("weights of other shapes", _statement("UPDATE models SET weights = ?", _blob({"0.weight": torch.zeros(3, 3)})),
     ("report", "export"), "do not match its architecture", ("best", "trials")),
    ("weights of another trial", _statement("UPDATE models SET number = {other}"),
     ("report", "export"), "the stored weights are of trial", ("best", "trials")),
    ("schema SQL not UTF-8", _not_utf8(b"CREATE TABLE tri", b"\x80"), COMMANDS, "damaged", ()),
    ("a column type not UTF-8, with a line break", _not_utf8(b"reward R", b"\n\x80"), COMMANDS, "damaged", ()),
    ("header not in WAL mode", _statement("PRAGMA journal_mode = DELETE"), ("resume",), "not in WAL mode",
     ("best", "trials")),
    ("a page overwritten", lambda path, best, other: _overwrite_page(path, "trials"), COMMANDS, "damaged", ()),
    ("a table dropped", _statement("DROP TABLE steps"), COMMANDS, "no 'steps' table", ()),
]  # fmt: skip


@pytest.mark.parametrize(("tamper", "refusing", "says", "working"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_a_tampered_study_is_one_line_and_is_not_changed(template, tmp_path, capsys, tamper, refusing, says, working):
    path = _copy(template, tmp_path)
    tamper(path, template[1], template[2])
    for command in refusing:
        _refused(capsys, command, path, says)
    for command in working:
        _works(capsys, command, path)


def test_the_line_names_the_trial_and_what_is_wrong(template, tmp_path, capsys):
    path = _copy(template, tmp_path)
    other = template[2]
    _sql(path, f"UPDATE trials SET reward = 9e999 WHERE number = {other}")
    err = _refused(capsys, "trials", path)
    assert err.strip() == f"archsearch trials: error: {path}: trial {other}: reward is not a finite number (inf)"


def test_an_architecture_outside_the_space_is_refused_before_anything_is_built(template, tmp_path, monkeypatch):
    path = _copy(template, tmp_path)
    _trial("architecture", MLP.format('[{"activation": "tanh", "units": 1000000000}]'), "best")(path, *template[1:])
    built = []
    monkeypatch.setattr("archsearch.space.MLPArchitecture.build", lambda *args, **kwargs: built.append(args))
    with (
        Study.open(path, readonly=True) as study,
        pytest.raises(ArchsearchError, match=f"trial {template[1]}: architecture"),
    ):
        study.best_model()
    assert built == []


def test_architectures_are_checked_once_each(tmp_path, moons, tiny_space, monkeypatch):
    study = Study.create(tmp_path / "s.db", moons, steps=20, children_per_step=5, space=tiny_space,
                         strategy=RandomSearch(tiny_space, seed=0, unique=False),
                         evaluator=FakeEvaluator(moons, fraction_of_wide_layers))  # fmt: skip
    study.run(progress=False)
    study.close()
    checked = []
    validate = SearchSpace.validate
    monkeypatch.setattr(SearchSpace, "validate", lambda space, arch: checked.append(arch) or validate(space, arch))
    with Study.open(tmp_path / "s.db", readonly=True) as reopened:
        trials = reopened.trials()
        reopened.trials()
        reopened.best()
    distinct = {t.arch_hash for t in trials}
    assert len(trials) == 100 and len(distinct) <= 12
    assert len(checked) == len(distinct)


def test_cnn_architectures_are_checked_against_their_space(tmp_path):
    digits = get_task("digits")
    space = CNNSpace(max_layers=3)
    path = tmp_path / "cnn.db"
    fake = FakeEvaluator(digits, lambda arch: 0.5)
    study = Study.create(path, digits, steps=1, children_per_step=4, space=space, strategy=RandomSearch(space, seed=1),
                         evaluator=fake)  # fmt: skip
    study.run(progress=False)
    study.close()
    layer = {"filters": 8, "kernel": 3, "stride": 1, "pool": "none", "dropout": 0.0, "skips": [], "batch_norm": True}
    for layers, says in [
        ([layer, {**layer, "skips": [2]}, layer], "skips"),  # a skip from a later layer
        ([layer, layer, {**layer, "kernel": 7}], "not in the study's space"),  # a kernel the space does not offer
        ([layer] * 4, "not in the study's space"),  # a layer more than the space allows
        ([{**layer, "filters": "many"}], "malformed"),
    ]:
        copy = tmp_path / f"{says}.db"
        shutil.copyfile(path, copy)
        _sql(copy, "UPDATE trials SET architecture = ? WHERE number = 1", json.dumps({"kind": "cnn", "layers": layers}))
        with Study.open(copy, readonly=True) as tampered, pytest.raises(ArchsearchError, match=f"trial 1: .*{says}"):
            tampered.trials()


def test_damaged_weights_leave_the_summary_with_a_warning(template, tmp_path):
    path = _copy(template, tmp_path)
    _sql(path, "UPDATE models SET weights = X'00', test_score = NULL")  # a score not yet measured needs them
    with Study.open(path, readonly=True) as study:
        with pytest.warns(UserWarning, match="cannot be read.*no test score"):
            summary = study.summary()
        assert summary["trial"] == template[1] and summary["test_score"] is None
        with pytest.raises(ArchsearchError, match="cannot be read"):
            study.test_score()


def test_a_study_killed_before_its_first_step_is_shown(tmp_path, moons, capsys):
    path = tmp_path / "s.db"
    study = Study.create(
        path, moons, steps=3, children_per_step=4, evaluator=FakeEvaluator(moons, fraction_of_wide_layers)
    )
    study.run(steps=1, progress=False)
    study.close()
    for statement in ("DELETE FROM checkpoints", "DELETE FROM steps", "DELETE FROM trials WHERE number >= 2"):
        _sql(path, statement)
    code, out, err = _run(capsys, "best", path)
    assert code == 0 and err == "" and "(trial" in out and "mean reward" not in out


# -- read-only studies ---------------------------------------------------------------------------


@pytest.fixture
def shared_folder():
    """A folder other users can enter (pytest's own temporary folders are private to their owner)."""
    folder = Path(tempfile.mkdtemp(prefix="archsearch-test-"))
    folder.chmod(0o755)
    yield folder
    for path in [folder, *folder.rglob("*")]:
        if path.is_dir():
            path.chmod(0o755)
    shutil.rmtree(folder)


def _read_only(path: Path) -> None:
    for file in path.parent.iterdir():
        file.chmod(0o444)
    path.parent.chmod(0o555)


def test_read_only_commands_work_on_a_read_only_study_and_resume_is_one_line(template, shared_folder, tmp_path, capsys):
    folder = shared_folder / "study"
    folder.mkdir()
    path = _copy(template, folder)
    _read_only(path)
    before = _sha(path)
    commands = [
        ["trials"],
        ["best"],
        ["best", "--json"],
        ["report", "-o", str(tmp_path / "r.html")],
        ["export", "--out", str(tmp_path / "x"), "--no-onnx"],
    ]
    for command, *extra in commands:
        assert main([command, str(path), *extra]) == 0, capsys.readouterr().err
        assert capsys.readouterr().err == ""
    assert (tmp_path / "r.html").stat().st_size > 0 and (tmp_path / "x" / "weights.safetensors").exists()
    code, _, err = _run(capsys, "resume", path)
    assert (
        code == 2
        and err.strip() == f"archsearch resume: error: {path}: read-only (the file is read-only); resume needs to write"
    )
    path.chmod(0o644)  # a writable file in a read-only folder: SQLite could not create its -wal file
    code, _, err = _run(capsys, "resume", path)
    assert code == 2 and "read-only (its directory" in err and "resume needs to write" in err
    assert _sha(path) == before


def _as_another_user(work) -> str:  # noqa: ANN001
    """``work()`` in a forked process that, when this one is root, first becomes ``nobody``: root
    ignores permission bits, so only another user meets a read-only file as users do. Returns what
    ``work`` returns, or its error."""
    if not hasattr(os, "fork"):
        pytest.skip("needs os.fork")
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover -- the child
        os.close(read)
        try:
            if os.geteuid() == 0:
                try:
                    os.setgid(65534)
                    os.setuid(65534)
                except OSError as exc:
                    os.write(write, f"SKIP cannot become another user ({exc})".encode())
                    os._exit(0)
            result = work()
        except BaseException as exc:  # noqa: BLE001 -- reported to the parent
            result = f"{type(exc).__name__}: {exc}"
        os.write(write, str(result).encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    with os.fdopen(read) as pipe:
        result = pipe.read()
    if result.startswith("SKIP "):
        pytest.skip(result[5:])
    return result


@pytest.mark.parametrize("left", ["nothing", "wal and shm", "wal"])
def test_a_read_only_study_is_read_whole_by_another_user(shared_folder, moons, left):
    """``nothing``: closed cleanly. ``wal and shm``: killed during a search; its last commits are only in
    the -wal file. ``wal``: the same without the -shm file, which SQLite needs to write to read the -wal."""
    running = shared_folder / "running.db"
    study = Study.create(
        running, moons, steps=3, children_per_step=4, evaluator=FakeEvaluator(moons, fraction_of_wide_layers)
    )
    study.run(progress=False)
    best = study.best().number
    folder = shared_folder / "study"
    folder.mkdir()
    path = folder / "s.db"
    suffixes = {"nothing": [], "wal and shm": ["-wal", "-shm"], "wal": ["-wal"]}[left]
    for suffix in ["", *suffixes]:
        shutil.copyfile(f"{running}{suffix}", f"{path}{suffix}")
    study.close()
    if left == "nothing":
        shutil.copyfile(running, path)
    else:  # the commits are in the -wal file only: a reader that ignored it would miss them
        with sqlite3.connect(f"{path.as_uri()}?mode=ro&immutable=1", uri=True) as db:
            with pytest.raises(sqlite3.OperationalError):
                db.execute("SELECT COUNT(*) FROM trials").fetchone()
    _read_only(path)
    names = sorted(p.name for p in folder.iterdir())

    def read() -> str:
        with Study.open(path, readonly=True) as opened:
            trials, best = opened.trials(), opened.best()
        try:
            Study.open(path)
        except ArchsearchError as exc:
            refused = str(exc)
        return f"{len(trials)} {best.number} {refused}"

    assert _as_another_user(read) == f"12 {best} {path}: read-only (the file is read-only); resume needs to write"
    assert sorted(p.name for p in folder.iterdir()) == names
    assert not list(Path(tempfile.gettempdir()).glob("archsearch-readonly-*"))


def test_reading_read_only_writes_nothing(template, tmp_path):
    path = _copy(template, tmp_path)
    _sql(path, "UPDATE models SET test_score = NULL")  # opened for writing, reading the summary would store it
    before = _sha(path)
    with Study.open(path, readonly=True) as study:
        assert study.summary()["test_score"] is not None
        study.best_model()
        study.trials(top=3)
    assert _sha(path) == before
    with Study.open(path) as study:
        study.summary()
    assert _sha(path) != before


def _state(path: Path) -> dict:
    with sqlite3.connect(path) as db:
        state = torch.load(io.BytesIO(db.execute("SELECT state FROM checkpoints").fetchone()[0]), weights_only=True)
    db.close()
    return state


@pytest.mark.parametrize(
    ("asynchronous", "change"),
    [
        (False, lambda state: {}),
        (False, lambda state: {**state, "controller": {"weight": torch.zeros(2)}}),
        (True, lambda state: {**state, "told": 10**9}),
        (True, lambda state: {**state, "asked": ['{"kind": "mlp", "layers": [{"units": 3, "activation": "relu"}]}']}),
        (True, lambda state: {key: value for key, value in state.items() if key != "strategy"}),
    ],
    ids=["empty", "other controller", "told beyond its step", "asked outside the space", "no strategy"],
)
def test_a_checkpoint_that_does_not_fit_its_strategy_refuses_resume(tmp_path, moons, capsys, asynchronous, change):
    from archsearch.strategies import RegularizedEvolution

    space = MLPSpace()
    strategy = RegularizedEvolution(space, seed=5, population_size=4, sample_size=2) if asynchronous else None
    path = tmp_path / "s.db"
    trainer = BatchedTrainer(moons, TrainConfig(max_epochs=2))  # resume rebuilds it from the file
    study = Study.create(path, moons, steps=4, children_per_step=3, space=space, strategy=strategy, evaluator=trainer,
                         asynchronous=asynchronous)  # fmt: skip
    study.run(steps=2, progress=False)
    study.close()
    _sql(path, "UPDATE checkpoints SET state = ?", _blob(change(_state(path))))
    _refused(capsys, "resume", path, "the checkpoint of step 1 does not fit the study's strategy", "resume does not")
    _works(capsys, "trials", path)
    _works(capsys, "best", path)


def test_resume_refuses_a_damaged_study_before_its_first_write(template, tmp_path, capsys):
    path = _copy(template, tmp_path)
    _overwrite_page(path, "trials_by_hash")  # an index that reading trials never touches, but a run does
    before = _sha(path)
    code = main(["resume", str(path), "--steps", "3", "--quiet"])  # a new budget is the run's first write
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and f"{path}: the study file is damaged" in err, err
    assert _sha(path) == before

"""Issue 16, point 6: no traceback from hostile data files, a full disk, a closed pipe, Ctrl-C or SIGTERM.

Each case ends with one line on stderr and a documented exit code (2 for an error, 130 for Ctrl-C, 143 for
SIGTERM, 141 for a closed stdout), and a stopped search stays resumable. Signals and pipes need a process
of their own; everything else runs in this one.
"""

from __future__ import annotations

import errno
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

import archsearch.study._storage as storage
from archsearch.cli import EXIT_INTERRUPTED, EXIT_TERMINATED, main

BENCH = ["--benchmark", "nas-bench-macro", "--strategy", "random", "--steps", "30", "--children-per-step", "5"]
MOONS = ["--task", "moons", "--steps", "2", "--children-per-step", "3", "--max-epochs", "3"]
HANG_GUARD = 120.0  # seconds; only a hang reaches it


def one_line(capsys: pytest.CaptureFixture) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.endswith("\n") and err.count("\n") == 1, err
    return err.rstrip("\n")


def trials_of(path: Path) -> list[tuple]:
    """What makes two runs the same: every trial's number, architecture, seed, status and reward."""
    db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        return db.execute("SELECT number, arch_str, seed, status, reward FROM trials ORDER BY number").fetchall()
    finally:
        db.close()


def pages_of(path: Path) -> int:
    db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        return db.execute("PRAGMA page_count").fetchone()[0]
    finally:
        db.close()


def limit_pages(monkeypatch: pytest.MonkeyPatch, pages: int) -> None:
    """The fault: study connections opened from now on may hold ``pages`` pages; an insert beyond
    fails inside SQLite with SQLITE_FULL ("database or disk is full"), as on a full disk."""
    configure = storage._configure

    def limited(db: sqlite3.Connection) -> None:
        configure(db)
        db.execute(f"PRAGMA max_page_count = {pages}")

    monkeypatch.setattr(storage, "_configure", limited)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("uninterrupted") / "a.db"
    assert main(["search", *BENCH, "--study", str(path), "--quiet"]) == 0
    return path


# -- data files through the command line ---------------------------------------------------------------------


def _datetimes(d: Path) -> Path:
    np.savez(d / "data.npz", X=np.zeros((20, 2), dtype="datetime64[s]"), y=np.arange(20) % 2)
    return d / "data.npz"


def _pickled(d: Path) -> Path:
    np.savez(d / "data.npz", X=np.array([[1, None]] * 20, dtype=object), y=np.arange(20) % 2)
    return d / "data.npz"


def _fifo(d: Path) -> Path:
    os.mkfifo(d / "data.csv")
    return d / "data.csv"


def _csv(text: str | bytes):  # noqa: ANN202
    def make(d: Path) -> Path:
        (d / "data.csv").write_bytes(text if isinstance(text, bytes) else text.encode())
        return d / "data.csv"

    return make


ROWS = "".join(f"{i},{i % 2}\n" for i in range(30))


@pytest.mark.parametrize(
    ("make", "target", "message"),
    [
        (lambda d: (d / "data.csv").mkdir() or d / "data.csv", "y", "data.csv: not a file (a directory)"),
        (_fifo, "y", "data.csv: not a file (a FIFO, socket or device)"),
        (_csv(b"x,y\n\xff\xfe,1\n"), "y", "data.csv: not a readable CSV file ('utf-8' codec can't decode byte 0xff"),
        (_csv("x,y\n" + ROWS + "1e400,1\n"), "y", "data.csv: column 'x' holds 1 numbers beyond the range of 32-bit"),
        (_datetimes, None, "data.npz: array 'X' has dtype datetime64[s]; expected numbers"),
        (_pickled, None, "data.npz: array 'X' has dtype object; expected numbers"),
        (lambda d: (d / "data.npz").write_bytes(b"\0" * 4096) and d / "data.npz", None, "not a readable .npz file"),
    ],
)
def test_a_hostile_data_file_is_one_line_and_no_study(tmp_path, capsys, make, target, message):
    data = make(tmp_path)
    argv = ["search", "--data", str(data), "--study", str(tmp_path / "s.db"), "--quiet"]
    assert main(argv + (["--target", target] if target else [])) == 2
    line = one_line(capsys)
    assert line.startswith("archsearch search: error: ") and message in line, line
    assert not list(tmp_path.glob("s.db*"))


# -- a full disk ---------------------------------------------------------------------------------------------


def test_a_full_disk_mid_run_is_one_line_and_the_study_resumes_to_the_uninterrupted_one(
    tmp_path, capsys, monkeypatch, uninterrupted
):
    study = tmp_path / "b.db"
    limit_pages(monkeypatch, pages_of(uninterrupted) - 4)
    assert main(["search", *BENCH, "--study", str(study), "--quiet"]) == 2
    line = one_line(capsys)
    assert line == (
        f"archsearch search: error: {study.resolve()}: cannot write to the study (database or disk is full), every "
        f"finished trial is saved; continue with 'archsearch resume {study}' once there is room"
    )
    done = trials_of(study)
    assert 0 < len(done) < 150 and done == trials_of(uninterrupted)[: len(done)]  # stopped mid-run, kept whole
    monkeypatch.undo()  # room again
    assert main(["resume", str(study), "--quiet"]) == 0
    assert trials_of(study) == trials_of(uninterrupted)


def test_a_full_disk_while_creating_a_study_leaves_no_file(tmp_path, capsys, monkeypatch):
    limit_pages(monkeypatch, 2)
    assert main(["search", *BENCH, "--study", str(tmp_path / "c.db"), "--quiet"]) == 2
    assert one_line(capsys).endswith("c.db: cannot create the study file (database or disk is full)")
    assert list(tmp_path.iterdir()) == []


def test_a_full_disk_while_saving_a_child_is_one_line_and_resumable(tmp_path, capsys, monkeypatch):
    import safetensors.torch

    save, calls = safetensors.torch.save_file, []

    def save_until_full(tensors, filename, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        calls.append(Path(filename).name.removesuffix(".partial"))
        if len(calls) == 3:  # what safetensors raises on ENOSPC, with the file it left behind
            Path(filename).write_bytes(b"partial")
            raise safetensors.SafetensorError("Error while serializing: I/O error: No space left on device (os 28)")
        return save(tensors, filename, *args, **kwargs)

    monkeypatch.setattr(safetensors.torch, "save_file", save_until_full)
    study = tmp_path / "m.db"
    assert main(["search", *MOONS, "--save-children", "--study", str(study), "--quiet", "--executor", "inline"]) == 2
    line = one_line(capsys)
    assert line.startswith(f"archsearch search: error: {study}.children/{calls[2]}: cannot write to the study (")
    assert "No space left on device" in line and line.endswith(f"'archsearch resume {study}' once there is room")
    saved = sorted(calls[:2])  # children are recorded as they finish; the third is not, without its weights
    assert [f"{t[0]}.safetensors" for t in trials_of(study)] == saved
    assert sorted(p.name for p in Path(f"{study}.children").iterdir()) == saved  # and no partial file
    monkeypatch.undo()
    assert main(["resume", str(study), "--quiet"]) == 0
    assert len(trials_of(study)) == 6 and len(list(Path(f"{study}.children").iterdir())) == 6


def test_an_os_error_from_any_command_is_one_line_naming_the_file(capsys, monkeypatch, uninterrupted):
    import archsearch.cli as cli

    def full(args):  # noqa: ANN001, ANN202
        raise OSError(errno.ENOSPC, "No space left on device", "out/report.html")

    monkeypatch.setattr(cli, "_best", full)
    assert main(["best", str(uninterrupted)]) == 2
    assert one_line(capsys) == "archsearch best: error: out/report.html: No space left on device"


# -- SIGTERM, in this process ---------------------------------------------------------------------------------


def test_sigterm_mid_run_is_one_line_then_resumes_to_the_uninterrupted_study(
    tmp_path, capsys, monkeypatch, uninterrupted
):
    add_step = storage.Storage.add_step

    def terminated_after_step_4(self, step, metrics, state, evaluator=None):  # noqa: ANN001, ANN202
        add_step(self, step, metrics, state, evaluator)
        if step == 4:
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(storage.Storage, "add_step", terminated_after_step_4)
    before = signal.getsignal(signal.SIGTERM)
    study = tmp_path / "t.db"
    assert main(["search", *BENCH, "--study", str(study), "--quiet"]) == EXIT_TERMINATED
    assert one_line(capsys) == (
        f"archsearch search: terminated, every finished trial is saved; continue with 'archsearch resume {study}'"
    )
    assert signal.getsignal(signal.SIGTERM) is before  # main() put back the handler it found
    assert len(trials_of(study)) in range(25, 31)  # stopped within step 5, where the signal was raised
    monkeypatch.undo()
    assert main(["resume", str(study), "--quiet"]) == 0
    assert trials_of(study) == trials_of(uninterrupted)


# -- a closed pipe and signals, in a process of their own ------------------------------------------------------

# A shell starts a foreground job with Ctrl-C neither ignored nor blocked, whatever its own state; a test
# runner's process need not be in that state, and a child inherits both.
AS_AT_A_TERMINAL = (
    "import runpy, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT}); sys.argv[0] = 'archsearch'; "
    "runpy.run_module('archsearch', run_name='__main__', alter_sys=True)"
)


def archsearch(*args: str, **kwargs) -> subprocess.Popen:  # noqa: ANN003
    """``archsearch ARGS`` in a process of its own, started as a shell starts a foreground job."""
    return subprocess.Popen([sys.executable, "-c", AS_AT_A_TERMINAL, *args], text=True, **kwargs)


@pytest.mark.parametrize("json", [True, False])
def test_a_closed_stdout_ends_quietly(uninterrupted, json):
    read, write = os.pipe()
    os.close(read)  # the reader is gone before the first byte, as with `| head -1` on a long listing
    try:
        argv = ["trials", str(uninterrupted), *(["--json"] if json else [])]
        proc = archsearch(*argv, stdout=write, stderr=subprocess.PIPE)
    finally:
        os.close(write)
    _, err = proc.communicate(timeout=HANG_GUARD)
    assert err == ""
    assert proc.returncode == 141 if json else proc.returncode != 0  # a table: rich's own quiet exit, 1


def marked(mark: str) -> list[int]:
    """The processes started with ``mark`` in their environment: a command and its worker processes."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and mark.encode() in (entry / "environ").read_bytes():
                found.append(int(entry.name))
        except OSError:  # gone meanwhile
            pass
    return found


def wait_for(condition, what: str):  # noqa: ANN001, ANN201
    deadline = time.monotonic() + HANG_GUARD
    while not (value := condition()):
        assert time.monotonic() < deadline, f"no {what} within {HANG_GUARD:.0f} s"
        time.sleep(0.05)
    return value


def search_with_workers(study: Path, mark: str, steps: int = 2) -> subprocess.Popen:
    """A search in a session of its own, as at a terminal: a signal to its group is Ctrl-C."""
    argv = ["search", *MOONS, "--steps", str(steps), "--executor", "process", "--workers", "2", "--study", str(study)]
    env = {**os.environ, "ARCHSEARCH_NO_TRACEBACK_TEST": mark}
    argv.append("--quiet")
    return archsearch(*argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)


def without_kernel_warning(err: str) -> str:
    """``err`` less the one line a machine without a C++ compiler adds (the batched trainer's fallback)."""
    return "".join(line for line in err.splitlines(keepends=True)
                   if not line.startswith("archsearch search: warning: batched trainer:"))  # fmt: skip


def sigint_state(pid: int) -> dict[str, bool]:
    """Whether a process blocks, ignores or catches SIGINT, from its /proc status (the main thread's mask)."""
    bit = 1 << (signal.SIGINT - 1)
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return {name: bool(int(fields[key], 16) & bit) for name, key in
            (("blocked", "SigBlk"), ("ignored", "SigIgn"), ("caught", "SigCgt"))}  # fmt: skip


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds worker processes through /proc")
@pytest.mark.slow
def test_ctrl_c_while_workers_start_is_one_line_without_worker_tracebacks(tmp_path):
    mark, study = uuid.uuid4().hex, tmp_path / "w.db"
    proc = search_with_workers(study, mark)
    wait_for(lambda: len(marked(mark)) >= 3, "worker process")  # the search and 2 workers still importing PyTorch
    # Caught, never ignored; blocked only for a moment, as while Python forks a worker (the signal waits, pending)
    wait_for(lambda: sigint_state(proc.pid) == {"blocked": False, "ignored": False, "caught": True}, "SIGINT handler")
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C at a terminal does: the whole foreground group
    _, err = proc.communicate(timeout=HANG_GUARD)
    assert (proc.returncode, without_kernel_warning(err)) == (
        EXIT_INTERRUPTED,
        f"archsearch search: interrupted, every finished trial is saved; continue with 'archsearch resume {study}'\n",
    )
    wait_for(lambda: not marked(mark), "end of the worker processes")


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds worker processes through /proc")
@pytest.mark.slow
def test_sigterm_mid_run_closes_the_workers_and_the_study_resumes(tmp_path, capsys):
    mark, study = uuid.uuid4().hex, tmp_path / "w.db"
    proc = search_with_workers(study, mark, steps=20)
    wait_for(lambda: recorded(study), "trial")
    proc.terminate()  # SIGTERM to the search alone, as `kill PID` sends it
    _, err = proc.communicate(timeout=HANG_GUARD)
    assert (proc.returncode, without_kernel_warning(err)) == (
        EXIT_TERMINATED,
        f"archsearch search: terminated, every finished trial is saved; continue with 'archsearch resume {study}'\n",
    )
    wait_for(lambda: not marked(mark), "end of the worker processes")
    assert main(["resume", str(study), "--executor", "inline", "--quiet"]) == 0
    assert [t[0] for t in trials_of(study)] == list(range(60))


def recorded(study: Path) -> int:
    """Trials in a study that another process may be creating: 0 until it has any."""
    try:
        return len(trials_of(study)) if study.exists() else 0
    except sqlite3.Error:  # created, but its tables not yet committed
        return 0


def test_a_study_locked_by_another_writer_is_one_line_and_rolled_back(tmp_path):
    """Another connection holding the write lock past the busy timeout: one StudyWriteError, nothing half-written."""
    import sqlite3

    from archsearch.study._storage import StudyWriteError, _transaction

    path = tmp_path / "x.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("PRAGMA journal_mode=WAL")
    holder.execute("CREATE TABLE t (x)")
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("PRAGMA busy_timeout=50")
    holder.execute("BEGIN IMMEDIATE")
    with pytest.raises(StudyWriteError, match=r"x\.db: cannot write to the study \(database is locked\)"):
        with _transaction(writer):
            writer.execute("INSERT INTO t VALUES (1)")
    holder.execute("ROLLBACK")
    assert writer.execute("SELECT COUNT(*) FROM t").fetchone()[0] == 0 and not writer.in_transaction

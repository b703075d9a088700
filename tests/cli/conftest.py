"""Run the ``archsearch`` command as a user types it: in this process through ``archsearch.cli.main``
(what the console script calls), or in a subprocess where the test is about the process itself.

In-process runs spare each command the second or so a fresh interpreter spends importing PyTorch; the
command sees the same arguments, working directory and streams. Commands that start Ray, and tests that
pass ``process=True`` (signals, environment variables, the console script itself), run in a subprocess.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import subprocess
import sys
import warnings
from collections.abc import Sequence

import pytest

from archsearch.cli import main

SCRIPT = shutil.which("archsearch", path=os.path.dirname(sys.executable))
COMMAND = [SCRIPT] if SCRIPT else [sys.executable, "-m", "archsearch"]
FAST = ["--max-epochs", "4", "--quiet"]


def archsearch(*args: object, cwd=None, check: bool = False, process: bool = False) -> subprocess.CompletedProcess:  # noqa: ANN001
    """``archsearch ARGS``: its exit code, stdout and stderr. A hang is ended by pytest-timeout, not by a
    guess of how long a busy machine takes."""
    argv = [str(arg) for arg in args]
    proc = _subprocess(argv, cwd) if process or "ray" in argv else _in_process(argv, cwd)
    if check and proc.returncode != 0:
        raise AssertionError(f"archsearch {' '.join(argv)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


def _subprocess(argv: list[str], cwd) -> subprocess.CompletedProcess:  # noqa: ANN001
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([*COMMAND, *argv], cwd=cwd, capture_output=True, text=True, env=env)


def _in_process(argv: Sequence[str], cwd) -> subprocess.CompletedProcess:  # noqa: ANN001
    out, err = io.StringIO(), io.StringIO()
    here, showwarning = os.getcwd(), warnings.showwarning
    try:
        if cwd is not None:
            os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), warnings.catch_warnings():
            try:
                code = main(list(argv))
            except SystemExit as exc:  # argparse: --help, --version and its own usage errors
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        os.chdir(here)
        warnings.showwarning = showwarning
    return subprocess.CompletedProcess([*COMMAND, *argv], code, out.getvalue(), err.getvalue())


@pytest.fixture
def run():
    return archsearch


def uninterrupted(search: Sequence[object], study) -> object:  # noqa: ANN001
    """``archsearch search SEARCH --study STUDY`` run to the end in this process: the reference that
    benchmarks/kill_anywhere.py compares a killed and resumed search with, made without a process start-up."""
    archsearch("search", *search, "--study", study, "--quiet", check=True)
    return study


def one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> None:
    """A refusal as the command line must give it: exit code 2 and one line on stderr, with every needle."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]

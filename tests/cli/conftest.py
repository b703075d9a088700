"""Run the ``archsearch`` command exactly as a user types it, in a subprocess."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

SCRIPT = shutil.which("archsearch", path=os.path.dirname(sys.executable))
COMMAND = [SCRIPT] if SCRIPT else [sys.executable, "-m", "archsearch"]
FAST = ["--max-epochs", "4", "--quiet"]


def archsearch(*args: str, cwd=None, check: bool = False, timeout: float | None = None) -> subprocess.CompletedProcess:
    """``archsearch ARGS`` in a subprocess; a hang is ended by pytest-timeout, not by a guess of how long a
    busy machine takes."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [*COMMAND, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"archsearch {' '.join(map(str, args))} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture
def run():
    return archsearch

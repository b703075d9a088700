"""The package's layers hold: ``import-linter``'s contract in pyproject.toml is kept, and it is broken
the moment a lower part imports a higher one."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT = shutil.which("lint-imports", path=os.path.dirname(sys.executable))
pytestmark = pytest.mark.skipif(LINT is None, reason="import-linter is not installed (pip install -e '.[dev]')")


def lint(source: Path, config: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(source)}
    return subprocess.run(
        [LINT, "--no-cache", str(config)], capture_output=True, text=True, env=env, cwd=config.parent
    )


def test_no_lower_part_imports_a_higher_one() -> None:
    proc = lint(ROOT / "src", ROOT / "pyproject.toml")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Contracts: 1 kept, 0 broken." in proc.stdout


@pytest.mark.parametrize(
    ("module", "imports", "broken"),
    [
        ("space/_mlp.py", "archsearch.strategies", "archsearch.space is not allowed to import archsearch.strategies"),
        ("evaluation/_serial.py", "archsearch.study", "archsearch.evaluation is not allowed to import archsearch.study"),
        ("strategies/_random.py", "archsearch.evaluation", "archsearch.strategies is not allowed to import"),
    ],
)
def test_an_upward_import_breaks_the_contract(tmp_path: Path, module: str, imports: str, broken: str) -> None:
    source = tmp_path / "src"
    shutil.copytree(ROOT / "src" / "archsearch", source / "archsearch", ignore=shutil.ignore_patterns("data"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    path = source / "archsearch" / module
    path.write_text(path.read_text() + f"\n\ndef _upward() -> None:\n    import {imports}  # noqa: F401\n")
    proc = lint(source, tmp_path / "pyproject.toml")
    assert proc.returncode == 1 and "Contracts: 0 kept, 1 broken." in proc.stdout, proc.stdout + proc.stderr
    assert broken in proc.stdout

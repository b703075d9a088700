"""``search --data`` says which problem it inferred from the target, and why."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from .conftest import FAST


def write_pandas_style(path: Path, rows: int = 120) -> None:
    """A CSV as pandas writes a float target of whole numbers: ``151.0``, ``75.0``, ... (120 distinct)."""
    x = np.random.default_rng(0).normal(size=(rows, 3)).round(4)
    target = 25 + (np.arange(rows) * 37) % 300
    lines = ["a,b,c,progression", *(f"{a},{b},{c},{float(t)!r}" for (a, b, c), t in zip(x, target))]
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize(
    ("problem", "says"),
    [
        ([], "problem: regression (inferred: the 120 distinct values of target 'progression' are written as decimals"),
        (["--problem", "regression"], None),  # given: nothing to say
    ],
)
def test_search_says_what_it_inferred(tmp_path, run, problem, says):
    write_pandas_style(tmp_path / "diabetes.csv")
    proc = run("search", "--data", "diabetes.csv", "--target", "progression", *problem, "--steps", "1",
               "--children-per-step", "2", *FAST, cwd=tmp_path, check=True)  # fmt: skip
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("study: ")
    if says is None:
        assert not any(line.startswith("problem:") for line in lines)
    else:
        assert lines[1].startswith(says)
    assert "val_r2" in proc.stdout

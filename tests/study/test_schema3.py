"""Studies written before schema 4 open, report, export and resume (tests/data/schema3, see its README).

The numbers are those the last schema-3 archsearch gave for the same files and commands: a resume
continues the search exactly where it stopped, whichever archsearch wrote the first steps.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
import stat
from pathlib import Path

import pytest

from archsearch.cli import main
from archsearch.study import Study

FIXTURES = Path(__file__).parent.parent / "data" / "schema3"

#: what the unchanged files hold: best trial, validation score, test score, refit (epochs, rows)
MOONS = (4, 0.885, 0.9, {"epochs": 20, "rows": 900})
REGRESSION = (1, 0.31212175352339355, 0.32288919569019014, {"epochs": 15, "rows": 100})
#: the trials a resume to 4 steps adds, as the schema-3 archsearch added them: (number, hash, reward)
MOONS_RESUMED = [
    (12, "d22b75d8a2d82402", 0.5216601250000001),
    (13, "c82b0f0c92eb2517", 0.6931541250000001),
    (14, "f3cb5b712bd07208", 0.6250263749999999),
    (15, "7fd842ca01ad318b", 0.6472146249999999),
]
REGRESSION_RESUMED = [
    (9, "108d4d8930ae00b3", 0.012131448499714098),
    (10, "a6cbd92ea0094438", 1.6161538841723147e-05),
    (11, "b15dd4409ce652c6", 1.45669311822045e-05),
]


@pytest.fixture
def copies(tmp_path: Path) -> Path:
    """The fixtures, copied: a resume writes, and the committed files must stay as they were."""
    folder = tmp_path / "schema3"
    shutil.copytree(FIXTURES, folder)
    return folder


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def schema(path: Path) -> tuple[str, set[str]]:
    with sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True) as db:
        version = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0]
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    db.close()
    return version, tables


def summary_of(path: Path) -> tuple:
    with Study.open(path, readonly=True) as study:
        summary = study.summary()
    return summary["trial"], summary["val_score"], summary["test_score"], summary["refit"]


@pytest.mark.parametrize(("name", "expected"), [("moons.db", MOONS), ("regression.db", REGRESSION)])
def test_a_schema3_study_reads_with_the_new_names_and_is_not_written(copies, name, expected):
    path = copies / name
    before = sha(path)
    assert summary_of(path) == expected
    version, tables = schema(path)
    assert sha(path) == before and version == "3" and "refits" in tables


def test_a_schema3_study_on_a_read_only_disk_reads(copies):
    path = copies / "moons.db"
    before = sha(path)
    path.chmod(stat.S_IRUSR | stat.S_IRGRP)
    copies.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        assert summary_of(path) == MOONS
        with Study.open(path, readonly=True) as study:
            assert study.test_score() == 0.9 and len(study.trials()) == 12
    finally:
        copies.chmod(stat.S_IRWXU)
        path.chmod(stat.S_IRUSR | stat.S_IWUSR)
    assert sha(path) == before


def test_a_schema3_study_reports_and_exports(copies, capsys, monkeypatch):
    monkeypatch.chdir(copies)
    before = sha(copies / "moons.db")
    assert main(["best", "moons.db", "--json"]) == 0
    best = json.loads(capsys.readouterr().out)
    assert (best["trial"], best["val_score"], best["test_score"], best["refit"]) == MOONS
    assert "val_accuracy" not in best and "test_accuracy" not in best
    assert main(["report", "moons.db", "-o", "report.html"]) == 0
    page = (copies / "report.html").read_text()
    assert "Decision boundary" in page and "16-relu/32-tanh/16-relu" in page
    assert main(["export", "moons.db", "--out", "exported", "--no-onnx"]) == 0
    source = json.loads((copies / "exported" / "architecture.json").read_text())["source"]
    assert (source["trial"], source["val_score"], source["test_score"], source["refit"]) == MOONS
    with Study.open(copies / "moons.db", readonly=True) as study:
        assert study.child_model(4)[0].weight.shape == (16, 2)  # the saved children still load
    assert sha(copies / "moons.db") == before


@pytest.mark.parametrize(
    ("name", "added", "expected"),
    [("moons.db", MOONS_RESUMED, MOONS), ("regression.db", REGRESSION_RESUMED, REGRESSION)],
)
def test_a_schema3_study_resumes_as_the_old_archsearch_did_and_becomes_schema7(copies, name, added, expected):
    path = copies / name
    with Study.open(path) as study:
        study.run(steps=4, progress=False)
        trials = study.trials()
    assert [(t.number, t.arch_hash, t.reward) for t in trials[-len(added) :]] == added
    version, tables = schema(path)
    assert version == "7" and "refits" not in tables
    assert summary_of(path) == expected  # the refit moved into the models table, with its test score
    with sqlite3.connect(path) as db:
        epochs, rows, weights = db.execute("SELECT refit_epochs, refit_rows, refit_weights FROM models").fetchone()
    db.close()
    assert (epochs, rows) == (expected[3]["epochs"], expected[3]["rows"]) and len(weights) > 1000

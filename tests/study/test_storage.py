"""The study file at the storage level: trials and the model row round trip, schema 4 upgrades older files
in one transaction, and a file whose layout is not its schema's is refused with one line."""

from __future__ import annotations

import contextlib
import hashlib
import sqlite3

import pytest
import torch

from archsearch.errors import ArchsearchError
from archsearch.evaluation import Result
from archsearch.space import MLPArchitecture, MLPSpace
from archsearch.study._storage import SCHEMA_VERSION, Storage

from ..conftest import downgrade

CONFIG = {
    "steps": 2,
    "children_per_step": 2,
    "seed": 0,
    "task": {"name": "moons"},
    "space": MLPSpace().to_config(),
    "strategy": {"name": "random", "seed": 0},
    "trainer": {"name": "serial"},
}
ARCH = MLPArchitecture.parse("4-relu")


def weights(value: float) -> dict[str, torch.Tensor]:
    return {"0.weight": torch.full((4, 2), value), "0.bias": torch.zeros(4)}


def result(reward: float, score: float, fill: float | None = None, status: str = "ok") -> Result:
    return Result(
        reward=reward, status=status, val_score=score, val_curve=[score / 2, score],  # type: ignore[arg-type]
        train_loss=[0.7, 0.5], params=22, seconds=1.5, kept_epoch=2, val_loss=0.25,
        weights=None if fill is None else weights(fill),
    )  # fmt: skip


@pytest.fixture
def written(tmp_path):
    """A schema-4 study: trial 0 (the stored model, refit, both scored) and trial 1 (failed)."""
    path = tmp_path / "s.db"
    storage = Storage.create(path, CONFIG)
    storage.add_trial(0, 0, 0, ARCH, 11, result(0.8, 0.9, fill=1.0), keep_weights=True, executor="inline", workers=1)
    storage.add_trial(1, 0, 1, ARCH, 12, result(0.0, 0.0, status="failed"), executor="inline", workers=1)
    storage.add_refit(0, 2, 900, weights(3.0))
    storage.set_test_score(0, 0.5)
    storage.set_test_score(0, 0.75, refit=True)
    storage.close()
    return path


def sha(path) -> str:  # noqa: ANN001
    return hashlib.sha256(path.read_bytes()).hexdigest()


def layout(path) -> tuple[str, set[str], set[str], set[str]]:  # noqa: ANN001
    """Schema version, tables, and the columns of trials and models."""
    with sqlite3.connect(path) as db:
        version = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0]
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        trials = {r[1] for r in db.execute("PRAGMA table_info(trials)")}
        models = {r[1] for r in db.execute("PRAGMA table_info(models)")}
    db.close()
    return version, tables, trials, models


def assert_holds_what_was_written(storage: Storage) -> None:
    first, second = storage.trials()
    assert (first.val_score, first.reward, first.val_curve) == (0.9, 0.8, [0.45, 0.9])
    assert (first.status, first.val_loss) == ("ok", 0.25)
    assert (second.val_score, second.status) == (0.0, "failed")
    assert first.to_dict()["val_score"] == 0.9 and "val_accuracy" not in first.to_dict()
    assert storage.stored_model() == (0, 0.5)
    assert storage.refit_info(0) == (2, 900, 0.75)
    epochs, rows, refit, score = storage.refit_model(0)
    assert (epochs, rows, score) == (2, 900, 0.75) and torch.equal(refit["0.weight"], torch.full((4, 2), 3.0))
    assert torch.equal(storage.best_model()[1]["0.weight"], torch.full((4, 2), 1.0))


def test_trials_and_the_model_row_round_trip(written):
    assert layout(written)[0] == str(SCHEMA_VERSION) == "7"
    storage = Storage.open(written, readonly=True)
    assert_holds_what_was_written(storage)
    storage.close()


def test_a_new_best_replaces_the_model_and_its_refit(written):
    storage = Storage.open(written)
    storage.upgrade()
    storage.add_trial(2, 1, 0, ARCH, 13, result(0.9, 0.95, fill=2.0), keep_weights=True)
    assert storage.stored_model() == (2, None) and storage.refit_info(2) is None and storage.refit_info(0) is None
    with pytest.raises(ArchsearchError, match="trial 0 is not the stored model; it cannot be refit"):
        storage.add_refit(0, 2, 900, weights(3.0))
    storage.close()


@pytest.mark.parametrize("version", [1, 2, 3, 4, 5, 6])
def test_an_older_file_reads_unchanged_and_upgrades_in_one_step(written, version):
    downgrade(written, version)
    old = layout(written)
    assert old[0] == str(version) and "parent" not in old[2] and (version == 6) == ("flops" in old[2])
    assert version >= 5 or "kind" not in old[2] and "evaluator_state" not in old[1]
    assert version >= 4 or "val_accuracy" in old[2] and "test_accuracy" in old[3]
    before = sha(written)
    storage = Storage.open(written, readonly=True)
    first = storage.trials()[0]
    assert (first.val_score, first.val_loss) == (0.9, None if version == 1 else 0.25)
    assert storage.stored_model() == (0, 0.5)
    assert storage.refit_info(0) == (None if version == 1 else (2, 900, 0.75))
    storage.close()
    assert sha(written) == before  # reading wrote nothing
    storage = Storage.open(written)
    storage.upgrade()
    storage.close()
    newest, tables, trials, models = layout(written)
    assert newest == "7" and "refits" not in tables and "evaluator_state" in tables
    assert {"phase", "kind", "flops", "latency_ms", "latency_spread", "parent"} <= trials
    with contextlib.closing(Storage.open(written, readonly=True)) as upgraded:
        assert {(t.phase, t.kind, t.flops if version < 6 else None, t.latency_ms, t.parent)
                for t in upgraded.trials()} == {("search", "final", None, None, None)}  # fmt: skip
    assert "val_score" in trials and "val_accuracy" not in trials and "executor" in trials
    assert {"test_score", "refit_epochs", "refit_rows", "refit_weights", "refit_test_score"} <= models
    storage = Storage.open(written, readonly=True)
    if version > 1:
        assert_holds_what_was_written(storage)
    else:  # schema 1 had no refits table: the refit was never written, the rest reads on
        assert storage.stored_model() == (0, 0.5) and storage.refit_info(0) is None
    storage.close()


def test_a_schema2_file_without_refits_reads_as_never_refit_and_upgrades(written):
    downgrade(written, 2, refits=False)
    storage = Storage.open(written, readonly=True)
    assert storage.refit_info(0) is None and storage.stored_model() == (0, 0.5)
    storage.close()
    storage = Storage.open(written)
    storage.upgrade()
    assert storage.refit_info(0) is None and layout(written)[0] == "7"
    storage.add_refit(0, 2, 900, weights(3.0))
    assert storage.refit_info(0) == (2, 900, None)
    storage.close()


def tamper(path, statement: str) -> None:  # noqa: ANN001
    """Change a written study file with one SQL statement, as a hand or a bug might."""
    with sqlite3.connect(path) as db:
        db.execute(statement)
    db.close()


@pytest.mark.parametrize(
    ("statement", "says"),
    [
        ("ALTER TABLE trials RENAME COLUMN val_score TO val_accuracy", "'trials' table has no 'val_score' column"),
        ("ALTER TABLE models RENAME COLUMN test_score TO test_accuracy", "'models' table has no 'test_score' column"),
        ("ALTER TABLE models DROP COLUMN refit_weights", "'models' table has no 'refit_weights' column"),
        ("UPDATE meta SET value = '8' WHERE key = 'schema_version'", "schema version 8, this archsearch reads 1 to 7"),
    ],
)
def test_a_layout_that_is_not_its_schemas_is_refused_with_one_line(written, statement, says):
    tamper(written, statement)
    with pytest.raises(ArchsearchError, match=says):
        Storage.open(written, readonly=True)


@pytest.mark.parametrize(
    ("statement", "says"),
    [
        ("UPDATE models SET refit_epochs = 'x'", "the refit of trial 0 holds epochs x and rows 900, not counts"),
        ("UPDATE models SET refit_rows = NULL", "the refit of trial 0 holds epochs 2 and rows None, not counts"),
        ("UPDATE models SET refit_test_score = 'abc'", "test_score is not a finite number"),
        ("UPDATE trials SET val_score = 'abc' WHERE number = 0", "trial 0: val_score is not a finite number"),
    ],
)
def test_a_tampered_model_row_or_score_is_one_line(written, statement, says):
    tamper(written, statement)
    storage = Storage.open(written, readonly=True)
    with pytest.raises(ArchsearchError, match=says):
        storage.trials() if "trial 0:" in says else storage.refit_info(0)
    storage.close()

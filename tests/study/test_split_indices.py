"""``Study.split_indices``: the rows of the user's file in each split, as the study's task split them."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import torch

from archsearch import SearchConfig, Study
from archsearch.errors import ArchsearchError
from archsearch.tasks import from_file, get_task

SPLITS = ("train", "val", "test")


def write_rows(path: Path, rows: int = 60) -> np.ndarray:
    """A CSV of ``rows`` data rows (a blank line among them, which is not a row): two features, a class."""
    x = np.random.default_rng(0).normal(size=(rows, 2)).round(4)
    lines = ["a,b,label", *(f"{a},{b},{'yes' if i % 3 else 'no'}" for i, (a, b) in enumerate(x))]
    lines.insert(7, "")
    path.write_text("\n".join(lines) + "\n")
    return x


def study_of(path: Path, data: Path, **settings: object) -> Study:
    config = SearchConfig(data=str(data), target="label", steps=1, children_per_step=1, **settings)
    return Study.create(path, config)


def one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert "\n" not in message
    return message


def test_the_indices_are_the_rows_the_task_trains_validates_and_tests_on(tmp_path):
    x = write_rows(tmp_path / "d.csv")
    with study_of(tmp_path / "s.db", tmp_path / "d.csv", split_seed=3) as study:
        rows = study.split_indices()
        task = study.task
    everything = np.concatenate([rows.train, rows.val, rows.test])
    assert np.array_equal(np.sort(everything), np.arange(len(x)))  # disjoint, and every row in one split
    pre = task.preprocessing
    for split in SPLITS:
        indices = getattr(rows, split)
        assert indices.dtype == np.int64
        standardised = torch.as_tensor((x[indices] - pre["mean"]) / np.array(pre["std"]), dtype=torch.float32)
        assert torch.allclose(task.split(split)[0], standardised, atol=1e-6)
    with Study.open(tmp_path / "s.db", readonly=True) as reopened:
        again = reopened.split_indices()
        assert all(np.array_equal(getattr(again, s), getattr(rows, s)) for s in SPLITS)
        assert all(torch.equal(reopened.task.split(s)[0], task.split(s)[0]) for s in SPLITS)


def test_the_split_follows_the_split_seed_and_fractions_of_the_stored_config(tmp_path):
    write_rows(tmp_path / "d.csv")
    with study_of(tmp_path / "s.db", tmp_path / "d.csv", split_seed=5, split=(0.5, 0.25, 0.25)) as study:
        rows = study.split_indices()
    direct = from_file(str(tmp_path / "d.csv"), "label", fractions=(0.5, 0.25, 0.25), split_seed=5).rows
    other = from_file(str(tmp_path / "d.csv"), "label", fractions=(0.5, 0.25, 0.25), split_seed=6).rows
    assert all(np.array_equal(getattr(rows, s), getattr(direct, s)) for s in SPLITS)
    assert not np.array_equal(rows.test, other.test)
    assert [len(rows.train), len(rows.val), len(rows.test)] == [30, 15, 15]


def test_an_npz_study_gives_rows_of_x(tmp_path):
    x = np.arange(80.0).reshape(40, 2)
    np.savez(tmp_path / "d.npz", X=x, y=np.arange(40.0))  # a float y of 40 whole numbers: regression
    with Study.create(tmp_path / "s.db", SearchConfig(data=str(tmp_path / "d.npz"), steps=1)) as study:
        rows = study.split_indices()
        assert study.task.problem == "regression"
        assert torch.allclose(study.task.x_val * torch.tensor(study.task.preprocessing["std"])
                              + torch.tensor(study.task.preprocessing["mean"]),
                              torch.as_tensor(x[rows.val], dtype=torch.float32))  # fmt: skip


def test_a_data_file_changed_since_the_study_was_created_is_one_line(tmp_path):
    write_rows(tmp_path / "d.csv")
    study_of(tmp_path / "s.db", tmp_path / "d.csv").close()
    with open(tmp_path / "d.csv", "a") as file:
        file.write("0.5,0.5,yes\n")
    with Study.open(tmp_path / "s.db", readonly=True) as study, pytest.raises(ArchsearchError) as exc:
        study.split_indices()
    assert "d.csv: the file has changed since the study was created" in one_line(exc)


def test_a_tampered_task_config_is_one_line(tmp_path):
    write_rows(tmp_path / "d.csv")
    study_of(tmp_path / "s.db", tmp_path / "d.csv").close()
    db = sqlite3.connect(tmp_path / "s.db", isolation_level=None)
    config = json.loads(db.execute("SELECT value FROM meta WHERE key = 'config'").fetchone()[0])
    config["task"]["split_seed"] = "three"
    db.execute("UPDATE meta SET value = ? WHERE key = 'config'", (json.dumps(config),))
    db.close()
    with Study.open(tmp_path / "s.db", readonly=True) as study, pytest.raises(ArchsearchError) as exc:
        study.split_indices()
    assert one_line(exc).startswith(f"{tmp_path / 's.db'}:") and "split-seed" in str(exc.value)


def test_a_task_not_read_from_a_file_has_no_file_rows(tmp_path):
    with (
        Study.create(tmp_path / "moons.db", get_task("moons"), steps=1) as study,
        pytest.raises(ArchsearchError) as exc,
    ):
        study.split_indices()
    message = one_line(exc)
    assert "task 'moons' was not read from a data file (--data)" in message and "study.task" in message
    table = SearchConfig(benchmark="nas-bench-macro", steps=1)
    with Study.create(tmp_path / "table.db", table) as study, pytest.raises(ArchsearchError, match="no data set"):
        study.split_indices()

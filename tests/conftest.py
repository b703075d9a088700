"""Shared fixtures: tiny tasks and a fake evaluator that makes strategy and study tests instant."""

from __future__ import annotations

import importlib
import os
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
import torch

from archsearch.evaluation import Evaluator, Result
from archsearch.space import Architecture, MLPSpace
from archsearch.tasks import Task, get_task


class FakeEvaluator(Evaluator):
    """Reward = ``reward_fn(arch)``; trains nothing."""

    name = "fake"

    def __init__(self, task: Task, reward_fn: Callable[[Architecture], float]) -> None:
        super().__init__(task)
        self.reward_fn = reward_fn
        self.calls: list[Architecture] = []

    def evaluate(self, archs: Sequence[Architecture], seeds: Sequence[int]) -> Iterator[tuple[int, Result]]:
        for index, arch in enumerate(archs):
            self.calls.append(arch)
            start = time.perf_counter()
            reward = float(self.reward_fn(arch))
            yield (
                index,
                Result(
                    reward=reward,
                    val_score=reward,
                    val_curve=[reward],
                    train_loss=[1.0],
                    params=arch.num_params(self.task.in_features, self.task.out_features),
                    seconds=time.perf_counter() - start,
                    kept_epoch=1,
                ),
            )


def fraction_of_wide_layers(arch: Architecture) -> float:
    """Synthetic reward: the fraction of hidden layers with 32 units (optimum 1.0)."""
    return sum(layer.units == 32 for layer in arch.layers) / len(arch.layers)


class Crash(Exception):
    """A study's process dying, as a test makes it happen."""


def crashing(trainer: type[Evaluator], after: int) -> type[Evaluator]:
    """``trainer`` that raises :class:`Crash` (like a killed process) once it has yielded ``after`` children."""

    class Crashing(trainer):  # type: ignore[valid-type, misc]
        left = after

        def evaluate(self, archs, seeds):  # noqa: ANN001, ANN202
            for item in super().evaluate(archs, seeds):
                if self.left == 0:
                    raise Crash
                self.left -= 1
                yield item

    return Crashing


def crash(path, config) -> None:  # noqa: ANN001
    """Create a study at ``path`` from ``config``, whose trainer raises :class:`Crash`, run it until it does,
    and close it: the study a killed process leaves behind."""
    from archsearch.study import Study

    study = Study.create(path, config)
    with pytest.raises(Crash):
        study.run(progress=False)
    study.close()


def trial_count(path) -> int:  # noqa: ANN001
    """Trials committed to the study file at ``path`` so far (0 while it cannot be read yet)."""
    import sqlite3

    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
            return db.execute("SELECT COUNT(*) FROM trials").fetchone()[0]
    except sqlite3.Error:
        return 0


@pytest.fixture(scope="session")
def moons() -> Task:
    return get_task("moons")


def write_friedman(path, rows: int = 400):  # noqa: ANN001, ANN201
    """Friedman's regression problem #1 (10 features, 5 of them used, noise 0.5) as an .npz file."""
    import numpy as np
    from sklearn.datasets import make_friedman1

    x, y = make_friedman1(n_samples=rows, noise=0.5, random_state=0)
    np.savez(path, X=x, y=y)
    return path


@pytest.fixture(scope="session")
def friedman(tmp_path_factory: pytest.TempPathFactory) -> Task:
    """A regression task: 400 rows of Friedman #1, split 70/20/10."""
    from archsearch.tasks import from_file

    return from_file(str(write_friedman(tmp_path_factory.mktemp("friedman") / "friedman.npz")))


@pytest.fixture
def space() -> MLPSpace:
    return MLPSpace()


@pytest.fixture
def tiny_space() -> MLPSpace:
    """3 units x 1 activation, up to 2 layers: 3 + 9 = 12 members."""
    return MLPSpace(units=(2, 4, 8), activations=("tanh",), max_layers=2)


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def faulty_evaluator(monkeypatch: pytest.MonkeyPatch):  # noqa: ANN201 -- the module
    """``tests/helpers/faulty_evaluator``, importable here and in the worker processes started from here."""
    helpers = str(Path(__file__).parent / "helpers")
    monkeypatch.syspath_prepend(helpers)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (helpers, os.environ.get("PYTHONPATH")) if p))
    module = importlib.import_module("faulty_evaluator")
    assert module.__file__ == str(Path(helpers) / "faulty_evaluator.py")
    return module


def downgrade(path, version: int, refits: bool = True) -> None:  # noqa: ANN001
    """Rewrite a study file as an older archsearch wrote it: schema ``version`` (1 to 6); before 7, trials
    had no parent; before 6, no FLOPs or latency; before 5, no phase or kind; before 4 the scores were not named for what they hold; schema 2 and 3 files have
    a refits table (``refits=False``: an early schema 2 file without one), schema 1 has no validation
    losses and neither has executors."""
    import sqlite3

    with sqlite3.connect(path) as db:
        db.execute("ALTER TABLE trials DROP COLUMN parent")
        db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(version),))
        if version == 6:
            return
        for column in ("flops", "latency_ms", "latency_spread"):
            db.execute(f"ALTER TABLE trials DROP COLUMN {column}")
        db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(version),))
        if version == 5:
            return
        db.execute("ALTER TABLE trials DROP COLUMN phase")
        db.execute("ALTER TABLE trials DROP COLUMN kind")
        db.execute("DROP TABLE evaluator_state")
        db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(version),))
        if version == 4:
            return
        db.execute("ALTER TABLE trials RENAME COLUMN val_score TO val_accuracy")
        db.execute("ALTER TABLE models RENAME COLUMN test_score TO test_accuracy")
        if refits and version >= 2:
            db.execute(
                "CREATE TABLE refits (number INTEGER PRIMARY KEY, epochs INTEGER NOT NULL, rows INTEGER NOT NULL, "
                "weights BLOB NOT NULL, test_accuracy REAL)"
            )
            db.execute(
                "INSERT INTO refits SELECT number, refit_epochs, refit_rows, refit_weights, refit_test_score "
                "FROM models WHERE refit_epochs IS NOT NULL"
            )
        for column in ("refit_epochs", "refit_rows", "refit_weights", "refit_test_score"):
            db.execute(f"ALTER TABLE models DROP COLUMN {column}")
        dropped = {1: ("val_loss", "executor", "workers", "attempts"), 2: ("executor", "workers", "attempts")}
        for column in dropped.get(version, ()):
            db.execute(f"ALTER TABLE trials DROP COLUMN {column}")
        db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(version),))
    db.close()


def benchmark_script(name: str):  # noqa: ANN201 -- the module
    """``benchmarks/NAME.py`` imported as a module (it imports its neighbours, such as ``_common``)."""
    import importlib.util
    import sys

    path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    sys.path.insert(0, str(path.parent))
    try:
        spec = importlib.util.spec_from_file_location(name, path)
        script = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(script)
    finally:
        sys.path.remove(str(path.parent))
    return script


def write_ptb(folder: Path, sentences: tuple[int, int, int] = (150, 40, 40), words: int = 40) -> Path:
    """A tiny corpus in Penn Treebank's layout (``ptb.train.txt`` ...): sentences over ``words`` words in
    which a word is mostly followed by the next one, so that a model can learn something. Every word of
    the validation and test files occurs in the training file."""
    import random

    generator = random.Random(0)
    folder.mkdir(parents=True, exist_ok=True)
    for name, count in zip(("train", "valid", "test"), sentences, strict=True):
        lines = []
        for _ in range(count):
            sentence = [generator.randrange(words)]
            for _ in range(generator.randint(3, 11)):
                follows = (sentence[-1] + 1) % words
                sentence.append(follows if generator.random() < 0.7 else generator.randrange(words))
            lines.append(" " + " ".join(f"w{w}" for w in sentence) + " ")
        if name == "train":
            lines.append(" " + " ".join(f"w{w}" for w in range(words)) + " ")
        (folder / f"ptb.{name}.txt").write_text("\n".join(lines) + "\n")
    return folder


@pytest.fixture(scope="session")
def ptb_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny corpus written by :func:`write_ptb`, shared by the tests that only read it."""
    return write_ptb(tmp_path_factory.mktemp("ptb"))


@pytest.fixture
def make_ptb():  # noqa: ANN201 -- the function
    """:func:`write_ptb`, for a test that damages its own copy of the corpus."""
    return write_ptb


def study_rows(path) -> list[tuple]:  # noqa: ANN001
    """What two studies must share to be the same: every trial's identity, outcome and phase, and every step's
    metrics, read straight from the file."""
    import sqlite3

    with sqlite3.connect(path) as db:
        found = db.execute(
            "SELECT number, step, slot, arch_hash, status, reward, val_score, seed, val_curve, val_loss, phase, kind "
            "FROM trials ORDER BY number"
        ).fetchall()
        found += db.execute("SELECT step, metrics FROM steps ORDER BY step").fetchall()
    db.close()
    return found

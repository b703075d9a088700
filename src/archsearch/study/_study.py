"""The study: owns the ask -> evaluate -> tell -> record loop and its file.

A search runs in *steps*: the strategy proposes ``children_per_step``
architectures, the evaluator trains them, each finished trial is committed at
once, the strategy learns from the step's rewards and its new state is
committed. Reopening the file continues from the last committed strategy
state; trials of an unfinished step that were already committed are reused,
not retrained, so a search killed at any instant and resumed produces exactly
the trials of an uninterrupted run.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from archsearch.errors import ArchsearchError
from archsearch.evaluation import Evaluator, SerialTrainer, load_model, split_accuracy
from archsearch.space import MLPSpace, SearchSpace
from archsearch.strategies import Reinforce, Strategy
from archsearch.study._components import build_evaluator, build_strategy
from archsearch.study._progress import ProgressBar
from archsearch.study._storage import Storage, Trial
from archsearch.tasks import Task, get_task


@dataclass(frozen=True)
class StepInfo:
    """What a progress callback learns after every strategy update."""

    step: int
    steps: int
    mean_reward: float
    best: Trial | None
    metrics: dict[str, float]


def child_seed(study_seed: int, step: int, slot: int) -> int:
    """The training seed of one child: a pure function of the study seed and its position."""
    return int(np.random.SeedSequence(study_seed, spawn_key=(step, slot)).generate_state(1)[0])


class Study:
    """A search and its SQLite file. Create one with :meth:`create`, reopen with :meth:`open`."""

    def __init__(
        self,
        storage: Storage,
        task: Task,
        space: SearchSpace,
        strategy: Strategy,
        evaluator: Evaluator,
        steps: int,
        children_per_step: int,
        seed: int,
    ) -> None:
        self._storage = storage
        self.task = task
        self.space = space
        self.strategy = strategy
        self.evaluator = evaluator
        self.steps = steps
        self.children_per_step = children_per_step
        self.seed = seed

    @property
    def path(self) -> Path:
        return self._storage.path

    # -- creating and opening ----------------------------------------------------------------

    @classmethod
    def create(
        cls,
        path: str | os.PathLike,
        task: Task | str,
        *,
        steps: int,
        children_per_step: int = 15,
        seed: int = 0,
        space: SearchSpace | None = None,
        strategy: Strategy | None = None,
        evaluator: Evaluator | None = None,
    ) -> Study:
        """A new study file at ``path`` (which must not exist yet).

        Defaults: the seed experiment's ``MLPSpace()``, ``Reinforce`` seeded with
        ``seed``, and the reference ``SerialTrainer``.
        """
        _check_count("steps", steps)
        _check_count("children_per_step", children_per_step)
        if not isinstance(seed, int) or seed < 0:
            raise ArchsearchError(f"seed: must be a non-negative integer, got {seed!r}")
        task = get_task(task) if isinstance(task, str) else task
        space = space or MLPSpace()
        strategy = strategy or Reinforce(space, seed=seed)
        evaluator = evaluator or SerialTrainer(task)
        if strategy.space != space:
            raise ArchsearchError("strategy: its search space differs from the study's space")
        config = {
            "task": task.config,
            "space": space.to_config(),
            "strategy": strategy.to_config(),
            "trainer": evaluator.to_config(),
            "steps": steps,
            "children_per_step": children_per_step,
            "seed": seed,
        }
        storage = Storage.create(path, config)
        return cls(storage, task, space, strategy, evaluator, steps, children_per_step, seed)

    @classmethod
    def open(cls, path: str | os.PathLike, readonly: bool = False) -> Study:
        """Reopen a study file; everything is rebuilt from the config it stores."""
        storage = Storage.open(path, readonly=readonly)
        config = storage.config
        try:
            task = get_task(config["task"])
            space = SearchSpace.from_config(config["space"])
            strategy = build_strategy(config["strategy"], space)
            evaluator = build_evaluator(config["trainer"], task)
            steps, per_step, seed = config["steps"], config["children_per_step"], config["seed"]
        except KeyError as exc:
            raise ArchsearchError(f"{path}: study config lacks {exc}") from None
        return cls(storage, task, space, strategy, evaluator, steps, per_step, seed)

    def close(self) -> None:
        self._storage.close()

    def __enter__(self) -> Study:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def config(self) -> dict[str, Any]:
        return self._storage.config

    # -- running -----------------------------------------------------------------------------

    def completed_steps(self) -> int:
        """Number of strategy updates committed so far."""
        checkpoint = self._storage.latest_checkpoint()
        return 0 if checkpoint is None else checkpoint[0] + 1

    def run(
        self,
        steps: int | None = None,
        progress: bool | None = None,
        callback: Callable[[StepInfo], None] | None = None,
    ) -> Trial | None:
        """Run (or continue) the search until ``steps`` strategy updates are committed.

        ``steps`` defaults to the study's budget; a larger value extends the
        budget and is recorded. ``progress`` shows a bar on stderr (default:
        when stderr is a terminal). Returns the best trial.
        """
        if steps is not None:
            _check_count("steps", steps)
            if steps != self.steps:
                self.steps = steps
                self._storage.set_config({**self._storage.config, "steps": steps})
        with _RunLock(self.path):
            checkpoint = self._storage.latest_checkpoint()
            start = 0
            if checkpoint is not None:
                start = checkpoint[0] + 1
                self.strategy.load_state_dict(checkpoint[1])
            best = self._storage.best_trial()
            show = sys.stderr.isatty() if progress is None else progress
            bar = ProgressBar(self.steps, completed=start) if show else None
            if bar:
                bar.__enter__()
            try:
                for step in range(start, self.steps):
                    best, info = self._run_step(step, best)
                    if bar:
                        bar.update(step + 1, info.mean_reward, best.reward if best else None)
                    if callback:
                        callback(info)
            finally:
                if bar:
                    bar.__exit__(None, None, None)
        if self.completed_steps() >= self.steps:
            self.test_accuracy()
        return best

    def _run_step(self, step: int, best: Trial | None) -> tuple[Trial | None, StepInfo]:
        m = self.children_per_step
        archs = self.strategy.ask(m)
        done = {t.slot: t for t in self._storage.trials(step=step)}
        for slot, trial in done.items():
            if slot >= m or trial.arch_hash != archs[slot].hash:
                raise ArchsearchError(
                    f"{self.path}: step {step} slot {slot} holds {trial.architecture} but the strategy "
                    f"proposes {archs[slot] if slot < m else 'nothing'} there; the study file does not match "
                    "its config"
                )
        todo = [slot for slot in range(m) if slot not in done]
        seeds = {slot: child_seed(self.seed, step, slot) for slot in range(m)}
        jobs = self.evaluator.evaluate([archs[s] for s in todo], [seeds[s] for s in todo])
        for index, result in jobs:
            slot = todo[index]
            number = step * m + slot
            better = result.status == "ok" and (
                best is None
                or result.reward > best.reward
                or (result.reward == best.reward and number < best.number)
            )
            trial = self._storage.add_trial(number, step, slot, archs[slot], seeds[slot], result, keep_weights=better)
            done[slot] = trial
            if better:
                best = trial
        rewards = [done[slot].reward for slot in range(m)]
        metrics = self.strategy.tell(archs, rewards)
        self._storage.add_step(step, metrics, self.strategy.state_dict())
        return best, StepInfo(step, self.steps, float(np.mean(rewards)), best, metrics)

    # -- results -----------------------------------------------------------------------------

    def trials(self, top: int | None = None) -> list[Trial]:
        """All trials in order, or the ``top`` best by reward."""
        if top is None:
            return self._storage.trials()
        return self._storage.trials(order="reward")[:top]

    def best(self) -> Trial | None:
        """The trial with the highest reward (status ``ok``); the earliest wins a tie."""
        return self._storage.best_trial()

    def step_metrics(self) -> list[tuple[int, dict[str, float]]]:
        return self._storage.steps()

    def best_model(self):  # noqa: ANN201 -- torch.nn.Module
        """The best child with the weights it had at the epoch that set its reward."""
        stored = self._stored_best()
        return load_model(self.best().architecture, self.task, stored[1])

    def _stored_best(self) -> tuple[int, dict, float | None]:
        best = self.best()
        stored = self._storage.best_model()
        if best is None or stored is None or stored[0] != best.number:
            raise ArchsearchError(f"{self.path}: the study has no successful trial with stored weights yet")
        return stored

    def test_accuracy(self) -> float | None:
        """Test accuracy of the final pick, measured once with its kept weights and then stored."""
        if self.best() is None:
            return None
        number, weights, accuracy = self._stored_best()
        if accuracy is None:
            accuracy = split_accuracy(load_model(self.best().architecture, self.task, weights), self.task, "test")
            if not self._storage.readonly:
                self._storage.set_test_accuracy(number, accuracy)
        return accuracy

    def summary(self) -> dict[str, Any]:
        """The best trial as a JSON-ready dict (``archsearch best --json``)."""
        best = self.best()
        if best is None:
            return {"architecture": None, "trials": self._storage.count_trials()}
        return {
            "architecture": str(best.architecture),
            "architecture_json": best.architecture.to_dict(),
            "hash": best.arch_hash,
            "trial": best.number,
            "step": best.step,
            "reward": best.reward,
            "val_accuracy": best.val_accuracy,
            "test_accuracy": self.test_accuracy(),
            "params": best.params,
            "epochs": best.epochs,
            "trials": self._storage.count_trials(),
            "steps_completed": self.completed_steps(),
            "steps": self.steps,
        }


def _check_count(name: str, value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ArchsearchError(f"{name}: must be a positive integer, got {value!r}")


class _RunLock:
    """One running process per study: a second ``run`` on the same file is refused."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file = None

    def __enter__(self) -> _RunLock:
        try:
            import fcntl
        except ImportError:  # pragma: no cover -- not POSIX: no lock
            return self
        self._file = open(self.path, "rb")  # noqa: SIM115
        try:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._file.close()
            self._file = None
            raise ArchsearchError(f"{self.path}: another process is running this study") from None
        return self

    def __exit__(self, *exc: object) -> None:
        if self._file is not None:
            self._file.close()

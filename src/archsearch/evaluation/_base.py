"""The evaluator contract: architectures and seeds in, results out; and what else a study asks of
the part that holds the task: refitting a pick, the validation loss and test score of kept weights,
the network they make.

A study knows its evaluator through this interface only. The defaults say what an evaluator that
trains nothing answers (a table's lookup): it keeps no weights, cannot refit, and has no test score.
"""

from __future__ import annotations

import dataclasses
import functools
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, ClassVar

import torch

from archsearch.errors import ArchsearchError
from archsearch.evaluation._config import TrainConfig
from archsearch.evaluation._folds import fold_tasks
from archsearch.evaluation._result import Refit, Result
from archsearch.evaluation._scoring import load_model, split_score, validation_loss
from archsearch.space import Architecture
from archsearch.tasks import Task


class Evaluator(ABC):
    """Turns architectures into :class:`Result` objects on one task.

    ``evaluate`` yields ``(index, result)`` pairs as children finish, in any
    order, so a study can commit each trial the moment it is done. A child that
    diverges or raises is a result with status ``diverged`` or ``failed``, never
    an exception out of ``evaluate``.
    """

    name: ClassVar[str]
    #: True when a child's result can depend, through float rounding, on which other children it
    #: is evaluated with; a study then re-runs an interrupted batch whole to stay reproducible.
    batch_dependent: ClassVar[bool] = False

    def __init__(self, task: Task, config: TrainConfig | None = None) -> None:
        self.task = task
        self.config = config or TrainConfig()
        if self.config.device != "cpu" and not _device_available(self.config.device):
            raise ArchsearchError(f"trainer.device: {self.config.device!r} is not available on this machine")

    @abstractmethod
    def evaluate(self, archs: Sequence[Architecture], seeds: Sequence[int]) -> Iterator[tuple[int, Result]]:
        """Train and score every architecture with its seed; yield results as they finish."""

    def evaluate_all(self, archs: Sequence[Architecture], seeds: Sequence[int]) -> list[Result]:
        """Results in the order of ``archs``."""
        results: list[Result | None] = [None] * len(archs)
        for index, result in self.evaluate(archs, seeds):
            results[index] = result
        return results  # type: ignore[return-value]

    @property
    def job_threads(self) -> int:
        """CPU threads one job of :meth:`jobs` trains on (what a cluster task must reserve)."""
        return 1

    def jobs(self, archs: Sequence[Architecture], seeds: Sequence[int]) -> list[list[int]]:
        """How an executor may split a batch: lists of indices that must be evaluated together,
        costliest first. By default every child is a job of its own."""
        return [[index] for index in range(len(archs))]

    def run_job(
        self, members: Sequence[int], archs: Sequence[Architecture] | dict, seeds: Sequence[int] | dict
    ) -> Iterator[tuple[int, Result]]:
        """Evaluate one job from :meth:`jobs` (indices into ``archs`` and ``seeds``) in this process."""
        members = list(members)
        for position, result in self.evaluate([archs[i] for i in members], [seeds[i] for i in members]):
            yield members[position], result

    def close(self) -> None:
        """Release what the evaluator holds beyond memory (worker processes); it may be used again."""

    def to_config(self) -> dict[str, Any]:
        return {"name": self.name, **self.config.to_config()}

    # -- what a study asks besides evaluations ---------------------------------------------------

    #: whether :meth:`refit` can retrain a final pick
    refits: ClassVar[bool] = False

    def refit(self, arch: Architecture, seed: int, epochs: int) -> Refit:
        """``arch`` retrained from the initial weights of ``seed`` on the training and validation rows
        together, for ``epochs`` epochs; an evaluator that trains nothing refuses."""
        raise ArchsearchError(f"refit: the {self.name!r} evaluator trains nothing, so it cannot retrain a pick")

    #: whether :meth:`retrain` can train the best architectures again for a final ensemble
    ensembles: ClassVar[bool] = False

    def retrain(self, arch: Architecture, seed: int) -> dict[str, torch.Tensor]:
        """``arch`` trained again from the initial weights of ``seed`` as a search trains a child (on the
        training rows, keeping the epoch that set its reward): its kept weights."""
        raise ArchsearchError(f"ensemble: the {self.name!r} evaluator does not train networks for an ensemble")

    def model_test_score(self, model: torch.nn.Module) -> float | None:
        """The test score of a network built for the task (an :class:`Ensemble` of :meth:`model`'s, say),
        or ``None`` where there is none to measure."""
        return None

    def validation_loss(self, arch: Architecture, weights: dict[str, torch.Tensor]) -> float | None:
        """The training loss of ``weights`` on the validation split (ties between equal rewards go to the
        lower), or ``None`` where there is no such loss."""
        return None

    def model(self, arch: Architecture, weights: dict[str, torch.Tensor]) -> torch.nn.Module:
        """``arch`` with ``weights`` (stored ones: checked first), ready to predict."""
        raise ArchsearchError(f"the {self.name!r} evaluator keeps no weights, so it builds no network")

    def test_score(self, arch: Architecture, weights: dict[str, torch.Tensor] | None) -> float | None:
        """The score of the final pick on the test split (accuracy, or R^2 not clipped), or ``None``
        where there is none to measure."""
        return None

    # -- costs, known before training (see archsearch.evaluation._cost) -------------------------

    #: whether :meth:`latency` times networks (a table lookup has none)
    times: ClassVar[bool] = True

    def costs(self, arch: Architecture) -> dict[str, int | None]:
        """``params`` and ``flops`` of ``arch`` on the task, from the architecture alone (``None``: unknown)."""
        from archsearch.evaluation import _cost

        try:
            flops = _cost.flops(arch, self.task)
        except Exception:  # noqa: BLE001 -- a network that cannot be built fails when it trains, with its error
            flops = None
        return {"params": arch.num_params(self.task.in_features, self.task.out_features), "flops": flops}

    def latency(self, arch: Architecture) -> tuple[float, float] | None:
        """The median milliseconds of a batch-1 forward pass of ``arch`` on this CPU and their spread, or
        ``None`` where there is no network to time."""
        from archsearch.evaluation import _cost

        try:
            return _cost.latency(arch, self.task)
        except Exception:  # noqa: BLE001 -- as in costs: the child's training says what is wrong
            return None

    # -- deduplication: none, unless wrapped (see ReusingEvaluator) ---------------------------------

    def plan(self, archs: Sequence[Architecture], keys: Sequence[int]) -> dict[int, int]:
        """Which of ``archs`` (known to the caller by ``keys``, in increasing order) take an earlier
        result instead of being evaluated: index -> the key of that result."""
        return {}

    def remember(self, key: int, arch: Architecture, result: Result) -> None:
        """Note a recorded result, which a later equivalent architecture may take."""

    def reused(self, key: int) -> Result:
        """The result recorded under ``key``, to record again for an architecture that :meth:`plan` matched."""
        raise KeyError(key)


class Trainer(Evaluator):
    """An evaluator that trains children on its task and keeps their weights: what the serial and batched
    trainers share beyond training."""

    refits = True
    #: whether ``config.folds`` > 1 is honoured: children trained from scratch on a table can be
    #: cross-validated; shared weights and language models score on their own validation data
    cross_validates: ClassVar[bool] = False

    def __init__(self, task: Task, config: TrainConfig | None = None) -> None:
        super().__init__(task, config)
        if self.config.folds > 1:
            if not self.cross_validates:
                raise ArchsearchError(
                    f"trainer.folds: cross-validation trains children from scratch (trainers serial and batched); "
                    f"the {self.name!r} evaluator scores on its validation split only"
                )
            self.fold_tasks  # noqa: B018 -- too many folds for the rows is refused here, not mid-search

    @functools.cached_property
    def fold_tasks(self) -> list[Task]:
        """The tasks of ``config.folds`` folds of the training and validation rows (see
        :mod:`archsearch.evaluation._folds`)."""
        return fold_tasks(self.task, self.config.folds)

    def validation_loss(self, arch: Architecture, weights: dict[str, torch.Tensor]) -> float | None:
        return validation_loss(arch, self.task, weights)

    def model(self, arch: Architecture, weights: dict[str, torch.Tensor]) -> torch.nn.Module:
        return load_model(arch, self.task, weights)

    def test_score(self, arch: Architecture, weights: dict[str, torch.Tensor] | None) -> float | None:
        """``None`` without weights or without test rows (``NASClassifier`` keeps none)."""
        return None if weights is None else self.model_test_score(self.model(arch, weights))

    def retrain(self, arch: Architecture, seed: int) -> dict[str, torch.Tensor]:
        """The reference trainer retrains, whichever trainer searched (the same weights within float
        rounding); cross-validated children are not retrained one fold at a time: their studies refit."""
        return _reference_weights(self.task, dataclasses.replace(self.config, folds=1), arch, seed)

    def model_test_score(self, model: torch.nn.Module) -> float | None:
        """``None`` without test rows (``NASClassifier`` keeps none)."""
        return None if len(self.task.y_test) == 0 else split_score(model, self.task, "test")

    def refit(self, arch: Architecture, seed: int, epochs: int) -> Refit:
        """The reference trainer retrains, whichever trainer searched: one network, trained once, has
        nothing to gain from batching. Every epoch counts (``patience`` past the end, a reward window of
        one): there is no validation split left to stop on."""
        task = self.task
        merged = dataclasses.replace(
            task, x_train=torch.cat([task.x_train, task.x_val]), y_train=torch.cat([task.y_train, task.y_val])
        )
        config = dataclasses.replace(self.config, max_epochs=epochs, patience=epochs + 1, reward_window=1, folds=1)
        return Refit(epochs, len(merged.y_train), _reference_weights(merged, config, arch, seed))


def _reference_weights(task: Task, config: TrainConfig, arch: Architecture, seed: int) -> dict[str, torch.Tensor]:
    """``arch`` trained by the reference trainer from the initial weights of ``seed``: its kept weights."""
    from archsearch.evaluation._serial import SerialTrainer  # the reference is itself a Trainer

    ((_, result),) = SerialTrainer(task, config).evaluate([arch], [seed])
    if result.status != "ok":
        raise ArchsearchError(f"the retrained network {result.status}: {result.error}")
    return result.weights


@contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """PyTorch on ``count`` threads inside the block, on the caller's number again after it."""
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _device_available(device: str) -> bool:
    try:
        kind = torch.device(device).type
    except RuntimeError:
        return False
    if kind == "cuda":
        return torch.cuda.is_available()
    if kind == "mps":
        return torch.backends.mps.is_available()
    return kind == "cpu"

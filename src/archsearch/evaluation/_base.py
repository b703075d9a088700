"""The evaluator contract: architectures and seeds in, results out."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar

import torch

from archsearch.errors import ArchsearchError
from archsearch.evaluation._config import TrainConfig
from archsearch.evaluation._result import Result
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

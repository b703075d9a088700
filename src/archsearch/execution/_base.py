"""The executor contract: where a batch of children is evaluated, one interface for every place.

Every executor yields ``(index, result)`` as children finish, in any order; the study numbers a
trial by its position in the batch, so parallel and inline runs with the same seed record the same
trials. A job runs on its trainer's threads (one by default) wherever it runs, so its numbers
never depend on the executor. An executor receives the evaluator itself and hands it to its
workers by value, so it never needs to know how an evaluator is built.
A worker that dies (killed, segfault, out of memory) turns into a retry, and after ``retries``
retries into failed trials that say why; the search goes on.

Bounds: ``retries`` up to 100; ``workers`` up to 256, and for processes started on this machine
(``process``, and ``ray`` without an address) up to 4 per core it may use.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar

from archsearch import _limits as limits
from archsearch.errors import ArchsearchError
from archsearch.evaluation import Evaluator, Result
from archsearch.space import Architecture

DEFAULT_RETRIES = 2


class Executor(ABC):
    """Runs an evaluator's jobs somewhere and yields results as they finish."""

    name: ClassVar[str]

    def __init__(self, workers: int = 1, retries: int = DEFAULT_RETRIES) -> None:
        if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
            raise ArchsearchError(f"executor.workers: must be a positive integer, got {workers!r}")
        if not isinstance(retries, int) or isinstance(retries, bool) or retries < 0:
            raise ArchsearchError(f"executor.retries: must be a non-negative integer, got {retries!r}")
        if workers > limits.MAX_WORKERS:
            raise ArchsearchError(f"executor.workers: must be at most {limits.MAX_WORKERS}, got {workers}")
        if retries > limits.MAX_RETRIES:
            raise ArchsearchError(f"executor.retries: must be at most {limits.MAX_RETRIES}, got {retries}")
        self.workers = workers
        self.retries = retries

    @abstractmethod
    def run(
        self, evaluator: Evaluator, archs: Sequence[Architecture], seeds: Sequence[int]
    ) -> Iterator[tuple[int, Result]]:
        """Evaluate every architecture with its seed; yield ``(index, result)`` as each finishes."""

    @abstractmethod
    def stream(self, evaluator: Evaluator) -> Stream:
        """Children submitted one at a time while others run (an asynchronous search)."""

    def close(self) -> None:
        """Release workers; the executor may be used again (they start again)."""

    def to_config(self) -> dict[str, Any]:
        return {"name": self.name, "workers": self.workers, "retries": self.retries}


class Stream(ABC):
    """Children submitted one by one, each under a key; iterating yields ``(key, result)`` as
    they finish. Iterate only while something is submitted and not yet yielded."""

    @abstractmethod
    def submit(self, key: int, arch: Architecture, seed: int) -> None:
        """Start evaluating ``arch`` with ``seed``."""

    def __iter__(self) -> Stream:
        return self

    @abstractmethod
    def __next__(self) -> tuple[int, Result]:
        """The next finished child."""

    def close(self) -> None:
        """Stop waiting for children still running (their results are dropped)."""


def check_local_workers(workers: int) -> None:
    """Refuse more worker processes than this machine is given (``WORKERS_PER_CORE`` per core)."""
    most = limits.max_workers()
    if workers > most:
        raise ArchsearchError(
            f"executor.workers: must be at most {most} on this machine "
            f"({limits.WORKERS_PER_CORE} per core, {limits.available_cores()} cores), got {workers}"
        )

"""The inline executor: children evaluated in the study's own process, the evaluator's own way
(the batched trainer may still spread its groups over its worker processes, see
``TrainConfig.threads``)."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Sequence

from archsearch.errors import ArchsearchError
from archsearch.evaluation import Evaluator, Result
from archsearch.execution._base import DEFAULT_RETRIES, Executor, Stream
from archsearch.space import Architecture


class InlineExecutor(Executor):
    """The study's own process."""

    name = "inline"

    def __init__(self, workers: int = 1, retries: int = DEFAULT_RETRIES) -> None:
        super().__init__(workers, retries)
        if workers != 1:
            raise ArchsearchError(
                f"executor.workers: the inline executor is one process, got {workers}; use the process executor"
            )

    def run(
        self, evaluator: Evaluator, archs: Sequence[Architecture], seeds: Sequence[int]
    ) -> Iterator[tuple[int, Result]]:
        return evaluator.evaluate(archs, seeds)

    def stream(self, evaluator: Evaluator) -> Stream:
        return _InlineStream(evaluator)


class _InlineStream(Stream):
    """Evaluates each child when its result is asked for, in submission order."""

    def __init__(self, evaluator: Evaluator) -> None:
        self._evaluator = evaluator
        self._queue: deque[tuple[int, Architecture, int]] = deque()

    def submit(self, key: int, arch: Architecture, seed: int) -> None:
        self._queue.append((key, arch, seed))

    def __next__(self) -> tuple[int, Result]:
        if not self._queue:
            raise StopIteration
        key, arch, seed = self._queue.popleft()
        return key, next(iter(self._evaluator.evaluate([arch], [seed])))[1]

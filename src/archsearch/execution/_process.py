"""The process executor: a pool of local worker processes, each evaluating one job at a time
(a child, or a group of the batched trainer) on one thread. The pool itself lives with the
trainers (``archsearch.evaluation._workers``), which spread their own groups over it too."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from archsearch.errors import ArchsearchError
from archsearch.evaluation import Evaluator, Result
from archsearch.evaluation._workers import JobFeed, WorkerPool, job_for
from archsearch.execution._base import DEFAULT_RETRIES, Executor, Stream, check_local_workers
from archsearch.space import Architecture


class ProcessExecutor(Executor):
    """A pool of ``workers`` local processes, started on first use and kept until :meth:`close`.

    A worker evaluates one job at a time on the threads its trainer asks for
    (``TrainConfig.threads``: the study stores them, so every executor trains alike; the command
    line keeps workers x threads within the machine's cores). A worker that dies is replaced and
    its job re-run, up to ``retries`` times.
    """

    name = "process"

    def __init__(self, workers: int = 2, retries: int = DEFAULT_RETRIES) -> None:
        super().__init__(workers, retries)
        check_local_workers(workers)
        self._pool: WorkerPool | None = None
        self._for: Evaluator | None = None

    def run(
        self, evaluator: Evaluator, archs: Sequence[Architecture], seeds: Sequence[int]
    ) -> Iterator[tuple[int, Result]]:
        jobs = [job_for(archs, seeds, members) for members in evaluator.jobs(archs, seeds)]
        yield from self._pool_for(evaluator).run(jobs, retries=self.retries)

    def stream(self, evaluator: Evaluator) -> Stream:
        return _PoolStream(self, evaluator)

    def _pool_for(self, evaluator: Evaluator) -> WorkerPool:
        """The pool whose workers hold ``evaluator``, started (or restarted, if every worker has
        died or they hold another evaluator) now."""
        if self._pool is None or self._for is not evaluator or self._pool.alive == 0:
            self.close()
            try:
                self._pool = WorkerPool(evaluator, self.workers)
            except (OSError, RuntimeError) as exc:
                raise ArchsearchError(f"executor: {exc}") from None
            self._for = evaluator
        return self._pool

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None
        self._for = None


class _PoolStream(Stream):
    """Children fed to a worker pool that is running; it picks new ones up as workers free."""

    def __init__(self, executor: ProcessExecutor, evaluator: Evaluator) -> None:
        self._executor, self._evaluator = executor, evaluator
        self._feed = JobFeed()
        self._results: Iterator[tuple[int, Result]] | None = None

    def submit(self, key: int, arch: Architecture, seed: int) -> None:
        self._feed.add(([key], {key: arch}, {key: int(seed)}))

    def __next__(self) -> tuple[int, Result]:
        for _ in range(2):  # a run that ended (nothing was in flight) restarts on new submissions
            if self._results is None:
                pool = self._executor._pool_for(self._evaluator)
                self._results = pool.run(self._feed, retries=self._executor.retries)
            try:
                return next(self._results)
            except StopIteration:
                self._results = None
                if not self._feed.pending:
                    raise
        raise StopIteration

    def close(self) -> None:
        if self._results is not None:
            self._results.close()  # workers still busy are stopped; their children are abandoned
            self._results = None

"""Executors: where a batch of children is evaluated. One interface, three places.

- ``inline``: in the study's process, the evaluator's own way (the batched trainer may still
  spread its groups over its worker processes, see ``TrainConfig.threads``).
- ``process``: a pool of ``workers`` local worker processes; each evaluates one job at a time
  (a child, or a group of the batched trainer) on one thread.
- ``ray``: Ray tasks on a cluster (``address``) or on a local Ray instance started for the run.

Every executor yields ``(index, result)`` as children finish, in any order; the study numbers a
trial by its position in the batch, so parallel and inline runs with the same seed record the same
trials. A job runs on its trainer's threads (one by default) wherever it runs, so its numbers
never depend on the executor.
A worker that dies (killed, segfault, out of memory) turns into a retry, and after ``retries``
retries into failed trials that say why; the search goes on.

Bounds: ``retries`` up to 100; ``workers`` up to 256, and for processes started on this machine
(``process``, and ``ray`` without an address) up to 4 per core it may use.
"""

from __future__ import annotations

import os
import uuid
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar

from archsearch import _limits as limits
from archsearch.errors import ArchsearchError
from archsearch.registry import Registry
from archsearch.evaluation._base import Evaluator
from archsearch.evaluation._result import Result
from archsearch.evaluation._workers import (
    KILL_HOOK,
    JobFeed,
    WorkerPool,
    _from_portable,
    _portable,
    job_for,
    kill_if_hooked,
)
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
            if self._results is None:  # the executor's pool, restarted if every worker has died
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
        _check_local_workers(workers)
        self._pool: WorkerPool | None = None
        self._for: int | None = None

    def run(
        self, evaluator: Evaluator, archs: Sequence[Architecture], seeds: Sequence[int]
    ) -> Iterator[tuple[int, Result]]:
        jobs = [job_for(archs, seeds, members) for members in evaluator.jobs(archs, seeds)]
        yield from self._pool_for(evaluator).run(jobs, retries=self.retries)

    def stream(self, evaluator: Evaluator) -> Stream:
        return _PoolStream(self, evaluator)

    def _pool_for(self, evaluator: Evaluator) -> WorkerPool:
        if self._pool is None or self._for != id(evaluator) or self._pool.alive == 0:
            self.close()
            try:
                self._pool = WorkerPool(evaluator, self.workers)
            except (OSError, RuntimeError) as exc:
                raise ArchsearchError(f"executor: {exc}") from None
            self._for = id(evaluator)
        return self._pool

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None


def _check_local_workers(workers: int) -> None:
    """Refuse more worker processes than this machine is given (``WORKERS_PER_CORE`` per core)."""
    most = limits.max_workers()
    if workers > most:
        raise ArchsearchError(
            f"executor.workers: must be at most {most} on this machine "
            f"({limits.WORKERS_PER_CORE} per core, {limits.available_cores()} cores), got {workers}"
        )


class RayExecutor(Executor):
    """Ray tasks, one per job, retried by Ray itself (``max_retries``) when a worker or node dies.

    ``address`` names a running cluster (``"auto"``: the one this machine belongs to); without
    it a local Ray instance with ``workers`` CPUs is started for the run and stopped by
    :meth:`close`. The study, its file and the strategy stay in this process (the head node): a
    task receives the task data once per run (through Ray's object store) and one job's
    architectures and seeds, and returns their results; only the best child's weights are kept.
    Every node needs archsearch installed in the same version.
    """

    name = "ray"

    def __init__(self, workers: int | None = None, retries: int = DEFAULT_RETRIES, address: str | None = None) -> None:
        super().__init__(workers or 1, retries)
        if not address and workers is not None:  # a local instance starts that many CPUs' worth of workers
            _check_local_workers(workers)
        self.requested_workers = workers
        self.address = address
        self._started = False
        self._spec: tuple[int, Any] | None = None
        self._remote: Any = None

    def to_config(self) -> dict[str, Any]:
        return {"name": self.name, "workers": self.requested_workers, "retries": self.retries, "address": self.address}

    def connect(self) -> Any:
        """Join the cluster (or start the local instance) now; returns the ``ray`` module. One clear
        error when Ray is missing or the cluster cannot be reached."""
        try:
            import ray
        except ImportError:
            raise ArchsearchError("executor: the ray executor needs Ray: pip install 'archsearch[ray]'") from None
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "logging_level": "ERROR"}
            try:
                if self.address:
                    ray.init(address=self.address, **kwargs)
                else:
                    ray.init(num_cpus=self.requested_workers or os.cpu_count() or 1, **kwargs)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                where = self.address or "a local instance"
                raise ArchsearchError(f"executor: cannot connect to Ray at {where} ({exc})") from None
            self._started = True
        self.workers = max(1, int(ray.cluster_resources().get("CPU", 1)))
        if self._remote is None:
            self._remote = ray.remote(_ray_job)
        return ray

    def run(
        self, evaluator: Evaluator, archs: Sequence[Architecture], seeds: Sequence[int]
    ) -> Iterator[tuple[int, Result]]:
        stream = _RayStream(self, evaluator)
        for members in evaluator.jobs(archs, seeds):
            stream.submit_job(job_for(archs, seeds, members))
        try:
            yield from stream
        finally:
            stream.close()

    def stream(self, evaluator: Evaluator) -> Stream:
        return _RayStream(self, evaluator)

    def _prepare(self, evaluator: Evaluator) -> tuple[Any, Any, Any]:
        """Ray, the remote function with this executor's options, and the evaluator's spec in the object store."""
        ray = self.connect()
        if self._spec is None or self._spec[0] != id(evaluator):
            token = uuid.uuid4().hex
            self._spec = (id(evaluator), ray.put((token, evaluator.to_config(), evaluator.task)))
        remote = self._remote.options(num_cpus=evaluator.job_threads, max_retries=self.retries, retry_exceptions=False)
        return ray, remote, self._spec[1]

    def close(self) -> None:
        self._spec = None
        if self._started:
            import ray

            ray.shutdown()
            self._started = False


class _RayStream(Stream):
    """One Ray task per job; results as tasks finish."""

    def __init__(self, executor: RayExecutor, evaluator: Evaluator) -> None:
        self._ray, self._remote, self._spec = executor._prepare(evaluator)
        self._retries = executor.retries
        self._hook = os.environ.get(KILL_HOOK)
        self._pending: dict[Any, list[int]] = {}
        self._ready: deque[tuple[int, Result]] = deque()

    def submit(self, key: int, arch: Architecture, seed: int) -> None:
        self.submit_job(([key], {key: arch}, {key: int(seed)}))

    def submit_job(self, job: tuple) -> None:
        self._pending[self._remote.remote(self._spec, *job, self._hook)] = job[0]

    def __next__(self) -> tuple[int, Result]:
        ray = self._ray
        while not self._ready:
            if not self._pending:
                raise StopIteration
            (ref,), _ = ray.wait(list(self._pending), num_returns=1)
            members = self._pending.pop(ref)
            try:
                results = ray.get(ref)
            except ray.exceptions.RayError as exc:
                why = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                crashed = isinstance(exc, ray.exceptions.WorkerCrashedError | ray.exceptions.NodeDiedError)
                attempts = self._retries + 1 if crashed else 1  # Ray retries system failures only
                error = f"ray: {type(exc).__name__}: {why}"
                self._ready.extend((index, Result.failure("failed", error, attempts=attempts)) for index in members)
                continue
            self._ready.extend((index, _from_portable(result)) for index, result in results)
        return self._ready.popleft()

    def close(self) -> None:
        for ref in self._pending:  # a cluster's CPUs are not left busy with abandoned children
            self._ray.cancel(ref, force=True)
        self._pending.clear()


_RAY_EVALUATORS: dict[str, Evaluator] = {}


def _ray_job(spec: tuple[str, dict, Any], members: list[int], archs: dict, seeds: dict, hook: str | None) -> list:
    """One job in a Ray worker; the evaluator is built once per worker process and run."""
    import torch

    token, config, task = spec
    evaluator = _RAY_EVALUATORS.get(token)
    if evaluator is None:
        from archsearch.config import build_evaluator

        _RAY_EVALUATORS.clear()
        evaluator = _RAY_EVALUATORS[token] = build_evaluator(config, task)
    torch.set_num_threads(1)  # the trainers set their own thread counts (and a task holds that many CPUs)
    kill_if_hooked(archs, members, hook)
    return [(index, _portable(result)) for index, result in evaluator.run_job(members, archs, seeds)]


#: executor name -> factory, called with the settings of ``to_config()`` (less ``"name"``)
EXECUTORS: Registry = Registry("executor", "executors")
for _executor in (InlineExecutor, ProcessExecutor, RayExecutor):
    EXECUTORS.register(_executor.name, _executor)


def build_executor(config: dict[str, Any] | None) -> Executor:
    """An executor from ``Executor.to_config()`` output (``None``: inline)."""
    config = dict(config or {"name": "inline"})
    name = config.pop("name", None)
    factory = EXECUTORS.lookup(name)
    if name == "ray":
        config.setdefault("workers", None)
    try:
        return factory(**config)
    except TypeError as exc:
        raise ArchsearchError(f"executor: bad settings for {name!r} ({exc})") from None

"""The Ray executor: one Ray task per job, on a cluster or on a local Ray instance."""

from __future__ import annotations

import os
import uuid
from collections import deque
from collections.abc import Iterator, Sequence
from typing import Any

from archsearch.errors import ArchsearchError
from archsearch.evaluation import Evaluator, Result
from archsearch.evaluation._workers import Job, _from_portable, _portable, job_for
from archsearch.execution._base import DEFAULT_RETRIES, Executor, Stream, check_local_workers
from archsearch.space import Architecture


class RayExecutor(Executor):
    """Ray tasks, one per job, retried by Ray itself (``max_retries``) when a worker or node dies.

    ``address`` names a running cluster (``"auto"``: the one this machine belongs to); without
    it a local Ray instance with ``workers`` CPUs is started for the run and stopped by
    :meth:`close`. The study, its file and the strategy stay in this process (the head node): a
    stream puts the evaluator in Ray's object store once, each worker process loads it once, and
    a task receives one job's architectures and seeds and returns their results; only the best
    child's weights are kept. Every node needs archsearch, and the evaluator's module, installed
    in the same version.
    """

    name = "ray"

    def __init__(self, workers: int | None = None, retries: int = DEFAULT_RETRIES, address: str | None = None) -> None:
        super().__init__(workers or 1, retries)
        if not address and workers is not None:  # a local instance starts that many CPUs' worth of workers
            check_local_workers(workers)
        self.requested_workers = workers
        self.address = address
        self._started = False
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

    def close(self) -> None:
        if self._started:
            import ray

            ray.shutdown()
            self._started = False


class _RayStream(Stream):
    """One Ray task per job; results as tasks finish. The evaluator goes to the object store once."""

    def __init__(self, executor: RayExecutor, evaluator: Evaluator) -> None:
        self._ray = executor.connect()
        self._remote = executor._remote.options(
            num_cpus=evaluator.job_threads, max_retries=executor.retries, retry_exceptions=False
        )
        # in a tuple, the reference reaches a task unresolved: a worker loads the evaluator only once per stream
        self._evaluator = (uuid.uuid4().hex, self._ray.put(evaluator))
        self._retries = executor.retries
        self._pending: dict[Any, list[int]] = {}
        self._ready: deque[tuple[int, Result]] = deque()

    def submit(self, key: int, arch: Architecture, seed: int) -> None:
        self.submit_job(([key], {key: arch}, {key: int(seed)}))

    def submit_job(self, job: Job) -> None:
        self._pending[self._remote.remote(self._evaluator, *job)] = job[0]

    def __next__(self) -> tuple[int, Result]:
        while not self._ready:
            if not self._pending:
                raise StopIteration
            (ref,), _ = self._ray.wait(list(self._pending), num_returns=1)
            members = self._pending.pop(ref)
            try:
                results = self._ray.get(ref)
            except self._ray.exceptions.RayError as exc:
                self._ready.extend((index, self._failure(exc)) for index in members)
                continue
            self._ready.extend((index, _from_portable(result)) for index, result in results)
        return self._ready.popleft()

    def _failure(self, exc: Exception) -> Result:
        exceptions = self._ray.exceptions
        why = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        crashed = isinstance(exc, exceptions.WorkerCrashedError | exceptions.NodeDiedError)
        attempts = self._retries + 1 if crashed else 1  # Ray retries system failures only
        return Result.failure("failed", f"ray: {type(exc).__name__}: {why}", attempts=attempts)

    def close(self) -> None:
        for ref in self._pending:  # a cluster's CPUs are not left busy with abandoned children
            self._ray.cancel(ref, force=True)
        self._pending.clear()


_RAY_EVALUATORS: dict[str, Evaluator] = {}


def _ray_job(evaluator: tuple[str, Any], members: list[int], archs: dict, seeds: dict) -> list:
    """One job in a Ray worker, with the stream's evaluator (loaded once per worker process)."""
    import ray
    import torch

    token, ref = evaluator
    if token not in _RAY_EVALUATORS:
        _RAY_EVALUATORS.clear()
        _RAY_EVALUATORS[token] = ray.get(ref)
    torch.set_num_threads(1)  # the trainers set their own thread counts (and a task holds that many CPUs)
    return [(index, _portable(result)) for index, result in _RAY_EVALUATORS[token].run_job(members, archs, seeds)]

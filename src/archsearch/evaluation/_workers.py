"""Worker processes: jobs of children evaluated side by side on several cores.

Used by the ``process`` executor (one job = one child, or one group of the batched trainer) and
by the batched trainer itself when it spreads a batch's groups over the cores. The batched
trainer launches many small PyTorch operations, and each holds Python's global interpreter lock
for most of its few microseconds, so threads do not make groups train side by side; processes
do. A worker is a fresh interpreter (``python -c ...``, so no user script is re-imported) that
receives the evaluator once, by value (pickled when the pool starts), then evaluates one job at a
time and sends each child's result the moment it finishes. An evaluator's class must therefore be
importable by its module name in a fresh interpreter (the pool puts this package on its path).

A job runs on the threads its trainer's settings name (one by default) wherever it runs, so
results are bitwise identical to evaluating it in the study's own process: the number of workers
never changes a study. A worker that dies (killed, segfault, out of memory) costs the job it was
running: the pool either re-runs it on a fresh worker (``retries``), hands it to the study's
process (``inline``), or reports its children as failed with the reason. Workers exit within a
second when the study's process goes away, so a killed search leaves no processes behind.
"""

from __future__ import annotations

import os
import pickle
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
import warnings
from collections import defaultdict, deque
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

import numpy as np
import torch

from archsearch._limits import available_cores
from archsearch.evaluation._result import Result

_START_TIMEOUT = 120.0  # seconds for a worker to import PyTorch and report ready
_ENTRY = "import sys; from archsearch.evaluation._workers import _serve; _serve(int(sys.argv[1]), int(sys.argv[2]))"

#: (indices of the job's children, their architectures and seeds by index)
Job = tuple[list[int], dict[int, Any], dict[int, int]]


def job_for(archs: Any, seeds: Any, members: list[int]) -> Job:
    """What a worker needs of one job: only its own children's architectures and seeds."""
    return list(members), {i: archs[i] for i in members}, {i: int(seeds[i]) for i in members}


def _finishing(worker: _Worker, job: int) -> bool:
    """Whether ``worker`` reports ``job`` done within a second."""
    try:
        return worker.conn.poll(1.0) and worker.receive() == ("done", job)
    except (OSError, ValueError):
        return False


def death(code: int | None) -> str:
    """How a worker process ended, in words."""
    if code is not None and code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


class JobFeed:
    """Jobs for :meth:`WorkerPool.run`; jobs added while it runs are picked up too."""

    def __init__(self, jobs: list[Job] | None = None) -> None:
        self.jobs: list[Job] = list(jobs or [])
        self.pending: deque[int] = deque(range(len(self.jobs)))

    def add(self, job: Job) -> None:
        self.jobs.append(job)
        self.pending.append(len(self.jobs) - 1)


class WorkerPool:
    """``size`` worker processes that evaluate jobs of one evaluator, sent to each of them by value."""

    def __init__(self, evaluator: Any, size: int) -> None:
        self.size = size
        try:
            self._setup = pickle.dumps(("setup", evaluator), protocol=pickle.HIGHEST_PROTOCOL)
        except (pickle.PicklingError, TypeError, AttributeError) as exc:
            raise RuntimeError(f"trainer: the evaluator cannot be sent to worker processes ({exc})") from None
        self._workers: list[_Worker] = []
        try:
            for _ in range(size):
                self._workers.append(_Worker(self._setup))
            for worker in self._workers:
                worker.wait_ready()
        except BaseException:
            self.close()
            raise

    @property
    def alive(self) -> int:
        return len(self._workers)

    def run(
        self,
        jobs: list[Job] | JobFeed,
        inline: Callable[[Job], Iterator[tuple[int, Any]]] | None = None,
        retries: int = 0,
    ) -> Iterator[tuple[int, Any]]:
        """Evaluate ``jobs`` (costliest first is best); yield ``(index, result)`` as they arrive.

        ``jobs`` may be a :class:`JobFeed` that grows while this runs. A job whose worker died is
        started again on a fresh worker up to ``retries`` times; after that its remaining children
        go to ``inline`` when given (once the others are done), else they are yielded at once as
        failed results that say how the worker died; without ``inline`` a dead worker is replaced
        either way, so one poisonous job does not shrink the pool. Every result's ``attempts``
        counts the tries. If the consumer stops early, busy workers are stopped too: their jobs are abandoned.
        """
        return _Run(self, jobs if isinstance(jobs, JobFeed) else JobFeed(jobs), inline, retries).results()

    def _replace(self) -> None:
        """Start a worker in place of one that died; a pool that cannot grow goes on smaller."""
        try:
            worker = _Worker(self._setup)
            worker.wait_ready()
        except (OSError, RuntimeError) as exc:
            warnings.warn(f"{exc}; going on with {len(self._workers)} worker processes", stacklevel=5)
            return
        self._workers.append(worker)

    def _drop(self, worker: _Worker, error: str | None, warn: bool = True) -> int | None:
        code = worker.stop()
        if worker in self._workers:  # the pool may have been closed already
            self._workers.remove(worker)
        if warn:
            why = error or death(code)
            warnings.warn(
                f"trainer: a worker process {why}; its group is trained in this process instead", stacklevel=5
            )
        return code

    def close(self) -> None:
        for worker in self._workers:  # all told first, so that they exit side by side
            worker.conn.close()
        for worker in self._workers:
            worker.stop()
        self._workers = []


class _Run:
    """One :meth:`WorkerPool.run`: the jobs of a feed handed to the pool's workers, one method per event."""

    def __init__(
        self, pool: WorkerPool, feed: JobFeed, inline: Callable[[Job], Iterator[tuple[int, Any]]] | None, retries: int
    ) -> None:
        self.pool, self.inline, self.retries = pool, inline, retries
        self.jobs, self.pending = feed.jobs, feed.pending
        # the jobs sent to each busy worker, in order: the first is the one it is running
        self.busy: dict[Connection, tuple[_Worker, deque[int]]] = {}
        self.received: dict[int, set[int]] = defaultdict(set)
        self.tries: dict[int, int] = defaultdict(lambda: 1)
        self.lost: list[int] = []  # jobs left to ``inline``, run once the workers are done

    def results(self) -> Iterator[tuple[int, Any]]:
        finished = False
        try:
            while self.pending or self.busy:
                self.dispatch()
                if not self.busy:
                    yield from self.no_worker_left()
                    break
                for conn in wait(list(self.busy)):
                    yield from self.message_from(conn)
            yield from self.run_lost_inline()
            finished = True
        finally:
            if not finished:
                self.abandon()

    def complete(self, job: int) -> bool:
        return set(self.jobs[job][0]) <= self.received[job]

    def failures(self, job: int, why: str) -> Iterator[tuple[int, Result]]:
        attempts = f" ({self.tries[job]} attempts)" if self.tries[job] > 1 else ""
        for index in self.jobs[job][0]:
            if index not in self.received[job]:
                yield index, Result.failure("failed", f"{why}{attempts}", attempts=self.tries[job])

    def dispatch(self) -> None:
        """Send pending jobs to idle workers, and to workers whose job has sent its last result (it
        is only saying so): they start the next one without waiting for this process, which may be
        busy recording results."""
        for worker in list(self.pool._workers):
            if not self.pending:
                return
            sent = self.busy.get(worker.conn)
            if sent is None or (len(sent[1]) == 1 and self.complete(sent[1][0])):
                self.send(worker)

    def send(self, worker: _Worker) -> None:
        """A job is ready and ``worker`` can take it."""
        job = self.pending.popleft()
        try:
            worker.send(("job", job, *self.jobs[job]))
        except OSError:
            self.pending.appendleft(job)
            if worker.conn not in self.busy:  # it died while idle (a busy one's death is seen when it is read)
                self.pool._drop(worker, None, warn=self.inline is not None)
                if self.inline is None:
                    self.pool._replace()
            return
        self.busy.setdefault(worker.conn, (worker, deque()))[1].append(job)

    def message_from(self, conn: Connection) -> Iterator[tuple[int, Any]]:
        worker, sent = self.busy[conn]
        message = worker.receive()
        if message is None or message[0] == "error":
            yield from self.worker_died(conn, None if message is None else message[1])
        elif message[0] == "done":
            sent.popleft()
            if not sent:
                del self.busy[conn]
        else:
            yield from self.result(sent[0], *message[1:])

    def result(self, job: int, index: int, result: Result) -> Iterator[tuple[int, Result]]:
        """A worker reports one child of the job it is running."""
        if index in self.received[job]:
            return
        self.received[job].add(index)
        result = _from_portable(result)
        result.attempts = self.tries[job]
        if self.complete(job):
            self.dispatch()
        yield index, result

    def worker_died(self, conn: Connection, error: str | None) -> Iterator[tuple[int, Result]]:
        """The job a worker was running is retried, left to ``inline`` or failed; the jobs sent
        ahead to it go back to the feed untried. A retry re-runs the whole job (a group's children
        train alike only with the same batch-mates); results already received are not yielded again."""
        worker, sent = self.busy.pop(conn)
        job = sent[0]
        code = self.pool._drop(worker, error, warn=self.inline is not None)
        self.pending.extendleft(reversed(list(sent)[1:]))
        given_up = None
        if self.complete(job):
            pass
        elif self.tries[job] <= self.retries:
            self.tries[job] += 1
            self.pending.appendleft(job)
        elif self.inline is not None:
            self.lost.append(job)
        else:
            given_up = job
        if self.inline is None or job in self.pending:  # the pool stays at strength for the jobs left
            self.pool._replace()
        if given_up is not None:
            yield from self.failures(given_up, error or f"worker process {death(code)}")

    def no_worker_left(self) -> Iterator[tuple[int, Result]]:
        """Every worker died: the jobs not yet sent go to ``inline``, or fail."""
        while self.pending:
            job = self.pending.popleft()
            if self.inline is not None:
                self.lost.append(job)
            else:
                yield from self.failures(job, "no worker process is left")

    def run_lost_inline(self) -> Iterator[tuple[int, Any]]:
        for job in self.lost:
            if set(self.jobs[job][0]) - self.received[job]:
                for index, result in self.inline(self.jobs[job]):
                    if index not in self.received[job]:
                        yield index, result

    def abandon(self) -> None:
        """The consumer stopped early: stop the workers still busy with its jobs."""
        for worker, sent in self.busy.values():
            if worker not in self.pool._workers:  # the pool was closed first
                continue
            # a worker that has sent its job's every result is only finishing: keep it
            if len(sent) == 1 and self.complete(sent[0]) and _finishing(worker, sent[0]):
                continue
            self.pool._drop(worker, None, warn=False)


class _Worker:
    def __init__(self, setup: bytes) -> None:
        ours, theirs = socket.socketpair()
        package_root = str(Path(__file__).resolve().parents[2])
        env = {
            **os.environ,
            "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
            "PYTHONPATH": os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH")) if p),
        }
        try:
            # In a process group of its own: Ctrl-C at a terminal (SIGINT to the foreground group) reaches only
            # the study's process, which closes its workers; a worker still importing PyTorch would otherwise
            # print a KeyboardInterrupt traceback.
            self.process = subprocess.Popen(
                [sys.executable, "-c", _ENTRY, str(theirs.fileno()), str(os.getpid())],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
                env=env,
                process_group=0,
            )
        finally:
            theirs.close()
        self.conn = Connection(ours.detach())
        self.conn.send_bytes(setup)

    def wait_ready(self) -> None:
        if not self.conn.poll(_START_TIMEOUT):
            self.stop()
            raise RuntimeError(f"trainer: a worker process did not start within {_START_TIMEOUT:.0f} s")
        message = self.receive()
        if message != ("ready",):
            detail = message[1] if message and message[0] == "error" else f"exit code {self.stop()}"
            raise RuntimeError(f"trainer: a worker process could not start ({detail})")

    def send(self, message: tuple) -> None:
        self.conn.send_bytes(pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL))

    def receive(self) -> tuple | None:
        """The next message, or None when the worker has gone."""
        try:
            return pickle.loads(self.conn.recv_bytes())
        except (EOFError, OSError):
            return None

    def stop(self) -> int | None:
        """End the worker now (closing its socket makes an idle one exit; a busy one is killed)."""
        self.conn.close()
        if self.process.poll() is None:
            try:
                self.process.wait(timeout=0.5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def _portable(result: Result) -> Result:
    """Weights (and an optimizer's state) as NumPy arrays: they pickle faster and smaller than tensors."""
    for name in ("weights", "optimizer_state"):
        tensors = getattr(result, name)
        if tensors is not None:
            setattr(result, name, {key: value.numpy() for key, value in tensors.items()})
    return result


def _from_portable(result: Result) -> Result:
    for name in ("weights", "optimizer_state"):
        arrays = getattr(result, name)
        if arrays is not None:  # arrays from Ray's object store are read-only views: copy those
            setattr(result, name, {
                key: torch.from_numpy(value if value.flags.writeable else value.copy())
                for key, value in ((k, np.asarray(v)) for k, v in arrays.items())
            })  # fmt: skip
    return result


def _exit_with_parent(parent: int) -> None:
    """An idle worker sees the study's process go through its socket; a busy one through this watch."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(0)


def _serve(fd: int, parent: int) -> None:
    """A worker's life: set up, then train groups until the study's process (``parent``) closes the socket.

    The worker then exits at once: an interpreter that has imported PyTorch takes about half a
    second to tear itself down, which a search would otherwise wait for at its end. A study's process
    that went away (closed, interrupted, killed) ends it quietly; only a bug prints a traceback.
    """
    code = 0
    try:
        _work(fd, parent)
    except (BrokenPipeError, ConnectionResetError, EOFError, KeyboardInterrupt):
        code = 1  # the study's process is gone or stopping: it reports why, once
    except BaseException:  # noqa: BLE001 -- printed as Python would, then the exit code says so
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _work(fd: int, parent: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the study's to handle
    # the pid the study's process gave, not getppid(): that process may have died while this one started
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()
    torch.set_num_threads(1)
    conn = Connection(fd)

    def send(message: tuple) -> None:
        conn.send_bytes(pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL))

    try:
        _, evaluator = pickle.loads(conn.recv_bytes())
    except EOFError:
        return
    except Exception as exc:  # noqa: BLE001 -- reported to the study's process, which raises it
        send(("error", f"{type(exc).__name__}: {exc}"))
        return
    send(("ready",))
    while True:
        try:
            _, job, indices, archs, seeds = pickle.loads(conn.recv_bytes())
        except (EOFError, OSError):
            return
        try:
            for index, result in evaluator.run_job(indices, archs, seeds):
                send(("result", index, _portable(result)))
        except (BrokenPipeError, ConnectionResetError):
            return
        except Exception as exc:  # noqa: BLE001 -- evaluators turn training errors into results
            send(("error", f"failed: {type(exc).__name__}: {exc}"))
            return
        try:
            send(("done", job))
        except (BrokenPipeError, ConnectionResetError):
            return

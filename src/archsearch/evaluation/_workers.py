"""Worker processes for the batched trainer: groups of children train side by side on several cores.

The batched trainer launches many small PyTorch operations, and each holds Python's global
interpreter lock for most of its few microseconds, so threads do not make groups train side by
side; processes do. A worker is a fresh interpreter (``python -c ...``, so no user script is
re-imported) that receives the task and the training settings once,
then trains one group at a time and sends each child's result the moment it finishes.

A group trains single-threaded wherever it runs, so results are bitwise identical to training it
in the study's own process: the number of workers never changes a study. A worker that dies
(killed, out of memory) costs nothing but time: its unfinished group is trained again in the
study's process. Workers exit within a second when the study's process goes away, so a killed
search leaves no processes behind.
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
import warnings
from collections import deque
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

import numpy as np
import torch

from archsearch.evaluation._result import Result

_START_TIMEOUT = 120.0  # seconds for a worker to import PyTorch and report ready
_ENTRY = "import sys; from archsearch.evaluation._workers import _serve; _serve(int(sys.argv[1]))"

#: (indices of the group's children, their architectures and seeds by index)
Job = tuple[list[int], dict[int, Any], dict[int, int]]


class WorkerPool:
    """``size`` worker processes that train groups for one task and one training config."""

    def __init__(self, task: Any, config: Any, size: int) -> None:
        self.size = size
        self._workers: list[_Worker] = []
        try:
            for _ in range(size):
                self._workers.append(_Worker(task, config))
            for worker in self._workers:
                worker.wait_ready()
        except BaseException:
            self.close()
            raise

    @property
    def alive(self) -> int:
        return len(self._workers)

    def run(self, jobs: list[Job], inline: Callable[[Job], Iterator[tuple[int, Any]]]) -> Iterator[tuple[int, Any]]:
        """Train ``jobs`` (longest first is best) on the workers; yield ``(index, result)`` as they arrive.

        A job whose worker died is handed to ``inline`` (minus the children already received).
        If the consumer stops early, busy workers are stopped too: their groups are abandoned.
        """
        pending = deque(range(len(jobs)))
        busy: dict[Connection, tuple[_Worker, int]] = {}
        received: dict[int, set[int]] = {job: set() for job in range(len(jobs))}
        lost: list[int] = []
        finished = False
        try:
            while pending or busy:
                for worker in list(self._workers):
                    if pending and worker.conn not in busy:
                        job = pending.popleft()
                        try:
                            worker.send(("group", job, *jobs[job]))
                        except OSError:  # it died while idle
                            pending.appendleft(job)
                            self._drop(worker, None)
                            continue
                        busy[worker.conn] = (worker, job)
                if not busy:  # every worker died
                    break
                for conn in wait(list(busy)):
                    worker, job = busy[conn]
                    message = worker.receive()
                    if message is None or message[0] == "error":
                        del busy[conn]
                        lost.append(job)
                        self._drop(worker, None if message is None else message[1])
                    elif message[0] == "done":
                        del busy[conn]
                    else:
                        _, index, result = message
                        received[job].add(index)
                        yield index, _from_portable(result)
            for job in [*lost, *pending]:
                indices, archs, seeds = jobs[job]
                rest = [i for i in indices if i not in received[job]]
                if rest:
                    yield from inline((rest, archs, seeds))
            finished = True
        finally:
            if not finished:
                for worker, _ in busy.values():
                    self._drop(worker, None, warn=False)

    def _drop(self, worker: _Worker, error: str | None, warn: bool = True) -> None:
        code = worker.stop()
        self._workers.remove(worker)
        if warn:
            why = error or f"exited with code {code}"
            warnings.warn(
                f"trainer: a worker process {why}; its group is trained in this process instead", stacklevel=3
            )

    def close(self) -> None:
        for worker in self._workers:
            worker.stop()
        self._workers = []


class _Worker:
    def __init__(self, task: Any, config: Any) -> None:
        ours, theirs = socket.socketpair()
        package_root = str(Path(__file__).resolve().parents[2])
        env = {
            **os.environ,
            "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
            "PYTHONPATH": os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH")) if p),
        }
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-c", _ENTRY, str(theirs.fileno())],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
                env=env,
            )
        finally:
            theirs.close()
        self.conn = Connection(ours.detach())
        self.send(("setup", task, config))

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
    """Weights as NumPy arrays: they pickle faster and smaller than tensors."""
    if result.weights is not None:
        result.weights = {name: value.numpy() for name, value in result.weights.items()}
    return result


def _from_portable(result: Result) -> Result:
    if result.weights is not None:
        result.weights = {name: torch.from_numpy(np.asarray(value)) for name, value in result.weights.items()}
    return result


def _exit_with_parent(parent: int) -> None:
    """An idle worker sees the study's process go through its socket; a busy one through this watch."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(0)


def _serve(fd: int) -> None:
    """A worker's life: set up, then train groups until the study's process closes the socket."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the study's to handle
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()
    torch.set_num_threads(1)
    conn = Connection(fd)

    def send(message: tuple) -> None:
        conn.send_bytes(pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL))

    try:
        _, task, config = pickle.loads(conn.recv_bytes())
        from archsearch.evaluation._batched import BatchedTrainer

        trainer = BatchedTrainer(task, config)
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
            for index, result in trainer.train_group(indices, archs, seeds):
                send(("result", index, _portable(result)))
        except (BrokenPipeError, ConnectionResetError):
            return
        except Exception as exc:  # noqa: BLE001 -- train_group turns training errors into results
            send(("error", f"failed: {type(exc).__name__}: {exc}"))
            return
        send(("done", job))

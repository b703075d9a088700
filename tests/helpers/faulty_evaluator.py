"""A faulty evaluator: it kills the worker process it runs in, for the tests of what happens then.

Worker processes (local or Ray) unpickle it by its module name, so this folder is put on their
``PYTHONPATH`` by the ``faulty_evaluator`` fixture, and the module imports nothing from the tests.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator, Sequence
from pathlib import Path

from archsearch.evaluation import Result, SerialTrainer, TrainConfig
from archsearch.space import Architecture
from archsearch.tasks import Task


class KillingTrainer(SerialTrainer):
    """The serial trainer, except that a job holding the architecture whose string is ``victim``
    kills its process with SIGKILL before training. With ``marker`` it does so only while that file
    does not exist, and creates it first: the first attempt dies, a retry trains. It never kills the
    process that built it (a study's own), only copies sent to workers."""

    def __init__(self, task: Task, config: TrainConfig | None = None, victim: str = "", marker: str | None = None):
        super().__init__(task, config)
        self.victim, self.marker = victim, marker
        self.home = os.getpid()

    def run_job(
        self, members: Sequence[int], archs: Sequence[Architecture] | dict, seeds: Sequence[int] | dict
    ) -> Iterator[tuple[int, Result]]:
        if os.getpid() != self.home and any(str(archs[i]) == self.victim for i in members):
            if self.marker is None or not os.path.exists(self.marker):
                if self.marker is not None:
                    Path(self.marker).touch()
                os.kill(os.getpid(), signal.SIGKILL)
        yield from super().run_job(members, archs, seeds)

"""Where evaluations run: in the study's process, on a pool of local worker processes, or on Ray.

One interface (:class:`Executor`); the same seed gives the same trials on all three. Executors
receive the evaluator and send it to their workers by value.
"""

from archsearch.execution._base import DEFAULT_RETRIES, Executor, Stream
from archsearch.execution._build import EXECUTORS, build_executor
from archsearch.execution._inline import InlineExecutor
from archsearch.execution._process import ProcessExecutor
from archsearch.execution._ray import RayExecutor

__all__ = [
    "DEFAULT_RETRIES",
    "EXECUTORS",
    "Executor",
    "InlineExecutor",
    "ProcessExecutor",
    "RayExecutor",
    "Stream",
    "build_executor",
]

"""Data sets with fixed train / validation / test splits."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from archsearch.errors import ArchsearchError
from archsearch.tasks._builtin import moons
from archsearch.tasks._task import Task

TASKS: dict[str, Callable[..., Task]] = {"moons": moons}


def get_task(config: str | dict[str, Any]) -> Task:
    """Build a task from its name or from ``Task.config`` (``{"name": ..., **arguments}``)."""
    config = {"name": config} if isinstance(config, str) else dict(config)
    name = config.pop("name", None)
    if name not in TASKS:
        raise ArchsearchError(f"task: unknown task {name!r} (known: {', '.join(sorted(TASKS))})")
    factory = TASKS[name]
    accepted = inspect.signature(factory).parameters
    unknown = sorted(set(config) - set(accepted))
    if unknown:
        raise ArchsearchError(f"task: {name!r} takes no argument {unknown[0]!r}")
    return factory(**config)


__all__ = ["TASKS", "Task", "get_task", "moons"]

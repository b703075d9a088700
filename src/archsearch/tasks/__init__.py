"""Data sets with fixed train / validation / test splits."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from archsearch.errors import ArchsearchError
from archsearch.registry import Registry
from archsearch.tasks._arrays import from_arrays, pack
from archsearch.tasks._builtin import moons
from archsearch.tasks._files import FileTask, SplitIndices, from_file
from archsearch.tasks._images import digits, fashion_mnist, mnist, mnist_5k
from archsearch.tasks._task import Task
from archsearch.tasks._text import LanguageTask, ptb

#: tasks a user can name on the command line (``--task``); they need no arguments
NAMED_TASKS: dict[str, Callable[..., Task]] = {"moons": moons}
#: image classification tasks: ``x_*`` of shape (N, 1, H, W); not on the command line yet
IMAGE_TASKS: dict[str, Callable[..., Task]] = {
    "digits": digits,
    "mnist-5k": mnist_5k,
    "mnist": mnist,
    "fashion-mnist": fashion_mnist,
}
#: language-modelling tasks: a word stream, the next word the class; ``data_dir`` optional
TEXT_TASKS: dict[str, Callable[..., Task]] = {"ptb": ptb}
#: every task kind a study config may hold; "file" is the user's own data (``--data``), "arrays" data kept
#: in the study file itself (a search started from arrays in Python; see ``archsearch.tasks._arrays``);
#: a plugin adds one through the ``archsearch.tasks`` entry-point group
TASKS: Registry = Registry("task", "tasks")
for _name, _factory in {**NAMED_TASKS, "file": from_file, "arrays": from_arrays, **IMAGE_TASKS, **TEXT_TASKS}.items():
    TASKS.register(_name, _factory)


def stored_task(task: Task, keep_data: bool = True) -> tuple[dict[str, Any], bytes | None]:
    """What a study stores for ``task``: its config, and its arrays when the config cannot rebuild it
    (a task built in memory, whose config names no known kind, or one that came from a study's arrays).
    A study kept in memory holds the task itself (``keep_data=False``): no copy of its arrays is made."""
    name = task.config.get("name") if isinstance(task.config, dict) else None
    if name in TASKS and name != "arrays":
        return task.config, None
    if not keep_data:
        return {"name": "arrays", "problem": task.problem}, None
    return pack(task)


def get_task(config: str | dict[str, Any]) -> Task:
    """Build a task from its name or from ``Task.config`` (``{"name": ..., **arguments}``)."""
    config = {"name": config} if isinstance(config, str) else dict(config)
    name = config.pop("name", None)
    factory = TASKS.lookup(name)
    accepted = inspect.signature(factory).parameters
    unknown = sorted(set(config) - set(accepted))
    if unknown:
        raise ArchsearchError(f"task: {name!r} takes no argument {unknown[0]!r}")
    missing = [p.name for p in accepted.values() if p.default is inspect.Parameter.empty and p.name not in config]
    if missing:
        raise ArchsearchError(f"task: {name!r} needs the argument {missing[0]!r}")
    return factory(**config)


__all__ = [
    "FileTask",
    "IMAGE_TASKS",
    "LanguageTask",
    "TEXT_TASKS",
    "NAMED_TASKS",
    "SplitIndices",
    "TASKS",
    "Task",
    "digits",
    "fashion_mnist",
    "from_arrays",
    "from_file",
    "get_task",
    "mnist",
    "mnist_5k",
    "moons",
    "ptb",
    "stored_task",
]

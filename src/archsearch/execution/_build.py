"""Executors by name, for configs stored in a study and for the command line."""

from __future__ import annotations

from typing import Any

from archsearch.errors import ArchsearchError
from archsearch.execution._base import Executor
from archsearch.execution._inline import InlineExecutor
from archsearch.execution._process import ProcessExecutor
from archsearch.execution._ray import RayExecutor

EXECUTORS: dict[str, type[Executor]] = {"inline": InlineExecutor, "process": ProcessExecutor, "ray": RayExecutor}


def build_executor(config: dict[str, Any] | None) -> Executor:
    """An executor from ``Executor.to_config()`` output (``None``: inline)."""
    config = dict(config or {"name": "inline"})
    name = config.pop("name", None)
    if name not in EXECUTORS:
        raise ArchsearchError(f"executor: unknown executor {name!r} (known: {', '.join(EXECUTORS)})")
    if name == "ray":
        config.setdefault("workers", None)
    try:
        return EXECUTORS[name](**config)
    except TypeError as exc:
        raise ArchsearchError(f"executor: bad settings for {name!r} ({exc})") from None

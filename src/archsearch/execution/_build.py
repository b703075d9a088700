"""Executors by name, for configs stored in a study and for the command line."""

from __future__ import annotations

from typing import Any

from archsearch.errors import ArchsearchError
from archsearch.execution._base import Executor
from archsearch.execution._inline import InlineExecutor
from archsearch.execution._process import ProcessExecutor
from archsearch.execution._ray import RayExecutor
from archsearch.registry import Registry

#: executor name -> factory, called with the settings of ``to_config()`` (less ``"name"``); a plugin adds
#: one through the ``archsearch.executors`` entry-point group
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

"""Registries: the names a config or a command line may use for each kind of part.

One :class:`Registry` per kind (spaces, tasks, benchmarks, strategies, evaluators,
executors), each filled by the package that defines the kind. A third-party package
adds to one by declaring a Python entry point in the group ``archsearch.<kind>``
(e.g. ``archsearch.benchmarks``); it is loaded the first time its name is looked up,
so the command line and ``Study.open`` find it without any wrapper script.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, MutableMapping
from importlib import metadata
from typing import Generic, TypeVar, overload

from archsearch.errors import ArchsearchError, short

F = TypeVar("F", bound=Callable)

#: the entry-point group of each registry is ``GROUP_PREFIX + its plural``
GROUP_PREFIX = "archsearch."


class Registry(MutableMapping[str, F], Generic[F]):
    """Name -> factory for one kind of part; plugins add names through the entry-point group ``group``.

    ``kind`` is the singular used in messages ("benchmark"). Reading a name that is not
    registered loads the entry point of that name, once. A mapping, so that a test may
    ``monkeypatch.setitem`` a name in and out.
    """

    def __init__(self, kind: str, plural: str) -> None:
        self.kind = kind
        self.group = GROUP_PREFIX + plural
        self._factories: dict[str, F] = {}

    @overload
    def register(self, name: str) -> Callable[[F], F]: ...

    @overload
    def register(self, name: str, factory: F) -> F: ...

    def register(self, name: str, factory: F | None = None) -> F | Callable[[F], F]:
        """Add ``factory`` under ``name``; without ``factory``, a decorator that does."""
        if factory is None:
            return lambda given: self.register(name, given)
        self._factories[name] = factory
        return factory

    def lookup(self, name: object, field: str | None = None) -> F:
        """The factory of ``name``; an unknown name is one line naming ``field`` (default: the kind),
        the known names and the entry-point group that would add it."""
        if isinstance(name, str) and name in self:
            return self[name]
        known = ", ".join(self) or "none"
        raise ArchsearchError(
            f"{field or self.kind}: unknown {self.kind} {short(repr(name))} (known: {known}; "
            f"a plugin adds one through the {self.group!r} entry-point group)"
        )

    def _plugins(self) -> dict[str, metadata.EntryPoint]:
        return {entry.name: entry for entry in metadata.entry_points(group=self.group)}

    def __getitem__(self, name: str) -> F:
        if name not in self._factories:
            entry = self._plugins().get(name)
            if entry is None:
                raise KeyError(name)
            try:
                self._factories[name] = entry.load()
            except Exception as exc:  # a broken plugin is the user's environment, said in one line
                why = f"{type(exc).__name__}: {short(str(exc))}"
                raise ArchsearchError(
                    f"{self.kind} {name!r}: its plugin {entry.value!r} ({self.group}) cannot be loaded ({why})"
                ) from None
        return self._factories[name]

    def __setitem__(self, name: str, factory: F) -> None:
        self._factories[name] = factory

    def __delitem__(self, name: str) -> None:
        del self._factories[name]

    def __contains__(self, name: object) -> bool:
        return name in self._factories or (isinstance(name, str) and name in self._plugins())

    def __iter__(self) -> Iterator[str]:
        """Every known name, sorted: those registered and those plugins declare (not loaded by listing)."""
        return iter(sorted({*self._factories, *self._plugins()}))

    def __len__(self) -> int:
        return len({*self._factories, *self._plugins()})

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, group={self.group!r}, names={list(self)})"

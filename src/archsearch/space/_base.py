"""The search-space contract: what a space must provide so that every strategy can search it.

A space is a set of architectures declared as a sequence of categorical decisions.
It lays them out as a fixed schedule of *slots*. Each slot asks one
:class:`Decision` (so a controller can give every decision type its own softmax
head) and says whether the end-of-sequence token may be chosen there.

Tokens are how strategies see the space. An architecture is encoded as one token
per slot, up to and including an EOS token when it ends early: token
``i < len(choices)`` picks ``choices[i]``, token ``len(choices)`` is EOS. The
controller samples tokens and :meth:`SearchSpace.decode` turns them into an
architecture; :meth:`SearchSpace.encode` is the inverse, for strategies that learn
from what they proposed. Random search and evolution use :meth:`SearchSpace.sample`,
:meth:`SearchSpace.enumerate` and :meth:`SearchSpace.mutate` instead.

A space must provide ``kind``, the decisions and slots, and the abstract methods
below; :meth:`SearchSpace.validate` and :meth:`SearchSpace.check_tokens` come with
the base class.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from archsearch.errors import ArchsearchError
from archsearch.registry import Registry
from archsearch.space._architecture import Architecture


@dataclass(frozen=True)
class Decision:
    """A categorical choice, such as the units of a hidden layer."""

    name: str
    choices: tuple[Any, ...]

    @property
    def eos_token(self) -> int:
        return len(self.choices)


@dataclass(frozen=True)
class Slot:
    """One position of the schedule: which decision it asks and whether EOS is allowed.

    A slot with ``anchors`` is a set selection (Zoph & Le's anchor points): its token is a bit
    mask, bit ``b`` saying whether candidate ``b`` is chosen, and ``anchors[b]`` is the earlier
    slot whose controller state stands for candidate ``b``. A controller samples each bit as a
    Bernoulli instead of the token from a softmax.
    """

    decision: int
    eos: bool
    anchors: tuple[int, ...] = ()


#: space kind -> factory, called with the settings of ``to_config()`` (less ``"kind"``)
SPACES: Registry = Registry("space", "spaces")


class SearchSpace(ABC):
    """A set of architectures that strategies can sample, enumerate, mutate and encode.

    ``kind`` names the space in a study file: a subclass that sets it is registered under it,
    and :meth:`from_config` rebuilds it from :meth:`to_config`'s output, which must be JSON
    and hold everything that makes the space what it is (the file is read back as input,
    so the constructor checks every setting and says which one is wrong). Two spaces are
    equal when their configs are.

    Architectures that build the same network share a canonical form
    (:meth:`Architecture.canonical`), over which their hash is taken, so that a study
    counts and deduplicates them together. When the equivalence is the space's (a tabular
    benchmark's), the members that :meth:`decode` and :meth:`validate` return carry it.
    """

    kind: str
    #: settings added after studies were first written, with the values those studies were run with
    _legacy_config: ClassVar[dict[str, Any]] = {}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> SearchSpace:
        """Rebuild a space from :meth:`to_config` output."""
        config = dict(config)
        kind = config.pop("kind", None)
        space = SPACES.lookup(kind, "space.kind")
        try:
            return space(**{**getattr(space, "_legacy_config", {}), **config})
        except TypeError as exc:
            raise ArchsearchError(f"space: bad arguments for {kind!r} space ({exc})") from None

    # a subclass sets both in its constructor
    _decisions: tuple[Decision, ...]
    _slots: tuple[Slot, ...]

    @property
    def decisions(self) -> tuple[Decision, ...]:
        """The distinct decision types, in the order the controller's heads use."""
        return self._decisions

    @property
    def slots(self) -> tuple[Slot, ...]:
        """The longest schedule of decisions; an architecture may end earlier with EOS."""
        return self._slots

    @abstractmethod
    def decode(self, tokens: Sequence[int]) -> Architecture:
        """The architecture that a token sequence (as the controller samples it) describes."""

    @abstractmethod
    def encode(self, arch: Architecture) -> list[int]:
        """Tokens for ``arch``: ``decode(encode(a)) == a`` for every member ``a``."""

    @abstractmethod
    def sample(self, rng: np.random.Generator) -> Architecture:
        """A member drawn uniformly from the whole space."""

    @abstractmethod
    def size(self) -> int:
        """Number of distinct members."""

    @abstractmethod
    def enumerate(self) -> Iterator[Architecture]:
        """Every member once, in a fixed order (only sensible when ``size()`` is small)."""

    @abstractmethod
    def mutate(self, arch: Architecture, rng: np.random.Generator) -> Architecture:
        """A member that differs from ``arch`` in one decision."""

    @abstractmethod
    def to_config(self) -> dict[str, Any]:
        """JSON-ready constructor arguments plus ``"kind"``, enough to rebuild the space."""

    def validate(self, arch: Architecture) -> Architecture:
        """``arch`` as this space's member (read from a file, it gains what its canonical form needs);
        :class:`ArchsearchError` unless it is one."""
        member = self.decode(self.encode(arch))
        if member != arch:
            raise ArchsearchError(f"architecture {arch} is not a member of {self}")
        return member

    def contains(self, arch: Architecture) -> bool:
        try:
            self.validate(arch)
        except ArchsearchError:
            return False
        return True

    def check_tokens(self, tokens: Sequence[int]) -> list[int]:
        """Validate a token sequence against the schedule and return the tokens up to EOS.

        The returned list holds only choice tokens (EOS dropped); a sequence that
        runs past EOS or past the schedule, or uses EOS where it is not allowed,
        is refused.
        """
        choices: list[int] = []
        for position, token in enumerate(tokens):
            if position >= len(self.slots):
                raise ArchsearchError(f"{self}: {len(tokens)} tokens exceed the schedule of {len(self.slots)}")
            slot = self.slots[position]
            decision = self.decisions[slot.decision]
            token = int(token)
            if token == decision.eos_token and slot.eos:
                if position != len(tokens) - 1:
                    raise ArchsearchError(f"{self}: tokens continue after EOS at position {position}")
                return choices
            if not 0 <= token < len(decision.choices):
                raise ArchsearchError(
                    f"{self}: token {token} is not valid for {decision.name!r} at position {position}"
                )
            choices.append(token)
        return choices

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.to_config().items() if k != "kind")
        return f"{type(self).__name__}({args})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SearchSpace) and self.to_config() == other.to_config()

    def __hash__(self) -> int:
        return hash(repr(self))

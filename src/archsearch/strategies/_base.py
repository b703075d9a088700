"""The strategy contract: propose architectures, learn from their rewards.

Strategies never train anything; they see architectures and rewards only.
Everything they need to continue exactly where they stopped (weights,
optimiser state, random number generator states) is in ``state_dict``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar

from archsearch import _limits as limits
from archsearch.space import Architecture, SearchSpace


class Strategy(ABC):
    """Base class: ``ask`` for architectures, ``tell`` their rewards. ``seed``: an integer in 0..2**63 - 1."""

    name: ClassVar[str]
    #: True when the strategy can learn from one result at a time, so that an asynchronous study
    #: may tell each result as it arrives and ask for one replacement (evolution, random search);
    #: REINFORCE and TPE learn from a whole step's rewards.
    asynchronous: ClassVar[bool] = False

    def __init__(self, space: SearchSpace, seed: int = 0) -> None:
        self.space = space
        self.seed = limits.seed("strategy.seed", seed)

    @abstractmethod
    def ask(self, n: int) -> list[Architecture]:
        """Propose ``n`` architectures to evaluate next."""

    @abstractmethod
    def tell(self, archs: Sequence[Architecture], rewards: Sequence[float]) -> dict[str, float]:
        """Learn from the rewards of architectures it proposed; return metrics worth logging."""

    @abstractmethod
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly as if never stopped."""

    @abstractmethod
    def load_state_dict(self, state: dict[str, Any]) -> None: ...

    def to_config(self) -> dict[str, Any]:
        """Constructor arguments other than the space, plus ``"name"``."""
        return {"name": self.name, "seed": self.seed}

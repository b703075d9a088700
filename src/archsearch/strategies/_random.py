"""Random search: architectures drawn uniformly from the space."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from archsearch.errors import ArchsearchError
from archsearch.space import Architecture, SearchSpace
from archsearch.strategies._base import Outcome, Strategy, mean_reward


class RandomSearch(Strategy):
    """Uniform over the space's members; with ``unique`` (default) an architecture is never proposed twice.

    ``unique`` compares architectures by value (their code), not by canonical hash, so on a
    tabular benchmark it is sampling without replacement over the table's entries.
    ``unique=False`` samples with replacement, as the seed paper's Fig. 7 does. Outcomes of
    any status change nothing: nothing is learnt.
    """

    name = "random"
    asynchronous = True

    def __init__(self, space: SearchSpace, seed: int = 0, unique: bool = True) -> None:
        super().__init__(space, seed)
        self.unique = bool(unique)
        self.rng = np.random.default_rng(np.random.SeedSequence(self.seed))
        self.seen: set[str] = set()

    def ask(self, n: int) -> list[Architecture]:
        archs = []
        for _ in range(n):
            arch = self.space.sample(self.rng)
            if self.unique:
                if len(self.seen) >= self.space.size():
                    raise ArchsearchError(f"strategy random: all {self.space.size()} architectures proposed already")
                while arch.to_json() in self.seen:
                    arch = self.space.sample(self.rng)
                self.seen.add(arch.to_json())
            archs.append(arch)
        return archs

    def tell(self, outcomes: Sequence[Outcome]) -> dict[str, float]:
        return mean_reward(outcomes)

    def state_dict(self) -> dict[str, Any]:
        return {"rng": self.rng.bit_generator.state, "seen": sorted(self.seen)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]
        self.seen = set(state["seen"])

    def to_config(self) -> dict[str, Any]:
        return {**super().to_config(), "unique": self.unique}

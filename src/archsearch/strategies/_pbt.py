"""Population-based training (Jaderberg et al. 2017), synchronous so that a study is reproducible.

A population of ``population`` networks, drawn from the settings space, trains side by side through
the study's executor, ``interval`` epochs per round, for ``rounds`` rounds (one step each). After each
round the members are ranked by the validation score of their last epoch. Each member of the bottom
``quantile`` (and any member whose training diverged or failed) *exploits*: it copies the weights, the
optimizer state and the settings of a member of the top ``quantile`` drawn at random, then *explores*:
each setting is resampled uniformly with probability ``resample``, and otherwise perturbed: the
learning rate multiplied by 0.8 or 1.2 (kept within the space's range of rates), the optimizer, the
batch size and each layer's activation moved to a neighbouring choice of the space's list (as Ray
Tune's ``PopulationBasedTraining`` perturbs a list of values). The other members train on unchanged.
When the optimizer changes, its state is re-created. Its layers are the donor's: the weights fit them.

The study's final network is the best member of the last round.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from archsearch import _limits as limits
from archsearch.errors import ArchsearchError
from archsearch.space import Architecture, SearchSpace, SettingsArchitecture
from archsearch.strategies._base import Outcome
from archsearch.strategies._population import (
    MAX_CYCLES,
    MAX_PIECE_EPOCHS,
    MAX_POPULATION,
    PopulationStrategy,
    Start,
)


class PBT(PopulationStrategy):
    """See the module docstring."""

    name = "pbt"
    settings = ("population_size", "interval", "rounds", "quantile", "resample")

    def __init__(
        self,
        space: SearchSpace,
        seed: int = 0,
        population_size: int = 8,
        interval: int = 2,
        rounds: int = 10,
        quantile: float = 0.25,
        resample: float = 0.25,
    ) -> None:
        super().__init__(space, seed)
        self.population_size = limits.integer("strategy.population_size", population_size, 2, MAX_POPULATION)
        self.interval = limits.integer("strategy.interval", interval, 1, MAX_PIECE_EPOCHS)
        self.rounds = limits.integer("strategy.rounds", rounds, 1, MAX_CYCLES)
        self.quantile = limits.real("strategy.quantile", quantile, 0.0, 0.5, above=True)  # the share that exploits
        self.resample = limits.real("strategy.resample", resample, 0.0, 1.0)
        self.told = 0
        self.members: list[tuple[int | None, SettingsArchitecture, float, bool]] = []  # trial, arch, score, ok

    @property
    def width(self) -> int:
        return self.population_size

    @property
    def steps(self) -> int:
        return self.rounds

    @property
    def epochs(self) -> int:
        return self.population_size * self.interval * self.rounds

    def schedule_text(self) -> str:
        return f"rounds={self.rounds} steps of population_size={self.population_size} children"

    @property
    def replaced(self) -> int:
        """How many members exploit each round: the bottom quantile, at least one."""
        return max(1, math.floor(self.quantile * self.population_size))

    def ask(self, n: int) -> list[Architecture]:
        self._check_ask(n, self.told)
        if self.told == 0:
            archs = [self.space.sample(self.rng) for _ in range(n)]
            self._starts = [Start(None, self.interval)] * n
            return list(archs)
        order = sorted(range(n), key=lambda i: (self.members[i][3], self.members[i][2], -i), reverse=True)
        top = [i for i in order[: self.replaced] if self.members[i][3]]
        bottom = set(order[n - self.replaced :]) | {i for i in range(n) if not self.members[i][3]}
        archs: list[Architecture] = []
        self._starts = []
        for slot, (trial, arch, _, _) in enumerate(self.members):
            if slot not in bottom:
                archs.append(arch)
                self._starts.append(Start(trial, self.interval))
            elif top:
                donor = self.members[top[int(self.rng.integers(len(top)))]]
                archs.append(self.explore(donor[1]))
                self._starts.append(Start(donor[0], self.interval))
            else:  # no member succeeded: start again from fresh weights
                archs.append(self.space.sample(self.rng))
                self._starts.append(Start(None, self.interval))
        return archs

    def explore(self, arch: SettingsArchitecture) -> SettingsArchitecture:
        """``arch`` with every setting resampled (probability ``resample``) or perturbed."""
        for what in ("optimizer", "lr", "batch_size", *range(len(arch.network.layers))):
            values = self.choices(what)
            if self.rng.random() < self.resample:
                arch = self.changed(arch, what, values[int(self.rng.integers(len(values)))])
            elif what == "lr":
                factor = (0.8, 1.2)[int(self.rng.integers(2))]
                arch = self.changed(arch, what, min(max(arch.lr * factor, min(values)), max(values)))
            elif len(values) > 1:
                index = list(values).index(self.value_of(arch, what))
                step = (-1, 1)[int(self.rng.integers(2))]
                moved = index + step if 0 <= index + step < len(values) else index - step
                arch = self.changed(arch, what, values[moved])
        return arch

    def tell(self, outcomes: Sequence[Outcome]) -> dict[str, float]:
        if len(outcomes) != self.population_size:
            raise ArchsearchError(f"strategy pbt: told {len(outcomes)} outcomes, the population has "
                                  f"{self.population_size}")  # fmt: skip
        self.members = [(o.trial, o.architecture, float(o.reward), o.status == "ok" and o.trial is not None)
                        for o in outcomes]  # type: ignore[misc]  # fmt: skip
        self.told += 1
        ok = [o.reward for o in outcomes if o.status == "ok"]
        metrics = {"mean_reward": float(sum(o.reward for o in outcomes) / len(outcomes))}
        if ok:
            metrics["population_best"] = float(max(ok))
        return metrics

    def state_dict(self) -> dict[str, Any]:
        return {**self._rng_state(), "told": self.told,
                "members": [[t, a.to_json(), s, ok] for t, a, s, ok in self.members]}  # fmt: skip

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._load_rng_state(state)
        self.told = int(state["told"])
        self.members = [(None if t is None else int(t), self.space.validate(Architecture.from_json(a)), float(s),
                         bool(ok)) for t, a, s, ok in state["members"]]  # fmt: skip
        if not 0 <= self.told <= self.rounds or len(self.members) != (self.population_size if self.told else 0):
            raise ValueError(f"{len(self.members)} members after {self.told} rounds do not fit the schedule")
        if not all(math.isfinite(score) for _, _, score, _ in self.members):
            raise ValueError("a member's score is not a finite number")

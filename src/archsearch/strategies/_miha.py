"""MIHA: one network trained once, its settings changed as it trains.

Instead of training many networks from scratch, MIHA trains one and, at set moments, tries a few
alternatives of it, each trained on from the network's current weights; the best alternative carries
on. The schedule, with the seed's names for its settings:

1. the initial configuration trains ``m`` epochs from fresh weights;
2. ``c`` cycles, each: ``pop_size`` alternatives of the current network, each changing one setting
   (the optimizer, the activation of one randomly chosen layer, or the batch size; the three kinds
   equally likely), each trained ``n`` epochs from the current weights; the fittest alternative then
   trains ``k`` more epochs and becomes the current network;
3. the current network trains ``m`` final epochs.

One child per step, so the study runs ``2 + c * (pop_size + 1)`` steps and ``2m + c(pop_size * n + k)``
epochs. An alternative whose optimizer differs from its parent's starts a new optimizer (its state
re-created, which its saved JSON and the step's metrics record); otherwise the optimizer's state
carries on with the weights.

**Fitness** (``fitness="loss"``, the default), from the seed's two criteria, the last training loss
and its rate of decrease: with the alternative's mean training loss ``l_1 .. l_n`` over its epochs and
``l_0`` the current network's last one, ``s`` the least-squares slope of ``log l_i`` against the epoch
``i``, the fitness is ``-(log l_n + k * s)``: minus the log-loss extrapolated over the ``k`` epochs the
chosen alternative will train next. A low loss that still falls fast wins. ``fitness="val"`` ranks by
the validation score of the alternative's last epoch instead. An alternative that diverged or failed
is never chosen; when none succeeded, the current network trains on unchanged.

The initial configuration is ``initial`` (an architecture's dict, or its text as ``trials`` prints it:
``"128-relu/128-relu sgd lr=0.01 batch=64"``) or, by default, drawn from the space with the strategy's
seed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

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

FITNESS = ("loss", "val")
_KINDS = ("optimizer", "activation", "batch_size")


class MIHA(PopulationStrategy):
    """See the module docstring."""

    name = "miha"
    settings = ("m", "pop_size", "n", "k", "c", "fitness", "initial")

    def __init__(
        self,
        space: SearchSpace,
        seed: int = 0,
        m: int = 3,
        pop_size: int = 4,
        n: int = 1,
        k: int = 2,
        c: int = 5,
        fitness: str = "loss",
        initial: dict[str, Any] | str | None = None,
    ) -> None:
        super().__init__(space, seed)
        self.m = limits.integer("strategy.m", m, 1, MAX_PIECE_EPOCHS)
        self.pop_size = limits.integer("strategy.pop_size", pop_size, 1, MAX_POPULATION)
        self.n = limits.integer("strategy.n", n, 1, MAX_PIECE_EPOCHS)
        self.k = limits.integer("strategy.k", k, 1, MAX_PIECE_EPOCHS)
        self.c = limits.integer("strategy.c", c, 1, MAX_CYCLES)
        if fitness not in FITNESS:
            raise ArchsearchError(f"strategy.fitness: must be one of {', '.join(FITNESS)}, got {fitness!r:.40}")
        self.fitness = fitness
        self.initial = initial
        if initial is not None:
            try:
                given = SettingsArchitecture.parse(initial) if isinstance(initial, str) else Architecture.from_dict(initial)
                first = self.space.validate(given)
            except ArchsearchError as exc:
                raise ArchsearchError(f"strategy.initial: {exc}") from None
        else:
            first = self.space.sample(self.rng)
        if not self._kinds(first):  # type: ignore[arg-type]
            raise ArchsearchError("strategy miha: the space offers no other optimizer, activation or batch size to "
                                  "try; give it more than one of some")  # fmt: skip
        self.told = 0
        self.current: int | None = None  # the trial the network carries on from
        self.current_arch: SettingsArchitecture = first  # type: ignore[assignment]
        self.current_loss: float | None = None
        self.alternatives: list[SettingsArchitecture] = []
        self.scores: list[tuple[float | None, int | None]] = []  # (fitness, trial) per alternative told

    @property
    def width(self) -> int:
        return 1

    @property
    def steps(self) -> int:
        return 2 + self.c * (self.pop_size + 1)

    @property
    def epochs(self) -> int:
        return 2 * self.m + self.c * (self.pop_size * self.n + self.k)

    def schedule_text(self) -> str:
        return f"2 + c * (pop_size + 1) steps, c={self.c}, pop_size={self.pop_size}"

    def phase(self, step: int) -> tuple[str, int, int]:
        """``(what, cycle, alternative)`` of ``step``: ``initial``, ``alternative``, ``chosen`` or ``final``."""
        if step == 0:
            return "initial", -1, -1
        if step == self.steps - 1:
            return "final", self.c, -1
        cycle, index = divmod(step - 1, self.pop_size + 1)
        return ("chosen" if index == self.pop_size else "alternative"), cycle, index

    def ask(self, n: int) -> list[Architecture]:
        self._check_ask(n, self.told)
        what, _, index = self.phase(self.told)
        if what == "initial":
            arch, start = self.current_arch, Start(None, self.m)
        elif what == "final":
            arch, start = self.current_arch, Start(self.current, self.m)
        elif what == "alternative":
            if index == 0:
                self.alternatives = [self._alternative() for _ in range(self.pop_size)]
            arch, start = self.alternatives[index], Start(self.current, self.n)
        else:
            picked = self._fittest()
            if picked is None:  # no alternative succeeded: the current network trains on unchanged
                arch, start = self.current_arch, Start(self.current, self.k)
            else:
                arch, start = self.alternatives[picked], Start(self.scores[picked][1], self.k)
        self._starts = [start]
        return [arch]

    def _kinds(self, arch: SettingsArchitecture) -> list[str]:
        """The kinds of change the space allows ``arch``: a kind with one value to choose from is left out."""
        layers = len(arch.network.layers)
        return [kind for kind in _KINDS if len(self.choices(0 if kind == "activation" else kind)) > 1
                and (kind != "activation" or layers)]  # fmt: skip

    def _alternative(self) -> SettingsArchitecture:
        """The current network with one setting changed: the optimizer, one layer's activation or the
        batch size, each kind the space allows equally likely."""
        arch = self.current_arch
        kinds = self._kinds(arch)
        kind = kinds[int(self.rng.integers(len(kinds)))]
        what: str | int = int(self.rng.integers(len(arch.network.layers))) if kind == "activation" else kind
        return self.changed(arch, what, self.other_value(arch, what))

    def _fittest(self) -> int | None:
        """The index of the fittest alternative that succeeded (the first of equals), or ``None``."""
        told = [(f, -i) for i, (f, trial) in enumerate(self.scores) if f is not None and trial is not None]
        return -max(told)[1] if told else None

    def fitness_of(self, outcome: Outcome) -> float | None:
        """See the module docstring; ``None`` for an alternative that did not succeed."""
        if outcome.status != "ok":
            return None
        if self.fitness == "val":
            return float(outcome.reward)
        losses = [l for l in outcome.losses if math.isfinite(l)]
        if not losses:
            return None
        curve = ([self.current_loss] if self.current_loss is not None else []) + losses
        logs = np.log(np.maximum(curve, 1e-12))
        slope = float(np.polyfit(np.arange(len(logs)), logs, 1)[0]) if len(logs) > 1 else 0.0
        return -(float(logs[-1]) + self.k * slope)

    def tell(self, outcomes: Sequence[Outcome]) -> dict[str, float]:
        if len(outcomes) != 1:
            raise ArchsearchError(f"strategy miha: told {len(outcomes)} outcomes, proposes one per step")
        outcome = outcomes[0]
        what, cycle, _ = self.phase(self.told)
        metrics: dict[str, float] = {"mean_reward": float(outcome.reward), "cycle": float(cycle)}
        if what == "alternative":
            fitness = self.fitness_of(outcome)
            self.scores.append((fitness, outcome.trial))
            if fitness is not None:
                metrics["fitness"] = fitness
        elif outcome.status == "ok" and outcome.trial is not None:  # initial, chosen, final: the network
            self.current, self.current_arch = outcome.trial, outcome.architecture  # type: ignore[assignment]
            self.current_loss = outcome.losses[-1] if outcome.losses else None
        if what == "chosen":
            self.scores, self.alternatives = [], []
        self.told += 1
        return metrics

    def state_dict(self) -> dict[str, Any]:
        return {
            **self._rng_state(),
            "told": self.told,
            "current": self.current,
            "current_arch": self.current_arch.to_json(),
            "current_loss": self.current_loss,
            "alternatives": [a.to_json() for a in self.alternatives],
            "scores": [list(s) for s in self.scores],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._load_rng_state(state)
        self.told = int(state["told"])
        self.current = None if state["current"] is None else int(state["current"])
        self.current_arch = self.space.validate(Architecture.from_json(state["current_arch"]))
        self.current_loss = None if state["current_loss"] is None else float(state["current_loss"])
        self.alternatives = [self.space.validate(Architecture.from_json(a)) for a in state["alternatives"]]
        self.scores = [(None if f is None else float(f), None if t is None else int(t)) for f, t in state["scores"]]
        self._check_state()

    def _check_state(self) -> None:
        """A state read back must be one the schedule reaches (``ValueError``: the study says where)."""
        if not 0 <= self.told <= self.steps:
            raise ValueError(f"'told' is {self.told}, not a step of the schedule's {self.steps}")
        if self.current_loss is not None and not math.isfinite(self.current_loss):
            raise ValueError(f"'current_loss' is {self.current_loss}, not a finite number")
        what, _, index = self.phase(self.told) if self.told < self.steps else ("final", 0, 0)
        told = index if what == "alternative" else self.pop_size if what == "chosen" else 0
        if len(self.scores) != told or len(self.alternatives) != (self.pop_size if told else 0):
            raise ValueError(f"{len(self.alternatives)} alternatives and {len(self.scores)} scores do not fit step "
                             f"{self.told} of the schedule")  # fmt: skip
        if any(f is not None and not math.isfinite(f) for f, _ in self.scores):
            raise ValueError("a fitness in 'scores' is not a finite number")

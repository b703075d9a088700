"""Population strategies: networks that carry on training while their settings change.

A population strategy proposes, like any strategy, architectures of a space of training settings
(:class:`~archsearch.space.SettingsSpace`: an MLP, its per-layer activations, the optimizer, learning
rate and batch size). Each proposal also comes with a :class:`Start`: the trial whose trained weights
it continues from (``None``: fresh initial weights) and the number of epochs it trains. The study
loads that trial's saved weights, and its optimizer state when the optimizer is the same, and the
trainer trains the child for exactly that many epochs (see :mod:`archsearch.evaluation._continued`).

Steps have a fixed width (``width`` children each) and the schedule a fixed length (``steps``), which
the study takes as its budget: a population study is numbered, checkpointed and resumed like any other.
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from archsearch.errors import ArchsearchError
from archsearch.space import SearchSpace, SettingsArchitecture, SettingsSpace
from archsearch.space._architecture import MLPArchitecture
from archsearch.strategies._base import Strategy

#: bounds of the population strategies' settings: epochs of one piece of training (m, n, k, interval),
#: members or alternatives (pop_size, population_size), cycles or rounds (c, rounds)
MAX_PIECE_EPOCHS, MAX_POPULATION, MAX_CYCLES = 10**4, 1000, 10**4


@dataclass(frozen=True)
class Start:
    """Where a proposal starts: the weights of trial ``parent`` (``None``: fresh ones), for ``epochs``."""

    parent: int | None
    epochs: int


class PopulationStrategy(Strategy):
    """Base class of MIHA and PBT: proposals that continue from earlier trials' weights."""

    continues: ClassVar[bool] = True
    #: the names of the strategy's own settings (its constructor's arguments besides the space and seed)
    settings: ClassVar[tuple[str, ...]] = ()

    def __init__(self, space: SearchSpace, seed: int = 0) -> None:
        if not isinstance(space, SettingsSpace):
            raise ArchsearchError(
                f"strategy {self.name}: changes a network's training settings as it trains, so it searches the "
                f"settings space (space settings), not the {space.kind} space"
            )
        super().__init__(space, seed)
        self.space: SettingsSpace = space
        self.rng = np.random.default_rng(np.random.SeedSequence(self.seed))
        self._starts: list[Start] = []

    @property
    @abstractmethod
    def width(self) -> int:
        """Children per step."""

    @property
    @abstractmethod
    def steps(self) -> int:
        """Steps in the whole schedule (the study's budget)."""

    @property
    @abstractmethod
    def epochs(self) -> int:
        """Training epochs of the whole schedule, every child's counted (the budget to compare at)."""

    @abstractmethod
    def schedule_text(self) -> str:
        """How the settings make the schedule's steps, in words (for messages that refuse another budget)."""

    def starts(self) -> list[Start]:
        """The starts of the proposals of the last :meth:`ask`, in order."""
        return list(self._starts)

    def _check_ask(self, n: int, step: int) -> None:
        if n != self.width:
            raise ArchsearchError(f"strategy {self.name}: proposes {self.width} children per step, asked for {n}")
        if step >= self.steps:
            raise ArchsearchError(f"strategy {self.name}: its schedule of {self.steps} steps is complete")

    def _rng_state(self) -> dict[str, Any]:
        return {"rng": self.rng.bit_generator.state}

    def _load_rng_state(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]

    # -- changing one setting ------------------------------------------------------------------

    def changed(self, arch: SettingsArchitecture, what: str, value: Any) -> SettingsArchitecture:
        """``arch`` with the optimizer, learning rate, batch size or the activation of layer ``what``
        (an int) set to ``value``."""
        if isinstance(what, int):
            layers = list(arch.network.layers)
            layers[what] = (layers[what][0], value)
            return SettingsArchitecture(MLPArchitecture(tuple(layers)), arch.optimizer_name, arch.lr, arch.batch)
        fields = {"optimizer": arch.optimizer_name, "lr": arch.lr, "batch_size": arch.batch, what: value}
        return SettingsArchitecture(arch.network, fields["optimizer"], fields["lr"], fields["batch_size"])

    def choices(self, what: str | int) -> tuple[Any, ...]:
        """The values a setting may take."""
        if isinstance(what, int):
            return self.space.layout.activations
        return {"optimizer": self.space.optimizers, "batch_size": self.space.batch_sizes, "lr": self.space.lrs}[what]

    @staticmethod
    def value_of(arch: SettingsArchitecture, what: str | int) -> Any:
        if isinstance(what, int):
            return arch.network.layers[what][1]
        return {"optimizer": arch.optimizer_name, "lr": arch.lr, "batch_size": arch.batch}[what]

    def other_value(self, arch: SettingsArchitecture, what: str | int) -> Any | None:
        """A value of ``what`` other than ``arch``'s, uniformly (``None``: the setting has one value)."""
        others = [v for v in self.choices(what) if v != self.value_of(arch, what)]
        return None if not others else others[int(self.rng.integers(len(others)))]

    def to_config(self) -> dict[str, Any]:
        return {**super().to_config(), **{name: getattr(self, name) for name in self.settings}}

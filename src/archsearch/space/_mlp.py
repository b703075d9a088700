"""The seed experiment's space: MLPs with up to ``max_layers`` hidden layers."""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from archsearch._limits import MAX_UNITS, MLP_MAX_LAYERS, choices, integer
from archsearch.errors import ArchsearchError
from archsearch.space._architecture import ACTIVATIONS, Architecture, MLPArchitecture
from archsearch.space._base import Decision, SearchSpace, Slot


def layer_widths(field: str, units: Sequence[int]) -> tuple[int, ...]:
    """``units`` as the widths a hidden layer may take: distinct integers in 1..``MAX_UNITS``, or one line
    naming ``field``."""
    given = choices(field, units, "distinct positive integers")
    widths = tuple(integer(field, u, 1, MAX_UNITS) for u in given)
    if not widths or len(set(widths)) != len(widths):
        raise ArchsearchError(f"{field}: need distinct positive integers, got {list(given)}")
    return widths


class MLPSpace(SearchSpace):
    """Per hidden layer: units, then activation; EOS may end the network after ``min_layers``.

    The schedule is ``units_1, activation_1, units_2, activation_2, ...``; EOS is an
    extra choice of every units slot after the first ``min_layers`` layers, so
    the controller decides the depth as it goes, as in Zoph & Le (2017). At most
    ``MLP_MAX_LAYERS`` (64) layers and ``MAX_CHOICES`` (64) unit counts of at most ``MAX_UNITS``
    (4096) each, so that a controller for the space builds at once and its size stays countable.
    """

    kind = "mlp"

    def __init__(
        self,
        units: Sequence[int] = (1, 2, 4, 8, 16, 32),
        activations: Sequence[str] = ("relu", "tanh"),
        max_layers: int = 5,
        min_layers: int = 1,
    ) -> None:
        self.units = layer_widths("space.units", units)
        activations = choices("space.activations", activations, "distinct names")
        self.activations = tuple(str(a) for a in activations)
        self.min_layers = integer("space.min_layers", min_layers, 1, MLP_MAX_LAYERS)
        self.max_layers = integer("space.max_layers", max_layers, 1, MLP_MAX_LAYERS)
        if not self.activations or len(set(self.activations)) != len(self.activations):
            raise ArchsearchError(f"space.activations: need distinct names, got {list(activations)}")
        unknown = [a for a in self.activations if a not in ACTIVATIONS]
        if unknown:
            raise ArchsearchError(f"space.activations: unknown {unknown} (known: {', '.join(ACTIVATIONS)})")
        if self.max_layers < self.min_layers:
            raise ArchsearchError(f"space.max_layers: must be >= min_layers ({self.min_layers}), got {max_layers}")
        self._decisions = (Decision("units", self.units), Decision("activation", self.activations))
        self._slots = tuple(
            slot
            for layer in range(self.max_layers)
            for slot in (Slot(0, eos=layer >= self.min_layers), Slot(1, eos=False))
        )

    def to_config(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "units": list(self.units),
            "activations": list(self.activations),
            "max_layers": self.max_layers,
            "min_layers": self.min_layers,
        }

    def decode(self, tokens: Sequence[int]) -> MLPArchitecture:
        choices = self.check_tokens(tokens)
        if len(choices) % 2:
            raise ArchsearchError(f"{self}: tokens end inside a layer (units without activation)")
        if len(choices) < 2 * self.min_layers:
            raise ArchsearchError(f"{self}: {len(choices) // 2} layers, fewer than min_layers={self.min_layers}")
        pairs = zip(choices[0::2], choices[1::2])
        return MLPArchitecture(tuple((self.units[u], self.activations[a]) for u, a in pairs))

    def encode(self, arch: Architecture) -> list[int]:
        if not isinstance(arch, MLPArchitecture):
            raise ArchsearchError(f"{self}: expected an mlp architecture, got kind {arch.kind!r}")
        n = len(arch.layers)
        if not self.min_layers <= n <= self.max_layers:
            raise ArchsearchError(f"{arch}: {n} layers, outside {self.min_layers}..{self.max_layers}")
        tokens = []
        for units, activation in arch.layers:
            if units not in self.units or activation not in self.activations:
                raise ArchsearchError(f"{arch}: layer {units}-{activation} is not in {self}")
            tokens += [self.units.index(units), self.activations.index(activation)]
        if n < self.max_layers:
            tokens.append(self._decisions[0].eos_token)
        return tokens

    def _per_layer(self) -> int:
        return len(self.units) * len(self.activations)

    def size(self) -> int:
        return sum(self._per_layer() ** n for n in range(self.min_layers, self.max_layers + 1))

    def enumerate(self) -> Iterator[MLPArchitecture]:
        layer_choices = list(itertools.product(self.units, self.activations))
        for n in range(self.min_layers, self.max_layers + 1):
            for layers in itertools.product(layer_choices, repeat=n):
                yield MLPArchitecture(layers)

    def sample(self, rng: np.random.Generator) -> MLPArchitecture:
        depths = np.arange(self.min_layers, self.max_layers + 1)
        n = int(rng.choice(depths, p=_shares([self._per_layer() ** int(n) for n in depths])))
        units = rng.integers(len(self.units), size=n)
        activations = rng.integers(len(self.activations), size=n)
        return MLPArchitecture(tuple((self.units[u], self.activations[a]) for u, a in zip(units, activations)))

    def mutate(self, arch: Architecture, rng: np.random.Generator) -> MLPArchitecture:
        """Change one layer's units or activation, or add or remove one layer."""
        self.validate(arch)
        assert isinstance(arch, MLPArchitecture)
        layers = list(arch.layers)
        moves = [
            move
            for move, possible in (
                ("units", len(self.units) > 1),
                ("activation", len(self.activations) > 1),
                ("add", len(layers) < self.max_layers),
                ("remove", len(layers) > self.min_layers),
            )
            if possible
        ]
        if not moves:
            raise ArchsearchError(f"{self}: the space has a single member; nothing to mutate")
        move = moves[int(rng.integers(len(moves)))]
        i = int(rng.integers(len(layers)))
        if move == "units":
            others = [u for u in self.units if u != layers[i].units]
            layers[i] = layers[i]._replace(units=others[int(rng.integers(len(others)))])
        elif move == "activation":
            others = [a for a in self.activations if a != layers[i].activation]
            layers[i] = layers[i]._replace(activation=others[int(rng.integers(len(others)))])
        elif move == "add":
            units = self.units[int(rng.integers(len(self.units)))]
            activation = self.activations[int(rng.integers(len(self.activations)))]
            layers.insert(int(rng.integers(len(layers) + 1)), (units, activation))
        else:
            del layers[i]
        return MLPArchitecture(tuple(layers))


def _shares(counts: Sequence[int]) -> np.ndarray:
    """Each count's share of their sum, from exact integers: no float overflow however large they are."""
    total = sum(counts)
    return np.array([count / total for count in counts])

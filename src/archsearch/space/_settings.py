"""A space of training settings with the layout: the optimizer, learning rate and batch size a child
trains with, searched together with its MLP's layers and per-layer activations.

This is the space that hyperparameter searches (Optuna's TPE, random search) explore: every member
is a network *and* how to train it, each trained from scratch. The serial trainer asks the
architecture for its optimizer (:meth:`Architecture.optimizer`) and batch size
(:meth:`Architecture.batch_size`), so a member trains exactly as it says.

Slots: optimizer, learning rate, batch size, then the MLP space's schedule (units and activation per
layer, EOS after ``min_layers``): the settings come first because EOS ends a schedule.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from archsearch._limits import MAX_BATCH_SIZE, MAX_RATE, choices, integer, known_names, real
from archsearch.errors import ArchsearchError
from archsearch.space._architecture import Architecture, MLPArchitecture
from archsearch.space._base import Decision, SearchSpace, Slot
from archsearch.space._mlp import MLPSpace

#: the optimizers a member may name: torch's, with their defaults but the learning rate
OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    "sgd": torch.optim.SGD,
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "adadelta": torch.optim.Adadelta,
    "rmsprop": torch.optim.RMSprop,
    "adagrad": torch.optim.Adagrad,
}
DEFAULT_RATES = (0.001, 0.003, 0.01, 0.03, 0.1)
DEFAULT_BATCH_SIZES = (16, 32, 64, 128, 256)
DEFAULT_ACTIVATIONS = ("relu", "tanh", "sigmoid", "elu", "leaky_relu")
_SETTINGS = 3  # optimizer, learning rate, batch size


@dataclass(frozen=True)
class SettingsArchitecture(Architecture):
    """An MLP (``network``) and the optimizer, learning rate and batch size it trains with."""

    kind: ClassVar[str] = "settings"
    network: MLPArchitecture
    optimizer_name: str
    lr: float
    batch: int

    def __post_init__(self) -> None:
        if not isinstance(self.network, MLPArchitecture):
            raise ArchsearchError(f"architecture: the network of a settings member is an mlp, got {self.network!r:.60}")
        if self.optimizer_name not in OPTIMIZERS:
            raise ArchsearchError(f"architecture: unknown optimizer {self.optimizer_name!r:.40} "
                                  f"(known: {', '.join(OPTIMIZERS)})")  # fmt: skip
        object.__setattr__(self, "lr", float(real("architecture.lr", self.lr, 0.0, MAX_RATE, above=True)))
        object.__setattr__(self, "batch", integer("architecture.batch_size", self.batch, 1, MAX_BATCH_SIZE))

    def to_dict(self) -> dict[str, Any]:
        layers = self.network.to_dict()["layers"]
        return {"kind": self.kind, "layers": layers, "optimizer": self.optimizer_name, "lr": self.lr,
                "batch_size": self.batch}  # fmt: skip

    @classmethod
    def _from_dict(cls, data: dict[str, Any]) -> SettingsArchitecture:
        unknown = sorted(set(data) - {"kind", "layers", "optimizer", "lr", "batch_size"})
        missing = sorted({"layers", "optimizer", "lr", "batch_size"} - set(data))
        if unknown or missing:
            what = f"unknown field {unknown[0]!r}" if unknown else f"no {missing[0]!r}"
            raise ArchsearchError(f"architecture: malformed settings member ({what})")
        network = MLPArchitecture._from_dict({"kind": "mlp", "layers": data["layers"]})
        return cls(network, data["optimizer"], data["lr"], data["batch_size"])

    def __str__(self) -> str:
        return f"{self.network} {self.optimizer_name} lr={self.lr:g} batch={self.batch}"

    @classmethod
    def parse(cls, text: str) -> SettingsArchitecture:
        """Inverse of ``str()``: ``"128-relu/64-tanh adam lr=0.001 batch=64"``."""
        parts = str(text).split()
        lr, batch = (parts[i].partition("=") if len(parts) == 4 else ("", "", "") for i in (2, 3))
        if len(parts) != 4 or (lr[0], batch[0]) != ("lr", "batch"):
            raise ArchsearchError(f"architecture: cannot read {str(text)!r:.80}; expected LAYERS OPTIMIZER lr=RATE "
                                  "batch=SIZE, e.g. '128-relu/64-tanh adam lr=0.001 batch=64'")  # fmt: skip
        try:
            rate, size = float(lr[2]), int(batch[2])
        except ValueError:
            raise ArchsearchError(f"architecture: lr={lr[2]!r:.20} or batch={batch[2]!r:.20} is not a number") from None
        return cls(MLPArchitecture.parse(parts[0]), parts[1], rate, size)

    def build(self, in_features: int, out_features: int, generator: torch.Generator | None = None) -> nn.Module:
        return self.network.build(in_features, out_features, generator)

    def num_params(self, in_features: int, out_features: int) -> int:
        return self.network.num_params(in_features, out_features)

    def optimizer(self, params: Any, lr: float, weight_decay: float, seed: int) -> torch.optim.Optimizer:
        """The member's own optimizer at its own learning rate (the trainer's ``lr`` does not apply)."""
        return OPTIMIZERS[self.optimizer_name](params, lr=self.lr, weight_decay=weight_decay)

    def batch_size(self, default: int | None) -> int | None:
        return self.batch


class SettingsSpace(SearchSpace):
    """Optimizer, learning rate and batch size, then an MLP space's layers (see the module docstring)."""

    kind = "settings"

    def __init__(
        self,
        optimizers: Sequence[str] = tuple(OPTIMIZERS),
        lrs: Sequence[float] = DEFAULT_RATES,
        batch_sizes: Sequence[int] = DEFAULT_BATCH_SIZES,
        units: Sequence[int] = (1, 2, 4, 8, 16, 32),
        activations: Sequence[str] = DEFAULT_ACTIVATIONS,
        max_layers: int = 5,
        min_layers: int = 1,
    ) -> None:
        self.optimizers = known_names("space.optimizers", optimizers, OPTIMIZERS)
        rates = choices("space.lrs", lrs, "rates")
        self.lrs = tuple(float(real("space.lrs", r, 0.0, MAX_RATE, above=True)) for r in rates)
        self.batch_sizes = tuple(integer("space.batch_sizes", b, 1, MAX_BATCH_SIZE)
                                 for b in choices("space.batch_sizes", batch_sizes, "sizes"))  # fmt: skip
        for name, values in (("lrs", self.lrs), ("batch_sizes", self.batch_sizes)):
            if not values or len(set(values)) != len(values):
                raise ArchsearchError(f"space.{name}: need distinct values, got {list(values)}")
        self.layout = MLPSpace(units, activations, max_layers, min_layers)
        self._decisions = (
            Decision("optimizer", self.optimizers), Decision("lr", self.lrs), Decision("batch_size", self.batch_sizes),
            *self.layout.decisions,
        )  # fmt: skip
        shifted = tuple(Slot(slot.decision + _SETTINGS, slot.eos) for slot in self.layout.slots)
        self._slots = (Slot(0, False), Slot(1, False), Slot(2, False), *shifted)

    def to_config(self) -> dict[str, Any]:
        layout = self.layout.to_config()
        del layout["kind"]
        return {"kind": self.kind, "optimizers": list(self.optimizers), "lrs": list(self.lrs),
                "batch_sizes": list(self.batch_sizes), **layout}  # fmt: skip

    def _member(self, settings: Sequence[int], network: MLPArchitecture) -> SettingsArchitecture:
        o, r, b = settings
        return SettingsArchitecture(network, self.optimizers[o], self.lrs[r], self.batch_sizes[b])

    def decode(self, tokens: Sequence[int]) -> SettingsArchitecture:
        self.check_tokens(tokens)
        if len(tokens) < _SETTINGS:
            raise ArchsearchError(f"{self}: tokens end before the training settings are chosen")
        return self._member(tokens[:_SETTINGS], self.layout.decode(tokens[_SETTINGS:]))

    def encode(self, arch: Architecture) -> list[int]:
        """Tokens of ``arch``; a learning rate between the grid's values (which population-based training
        reaches by scaling one) is written as the nearest value, on a log scale."""
        if not isinstance(arch, SettingsArchitecture):
            raise ArchsearchError(f"{self}: expected a settings architecture, got kind {arch.kind!r}")
        try:
            settings = [self.optimizers.index(arch.optimizer_name), self.nearest_rate(arch.lr),
                        self.batch_sizes.index(arch.batch)]  # fmt: skip
        except ValueError:
            raise ArchsearchError(f"{arch}: its training settings are not in {self}") from None
        return settings + self.layout.encode(arch.network)

    def nearest_rate(self, lr: float) -> int:
        """The index of the grid's learning rate nearest ``lr`` on a log scale; ``ValueError`` outside the
        grid's range."""
        if not min(self.lrs) * (1 - 1e-9) <= lr <= max(self.lrs) * (1 + 1e-9):
            raise ValueError(lr)
        return int(np.argmin([abs(np.log(lr / r)) for r in self.lrs]))

    def validate(self, arch: Architecture) -> SettingsArchitecture:
        """``arch`` as a member: its learning rate anywhere in the grid's range, the rest on the grid."""
        snapped = self.decode(self.encode(arch))
        assert isinstance(arch, SettingsArchitecture)
        if dataclasses.replace(snapped, lr=arch.lr) != arch:
            raise ArchsearchError(f"architecture {arch} is not a member of {self}")
        return arch

    def _settings_count(self) -> int:
        return len(self.optimizers) * len(self.lrs) * len(self.batch_sizes)

    def size(self) -> int:
        return self._settings_count() * self.layout.size()

    def enumerate(self) -> Iterator[SettingsArchitecture]:
        for network in self.layout.enumerate():
            for o in range(len(self.optimizers)):
                for r in range(len(self.lrs)):
                    for b in range(len(self.batch_sizes)):
                        yield self._member((o, r, b), network)

    def sample(self, rng: np.random.Generator) -> SettingsArchitecture:
        settings = [int(rng.integers(len(values))) for values in (self.optimizers, self.lrs, self.batch_sizes)]
        return self._member(settings, self.layout.sample(rng))

    def mutate(self, arch: Architecture, rng: np.random.Generator) -> SettingsArchitecture:
        """Change one training setting, or mutate the layout as the MLP space does (one move in four
        of each, so each setting and the layout are as likely)."""
        tokens = self.encode(self.validate(arch))
        assert isinstance(arch, SettingsArchitecture)
        counts = [len(self.optimizers), len(self.lrs), len(self.batch_sizes)]
        movable = [i for i in range(_SETTINGS) if counts[i] > 1]
        move = int(rng.integers(len(movable) + 1))
        if move == len(movable):
            return SettingsArchitecture(self.layout.mutate(arch.network, rng), arch.optimizer_name, arch.lr, arch.batch)
        i = movable[move]
        tokens[i] = [t for t in range(counts[i]) if t != tokens[i]][int(rng.integers(counts[i] - 1))]
        return self._member(tokens[:_SETTINGS], arch.network)

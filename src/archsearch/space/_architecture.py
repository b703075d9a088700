"""Architectures: immutable values that a strategy proposes and a trainer builds.

An architecture knows how to write itself as JSON, how to name itself in a few
characters, what its canonical form is (so that equivalent networks hash
equal and are deduplicated together) and how to build a ``torch.nn.Module``.
Each kind of architecture is a subclass registered under ``kind``; JSON carries
the kind so that :meth:`Architecture.from_dict` can rebuild any of them.
"""

from __future__ import annotations

import hashlib
import json
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

import numpy as np
import torch
from torch import nn

from archsearch.errors import ArchsearchError

#: an MLP layer's activations (the batched trainer computes relu and tanh only, see BATCHED_ACTIVATIONS)
ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "elu": nn.ELU, "leaky_relu": nn.LeakyReLU,
    "selu": nn.SELU, "gelu": nn.GELU,
}  # fmt: skip
BATCHED_ACTIVATIONS = ("relu", "tanh")
_FUNCTIONS = {  # the same activations, as functions
    "relu": torch.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid, "elu": nn.functional.elu,
    "leaky_relu": nn.functional.leaky_relu, "selu": torch.selu, "gelu": nn.functional.gelu,
}  # fmt: skip


class Architecture(ABC):
    """Base class of all architecture kinds.

    Subclasses are frozen dataclasses; they implement ``to_dict``/``_from_dict``,
    ``__str__`` and ``build``, and may override ``canonical`` when several
    encodings describe the same network.
    """

    kind: ClassVar[str]
    _kinds: ClassVar[dict[str, type[Architecture]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "kind" in cls.__dict__:
            Architecture._kinds[cls.kind] = cls

    @abstractmethod
    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict that includes ``"kind"``."""

    @classmethod
    @abstractmethod
    def _from_dict(cls, data: dict[str, Any]) -> Architecture: ...

    @abstractmethod
    def build(self, in_features: int, out_features: int, generator: torch.Generator | None = None) -> nn.Module:
        """A fresh ``nn.Module``; with ``generator`` its initial weights are a pure function of it."""

    @abstractmethod
    def num_params(self, in_features: int, out_features: int) -> int:
        """Number of trainable parameters of ``build(in_features, out_features)``."""

    def canonical(self) -> Architecture:
        """The representative of all architectures that build the same network."""
        return self

    def optimizer(self, params: Any, lr: float, weight_decay: float, seed: int) -> torch.optim.Optimizer:
        """The optimizer a trainer trains this architecture's network with: Adam, unless the architecture
        is itself an update rule (:class:`archsearch.space.UpdateRuleSpace`). ``seed`` seeds what an update
        rule draws at random."""
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)

    def batch_size(self, default: int | None) -> int | None:
        """The minibatch size a trainer trains this architecture with: ``default`` (the trainer's; ``None``
        is the full batch), unless the architecture names its own (:class:`archsearch.space.SettingsSpace`)."""
        return default

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Architecture:
        """Rebuild any registered kind from :meth:`to_dict` output."""
        if not isinstance(data, dict) or "kind" not in data:
            raise ArchsearchError(f"architecture: expected an object with a 'kind' field, got {data!r:.80}")
        kind = data["kind"]
        if kind not in Architecture._kinds:
            known = ", ".join(sorted(Architecture._kinds))
            raise ArchsearchError(f"architecture: unknown kind {kind!r} (known: {known})")
        return Architecture._kinds[kind]._from_dict(data)

    def to_json(self) -> str:
        """Compact JSON with sorted keys: equal architectures give equal strings."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Architecture:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ArchsearchError(f"architecture: not valid JSON ({exc.msg})") from None
        return cls.from_dict(data)

    @property
    def hash(self) -> str:
        """Canonical hash: 16 hex digits of SHA-256 over the canonical form's JSON."""
        return hashlib.sha256(self.canonical().to_json().encode()).hexdigest()[:16]


class MLPLayer(NamedTuple):
    """One hidden layer of a multi-layer perceptron."""

    units: int
    activation: str


@dataclass(frozen=True)
class MLPArchitecture(Architecture):
    """A multi-layer perceptron: hidden layers of ``units`` with an activation each.

    The output layer (``out_features`` logits or values) is added by :meth:`build`.
    """

    kind: ClassVar[str] = "mlp"
    layers: tuple[MLPLayer, ...]

    def __post_init__(self) -> None:
        layers = tuple(MLPLayer(int(u), str(a)) for u, a in self.layers)
        for units, activation in layers:
            if units < 1:
                raise ArchsearchError(f"architecture: layer units must be >= 1, got {units}")
            if activation not in ACTIVATIONS:
                known = ", ".join(ACTIVATIONS)
                raise ArchsearchError(f"architecture: unknown activation {activation!r} (known: {known})")
        object.__setattr__(self, "layers", layers)

    @classmethod
    def parse(cls, text: str) -> MLPArchitecture:
        """Inverse of ``str()``: ``"8-tanh/4-relu"``."""
        layers = []
        for part in text.strip().split("/"):
            units, sep, activation = part.partition("-")
            if not sep or not units.isdigit():
                raise ArchsearchError(f"architecture: cannot parse {part!r} in {text!r}; expected UNITS-ACTIVATION")
            layers.append((int(units), activation))
        return cls(tuple(layers))

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "layers": [{"units": u, "activation": a} for u, a in self.layers]}

    @classmethod
    def _from_dict(cls, data: dict[str, Any]) -> MLPArchitecture:
        try:
            return cls(tuple((layer["units"], layer["activation"]) for layer in data["layers"]))
        except (KeyError, TypeError) as exc:
            raise ArchsearchError(f"architecture: malformed mlp layers ({exc!r})") from None

    def __str__(self) -> str:
        return "/".join(f"{u}-{a}" for u, a in self.layers)

    @property
    def widths(self) -> tuple[int, ...]:
        return tuple(layer.units for layer in self.layers)

    @property
    def activations(self) -> tuple[str, ...]:
        return tuple(layer.activation for layer in self.layers)

    def num_params(self, in_features: int, out_features: int) -> int:
        sizes = (in_features, *self.widths, out_features)
        return sum((a + 1) * b for a, b in zip(sizes, sizes[1:]))

    def init_params(
        self, in_features: int, out_features: int, generator: torch.Generator | None = None
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Initial (weight, bias) per linear layer, input to output.

        The distribution is PyTorch's default for ``nn.Linear``, U(-1/sqrt(fan_in),
        1/sqrt(fan_in)) for both weight and bias, drawn layer by layer, weight
        before bias, from ``generator``. Every trainer initialises through this
        function, so the same seed gives the same network in all of them.
        """
        sizes = (in_features, *self.widths, out_features)
        params = []
        for fan_in, fan_out in zip(sizes, sizes[1:]):
            bound = np.float32(1.0 / math.sqrt(fan_in))  # the float32 arithmetic of (rand * 2 - 1) * bound
            weight = torch.rand(fan_out, fan_in, generator=generator).numpy() * np.float32(2) - np.float32(1)
            bias = torch.rand(fan_out, generator=generator).numpy() * np.float32(2) - np.float32(1)
            params.append((torch.from_numpy(weight * bound), torch.from_numpy(bias * bound)))
        return params

    def build(self, in_features: int, out_features: int, generator: torch.Generator | None = None) -> nn.Sequential:
        modules: list[nn.Module] = []
        sizes = (in_features, *self.widths, out_features)
        for i, (fan_in, fan_out) in enumerate(zip(sizes, sizes[1:])):
            modules.append(nn.Linear(fan_in, fan_out))
            if i < len(self.layers):
                modules.append(ACTIVATIONS[self.layers[i].activation]())
        if generator is not None:
            linears = [m for m in modules if isinstance(m, nn.Linear)]
            with torch.no_grad():
                for linear, (weight, bias) in zip(linears, self.init_params(in_features, out_features, generator)):
                    linear.weight.copy_(weight)
                    linear.bias.copy_(bias)
        return nn.Sequential(*modules)

    def apply(self, weights: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """What :meth:`build`'s network computes on ``x`` with the state dict ``weights``, without
        building modules (cheaper for the tiny networks of a search)."""
        h = x
        for i in range(len(self.layers) + 1):
            h = nn.functional.linear(h, weights[f"{2 * i}.weight"], weights[f"{2 * i}.bias"])
            if i < len(self.layers):
                h = _FUNCTIONS[self.layers[i].activation](h)
        return h

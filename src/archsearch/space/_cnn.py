"""Convolutional networks for images, with skip connections chosen by the controller.

A CNN child is a stack of convolutional layers. Per layer the space decides the
number of filters, the kernel size, the stride, the pooling (none, or 2x2 max)
and the dropout rate, as seed 002 and Zoph & Le (2017) do. Optionally the
controller also decides skip connections with Zoph & Le's *anchor points*: at
layer ``i`` it selects a set of earlier layers ``j < i - 1`` whose outputs feed
layer ``i`` besides layer ``i - 1``'s, each an independent Bernoulli whose
probability the controller computes by attention over its own hidden states
(see :class:`archsearch.strategies.Reinforce`).

How a child combines its inputs (documented, and the same for every child):
layer ``i`` reads layer ``i - 1``'s output (the image for layer 0); each skip
input is average-pooled to that output's height and width (spatial sizes only
shrink along the network) and all inputs are concatenated along channels, as in
Zoph & Le. A layer is ``conv(padding k // 2, stride) -> batch normalization ->
ReLU -> max pool 2x2 (ceil mode) -> dropout`` (batch normalization, Ioffe &
Szegedy 2015, is a setting of the space, on by default; a layer without it has
a conv bias instead). The head average-pools the last layer to 4x4 and
applies one linear layer, so the same child runs on 8x8 digits and 28x28 MNIST
and its parameter count does not depend on the image size. Padding ``k // 2``
and ceil-mode pooling never shrink a side below one pixel, so every member of
the space builds and runs on any input of at least 1x1.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from archsearch._limits import CNN_MAX_LAYERS, MAX_FILTERS, MAX_KERNEL, MAX_STRIDE, choices, integer
from archsearch.errors import ArchsearchError
from archsearch.space._architecture import Architecture
from archsearch.space._base import Decision, SearchSpace, Slot
from archsearch.space._mlp import _shares

POOLS = ("none", "max")
HEAD_GRID = 4  # the head pools the last layer to HEAD_GRID x HEAD_GRID before its linear layer


class CNNLayer(NamedTuple):
    """One convolutional layer; ``skips`` are the earlier layers (0-based) that also feed it."""

    filters: int
    kernel: int
    stride: int = 1
    pool: str = "none"
    dropout: float = 0.0
    skips: tuple[int, ...] = ()
    batch_norm: bool = False

    def __str__(self) -> str:
        text = f"{self.filters}c{self.kernel}"
        if self.stride != 1:
            text += f"s{self.stride}"
        if self.batch_norm:
            text += "-bn"
        if self.pool != "none":
            text += f"-{self.pool}"
        if self.dropout:
            text += f"-d{self.dropout:g}"
        if self.skips:
            text += "+" + ",".join(str(j) for j in self.skips)
        return text


@dataclass(frozen=True)
class CNNArchitecture(Architecture):
    """A convolutional network for images: layers of :class:`CNNLayer`, input to output.

    ``str()`` writes one layer per ``/``-separated part, e.g. ``32c5-bn-max/64c3s2-d0.25+0``:
    32 filters of 5x5, batch normalization, then 2x2 max pooling; 64 filters of 3x3 with
    stride 2, dropout 0.25, and a skip input from layer 0. :meth:`parse` reads it back.
    """

    kind: ClassVar[str] = "cnn"
    layers: tuple[CNNLayer, ...]

    def __post_init__(self) -> None:
        layers = tuple(_layer(layer, i) for i, layer in enumerate(self.layers))
        if not layers:
            raise ArchsearchError("architecture: a cnn needs at least one layer")
        object.__setattr__(self, "layers", layers)

    @classmethod
    def parse(cls, text: str) -> CNNArchitecture:
        """Inverse of ``str()``."""
        layers = []
        for part in text.strip().split("/"):
            body, _, skips = part.partition("+")
            conv, *options = body.split("-")
            filters, c, rest = conv.partition("c")
            kernel, s, stride = rest.partition("s")
            if not c or not filters.isdigit() or not kernel.isdigit() or (s and not stride.isdigit()):
                raise ArchsearchError(
                    f"architecture: cannot parse {part!r} in {text!r}; expected e.g. 32c5s2-max-d0.25+0"
                )
            pool, dropout, batch_norm = "none", 0.0, False
            for option in options:
                if option in POOLS:
                    pool = option
                elif option == "bn":
                    batch_norm = True
                elif option.startswith("d"):
                    try:
                        dropout = float(option[1:])
                    except ValueError:
                        raise ArchsearchError(f"architecture: bad dropout {option!r} in {text!r}") from None
                else:
                    raise ArchsearchError(f"architecture: unknown option {option!r} in {text!r}")
            try:
                sources = tuple(int(j) for j in skips.split(",")) if skips else ()
            except ValueError:
                raise ArchsearchError(f"architecture: bad skip list {skips!r} in {text!r}") from None
            layers.append(CNNLayer(int(filters), int(kernel), int(stride or 1), pool, dropout, sources, batch_norm))
        return cls(tuple(layers))

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "layers": [_layer_dict(layer) for layer in self.layers]}

    @classmethod
    def _from_dict(cls, data: dict[str, Any]) -> CNNArchitecture:
        try:
            return cls(tuple(CNNLayer(**{**layer, "skips": tuple(layer.get("skips", ()))}) for layer in data["layers"]))
        except (KeyError, TypeError) as exc:
            raise ArchsearchError(f"architecture: malformed cnn layers ({exc!r})") from None

    def __str__(self) -> str:
        return "/".join(str(layer) for layer in self.layers)

    @property
    def uses_skips(self) -> bool:
        return any(layer.skips for layer in self.layers)

    def _in_channels(self, in_channels: int) -> list[int]:
        """Input channels of each layer: the previous output's plus every skip input's."""
        return [
            (in_channels if i == 0 else self.layers[i - 1].filters) + sum(self.layers[j].filters for j in layer.skips)
            for i, layer in enumerate(self.layers)
        ]

    def num_params(self, in_features: int, out_features: int) -> int:
        """Trainable parameters; ``in_features`` is the number of image channels."""
        convs = sum(
            (c * layer.kernel**2 + (2 if layer.batch_norm else 1)) * layer.filters
            for c, layer in zip(self._in_channels(in_features), self.layers)
        )
        return convs + (self.layers[-1].filters * HEAD_GRID**2 + 1) * out_features

    def build(self, in_features: int, out_features: int, generator: torch.Generator | None = None) -> CNN:
        """The network for images of ``in_features`` channels and ``out_features`` classes.

        With ``generator`` every conv and linear weight and bias is drawn from
        U(-1/sqrt(fan_in), 1/sqrt(fan_in)), PyTorch's default range, module by module, weight
        before bias: a pure function of it (batch normalization starts at scale 1, shift 0).
        """
        model = CNN(self, in_features, out_features)
        if generator is not None:
            _draw(model, generator)
        return model


@torch.no_grad()
def _draw(model: nn.Module, generator: torch.Generator) -> None:
    """Every conv and linear weight and bias from U(-1/sqrt(fan_in), 1/sqrt(fan_in)), in module order."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d | nn.Linear):
            bound = 1.0 / math.sqrt(module.weight[0].numel())
            module.weight.copy_((torch.rand(module.weight.shape, generator=generator) * 2 - 1) * bound)
            if module.bias is not None:
                module.bias.copy_((torch.rand(module.bias.shape, generator=generator) * 2 - 1) * bound)


class CNN(nn.Module):
    """What :meth:`CNNArchitecture.build` returns: a plain module, no archsearch needed to run it."""

    def __init__(self, arch: CNNArchitecture, in_channels: int, out_features: int) -> None:
        super().__init__()
        self.skips = [list(layer.skips) for layer in arch.layers]
        self.pools = [layer.pool == "max" for layer in arch.layers]
        self.convs = nn.ModuleList(
            nn.Conv2d(c, layer.filters, layer.kernel, stride=layer.stride, padding=layer.kernel // 2,
                      bias=not layer.batch_norm)
            for c, layer in zip(arch._in_channels(in_channels), arch.layers)
        )  # fmt: skip
        self.norms = nn.ModuleList(
            _BatchNorm(layer.filters) if layer.batch_norm else nn.Identity() for layer in arch.layers
        )
        self.dropouts = nn.ModuleList(nn.Dropout(layer.dropout) for layer in arch.layers)
        self.head = nn.Linear(arch.layers[-1].filters * HEAD_GRID**2, out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outputs: list[torch.Tensor] = []
        h = x
        for conv, norm, dropout, skips, pool in zip(self.convs, self.norms, self.dropouts, self.skips, self.pools):
            if skips:
                size = h.shape[-2:]
                h = torch.cat([h, *(_resized(outputs[j], size) for j in skips)], dim=1)
            h = F.relu(norm(conv(h)))
            if pool:
                h = F.max_pool2d(h, 2, ceil_mode=True)
            h = dropout(h)
            outputs.append(h)
        return self.head(torch.flatten(F.adaptive_avg_pool2d(h, HEAD_GRID), 1))


def _resized(h: torch.Tensor, size: torch.Size) -> torch.Tensor:
    return h if h.shape[-2:] == size else F.adaptive_avg_pool2d(h, size)


class _BatchNorm(nn.BatchNorm2d):
    """``nn.BatchNorm2d`` that also normalizes a batch holding one value per channel (one image
    shrunk to one pixel), which PyTorch refuses while training: every value equals its mean, so
    the output is the shift, and the running statistics are left alone."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and x.shape[0] * x.shape[2] * x.shape[3] == 1:
            shape = (1, -1, 1, 1)
            return (x - x.detach()) * self.weight.view(shape) + self.bias.view(shape)
        return super().forward(x)


def _layer_dict(layer: CNNLayer) -> dict[str, Any]:
    """A layer as JSON; ``batch_norm`` only when set, so layers written before it existed keep
    their hashes."""
    data = {**layer._asdict(), "skips": list(layer.skips)}
    if not layer.batch_norm:
        del data["batch_norm"]
    return data


def _layer(layer: Any, index: int) -> CNNLayer:
    """A checked :class:`CNNLayer` at position ``index``."""
    try:
        filters, kernel, stride, pool, dropout, *rest = layer
        skips = tuple(sorted(int(j) for j in (rest[0] if rest else ())))
        batch_norm = rest[1] if len(rest) > 1 else False
        if not isinstance(batch_norm, bool | np.bool_):
            raise TypeError(f"batch_norm must be true or false, got {batch_norm!r}")
        checked = CNNLayer(int(filters), int(kernel), int(stride), str(pool), float(dropout), skips, bool(batch_norm))
    except (TypeError, ValueError) as exc:
        raise ArchsearchError(f"architecture: cnn layer {index} is malformed ({exc})") from None
    if checked.filters < 1 or checked.kernel < 1 or checked.stride < 1:
        raise ArchsearchError(f"architecture: cnn layer {index}: filters, kernel and stride must be >= 1")
    if checked.pool not in POOLS:
        raise ArchsearchError(f"architecture: cnn layer {index}: pool must be one of {', '.join(POOLS)}")
    if not 0.0 <= checked.dropout < 1.0:
        raise ArchsearchError(f"architecture: cnn layer {index}: dropout must be in [0, 1), got {checked.dropout}")
    if len(set(skips)) != len(skips) or any(not 0 <= j < index - 1 for j in skips):
        raise ArchsearchError(
            f"architecture: cnn layer {index}: skips {list(skips)} must be distinct earlier layers before {index - 1}"
        )
    return checked


class CNNSpace(SearchSpace):
    """Per layer: filters, kernel, stride, pool, dropout; then, with ``skips``, the set of earlier
    layers that also feed it. EOS may end the network after ``min_layers`` layers.

    ``batch_norm`` (default on) puts batch normalization after every layer's convolution; it is
    a setting of the space, not a decision. Configs written before it existed mean off.

    The schedule is ``filters_1, kernel_1, stride_1, pool_1, dropout_1, filters_2, ...``; from the
    third layer on, with ``skips``, each layer ends with one *anchor* slot whose token is a bit
    mask over the candidate layers ``0 .. i - 2`` (bit ``j`` set: layer ``j`` feeds layer ``i``).
    The controller samples each bit as a Bernoulli by anchor-point attention; the anchor of
    layer ``j`` is the controller's hidden state once it has read all of layer ``j``'s decisions
    (at the first slot of layer ``j + 1``).

    Bounds: at most ``CNN_MAX_LAYERS`` (16) layers (the anchor decision of layer ``i`` has
    ``2 ** (i - 1)`` sets, and the controller one embedding per set), at most ``MAX_CHOICES`` (64)
    options per decision, filters up to 1024, kernels up to 15, strides up to 8.
    """

    kind = "cnn"
    _legacy_config: ClassVar[dict[str, Any]] = {"batch_norm": False}

    def __init__(
        self,
        filters: Sequence[int] = (8, 16, 32, 64),
        kernels: Sequence[int] = (3, 5),
        strides: Sequence[int] = (1, 2),
        pools: Sequence[str] = POOLS,
        dropouts: Sequence[float] = (0.0, 0.25),
        max_layers: int = 4,
        min_layers: int = 1,
        skips: bool = True,
        batch_norm: bool = True,
    ) -> None:
        self.filters = _distinct("filters", filters, _within("filters", MAX_FILTERS), lambda v: True)
        self.kernels = _distinct("kernels", kernels, _within("kernels", MAX_KERNEL), lambda v: True)
        self.strides = _distinct("strides", strides, _within("strides", MAX_STRIDE), lambda v: True)
        self.pools = _distinct("pools", pools, str, lambda v: v in POOLS)
        self.dropouts = _distinct("dropouts", dropouts, float, lambda v: 0.0 <= v < 1.0)
        self.min_layers = integer("space.min_layers", min_layers, 1, CNN_MAX_LAYERS)
        self.max_layers = integer("space.max_layers", max_layers, 1, CNN_MAX_LAYERS)
        self.skips, self.batch_norm = bool(skips), bool(batch_norm)
        if self.max_layers < self.min_layers:
            raise ArchsearchError(f"space.max_layers: must be >= min_layers ({self.min_layers}), got {max_layers}")
        options = (self.filters, self.kernels, self.strides, self.pools, self.dropouts)
        names = ("filters", "kernel", "stride", "pool", "dropout")
        decisions = [Decision(name, choices) for name, choices in zip(names, options)]
        slots: list[Slot] = []
        self._layer_starts: list[int] = []
        for i in range(self.max_layers):
            self._layer_starts.append(len(slots))
            slots += [Slot(d, eos=d == 0 and i >= self.min_layers) for d in range(len(names))]
            if self._has_anchor(i):
                decisions.append(Decision(f"skips{i}", tuple(range(2 ** (i - 1)))))
                # the anchor of layer j: the first slot of layer j + 1, which has read all of layer j
                slots.append(Slot(len(decisions) - 1, eos=False, anchors=tuple(self._layer_starts[1:i])))
        self._decisions, self._slots = tuple(decisions), tuple(slots)

    def _has_anchor(self, layer: int) -> bool:
        return self.skips and layer >= 2

    def to_config(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "filters": list(self.filters),
            "kernels": list(self.kernels),
            "strides": list(self.strides),
            "pools": list(self.pools),
            "dropouts": list(self.dropouts),
            "max_layers": self.max_layers,
            "min_layers": self.min_layers,
            "skips": self.skips,
            "batch_norm": self.batch_norm,
        }

    def _options(self) -> tuple[tuple[Any, ...], ...]:
        return self.filters, self.kernels, self.strides, self.pools, self.dropouts

    def decode(self, tokens: Sequence[int]) -> CNNArchitecture:
        choices = self.check_tokens(tokens)
        layers, position = [], 0
        while position < len(choices):
            i = len(layers)
            width = 5 + int(self._has_anchor(i))
            part = choices[position : position + width]
            if len(part) < width:
                raise ArchsearchError(f"{self}: tokens end inside layer {i}")
            values = [options[t] for options, t in zip(self._options(), part)]
            mask = part[5] if width == 6 else 0
            layers.append(CNNLayer(*values, tuple(j for j in range(i - 1) if mask >> j & 1), self.batch_norm))
            position += width
        if len(layers) < self.min_layers:
            raise ArchsearchError(f"{self}: {len(layers)} layers, fewer than min_layers={self.min_layers}")
        return CNNArchitecture(tuple(layers))

    def encode(self, arch: Architecture) -> list[int]:
        if not isinstance(arch, CNNArchitecture):
            raise ArchsearchError(f"{self}: expected a cnn architecture, got kind {arch.kind!r}")
        n = len(arch.layers)
        if not self.min_layers <= n <= self.max_layers:
            raise ArchsearchError(f"{arch}: {n} layers, outside {self.min_layers}..{self.max_layers}")
        tokens = []
        for i, layer in enumerate(arch.layers):
            if layer.batch_norm != self.batch_norm:
                raise ArchsearchError(f"{arch}: layer {i} ({layer}) is not in {self}")
            for options, value in zip(self._options(), layer[:5]):
                if value not in options:
                    raise ArchsearchError(f"{arch}: layer {i} ({layer}) is not in {self}")
                tokens.append(options.index(value))
            if self._has_anchor(i):
                tokens.append(sum(1 << j for j in layer.skips))
            elif layer.skips:
                raise ArchsearchError(f"{arch}: layer {i} has skips, which {self} does not allow there")
        if n < self.max_layers:
            tokens.append(self._decisions[0].eos_token)
        return tokens

    def _per_layer(self, i: int) -> int:
        return math.prod(len(o) for o in self._options()) * (2 ** (i - 1) if self._has_anchor(i) else 1)

    def _per_depth(self) -> list[int]:
        return [math.prod(self._per_layer(i) for i in range(n)) for n in range(self.min_layers, self.max_layers + 1)]

    def size(self) -> int:
        return sum(self._per_depth())

    def enumerate(self) -> Iterator[CNNArchitecture]:
        for n in range(self.min_layers, self.max_layers + 1):
            per_layer = [
                itertools.product(*self._options(), _skip_sets(i) if self._has_anchor(i) else [()]) for i in range(n)
            ]
            for layers in itertools.product(*(list(p) for p in per_layer)):
                yield CNNArchitecture(tuple(CNNLayer(*layer, self.batch_norm) for layer in layers))

    def sample(self, rng: np.random.Generator) -> CNNArchitecture:
        counts = self._per_depth()
        n = self.min_layers + int(rng.choice(len(counts), p=_shares(counts)))
        layers = []
        for i in range(n):
            values = [options[int(rng.integers(len(options)))] for options in self._options()]
            skips = tuple(j for j in range(i - 1) if rng.random() < 0.5) if self._has_anchor(i) else ()
            layers.append(CNNLayer(*values, skips, self.batch_norm))
        return CNNArchitecture(tuple(layers))

    def mutate(self, arch: Architecture, rng: np.random.Generator) -> CNNArchitecture:
        """Change one decision of one layer, toggle one skip connection, or add or remove a layer."""
        self.validate(arch)
        assert isinstance(arch, CNNArchitecture)
        layers = list(arch.layers)
        n = len(layers)
        fields = [k for k, options in enumerate(self._options()) if len(options) > 1]
        moves = [("field", i, k) for i in range(n) for k in fields]
        moves += [("skip", i, j) for i in range(n) if self._has_anchor(i) for j in range(i - 1)]
        if n < self.max_layers:
            moves += [("add", p, None) for p in range(n + 1)]
        if n > self.min_layers:
            moves += [("remove", p, None) for p in range(n)]
        if not moves:
            raise ArchsearchError(f"{self}: the space has a single member; nothing to mutate")
        move, i, k = moves[int(rng.integers(len(moves)))]
        if move == "field":
            options = self._options()[k]
            others = [v for v in options if v != layers[i][k]]
            layers[i] = layers[i]._replace(**{layers[i]._fields[k]: others[int(rng.integers(len(others)))]})
        elif move == "skip":
            skips = set(layers[i].skips) ^ {k}
            layers[i] = layers[i]._replace(skips=tuple(sorted(skips)))
        elif move == "add":
            values = (options[int(rng.integers(len(options)))] for options in self._options())
            new = CNNLayer(*values, batch_norm=self.batch_norm)
            layers = [_shifted(layer, lambda j: j + (j >= i)) for layer in layers]
            layers.insert(i, new)
        else:
            del layers[i]
            layers = [_shifted(layer, lambda j: None if j == i else j - (j > i)) for layer in layers]
        # indices moved: keep only skips that are still allowed (from layers before the previous one)
        layers = [
            layer._replace(skips=tuple(j for j in layer.skips if j < p - 1) if self._has_anchor(p) else ())
            for p, layer in enumerate(layers)
        ]
        return CNNArchitecture(tuple(layers))


def _shifted(layer: CNNLayer, move: Any) -> CNNLayer:
    return layer._replace(skips=tuple(sorted(m for m in (move(j) for j in layer.skips) if m is not None)))


def _skip_sets(layer: int) -> list[tuple[int, ...]]:
    return [tuple(j for j in range(layer - 1) if mask >> j & 1) for mask in range(2 ** (layer - 1))]


def _within(name: str, maximum: int) -> Any:
    """A converter to integers in ``1..maximum`` for ``space.<name>``."""
    return lambda value: integer(f"space.{name}", value, 1, maximum)


def _distinct(name: str, values: Sequence[Any], kind: Any, ok: Any) -> tuple[Any, ...]:
    values = choices(f"space.{name}", values, "distinct values")
    try:
        checked = tuple(kind(v) for v in values)
    except ArchsearchError:
        raise
    except (TypeError, ValueError, OverflowError):
        raise ArchsearchError(f"space.{name}: cannot read {list(values)!r}") from None
    if not checked or len(set(checked)) != len(checked) or not all(ok(v) for v in checked):
        raise ArchsearchError(f"space.{name}: need distinct valid values, got {list(values)!r}")
    return checked


@dataclass(frozen=True)
class BaselineCNN(Architecture):
    """Seed 002's hand-designed CNN, the network a search must beat on images.

    Two convolutional layers of 32 and 64 filters of 5x5 (padding 2), each followed by ReLU and
    2x2 max pooling, dropout 0.25, a dense layer of 128 units with ReLU, dropout 0.5, and the
    output layer. ``side`` is the input images' height and width (the dense layer reads the
    flattened feature map, so its size depends on it).
    """

    kind: ClassVar[str] = "baseline-cnn"
    side: int = 28

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "side": self.side}

    @classmethod
    def _from_dict(cls, data: dict[str, Any]) -> BaselineCNN:
        return cls(int(data.get("side", 28)))

    def __str__(self) -> str:
        return "32c5-max/64c5-max-d0.25/dense128-d0.5"

    def _flat(self) -> int:
        pooled = math.ceil(math.ceil(self.side / 2) / 2)  # two ceil-mode 2x2 poolings
        return 64 * pooled * pooled

    def num_params(self, in_features: int, out_features: int) -> int:
        return (in_features * 25 + 1) * 32 + (32 * 25 + 1) * 64 + (self._flat() + 1) * 128 + 129 * out_features

    def build(self, in_features: int, out_features: int, generator: torch.Generator | None = None) -> nn.Module:
        model = nn.Sequential(
            nn.Conv2d(in_features, 32, 5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(2, ceil_mode=True),
            nn.Conv2d(32, 64, 5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(2, ceil_mode=True),
            nn.Dropout(0.25),
            nn.Flatten(),
            nn.Linear(self._flat(), 128),
            nn.ReLU(),
            nn.Dropout(0.5),
            nn.Linear(128, out_features),
        )
        if generator is not None:
            _draw(model, generator)
        return model

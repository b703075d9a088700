"""Supernets: one network that holds the weights of every child of an MLP or CNN space.

As in the macro search of Pham et al. (2018, ENAS), every choice at every layer
position is an *operation* with its own weights, and a child is a path through
them: ``supernet(x, arch)`` computes the child ``arch`` with the shared weights,
and ``supernet.extract(arch)`` returns the child's own state dict, the one of
``arch.build(in_features, out_features)``, so that the stand-alone network loaded
with it computes what the path computes (in eval mode; both drop out alike in
train mode).

- MLP space: one linear layer per (position, activation); its input is the
  previous layer (``in_features`` at position 0). One output layer per depth, its
  columns sliced by the last layer's width.
- CNN space: one convolution per (position, kernel, stride); pooling and dropout
  have no weights. A convolution's input channels are laid out in fixed blocks,
  one per possible source (the previous layer, then layers ``0 .. i - 2`` that may
  skip to it), each as wide as the widest filter choice (the image's channels at
  position 0); a child's input (previous layer first, then its skip sources in
  increasing order, as the stand-alone ``CNN`` concatenates them) gathers
  its channels from those blocks. With batch normalization every (position,
  kernel, stride, filters) has its own normalization, so running statistics are
  kept per operation and width. One head (linear layer after pooling to
  ``HEAD_GRID x HEAD_GRID``) per depth; its columns are sliced by the last layer's
  width (flattening is channel-major, so the first ``f * HEAD_GRID ** 2`` columns
  belong to the first ``f`` channels).

How widths share weights (``sharing``):

- ``"slice"``: every width at a position uses the leading rows of the widest
  tensor, so a layer of 8 filters is the first 8 filters of the layer of 64;
  narrow children train the weights wide ones start from.
- ``"separate"``: every width (units or filters) has its own tensor; only the
  input blocks are sliced (a layer reads the first channels of each source).

Initialization draws every weight and bias from U(-1/sqrt(fan_in), 1/sqrt(fan_in)),
PyTorch's default range, tensor by tensor in a fixed order (position, choice,
width; weight before bias; the heads last) from ``generator``. ``fan_in`` is that
of the widest input from the previous layer (times the kernel's area), skip inputs
not counted, so a layer's scale does not shrink with the number of skip sources its
position could have; a head's is the widest last layer's (times ``HEAD_GRID ** 2``).
Batch normalization starts at scale 1, shift 0. A space whose supernet would hold
more than ``MAX_SUPERNET_PARAMS`` trainable parameters is refused before anything
is allocated.

Like a stand-alone CNN on the CPU, a CNN supernet runs fastest with images and weights in
the channels-last layout (``supernet.to(memory_format=torch.channels_last)``); gathered
weights keep the layout of the tensor they come from.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from archsearch import _limits as limits
from archsearch.errors import ArchsearchError
from archsearch.space import Architecture, CNNArchitecture, CNNSpace, MLPArchitecture, MLPSpace, SearchSpace
from archsearch.space._architecture import ACTIVATIONS
from archsearch.space._cnn import HEAD_GRID, _BatchNorm, _resized

SHARINGS = ("slice", "separate")
#: trainable parameters a supernet may hold (200 MB of float32 weights, as much again per Adam moment)
MAX_SUPERNET_PARAMS = limits.MAX_SUPERNET_PARAMS
_MAX_PLANS = 4096  # cached paths (and gather indices); beyond, a cache starts afresh


class _Op(NamedTuple):
    """Where a child's layer finds its weights: tensor names, rows (``None``: all) and input columns
    (a leading width, or the indices gathered from the input blocks)."""

    weight: str
    bias: str | None
    rows: int | None
    cols: int | torch.Tensor


class _Spec(NamedTuple):
    name: str
    shape: tuple[int, ...]
    fan_in: int


class Supernet(nn.Module):
    """The weights of every child of ``space``; ``forward(x, arch)`` runs the child ``arch``.

    Subclasses lay out the tensors (``_layout``), map a child to its path (``_path``), run the path
    (``_run``) and name the child's tensors as its stand-alone network does (``_named``).
    """

    def __init__(self, space: SearchSpace, in_features: int, out_features: int, sharing: str = "slice") -> None:
        super().__init__()
        if sharing not in SHARINGS:
            raise ArchsearchError(f"sharing: must be one of {', '.join(SHARINGS)}, got {sharing!r}")
        if in_features < 1 or out_features < 1:
            raise ArchsearchError(
                f"supernet: in_features and out_features must be >= 1, got {in_features} and {out_features}"
            )
        self.space, self.sharing = space, sharing
        self.in_features, self.out_features = in_features, out_features
        self.weights = nn.ParameterDict()
        self.norms = nn.ModuleDict()
        self._paths: dict[tuple[Architecture, torch.device], object] = {}
        self._indices: dict[tuple[tuple[tuple[int, int], ...], torch.device], torch.Tensor] = {}

    def _layout(self) -> Iterator[_Spec]:
        """Every weight and bias tensor, in the order they are drawn."""
        raise NotImplementedError

    def _norm_widths(self) -> Iterator[tuple[str, int]]:
        """Every batch normalization: its name and width."""
        return iter(())

    def _path(self, arch: Architecture, device: torch.device) -> object:
        raise NotImplementedError

    def _run(self, x: torch.Tensor, path: object) -> torch.Tensor:
        raise NotImplementedError

    def _named(self, path: object) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def _allocate(self, generator: torch.Generator | None) -> None:
        """Count, refuse if too large, then create and draw every tensor."""
        specs, norms = list(self._layout()), list(self._norm_widths())
        count = sum(math.prod(spec.shape) for spec in specs) + sum(2 * width for _, width in norms)
        if count > MAX_SUPERNET_PARAMS:
            raise ArchsearchError(
                f"space: its supernet would hold {count:,} parameters, more than the {MAX_SUPERNET_PARAMS:,} "
                "weight sharing allows; offer fewer layers, filters, units, kernels or strides"
            )
        for spec in specs:
            bound = 1.0 / math.sqrt(spec.fan_in)
            values = (torch.rand(spec.shape, generator=generator) * 2 - 1) * bound
            self.weights[spec.name] = nn.Parameter(values)
        for name, width in norms:
            self.norms[name] = _BatchNorm(width)

    def forward(self, x: torch.Tensor, arch: Architecture) -> torch.Tensor:  # type: ignore[override]
        """The logits of the child ``arch`` on ``x``, computed with the shared weights."""
        return self._run(x, self._cached_path(arch))

    @torch.no_grad()
    def extract(self, arch: Architecture) -> dict[str, torch.Tensor]:
        """The child's own state dict (copies): what ``arch.build(in_features, out_features)`` loads."""
        return {name: tensor.detach().clone() for name, tensor in self._named(self._cached_path(arch)).items()}

    def _cached_path(self, arch: Architecture) -> object:
        device = next(iter(self.weights.values())).device
        key = (arch, device)
        if key not in self._paths:
            if len(self._paths) >= _MAX_PLANS:
                self._paths.clear()
            self._paths[key] = self._path(self.space.validate(arch), device)
        return self._paths[key]

    def _names(self, base: str, widths: Sequence[int]) -> list[tuple[str, int]]:
        """The tensors of one operation: (name, rows) per width it offers."""
        if self.sharing == "slice":
            return [(base, max(widths))]
        return [(f"{base}_w{width}", width) for width in widths]

    def _specs(self, base: str, widths: Sequence[int], cols: int, window: tuple[int, ...], fan_in: int,
               bias: bool = True) -> Iterator[_Spec]:  # fmt: skip
        """One operation's tensors: per :meth:`_names`, a weight of ``(rows, cols, *window)`` and a bias."""
        for name, rows in self._names(base, widths):
            yield _Spec(name, (rows, cols, *window), fan_in)
            if bias:
                yield _Spec(f"{name}_bias", (rows,), fan_in)

    def _op(self, base: str, width: int, cols: int | torch.Tensor, bias: bool = True) -> _Op:
        """The slices of operation ``base`` that a layer of ``width`` outputs reading ``cols`` uses."""
        if self.sharing == "slice":
            return _Op(base, f"{base}_bias" if bias else None, width, cols)
        name = f"{base}_w{width}"
        return _Op(name, f"{name}_bias" if bias else None, None, cols)

    def _gather(self, sources: tuple[tuple[int, int], ...], device: torch.device) -> int | torch.Tensor:
        """Input columns for (offset, width) blocks: a leading width when they are one leading block."""
        if len(sources) == 1 and sources[0][0] == 0:
            return sources[0][1]
        key = (sources, device)
        if key not in self._indices:
            if len(self._indices) >= _MAX_PLANS:
                self._indices.clear()
            self._indices[key] = torch.cat([torch.arange(o, o + w, device=device) for o, w in sources])
        return self._indices[key]

    def _tensors(self, op: _Op) -> tuple[torch.Tensor, torch.Tensor | None]:
        weight = self.weights[op.weight]
        bias = None if op.bias is None else self.weights[op.bias]
        if op.rows is not None and op.rows < weight.shape[0]:
            weight = weight.narrow(0, 0, op.rows)
            bias = None if bias is None else bias.narrow(0, 0, op.rows)
        if isinstance(op.cols, int):
            weight = weight if op.cols == weight.shape[1] else weight.narrow(1, 0, op.cols)
        else:
            weight = weight.index_select(1, op.cols)
            if self.weights[op.weight].is_contiguous(memory_format=torch.channels_last):
                weight = weight.contiguous(memory_format=torch.channels_last)  # a gather returns the default layout
        return weight, bias


class _MLPPath(NamedTuple):
    layers: tuple[tuple[_Op, nn.Module], ...]
    head: _Op


class MLPSupernet(Supernet):
    """The supernet of an :class:`~archsearch.space.MLPSpace` (see the module's docstring)."""

    def __init__(self, space: MLPSpace, in_features: int, out_features: int, sharing: str = "slice",
                 generator: torch.Generator | None = None) -> None:  # fmt: skip
        super().__init__(space, in_features, out_features, sharing)
        self.widest = max(space.units)
        self._activations = {name: ACTIVATIONS[name]() for name in space.activations}
        self._allocate(generator)

    def _fan_in(self, position: int) -> int:
        return self.in_features if position == 0 else self.widest

    def _layout(self) -> Iterator[_Spec]:
        space = self.space
        assert isinstance(space, MLPSpace)
        for i in range(space.max_layers):
            for activation in space.activations:
                yield from self._specs(f"linear{i}_{activation}", space.units, self._fan_in(i), (), self._fan_in(i))
        for depth in range(space.min_layers, space.max_layers + 1):
            yield from self._head_specs(depth)

    def _head_specs(self, depth: int) -> Iterator[_Spec]:
        yield _Spec(f"head{depth}", (self.out_features, self.widest), self.widest)
        yield _Spec(f"head{depth}_bias", (self.out_features,), self.widest)

    def _path(self, arch: Architecture, device: torch.device) -> _MLPPath:
        assert isinstance(arch, MLPArchitecture)
        layers, previous = [], self.in_features
        for i, (units, activation) in enumerate(arch.layers):
            layers.append((self._op(f"linear{i}_{activation}", units, previous), self._activations[activation]))
            previous = units
        depth = len(arch.layers)
        return _MLPPath(tuple(layers), _Op(f"head{depth}", f"head{depth}_bias", None, previous))

    def _run(self, x: torch.Tensor, path: object) -> torch.Tensor:
        assert isinstance(path, _MLPPath)
        h = x
        for op, activation in path.layers:
            h = activation(F.linear(h, *self._tensors(op)))
        return F.linear(h, *self._tensors(path.head))

    def _named(self, path: object) -> dict[str, torch.Tensor]:
        assert isinstance(path, _MLPPath)
        state: dict[str, torch.Tensor] = {}
        for i, op in enumerate([op for op, _ in path.layers] + [path.head]):
            weight, bias = self._tensors(op)
            state[f"{2 * i}.weight"], state[f"{2 * i}.bias"] = weight, bias  # type: ignore[assignment]
        return state


class _Step(NamedTuple):
    """One CNN layer of a path."""

    op: _Op
    norm: str | None
    stride: int
    padding: int
    pool: bool
    dropout: float
    skips: tuple[int, ...]


class _CNNPath(NamedTuple):
    layers: tuple[_Step, ...]
    head: _Op


class CNNSupernet(Supernet):
    """The supernet of a :class:`~archsearch.space.CNNSpace` (see the module's docstring)."""

    def __init__(self, space: CNNSpace, in_features: int, out_features: int, sharing: str = "slice",
                 generator: torch.Generator | None = None) -> None:  # fmt: skip
        super().__init__(space, in_features, out_features, sharing)
        self.widest = max(space.filters)
        self._allocate(generator)

    def _block(self, position: int) -> int:
        """Width of each input block at ``position``: the image's channels, then the widest layer."""
        return self.in_features if position == 0 else self.widest

    def _blocks(self, position: int) -> int:
        """Input blocks at ``position``: the previous layer, and layers ``0 .. i - 2`` if they may skip to it."""
        space = self.space
        assert isinstance(space, CNNSpace)
        return 1 + (position - 1 if space._has_anchor(position) else 0)

    def _ops(self) -> Iterator[tuple[int, int, int]]:
        space = self.space
        assert isinstance(space, CNNSpace)
        for i in range(space.max_layers):
            for kernel in space.kernels:
                for stride in space.strides:
                    yield i, kernel, stride

    def _layout(self) -> Iterator[_Spec]:
        space = self.space
        assert isinstance(space, CNNSpace)
        for i, k, s in self._ops():
            cols = self._block(i) * self._blocks(i)
            fan_in = self._block(i) * k * k
            yield from self._specs(f"conv{i}_k{k}_s{s}", space.filters, cols, (k, k), fan_in, not space.batch_norm)
        area = HEAD_GRID**2
        for depth in range(space.min_layers, space.max_layers + 1):
            yield _Spec(f"head{depth}", (self.out_features, self.widest * area), self.widest * area)
            yield _Spec(f"head{depth}_bias", (self.out_features,), self.widest * area)

    def _norm_widths(self) -> Iterator[tuple[str, int]]:
        space = self.space
        assert isinstance(space, CNNSpace)
        if space.batch_norm:
            for i, k, s in self._ops():
                yield from ((f"norm{i}_k{k}_s{s}_w{f}", f) for f in space.filters)

    def _path(self, arch: Architecture, device: torch.device) -> _CNNPath:
        assert isinstance(arch, CNNArchitecture)
        steps = []
        for i, layer in enumerate(arch.layers):
            previous = self.in_features if i == 0 else arch.layers[i - 1].filters
            sources = ((0, previous), *(((1 + j) * self.widest, arch.layers[j].filters) for j in layer.skips))
            base = f"conv{i}_k{layer.kernel}_s{layer.stride}"
            op = self._op(base, layer.filters, self._gather(sources, device), not layer.batch_norm)
            norm = f"norm{i}_k{layer.kernel}_s{layer.stride}_w{layer.filters}" if layer.batch_norm else None
            steps.append(
                _Step(op, norm, layer.stride, layer.kernel // 2, layer.pool == "max", layer.dropout, layer.skips)
            )
        depth, area = len(arch.layers), HEAD_GRID**2
        return _CNNPath(tuple(steps), _Op(f"head{depth}", f"head{depth}_bias", None, arch.layers[-1].filters * area))

    def _run(self, x: torch.Tensor, path: object) -> torch.Tensor:
        assert isinstance(path, _CNNPath)
        outputs: list[torch.Tensor] = []
        h = x
        for step in path.layers:
            if step.skips:
                size = h.shape[-2:]
                h = torch.cat([h, *(_resized(outputs[j], size) for j in step.skips)], dim=1)
            h = F.conv2d(h, *self._tensors(step.op), stride=step.stride, padding=step.padding)
            if step.norm is not None:
                h = self.norms[step.norm](h)
            h = F.relu(h)
            if step.pool:
                h = F.max_pool2d(h, 2, ceil_mode=True)
            if step.dropout:
                h = F.dropout(h, step.dropout, self.training)
            outputs.append(h)
        return F.linear(torch.flatten(F.adaptive_avg_pool2d(h, HEAD_GRID), 1), *self._tensors(path.head))

    def _named(self, path: object) -> dict[str, torch.Tensor]:
        assert isinstance(path, _CNNPath)
        convs: dict[str, torch.Tensor] = {}
        norms: dict[str, torch.Tensor] = {}
        for i, step in enumerate(path.layers):
            weight, bias = self._tensors(step.op)
            convs[f"convs.{i}.weight"] = weight
            if bias is not None:
                convs[f"convs.{i}.bias"] = bias
            if step.norm is not None:
                norms.update({f"norms.{i}.{k}": v for k, v in self.norms[step.norm].state_dict().items()})
        weight, bias = self._tensors(path.head)
        return {**convs, **norms, "head.weight": weight, "head.bias": bias}  # type: ignore[dict-item]


def build_supernet(space: SearchSpace, in_features: int, out_features: int, sharing: str = "slice",
                   generator: torch.Generator | None = None) -> Supernet:  # fmt: skip
    """The supernet of ``space`` for inputs of ``in_features`` (image channels for a CNN space) and
    ``out_features`` outputs; its initial weights are a pure function of ``generator``."""
    if isinstance(space, MLPSpace):
        return MLPSupernet(space, in_features, out_features, sharing, generator)
    if isinstance(space, CNNSpace):
        return CNNSupernet(space, in_features, out_features, sharing, generator)
    raise ArchsearchError(f"evaluator: weight sharing supports the mlp and cnn spaces, not {space.kind}")

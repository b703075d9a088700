"""Component spaces: search a formula plugged into a fixed network instead of the network's layout.

- :class:`ActivationSpace`: the grammar of Ramachandran, Zoph & Le, "Searching for Activation
  Functions" (2017). A *core unit* is ``b(u1(x1), u2(x2))`` with ``u1, u2`` among :data:`UNARY`
  and ``b`` among :data:`BINARY`; the first unit reads the pre-activation ``x`` twice, a second
  unit reads the first's output and ``x``. ``beta`` is a trainable scalar per occurrence (per
  layer). Swish is ``x * sigmoid(beta * x)``.
- :class:`UpdateRuleSpace`: the grammar of Bello, Zoph, Vasudevan & Le, "Neural Optimizer Search
  with Reinforcement Learning" (ICML 2017). An update is ``w <- w - lr * b(u1(o1), u2(o2))`` with
  operands :data:`OPERANDS`, unary functions :data:`RULE_UNARY` and binary :data:`RULE_BINARY`; a
  second and third unit read the previous unit's output and one more operand, which is how
  PowerSign, ``exp(sign(g) * sign(m)) * g``, and AddSign, ``(1 + sign(g) * sign(m)) * g``, are
  written.

Both lay their decisions out like the other spaces (a slot per choice, EOS before a unit that is
not there), so every strategy searches them. A member is a formula (:mod:`archsearch.space._formula`)
and the fixed *child* it is trained in: an MLP on feature vectors, or a small CNN on images
(convolutions of 3x3, the second and later with stride 2, then the CNN space's head). The
activation sits after every hidden layer; the update rule trains a ReLU child.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from functools import partial
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from archsearch._limits import MAX_UNITS, integer, known_names
from archsearch.errors import ArchsearchError
from archsearch.space import _formula as f
from archsearch.space._architecture import Architecture
from archsearch.space._base import Decision, SearchSpace, Slot
from archsearch.space._cnn import HEAD_GRID
from archsearch.space._mlp import _shares

CHILDREN = ("mlp", "cnn")
#: the fixed child's hidden widths (MLP units, CNN filters) unless a space says otherwise
DEFAULT_WIDTHS = {"mlp": (64, 64), "cnn": (16, 32)}
MAX_CHILD_LAYERS = 8
ACTIVATION_VARIABLES = frozenset({"x"})
#: the update rule's inputs: gradient, Adam's bias-corrected moments, the weight, noise, and the updates
#: of Adam and RMSProp computed from the same moments
RULE_VARIABLES = frozenset({"g", "m", "v", "w", "noise", "adam", "rmsprop"})
BETA1, BETA2, EPSILON = 0.9, 0.999, 1e-8
NOISE_STD = 0.1  # the noise operand is N(0, 0.01), as Bello et al.'s

# Each choice is written as the formula it stands for, over x (unary) or x1, x2 (binary).
#: Ramachandran et al.'s unary functions (section 3; epsilon 1e-7)
UNARY = (
    "x", "-x", "abs(x)", "x^2", "x^3", "sqrt(x)", "beta * x", "x + beta", "log(abs(x) + 1e-07)", "exp(x)",
    "sin(x)", "cos(x)", "sinh(x)", "cosh(x)", "tanh(x)", "asinh(x)", "atan(x)", "sinc(x)", "max(x, 0)",
    "min(x, 0)", "sigmoid(x)", "softplus(x)", "exp(-x^2)", "erf(x)", "beta",
)  # fmt: skip
#: Ramachandran et al.'s binary functions
BINARY = (
    "x1 + x2", "x1 * x2", "x1 - x2", "x1 / (x2 + 1e-07)", "max(x1, x2)", "min(x1, x2)", "sigmoid(x1) * x2",
    "exp(-beta * (x1 - x2)^2)", "exp(-beta * abs(x1 - x2))", "beta * x1 + (1 - beta) * x2",
)  # fmt: skip
#: Bello et al.'s operands (section 3.1), less the running average of g^3, 1e-2 w, 1e-1 w and the decays
OPERANDS = (
    "g", "g^2", "g^3", "m", "v", "sign(g)", "sign(m)", "1", "2", "noise", "0.0001 * w", "0.001 * w", "adam",
    "rmsprop",
)  # fmt: skip
#: Bello et al.'s unary functions
RULE_UNARY = (
    "x", "-x", "exp(x)", "log(abs(x))", "sqrt(abs(x))", "clip(x, 1e-05)", "clip(x, 0.0001)", "clip(x, 0.001)",
    "drop(x, 0.1)", "drop(x, 0.3)", "drop(x, 0.5)", "sign(x)",
)  # fmt: skip
#: Bello et al.'s binary functions, less x1^x2; keep(x1, x2) is x1 (their "keep left")
RULE_BINARY = ("x1 + x2", "x1 - x2", "x1 * x2", "x1 / (x2 + 1e-08)", "keep(x1, x2)")
MAX_ACTIVATION_UNITS = 2
MAX_RULE_UNITS = 3
#: spaces of at most this many decision sequences count their distinct members exactly (by listing them)
EXACT_SIZE = 20_000
MUTATION_TRIES = 64

_HOLES = frozenset({"x", "x1", "x2"})


def _templates(names: Iterable[str], variables: frozenset[str]) -> dict[str, f.Node]:
    return {name: f.parse(name, variables, "template") for name in names}


_ACTIVATION_TEMPLATES = {**_templates(UNARY, _HOLES), **_templates(BINARY, _HOLES)}
_RULE_TEMPLATES = {**_templates(RULE_UNARY, _HOLES), **_templates(RULE_BINARY, _HOLES),
                   **_templates(OPERANDS, RULE_VARIABLES)}  # fmt: skip
_CANONICAL_OPERANDS = {name: f.canonical(_RULE_TEMPLATES[name]) for name in OPERANDS}


def _substitute(template: f.Node, values: dict[str, f.Node], fresh: int) -> f.Node:
    """``template`` with its holes filled and its beta numbered ``fresh``."""
    if template.op in values and not template.args:
        return values[template.op]
    if template.op == "beta":
        return f.beta(fresh)
    return template._replace(args=tuple(_substitute(arg, values, fresh) for arg in template.args))


def _numbered(node: f.Node) -> f.Node:
    """Betas renumbered in the order they are written (a unit that drops its input drops its betas)."""
    order: dict[int, int] = {}
    for n in f.walk(node):
        if n.op == "beta":
            order.setdefault(int(n.value or 0), len(order))

    def renumber(n: f.Node) -> f.Node:
        if n.op == "beta":
            return f.beta(order[int(n.value or 0)])
        return n._replace(args=tuple(renumber(arg) for arg in n.args))

    return renumber(node)


def _bindings(template: f.Node, tree: f.Node, bound: dict[str, f.Node], loose: bool) -> Iterator[dict[str, f.Node]]:
    """Every way ``tree`` is ``template`` with its holes filled (extending ``bound``), any beta for a beta;
    ``loose`` also lets the operands of ``+ * max min`` come in either order, and ``a - b`` under a square
    or an absolute value, as the normal form writes them."""
    if template.op in _HOLES and not template.args:
        if template.op not in bound:
            yield {**bound, template.op: tree}
        elif bound[template.op] == tree:
            yield bound
        return
    if template.op == "beta":
        if tree.op == "beta":
            yield bound
        return
    if loose and template.op != tree.op:  # the normal form's rewrites, undone
        yield from _unwritten(template, tree, bound)
    if template.op != tree.op or template.value != tree.value or len(template.args) != len(tree.args):
        return
    orders = [tree.args]
    operation = f.OPERATIONS.get(tree.op)
    if loose and operation is not None and operation.commutative:
        orders.append(tree.args[::-1])
    if loose and tree.op in ("square", "abs") and tree.args[0].op == "sub":
        orders.append((tree.args[0]._replace(args=tree.args[0].args[::-1]),))
    for args in orders:
        yield from _all_bindings(template.args, args, bound, loose)


def _unwritten(template: f.Node, tree: f.Node, bound: dict[str, f.Node]) -> Iterator[dict[str, f.Node]]:
    """Bindings of ``template`` to a tree that the normal form rewrote: ``a - (-b)`` to ``a + b``,
    ``a + (-b)`` to ``a - b``, ``--a`` to ``a``, ``keep(a, b)`` to ``a``."""
    neg = partial(f.apply, "neg")
    if template.op == "sub" and tree.op == "add":
        a, b = tree.args
        for args in ((a, neg(b)), (b, neg(a))):
            yield from _all_bindings(template.args, args, bound, True)
    elif template.op == "add" and tree.op == "sub":
        a, b = tree.args
        for args in ((a, neg(b)), (neg(b), a)):
            yield from _all_bindings(template.args, args, bound, True)
    elif template.op == "neg" and tree.op != "neg":
        yield from _bindings(template.args[0], neg(tree), bound, True)
    elif template.op == "keep":  # keep(a, b) is a: b is any
        yield from _bindings(template.args[0], tree, bound, True)


def _all_bindings(
    templates: Sequence[f.Node], trees: Sequence[f.Node], bound: dict[str, f.Node], loose: bool
) -> Iterator[dict[str, f.Node]]:
    if not templates:
        yield bound
        return
    for first in _bindings(templates[0], trees[0], bound, loose):
        yield from _all_bindings(templates[1:], trees[1:], first, loose)


# -- networks --------------------------------------------------------------------------------------------


class FormulaActivation(nn.Module):
    """An activation function computed by a formula over ``x``, with its own trainable betas (from 1)."""

    def __init__(self, formula: f.Node) -> None:
        super().__init__()
        self.formula = formula
        count = f.betas(formula)
        self.beta = nn.Parameter(torch.ones(count)) if count else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = f.evaluate(self.formula, {"x": x}, self.beta if self.beta is not None else ())
        return out if out.shape == x.shape else out.expand_as(x)  # a formula without x is a constant

    def extra_repr(self) -> str:
        return f.to_text(self.formula)


class ComponentNet(nn.Module):
    """The fixed child a component is plugged into: hidden layers of ``widths`` (linear layers, or 3x3
    convolutions, the first with stride 1 and the rest with stride 2, padding 1), each followed by its
    own ``activation()``, then a linear head (on images after average pooling to 4x4)."""

    def __init__(
        self, child: str, widths: Sequence[int], in_features: int, out_features: int,
        activation: Callable[[], nn.Module],
    ) -> None:  # fmt: skip
        super().__init__()
        self.child = child
        sizes = (in_features, *widths)
        if child == "mlp":
            self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(sizes))
            self.head = nn.Linear(widths[-1], out_features)
        else:
            self.layers = nn.ModuleList(
                nn.Conv2d(a, b, 3, stride=1 if i == 0 else 2, padding=1)
                for i, (a, b) in enumerate(itertools.pairwise(sizes))
            )
            self.head = nn.Linear(widths[-1] * HEAD_GRID**2, out_features)
        self.activations = nn.ModuleList(activation() for _ in widths)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer, activation in zip(self.layers, self.activations):
            x = activation(layer(x))
        if self.child == "cnn":
            x = torch.flatten(nn.functional.adaptive_avg_pool2d(x, HEAD_GRID), 1)
        return self.head(x)

    def initialise(self, generator: torch.Generator) -> None:
        """Every weight and bias U(-1/sqrt(fan_in), 1/sqrt(fan_in)) from ``generator``, layer by layer."""
        with torch.no_grad():
            for module in (*self.layers, self.head):
                bound = 1.0 / math.sqrt(module.weight[0].numel())
                for tensor in (module.weight, module.bias):
                    tensor.copy_((torch.rand(tensor.shape, generator=generator) * 2 - 1) * bound)


class FormulaOptimizer(torch.optim.Optimizer):
    """The update rule ``w <- w - lr * formula``, the formula over ``g`` (the gradient, plus
    ``weight_decay * w`` as Adam adds it), ``m`` and ``v`` (Adam's bias-corrected moments, betas 0.9
    and 0.999), ``w``, ``noise`` (N(0, 0.01)), ``adam`` (``m / (sqrt(v) + 1e-8)``) and ``rmsprop``
    (``g / (sqrt(v) + 1e-8)``). Its noise and dropout masks draw from a generator seeded by ``seed``."""

    def __init__(
        self, params: Iterable[Any], formula: f.Node, lr: float, weight_decay: float = 0.0, seed: int = 0
    ) -> None:
        super().__init__(params, {"lr": lr, "weight_decay": weight_decay})
        self.formula = formula
        self.needs = {n.op for n in f.walk(formula) if not n.args}
        self.generator = torch.Generator().manual_seed(int(seed))

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad if not group["weight_decay"] else p.grad.add(p, alpha=group["weight_decay"])
                state = self.state[p]
                if not state:
                    state.update(step=0, m=torch.zeros_like(p), v=torch.zeros_like(p))
                state["step"] += 1
                t = state["step"]
                state["m"].mul_(BETA1).add_(g, alpha=1 - BETA1)
                state["v"].mul_(BETA2).addcmul_(g, g, value=1 - BETA2)
                m, v = state["m"] / (1 - BETA1**t), state["v"] / (1 - BETA2**t)
                inputs = {"g": g, "m": m, "v": v, "w": p}
                if "adam" in self.needs or "rmsprop" in self.needs:
                    root = v.sqrt().add_(EPSILON)
                    inputs.update(adam=m / root, rmsprop=g / root)
                if "noise" in self.needs:
                    inputs["noise"] = (torch.randn(p.shape, generator=self.generator) * NOISE_STD).to(p)
                delta = f.evaluate(self.formula, inputs, generator=self.generator)
                p.sub_(delta.expand_as(p) * group["lr"])
        return loss


# -- architectures ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ComponentArchitecture(Architecture):
    """A formula and the fixed child it is trained in. ``str()`` is the formula's normal form."""

    variables: ClassVar[frozenset[str]]
    betas: ClassVar[bool] = False  # whether the formula may have trainable betas
    formula: f.Node
    child: str = "mlp"
    widths: tuple[int, ...] = DEFAULT_WIDTHS["mlp"]

    def __post_init__(self) -> None:
        if self.child not in CHILDREN:
            raise ArchsearchError(f"architecture: child must be one of {', '.join(CHILDREN)}, got {self.child!r}")
        object.__setattr__(self, "widths", _widths("architecture.widths", self.widths))
        if not isinstance(self.formula, f.Node):
            raise ArchsearchError(f"architecture: formula must be a formula tree, got {type(self.formula).__name__}")
        unknown = sorted({n.op for n in f.walk(self.formula) if not n.args} - self.variables - {"const"}
                         - ({"beta"} if self.betas else set()))  # fmt: skip
        if unknown:
            raise ArchsearchError(f"architecture: unknown variable {unknown[0]!r} in {self.kind} formula "
                                  f"(known: {', '.join(sorted(self.variables))})")  # fmt: skip
        f.check(self.formula, "architecture.formula")

    @classmethod
    def parse(cls, text: str, child: str = "mlp", widths: Sequence[int] | None = None, where: str = "formula") -> Any:
        """The member that ``text`` writes, in ``child`` (``widths`` default to the child's)."""
        formula = f.parse(text, cls.variables, where, cls.betas)
        return cls(formula, child, tuple(widths or DEFAULT_WIDTHS.get(child, DEFAULT_WIDTHS["mlp"])))

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "formula": f.to_text(self.formula), "child": self.child, "widths": list(self.widths)}

    @classmethod
    def _from_dict(cls, data: dict[str, Any]) -> Architecture:
        unknown = sorted(set(data) - {"kind", "formula", "child", "widths"})
        if unknown or "formula" not in data:
            raise ArchsearchError(
                f"architecture: malformed {cls.kind} ({'unknown field ' + repr(unknown[0]) if unknown else 'no formula'})"
            )
        widths = data.get("widths", DEFAULT_WIDTHS["mlp"])
        if not isinstance(widths, list | tuple):
            raise ArchsearchError(f"architecture.widths: expected a list of integers, got {widths!r:.60}")
        formula = f.parse(data["formula"], cls.variables, "architecture.formula", cls.betas)
        return cls(formula, data.get("child", "mlp"), tuple(widths))

    def __str__(self) -> str:
        return f.to_text(f.canonical(self.formula))

    def canonical(self) -> Architecture:
        return replace(self, formula=f.canonical(self.formula))

    def num_params(self, in_features: int, out_features: int) -> int:
        with torch.device("meta"):
            return sum(p.numel() for p in self.build(in_features, out_features).parameters())

    def _activation(self) -> Callable[[], nn.Module]:
        return nn.ReLU

    def build(self, in_features: int, out_features: int, generator: torch.Generator | None = None) -> nn.Module:
        net = ComponentNet(self.child, self.widths, in_features, out_features, self._activation())
        if generator is not None:
            net.initialise(generator)
        return net

    def code(self, names: dict[str, str] | None = None) -> str:
        """The formula as Python over ``torch``, for export's model.py."""
        return f.to_code(self.formula, names or {v: v for v in self.variables})


class ActivationArchitecture(ComponentArchitecture):
    """An activation function (a formula over ``x``) in the fixed child."""

    kind: ClassVar[str] = "activation"
    variables: ClassVar[frozenset[str]] = ACTIVATION_VARIABLES
    betas: ClassVar[bool] = True

    def _activation(self) -> Callable[[], nn.Module]:
        return lambda: FormulaActivation(self.formula)


class UpdateRuleArchitecture(ComponentArchitecture):
    """An optimizer update rule (a formula over :data:`RULE_VARIABLES`) that trains the ReLU child."""

    kind: ClassVar[str] = "update-rule"
    variables: ClassVar[frozenset[str]] = RULE_VARIABLES

    def optimizer(self, params: Iterable[Any], lr: float, weight_decay: float, seed: int) -> torch.optim.Optimizer:
        return FormulaOptimizer(params, self.formula, lr, weight_decay, seed)


def _widths(where: str, widths: Any) -> tuple[int, ...]:
    if isinstance(widths, str) or not isinstance(widths, Sequence) or not 1 <= len(widths) <= MAX_CHILD_LAYERS:
        raise ArchsearchError(f"{where}: expected 1 to {MAX_CHILD_LAYERS} layer widths, got {widths!r:.60}")
    return tuple(integer(where, w, 1, MAX_UNITS) for w in widths)


# -- spaces -------------------------------------------------------------------------------------------


class _ComponentSpace(SearchSpace):
    """What the two grammars share: the child, units that EOS may end, sampling, mutation and counting."""

    architecture: ClassVar[type[ComponentArchitecture]]
    max_units: ClassVar[int]
    templates: ClassVar[dict[str, f.Node]]
    _first: tuple[int, ...]  # the decisions of the first unit's slots
    _more: tuple[int, ...]  # those of each later unit's slots

    def _setup(self, child: str, widths: Sequence[int] | None, units: int) -> None:
        if child not in CHILDREN:
            raise ArchsearchError(f"space.child: must be one of {', '.join(CHILDREN)}, got {child!r:.60}")
        self.child = child
        self.widths = _widths("space.widths", DEFAULT_WIDTHS[child] if widths is None else widths)
        self.units = integer("space.units", units, 1, self.max_units)
        self._size: int | None = None
        slots = [Slot(d, eos=False) for d in self._first]
        for _ in range(self.units - 1):
            slots += [Slot(d, eos=i == 0) for i, d in enumerate(self._more)]
        self._slots = tuple(slots)

    def _names(self, where: str, given: Sequence[str] | None, known: Sequence[str]) -> tuple[str, ...]:
        return tuple(known) if given is None else known_names(where, given, known)

    def _config(self) -> dict[str, Any]:
        return {"kind": self.kind, "child": self.child, "widths": list(self.widths), "units": self.units}

    def _unit_count(self, tokens: Sequence[int]) -> int:
        return 1 + (len(tokens) - len(self._first)) // len(self._more)

    def _choices(self, decision: int) -> tuple[str, ...]:
        return tuple(self._decisions[decision].choices)

    def _template(self, decision: int, token: int) -> f.Node:
        return self.templates[self._choices(decision)[token]]

    @staticmethod
    def _combine(binary: f.Node, left: f.Node, right: f.Node, fresh: int) -> f.Node:
        return _substitute(binary, {"x1": left, "x2": right}, fresh)

    def decode(self, tokens: Sequence[int]) -> ComponentArchitecture:
        chosen = self.check_tokens(tokens)
        if len(chosen) < len(self._first) or (len(chosen) - len(self._first)) % len(self._more):
            raise ArchsearchError(f"{self}: tokens end inside a unit")
        return self.architecture(_numbered(self._tree(chosen)), self.child, self.widths)

    def encode(self, arch: Architecture) -> list[int]:
        if not isinstance(arch, self.architecture):
            raise ArchsearchError(f"{self}: expected an {self.architecture.kind} architecture, got kind {arch.kind!r}")
        if (arch.child, arch.widths) != (self.child, self.widths):
            raise ArchsearchError(f"{arch}: its child {arch.child} {list(arch.widths)} is not this space's "
                                  f"{self.child} {list(self.widths)}")  # fmt: skip
        for loose in (False, True):  # as the grammar writes it; else with operands in another order
            for units in range(1, self.units + 1):
                for tokens in self._matches(arch.formula, units, loose):
                    member = self.decode(self._ended(tokens))
                    if member == arch or (loose and member.canonical() == arch.canonical()):
                        return self._ended(tokens)
        raise ArchsearchError(f"{arch}: not a formula of {self}")

    def validate(self, arch: Architecture) -> ComponentArchitecture:
        """The member that ``arch`` writes: as the grammar writes it, or with the operands of commutative
        operations in another order (as ``str()`` prints a member); :class:`ArchsearchError` otherwise."""
        return self.decode(self.encode(arch))

    def _ended(self, tokens: list[int]) -> list[int]:
        if self._unit_count(tokens) < self.units:
            return [*tokens, self._decisions[self._more[0]].eos_token]
        return tokens

    def _choice_matches(self, decision: int, tree: f.Node, loose: bool) -> Iterator[tuple[int, dict[str, f.Node]]]:
        for token in range(len(self._choices(decision))):
            for bound in _bindings(self._template(decision, token), tree, {}, loose):
                yield token, bound

    def _tree(self, chosen: Sequence[int]) -> f.Node: ...

    def _matches(self, tree: f.Node, units: int, loose: bool) -> Iterator[list[int]]: ...

    def _unit_size(self, first: bool) -> int:
        return math.prod(len(self._choices(d)) for d in (self._first if first else self._more))

    def _counts(self) -> list[int]:
        """How many decision sequences write formulas of 1, 2, ... units (several may write one formula)."""
        return [self._unit_size(True) * self._unit_size(False) ** (k - 1) for k in range(1, self.units + 1)]

    def _schedule(self, units: int) -> tuple[Slot, ...]:
        """The slots of a formula of ``units`` units."""
        return self._slots[: len(self._first) + (units - 1) * len(self._more)]

    def size(self) -> int:
        """The distinct members (formulas as the grammar writes them), counted by listing them when the
        space has at most ``EXACT_SIZE`` decision sequences; above that, the number of sequences, an upper
        bound (a few sequences in a thousand write a formula that another also writes)."""
        sequences = sum(self._counts())
        if sequences > EXACT_SIZE:
            return sequences
        if self._size is None:
            self._size = sum(1 for _ in self.enumerate())
        return self._size

    def enumerate(self) -> Iterator[ComponentArchitecture]:
        """Every member once (decision sequences that write the same formula give it once)."""
        seen: set[ComponentArchitecture] = set()
        for k in range(1, self.units + 1):
            ranges = [range(len(self._choices(s.decision))) for s in self._schedule(k)]
            for tokens in itertools.product(*ranges):
                member = self.decode(self._ended(list(tokens)))
                if member not in seen:
                    seen.add(member)
                    yield member

    def sample(self, rng: np.random.Generator) -> ComponentArchitecture:
        """A uniform draw over the decision sequences (as the controller's first draws are): a formula that
        several sequences write is that much likelier."""
        counts = self._counts()
        units = 1 + int(rng.choice(len(counts), p=_shares(counts)))
        tokens = [int(rng.integers(len(self._choices(s.decision)))) for s in self._schedule(units)]
        return self.decode(self._ended(tokens))

    def mutate(self, arch: Architecture, rng: np.random.Generator) -> ComponentArchitecture:
        """Change one choice, or add a random unit at the end, or remove the last unit: a move drawn among
        those the member allows, redrawn (up to ``MUTATION_TRIES`` times) until the formula differs."""
        member = self.validate(arch)
        tokens = self.encode(member)
        if self._unit_count(tokens) < self.units:
            tokens = tokens[:-1]
        units = self._unit_count(tokens)
        positions = [i for i in range(len(tokens)) if len(self._choices(self._slots[i].decision)) > 1]
        moves = (["choice"] if positions else []) + (["add"] if units < self.units else []) + (
            ["remove"] if units > 1 else [])  # fmt: skip
        if not moves:
            raise ArchsearchError(f"{self}: every choice is fixed; nothing to mutate")
        for _ in range(MUTATION_TRIES):
            mutated = self.decode(self._ended(self._moved(list(tokens), moves, positions, rng)))
            if mutated != member:
                return mutated
        raise ArchsearchError(f"{self}: no move changes {member}")

    def _moved(self, tokens: list[int], moves: list[str], positions: list[int], rng: np.random.Generator) -> list[int]:
        move = moves[int(rng.integers(len(moves)))]
        if move == "add":
            return tokens + [int(rng.integers(len(self._choices(d)))) for d in self._more]
        if move == "remove":
            return tokens[: -len(self._more)]
        i = positions[int(rng.integers(len(positions)))]
        others = [t for t in range(len(self._choices(self._slots[i].decision))) if t != tokens[i]]
        tokens[i] = others[int(rng.integers(len(others)))]
        return tokens


class ActivationSpace(_ComponentSpace):
    """Activation functions of one or two core units (Ramachandran et al. 2017), in a fixed child.

    Slots: ``u1, u2, b`` for the unit ``b(u1(x), u2(x))``; then, unless EOS ends the function,
    ``u3, u4, b2`` for ``b2(u3(unit1), u4(x))``. ``unary`` and ``binary`` narrow the choices."""

    kind = "activation"
    architecture = ActivationArchitecture
    max_units = MAX_ACTIVATION_UNITS
    templates = _ACTIVATION_TEMPLATES
    _first = (0, 0, 1)
    _more = (0, 0, 1)

    def __init__(
        self, child: str = "mlp", widths: Sequence[int] | None = None, units: int = 2,
        unary: Sequence[str] | None = None, binary: Sequence[str] | None = None,
    ) -> None:  # fmt: skip
        self.unary = self._names("space.unary", unary, UNARY)
        self.binary = self._names("space.binary", binary, BINARY)
        self._decisions = (Decision("unary", self.unary), Decision("binary", self.binary))
        self._setup(child, widths, units)

    def to_config(self) -> dict[str, Any]:
        return {**self._config(), "unary": list(self.unary), "binary": list(self.binary)}

    def _tree(self, chosen: Sequence[int]) -> f.Node:
        x = f.variable("x")
        tree: f.Node | None = None
        for unit, start in enumerate(range(0, len(chosen), 3)):
            u1, u2, b = chosen[start : start + 3]
            left = _substitute(self._template(0, u1), {"x": x if tree is None else tree}, 3 * unit)
            right = _substitute(self._template(0, u2), {"x": x}, 3 * unit + 1)
            tree = self._combine(self._template(1, b), left, right, 3 * unit + 2)
        assert tree is not None
        return tree

    def _matches(self, tree: f.Node, units: int, loose: bool) -> Iterator[list[int]]:
        x = f.variable("x")
        for b, bound in self._choice_matches(1, tree, loose):
            for u2, right in self._choice_matches(0, bound.get("x2", x), loose):
                if right.get("x", x) != x:
                    continue
                for u1, left in self._choice_matches(0, bound.get("x1", x), loose):
                    inner = left.get("x", x)
                    if units == 1:
                        if inner == x:
                            yield [u1, u2, b]
                    elif "x" in left:
                        for head in self._matches(inner, units - 1, loose):
                            yield [*head, u1, u2, b]


class UpdateRuleSpace(_ComponentSpace):
    """Update rules of one to three units (Bello et al. 2017) that train a fixed ReLU child.

    Slots: ``o1, o2, u1, u2, b`` for ``b(u1(o1), u2(o2))``; then per further unit, unless EOS ends
    the rule, ``o, u1, u2, b`` for ``b(u1(previous unit), u2(o))``."""

    kind = "update-rule"
    architecture = UpdateRuleArchitecture
    max_units = MAX_RULE_UNITS
    templates = _RULE_TEMPLATES
    _first = (0, 0, 1, 1, 2)
    _more = (0, 1, 1, 2)

    def __init__(
        self, child: str = "mlp", widths: Sequence[int] | None = None, units: int = 3,
        operands: Sequence[str] | None = None, unary: Sequence[str] | None = None,
        binary: Sequence[str] | None = None,
    ) -> None:  # fmt: skip
        self.operands = self._names("space.operands", operands, OPERANDS)
        self.unary = self._names("space.unary", unary, RULE_UNARY)
        self.binary = self._names("space.binary", binary, RULE_BINARY)
        self._decisions = (Decision("operand", self.operands), Decision("unary", self.unary),
                           Decision("binary", self.binary))  # fmt: skip
        self._setup(child, widths, units)

    def to_config(self) -> dict[str, Any]:
        return {
            **self._config(),
            "operands": list(self.operands),
            "unary": list(self.unary),
            "binary": list(self.binary),
        }

    def _tree(self, chosen: Sequence[int]) -> f.Node:
        o1, o2, u1, u2, b = chosen[:5]
        tree = self._combine(
            self._template(2, b),
            _substitute(self._template(1, u1), {"x": self._template(0, o1)}, 0),
            _substitute(self._template(1, u2), {"x": self._template(0, o2)}, 0),
            0,
        )
        for start in range(5, len(chosen), 4):
            o, u1, u2, b = chosen[start : start + 4]
            left = _substitute(self._template(1, u1), {"x": tree}, 0)
            right = _substitute(self._template(1, u2), {"x": self._template(0, o)}, 0)
            tree = self._combine(self._template(2, b), left, right, 0)
        return tree

    def _operand(self, tree: f.Node) -> Iterator[int]:
        for token, name in enumerate(self.operands):
            if self.templates[name] == tree or _CANONICAL_OPERANDS[name] == f.canonical(tree):
                yield token

    def _matches(self, tree: f.Node, units: int, loose: bool) -> Iterator[list[int]]:
        for b, bound in self._choice_matches(2, tree, loose):
            if "x1" not in bound:
                continue
            if "x2" not in bound:  # keep(x1, x2) whose right side the normal form dropped: any will do
                bound = {**bound, "x2": self._template(0, 0)}
            for u2, right in self._choice_matches(1, bound["x2"], loose):
                if "x" not in right:
                    continue
                for o2 in self._operand(right["x"]):
                    for u1, left in self._choice_matches(1, bound["x1"], loose):
                        if "x" not in left:
                            continue
                        if units == 1:
                            for o1 in self._operand(left["x"]):
                                yield [o1, o2, u1, u2, b]
                        else:
                            for head in self._matches(left["x"], units - 1, loose):
                                yield [*head, o2, u1, u2, b]

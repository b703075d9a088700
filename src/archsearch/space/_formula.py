"""Formulas: the members of component spaces (activation functions, optimizer update rules).

A formula is a tree of :class:`Node` over a fixed table of operations (:data:`OPERATIONS`). It is
written and read as plain mathematics (``x * sigmoid(beta * x)``, ``exp(sign(g) * sign(m)) * g``):
:func:`parse` reads that text with a small recursive-descent parser that knows only the table's
names, and :func:`evaluate` computes a tree with the table's torch functions. Nothing is ever
compiled by ``eval``: a formula from a study file or a user is data, and an unknown name, a formula
too long or too deep is one :class:`~archsearch.errors.ArchsearchError` line.

:func:`canonical` rewrites a tree into a normal form, so that formulas that compute the same thing
by the same operations (``x * sigmoid(x)`` and ``sigmoid(x) * x``; ``a - (-b)`` and ``a + b``) are one
architecture. ``beta`` is a trainable scalar; a formula with several writes them ``beta1``, ``beta2``...
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch

from archsearch.errors import ArchsearchError, short

#: the deepest formula accepted (a leaf has depth 1) and the most nodes: the grammars' deepest members
#: are well within both; a deeper one from a file or a user is refused before it is computed
MAX_DEPTH = 32
MAX_NODES = 256
MAX_TEXT = 4000

Tensor = torch.Tensor


class Node(NamedTuple):
    """One operation of a formula and its operands. A leaf is a variable (``args == ()``), ``beta``
    (``value`` its index) or a constant (``op == "const"``, ``value`` the number)."""

    op: str
    args: tuple[Node, ...] = ()
    value: float | None = None

    def __str__(self) -> str:
        return to_text(self)


@dataclass(frozen=True)
class Operation:
    """A name of the formula language: how many operands, what it computes, how it prints."""

    arity: int
    compute: Callable[..., Tensor]
    infix: str | None = None  # "+", "-", "*", "/": printed between its operands
    commutative: bool = False
    code: str = ""  # Python source over torch with {0}, {1} for the operands (export's model.py)


def _sinc(a: Tensor) -> Tensor:
    return torch.sinc(a / math.pi)  # torch's sinc is sin(pi x) / (pi x); the grammars' is sin(x) / x


def _clip(a: Tensor, bound: Tensor) -> Tensor:
    return torch.maximum(torch.minimum(a, bound), -bound)


OPERATIONS: dict[str, Operation] = {
    "add": Operation(2, torch.add, "+", True, "({0} + {1})"),
    "sub": Operation(2, torch.sub, "-", False, "({0} - {1})"),
    "mul": Operation(2, torch.mul, "*", True, "({0} * {1})"),
    "div": Operation(2, torch.div, "/", False, "({0} / {1})"),
    "neg": Operation(1, torch.neg, code="(-{0})"),
    "square": Operation(1, torch.square, code="torch.square({0})"),
    "cube": Operation(1, lambda a: a * a * a, code="torch.pow({0}, 3)"),
    "abs": Operation(1, torch.abs, code="torch.abs({0})"),
    "sqrt": Operation(1, torch.sqrt, code="torch.sqrt({0})"),
    "exp": Operation(1, torch.exp, code="torch.exp({0})"),
    "log": Operation(1, torch.log, code="torch.log({0})"),
    "sin": Operation(1, torch.sin, code="torch.sin({0})"),
    "cos": Operation(1, torch.cos, code="torch.cos({0})"),
    "sinh": Operation(1, torch.sinh, code="torch.sinh({0})"),
    "cosh": Operation(1, torch.cosh, code="torch.cosh({0})"),
    "tanh": Operation(1, torch.tanh, code="torch.tanh({0})"),
    "asinh": Operation(1, torch.asinh, code="torch.asinh({0})"),
    "atan": Operation(1, torch.atan, code="torch.atan({0})"),
    "sinc": Operation(1, _sinc, code="torch.sinc({0} / 3.141592653589793)"),
    "sigmoid": Operation(1, torch.sigmoid, code="torch.sigmoid({0})"),
    "softplus": Operation(1, torch.nn.functional.softplus, code="F.softplus({0})"),
    "erf": Operation(1, torch.erf, code="torch.erf({0})"),
    "sign": Operation(1, torch.sign, code="torch.sign({0})"),
    "max": Operation(2, torch.maximum, commutative=True, code="torch.maximum({0}, {1})"),
    "min": Operation(2, torch.minimum, commutative=True, code="torch.minimum({0}, {1})"),
    "clip": Operation(2, _clip, code="torch.clamp({0}, -{1}, {1})"),
    # drop and keep are computed by evaluate() itself (drop needs the generator, keep ignores its right)
    "drop": Operation(2, torch.mul, code="({0} * (torch.rand_like({0}) >= {1}))"),
    "keep": Operation(2, lambda a, b: a, code="{0}"),
}
_PRECEDENCE = {"+": 1, "-": 1, "*": 2, "/": 2}
_NEG, _POWER, _ATOM = 3, 4, 5
_POWERS = {"square": 2, "cube": 3}


def variable(name: str) -> Node:
    return Node(name)


def const(value: float) -> Node:
    return Node("const", (), float(value))


def beta(index: int = 0) -> Node:
    return Node("beta", (), float(index))


def apply(op: str, *args: Node) -> Node:
    return Node(op, tuple(args))


# -- text ------------------------------------------------------------------------------------------


def _number(value: float) -> str:
    return str(int(value)) if value == int(value) and abs(value) < 1e15 else repr(value)


def _precedence(node: Node) -> int:
    operation = OPERATIONS.get(node.op)
    if operation is not None and operation.infix:
        return _PRECEDENCE[operation.infix]
    if node.op == "neg":
        return _NEG
    if node.op in _POWERS:
        return _POWER
    return _ATOM


def to_text(node: Node) -> str:
    """The formula as mathematics that :func:`parse` reads back to the same tree."""
    betas = max((int(n.value or 0) for n in walk(node) if n.op == "beta"), default=0)

    def text(n: Node) -> str:
        if n.op == "const":
            return _number(float(n.value or 0.0))
        if n.op == "beta":
            return "beta" if betas == 0 else f"beta{int(n.value or 0) + 1}"
        if not n.args:
            return n.op
        operation = OPERATIONS[n.op]
        if operation.infix:
            left, right = n.args
            own = _PRECEDENCE[operation.infix]
            a = text(left) if _precedence(left) >= own else f"({text(left)})"
            b = text(right) if _precedence(right) > own and right.op != "neg" else f"({text(right)})"
            return f"{a} {operation.infix} {b}"
        if n.op == "neg":
            inner = n.args[0]
            return f"-{text(inner)}" if _precedence(inner) > _NEG else f"-({text(inner)})"
        if n.op in _POWERS:
            inner = n.args[0]
            body = text(inner) if _precedence(inner) == _ATOM else f"({text(inner)})"
            return f"{body}^{_POWERS[n.op]}"
        return f"{n.op}({', '.join(text(arg) for arg in n.args)})"

    return text(node)


_TOKEN = re.compile(r"\s*(?:(\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)|([A-Za-z_][A-Za-z_0-9]*)|(\S))")


class _Parser:
    """Recursive descent over ``+ -`` < ``* /`` < unary ``-`` < ``^2 ^3`` < names, numbers, calls."""

    def __init__(self, text: str, variables: frozenset[str], where: str, betas: bool = True) -> None:
        self.where, self.variables, self.text, self.betas = where, variables, text, betas
        self.tokens: list[tuple[str, str]] = []
        position = 0
        while position < len(text):
            match = _TOKEN.match(text, position)
            if match is None:  # only trailing space is left
                break
            number, name, symbol = match.groups()
            if number is not None:
                self.tokens.append(("number", number))
            elif name is not None:
                self.tokens.append(("name", name))
            elif symbol is not None:
                if symbol not in "+-*/^(),":
                    self.fail(f"unexpected character {symbol!r}")
                self.tokens.append(("symbol", symbol))
            position = match.end()
        self.position = 0
        self.depth = 0

    def fail(self, why: str) -> None:
        raise ArchsearchError(f"{self.where}: {why} in {short(repr(self.text))}")

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.position] if self.position < len(self.tokens) else None

    def take(self, symbol: str | None = None) -> tuple[str, str]:
        token = self.peek()
        if token is None:
            self.fail("unexpected end" + (f", expected {symbol!r}" if symbol else ""))
        assert token is not None
        if symbol is not None and token != ("symbol", symbol):
            self.fail(f"expected {symbol!r}, got {token[1]!r}")
        self.position += 1
        return token

    def nested(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            self.fail(f"formula too deep (more than {MAX_DEPTH} levels)")

    def formula(self) -> Node:
        node = self.sum()
        if self.peek() is not None:
            self.fail(f"unexpected {self.peek()[1]!r}")  # type: ignore[index]
        return node

    def sum(self) -> Node:
        self.nested()
        node = self.product()
        while self.peek() in (("symbol", "+"), ("symbol", "-")):
            op = "add" if self.take()[1] == "+" else "sub"
            node = apply(op, node, self.product())
        self.depth -= 1
        return node

    def product(self) -> Node:
        node = self.unary()
        while self.peek() in (("symbol", "*"), ("symbol", "/")):
            op = "mul" if self.take()[1] == "*" else "div"
            node = apply(op, node, self.unary())
        return node

    def unary(self) -> Node:
        if self.peek() == ("symbol", "-"):
            self.take()
            self.nested()
            node = apply("neg", self.unary())
            self.depth -= 1
            return node
        return self.power()

    def power(self) -> Node:
        node = self.atom()
        while self.peek() == ("symbol", "^"):
            self.take()
            kind, exponent = self.take()
            if kind != "number" or exponent not in ("2", "3"):
                self.fail(f"only the powers ^2 and ^3 are known, got ^{exponent}")
            node = apply("square" if exponent == "2" else "cube", node)
        return node

    def atom(self) -> Node:
        kind, token = self.take()
        if kind == "number":
            value = float(token)
            if not math.isfinite(value):
                self.fail(f"the number {token} is not finite")
            return const(value)
        if kind == "symbol":
            if token != "(":
                self.fail(f"unexpected {token!r}")
            node = self.sum()
            self.take(")")
            return node
        if token in self.variables:
            return variable(token)
        found = re.fullmatch(r"beta([1-9][0-9]?)?", token) if self.betas else None
        if found:
            return beta(int(found.group(1)) - 1 if found.group(1) else 0)
        operation = OPERATIONS.get(token)
        if operation is None or operation.infix:
            known = ", ".join(sorted(name for name, op in OPERATIONS.items() if not op.infix))
            variables = ", ".join([*sorted(self.variables), *(["beta"] if self.betas else [])])
            self.fail(f"unknown operation or variable {token!r} (operations: {known}; variables: {variables})")
        assert operation is not None
        self.take("(")
        args = [self.sum()]
        while self.peek() == ("symbol", ","):
            self.take()
            args.append(self.sum())
        self.take(")")
        if len(args) != operation.arity:
            self.fail(f"{token} takes {operation.arity} operand{'s' if operation.arity > 1 else ''}, got {len(args)}")
        if token in ("clip", "drop") and args[1].op != "const":
            self.fail(f"{token}'s second operand must be a number")
        return apply(token, *args)


def parse(text: str, variables: frozenset[str] | set[str], where: str = "formula", betas: bool = True) -> Node:
    """The tree that ``text`` writes; :class:`ArchsearchError` naming ``where`` unless it is a formula
    over ``variables`` (and ``beta`` if ``betas``) and the table's operations, at most ``MAX_DEPTH`` deep
    and ``MAX_NODES`` big."""
    if not isinstance(text, str):
        raise ArchsearchError(f"{where}: expected a formula as text, got {short(repr(text))}")
    if len(text) > MAX_TEXT:
        raise ArchsearchError(f"{where}: formula of {len(text)} characters; at most {MAX_TEXT}")
    if not text.strip():
        raise ArchsearchError(f"{where}: empty formula")
    node = _Parser(text, frozenset(variables), where, betas).formula()
    check(node, where)
    return node


def walk(node: Node) -> Iterator[Node]:
    """Every node of the tree, each before its operands."""
    stack = [node]
    while stack:
        current = stack.pop()
        yield current
        stack.extend(reversed(current.args))


def depth(node: Node) -> int:
    return 1 + max((depth(arg) for arg in node.args), default=0)


def check(node: Node, where: str = "formula") -> None:
    """Refuse a tree over the size limits or with a ``beta`` numbered past the formula's count."""
    nodes = sum(1 for _ in walk(node))
    if nodes > MAX_NODES:
        raise ArchsearchError(f"{where}: formula of {nodes} operations; at most {MAX_NODES}")
    if depth(node) > MAX_DEPTH:
        raise ArchsearchError(f"{where}: formula too deep ({depth(node)} levels; at most {MAX_DEPTH})")
    for n in walk(node):
        arity = 0 if n.op in ("const", "beta") or n.op not in OPERATIONS else OPERATIONS[n.op].arity
        if len(n.args) != arity:
            raise ArchsearchError(f"{where}: {n.op} takes {arity} operands, got {len(n.args)}")
        if n.op == "const" and not (n.value is not None and math.isfinite(n.value) and n.value >= 0):
            raise ArchsearchError(f"{where}: a number must be finite and not negative (write -c), got {n.value}")
        if n.op in ("clip", "drop") and n.args[1].op != "const":
            raise ArchsearchError(f"{where}: {n.op}'s second operand must be a number")
    indices = sorted({int(n.value or 0) for n in walk(node) if n.op == "beta"})
    if indices != list(range(len(indices))):
        raise ArchsearchError(f"{where}: betas must be numbered from 1 without gaps, got "
                              f"{', '.join(f'beta{i + 1}' for i in indices)}")  # fmt: skip


def betas(node: Node) -> int:
    """How many trainable ``beta`` the formula has."""
    return len({int(n.value or 0) for n in walk(node) if n.op == "beta"})


# -- normal form ---------------------------------------------------------------------------------------


def _key(node: Node, op: str = "") -> tuple[int, str]:
    """The order of a commutative operation's operands: their text with every beta alike; in a product a
    coefficient (a number or beta, negated or not) first, then a variable (``2 * x``, ``x * sigmoid(x)``);
    elsewhere a number last (``max(x, 0)``)."""
    bare = node.args[0] if node.op == "neg" else node
    if op == "mul":
        rank = 0 if bare.op in ("const", "beta") else 1 if not node.args else 2
        return rank, to_text(_anonymous(node))
    return int(node.op == "const"), to_text(_anonymous(node))


def _anonymous(node: Node) -> Node:
    if node.op == "beta":
        return beta(0)
    return node._replace(args=tuple(_anonymous(arg) for arg in node.args))


def _rewrite(node: Node) -> Node:
    """One step of the normal form at ``node`` (its operands already normal)."""
    op, args = node.op, node.args
    if op == "keep":
        return args[0]
    if op == "neg" and args[0].op == "neg":
        return args[0].args[0]
    if op == "sub" and args[1].op == "neg":
        return apply("add", args[0], args[1].args[0])
    if op == "add" and args[1].op == "neg":
        return apply("sub", args[0], args[1].args[0])
    if op == "add" and args[0].op == "neg":
        return apply("sub", args[1], args[0].args[0])
    if op in ("square", "abs") and args[0].op == "sub" and _key(args[0].args[0]) > _key(args[0].args[1]):
        return apply(op, apply("sub", args[0].args[1], args[0].args[0]))  # (a - b)^2 = (b - a)^2
    if OPERATIONS.get(op) is not None and OPERATIONS[op].commutative and _key(args[0], op) > _key(args[1], op):
        return node._replace(args=(args[1], args[0]))
    return node


def _normal(node: Node) -> Node:
    node = node._replace(args=tuple(_normal(arg) for arg in node.args))
    for _ in range(8):  # each rewrite makes the tree smaller or orders it; a few steps reach the fixpoint
        rewritten = _rewrite(node)
        if rewritten == node:
            return node
        node = rewritten._replace(args=tuple(_normal(arg) for arg in rewritten.args))
    return node


def canonical(node: Node) -> Node:
    """The normal form: ``keep(a, b)`` is ``a``; ``--a`` is ``a``; ``a - (-b)`` is ``a + b``; the operands of
    ``+ * max min`` in a fixed order; ``(a - b)^2`` and ``abs(a - b)`` with ``a`` before ``b``; betas
    renumbered in the order they are written."""
    normal = _normal(node)
    order: dict[int, int] = {}
    for n in walk(normal):
        if n.op == "beta":
            order.setdefault(int(n.value or 0), len(order))

    def renumber(n: Node) -> Node:
        if n.op == "beta":
            return beta(order[int(n.value or 0)])
        return n._replace(args=tuple(renumber(arg) for arg in n.args))

    return renumber(normal)


# -- computing -----------------------------------------------------------------------------------------


def evaluate(
    node: Node,
    inputs: Mapping[str, Tensor],
    betas: Any = (),
    generator: torch.Generator | None = None,
) -> Tensor:
    """The formula's value: ``inputs`` by variable name, ``betas[i]`` for ``beta{i+1}``; ``drop`` draws
    its masks from ``generator``."""
    like = next(iter(inputs.values()))

    def value(n: Node) -> Tensor:
        if n.op == "const":
            return torch.tensor(float(n.value or 0.0), dtype=like.dtype, device=like.device)
        if n.op == "beta":
            return betas[int(n.value or 0)]
        if not n.args:
            return inputs[n.op]
        if n.op == "keep":
            return value(n.args[0])
        if n.op == "drop":
            kept = value(n.args[0])
            rate = float(n.args[1].value or 0.0)
            if kept.device.type == "meta":
                return kept
            mask = torch.rand(kept.shape, generator=generator, dtype=kept.dtype).to(kept.device) >= rate
            return kept * mask
        return OPERATIONS[n.op].compute(*(value(arg) for arg in n.args))

    return value(node)


def to_code(node: Node, names: Mapping[str, str], beta_code: str = "self.beta[{0}]") -> str:
    """Python source over ``torch`` (and ``F``, torch.nn.functional) that computes the formula: export's model.py.
    ``names`` maps each variable to the expression that holds it."""
    if node.op == "const":
        return f"torch.tensor({float(node.value or 0.0)!r})"
    if node.op == "beta":
        return beta_code.format(int(node.value or 0))
    if not node.args:
        return names[node.op]
    parts = [to_code(arg, names, beta_code) for arg in node.args]
    if node.op in ("clip", "drop"):  # their second operand is a plain number
        parts[1] = repr(float(node.args[1].value or 0.0))
    return OPERATIONS[node.op].code.format(*parts)

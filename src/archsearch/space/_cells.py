"""Recurrent cells for word-level language models: Zoph & Le's tree, ENAS's DAG, and the standard cells.

A cell architecture builds a whole language model (:class:`CellLanguageModel`): an embedding of the
vocabulary, the cell run over the sequence, and a softmax whose weights are the embedding's (tied, as
in Press & Wolf 2017), so the embedding width is the cell's hidden size.

- :class:`TreeCell` (Zoph & Le 2017, section 3.4 and appendix A): a full binary tree over ``leaves``
  leaves. Leaf ``i`` combines ``x_t W_i`` with ``h_{t-1} U_i + b_i``; each inner node combines its two
  children; every node has a combination (``add`` or ``mul``) and an activation. The memory state
  ``c_{t-1}`` is injected into one node's output (a combination and an activation of its own), and
  ``c_t`` is another node's output; ``h_t`` is the root's. Nodes are numbered leaves first, then each
  level of the tree left to right, so that node ``leaves + k`` combines nodes ``2k`` and ``2k + 1``.
  Their published cell is :data:`NAS_CELL`.
- :class:`DagCell` (Pham et al. 2018, section 2.1): ``nodes`` nodes. Node 1 reads ``x_t`` and
  ``h_{t-1}``; node ``j > 1`` reads one earlier node ``i``. Each node is a highway layer,
  ``h_j = c_j * f_j(h_i W^h_{ij}) + (1 - c_j) * h_i`` with the gate ``c_j = sigmoid(h_i W^c_{ij})``
  (for node 1, ``x_t W^x + h_{t-1} W^h`` in place of ``h_i W_{ij}``, and ``h_{t-1}`` carried), ``f_j``
  chosen. ``h_t`` is the mean of the loose ends, the nodes no other node reads.
- :class:`StandardCell`: PyTorch's tanh RNN, LSTM and GRU, the baselines a searched cell is measured
  against.

Every cell is computed from a dict of named weights (:meth:`CellArchitecture.step`), so that a
stand-alone child and a supernet that holds the weights of every choice (the DAG cell's edge ``i -> j``
owns ``w{j}_{i}``; the tree cell's weights do not depend on the choices) run the same code.
"""

from __future__ import annotations

import itertools
import math
from abc import abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

import numpy as np
import torch
from torch import nn

from archsearch._limits import MAX_HIDDEN_SIZE, integer
from archsearch.errors import ArchsearchError
from archsearch.space._architecture import Architecture
from archsearch.space._base import Decision, SearchSpace, Slot

#: the activations a cell's node may apply (Zoph & Le's and Pham et al.'s four)
CELL_ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "tanh": torch.tanh,
    "relu": torch.relu,
    "sigmoid": torch.sigmoid,
    "identity": lambda x: x,
}
#: how a tree node combines its two inputs
COMBINATIONS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {"add": torch.add, "mul": torch.mul}
_SHORT = {"tanh": "tanh", "relu": "relu", "sigmoid": "sig", "identity": "id", "add": "+", "mul": "*"}
#: the range U(-INIT_RANGE, INIT_RANGE) every weight of a language model starts in (as Zaremba et al. 2014)
INIT_RANGE = 0.1
MAX_TREE_LEAVES = 16
MAX_DAG_NODES = 16
STANDARD_CELLS = ("tanh", "lstm", "gru")

Weights = dict[str, torch.Tensor]
State = tuple[torch.Tensor, ...]


class CellArchitecture(Architecture):
    """A recurrent cell of hidden size ``hidden``; :meth:`build` gives the language model around it."""

    hidden: int

    @abstractmethod
    def weight_shapes(self, in_features: int) -> dict[str, tuple[int, ...]]:
        """The cell's own weights (the language model adds the embedding and the softmax's bias)."""

    @abstractmethod
    def step_all(self, weights: Weights, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """The cell over a sequence ``x`` (time, batch, hidden) from ``state``: outputs (time, batch,
        hidden) and the last state."""

    def state_size(self) -> int:
        """Tensors of (batch, hidden) that the state holds: 1, or 2 for cells with a memory."""
        return 1

    def build(self, in_features: int, out_features: int, generator: torch.Generator | None = None) -> nn.Module:
        if in_features != out_features:
            raise ArchsearchError(f"architecture: a language model reads and predicts one vocabulary, got "
                                  f"{in_features} and {out_features}")  # fmt: skip
        return CellLanguageModel(self, in_features, generator)

    def num_params(self, in_features: int, out_features: int) -> int:
        shapes = self.weight_shapes(self.hidden)
        return in_features * self.hidden + out_features + sum(math.prod(s) for s in shapes.values())


class CellLanguageModel(nn.Module):
    """Embedding, ``arch``'s cell, and a softmax tied to the embedding; ``forward(tokens, state)``.

    ``tokens`` are (time, batch) word indices; the result is (time, batch, vocabulary) logits and
    the state after the last step, which the caller detaches and passes on (truncated
    backpropagation through time). With ``generator`` every weight is drawn from
    U(-INIT_RANGE, INIT_RANGE) in a fixed order (embedding, the cell's weights by name, the bias).
    A supernet passes the child's architecture to ``forward``; a stand-alone child runs its own.
    """

    def __init__(
        self,
        arch: CellArchitecture,
        vocabulary: int,
        generator: torch.Generator | None = None,
        shapes: dict[str, tuple[int, ...]] | None = None,
    ) -> None:
        super().__init__()
        self.arch = arch
        self.embedding = nn.Parameter(_uniform((vocabulary, arch.hidden), generator))
        shapes = arch.weight_shapes(arch.hidden) if shapes is None else shapes
        self.cell = nn.ParameterDict({name: nn.Parameter(_uniform(shapes[name], generator)) for name in sorted(shapes)})
        self.bias = nn.Parameter(torch.zeros(vocabulary))
        self.dropout = 0.0

    def initial_state(self, batch: int, arch: CellArchitecture | None = None) -> State:
        arch = arch or self.arch
        zeros = torch.zeros(batch, arch.hidden, device=self.embedding.device)
        return tuple(zeros for _ in range(arch.state_size()))

    def forward(
        self, tokens: torch.Tensor, state: State, arch: CellArchitecture | None = None
    ) -> tuple[torch.Tensor, State]:
        arch = arch or self.arch
        x = nn.functional.embedding(tokens, self.embedding)
        if self.dropout and self.training:
            x = nn.functional.dropout(x, self.dropout)
        outputs, state = arch.step_all(dict(self.cell.items()), x, state)
        if self.dropout and self.training:
            outputs = nn.functional.dropout(outputs, self.dropout)
        return nn.functional.linear(outputs, self.embedding, self.bias), state


def _uniform(shape: tuple[int, ...], generator: torch.Generator | None) -> torch.Tensor:
    return (torch.rand(shape, generator=generator) * 2 - 1) * INIT_RANGE


def _check_names(what: str, value: Any, known: dict[str, Any]) -> str:
    if value not in known:
        raise ArchsearchError(f"architecture: unknown {what} {value!r} (known: {', '.join(known)})")
    return str(value)


def _hidden(value: Any) -> int:
    return integer("architecture.hidden", value, 1, MAX_HIDDEN_SIZE)


# -- Zoph & Le's tree ---------------------------------------------------------------------------------


class TreeNode(NamedTuple):
    """How a tree node combines its two inputs, and the activation it applies."""

    combination: str
    activation: str

    def __str__(self) -> str:
        return f"{_SHORT[self.combination]}{_SHORT[self.activation]}"


@dataclass(frozen=True)
class TreeCell(CellArchitecture):
    """A tree cell (see the module docstring): ``2 * leaves - 1`` nodes, the memory injected into node
    ``inject`` with ``inject_node``'s combination and activation, and ``c_t`` taken from node ``cell``."""

    kind: ClassVar[str] = "tree-cell"
    nodes: tuple[TreeNode, ...]
    inject: int
    inject_node: TreeNode
    cell: int
    hidden: int

    def __post_init__(self) -> None:
        nodes = tuple(self._node(node) for node in self.nodes)
        leaves = (len(nodes) + 1) // 2
        if len(nodes) < 3 or leaves & (leaves - 1) or leaves > MAX_TREE_LEAVES:
            raise ArchsearchError(
                f"architecture: a tree cell has 2 * leaves - 1 nodes, leaves a power of 2 from 2 to "
                f"{MAX_TREE_LEAVES}; got {len(nodes)} nodes"
            )
        for name in ("inject", "cell"):
            value = getattr(self, name)
            if type(value) is not int or not 0 <= value < len(nodes):
                raise ArchsearchError(f"architecture: {name} must name a node 0..{len(nodes) - 1}, got {value!r:.40}")
        object.__setattr__(self, "nodes", nodes)
        object.__setattr__(self, "inject_node", self._node(self.inject_node))
        object.__setattr__(self, "hidden", _hidden(self.hidden))

    @staticmethod
    def _node(node: Any) -> TreeNode:
        try:
            combination, activation = node
        except (TypeError, ValueError):
            raise ArchsearchError(f"architecture: a tree node is [combination, activation], got {node!r:.60}") from None
        return TreeNode(_check_names("combination", combination, COMBINATIONS),
                        _check_names("activation", activation, CELL_ACTIVATIONS))  # fmt: skip

    @property
    def leaves(self) -> int:
        return (len(self.nodes) + 1) // 2

    def state_size(self) -> int:
        return 2

    def weight_shapes(self, in_features: int) -> dict[str, tuple[int, ...]]:
        size = self.leaves * self.hidden
        return {"w": (in_features, size), "u": (self.hidden, size), "b": (size,)}

    def step_all(self, weights: Weights, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        h, c = state
        inputs = (x @ weights["w"]).chunk(self.leaves, dim=-1)  # every step's input side at once
        outputs = []
        for t in range(x.shape[0]):
            recurrent = torch.addmm(weights["b"], h, weights["u"]).chunk(self.leaves, dim=-1)
            h, c = self._tree([i[t] for i in inputs], recurrent, c)
            outputs.append(h)
        return torch.stack(outputs), (h, c)

    def _tree(self, inputs: Sequence[torch.Tensor], recurrent: Sequence[torch.Tensor], c: torch.Tensor) -> State:
        values: list[torch.Tensor] = []
        new_c = c
        for index, node in enumerate(self.nodes):
            if index < self.leaves:
                left, right = inputs[index], recurrent[index]
            else:
                k = index - self.leaves
                left, right = values[2 * k], values[2 * k + 1]
            value = CELL_ACTIVATIONS[node.activation](COMBINATIONS[node.combination](left, right))
            if index == self.inject:
                inject = self.inject_node
                value = CELL_ACTIVATIONS[inject.activation](COMBINATIONS[inject.combination](value, c))
            if index == self.cell:
                new_c = value
            values.append(value)
        return values[-1], new_c

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "nodes": [list(node) for node in self.nodes],
            "inject": self.inject,
            "inject_node": list(self.inject_node),
            "cell": self.cell,
            "hidden": self.hidden,
        }

    @classmethod
    def _from_dict(cls, data: dict[str, Any]) -> TreeCell:
        try:
            return cls(tuple(data["nodes"]), data["inject"], data["inject_node"], data["cell"], data["hidden"])
        except (KeyError, TypeError) as exc:
            raise ArchsearchError(f"architecture: malformed tree cell ({exc!r})") from None

    def __str__(self) -> str:
        levels, start, width = [], 0, self.leaves
        while width:
            levels.append(" ".join(str(node) for node in self.nodes[start : start + width]))
            start, width = start + width, width // 2
        return f"{' | '.join(levels)} ; c>{self.inject}{self.inject_node} ; c<{self.cell} ; h{self.hidden}"


def nas_cell(hidden: int) -> TreeCell:
    """Zoph & Le's published cell (their figure 8; TensorFlow's ``NASCell``) in the tree space."""
    leaves = [("add", "sigmoid"), ("add", "relu"), ("add", "sigmoid"), ("mul", "relu"),
              ("add", "tanh"), ("add", "sigmoid"), ("add", "tanh"), ("add", "sigmoid")]  # fmt: skip
    inner = [("mul", "tanh"), ("add", "tanh"), ("mul", "tanh"), ("add", "sigmoid"), ("mul", "identity"), ("add", "tanh"),
             ("mul", "tanh")]  # fmt: skip
    return TreeCell(tuple(leaves + inner), inject=8, inject_node=("add", "tanh"), cell=12, hidden=hidden)


class TreeCellSpace(SearchSpace):
    """Zoph & Le's cell space: per node (leaves first) a combination and an activation, then the node
    that the memory is injected into, the injection's combination and activation, and the node ``c_t``
    is taken from. Every member has the same weights (``leaves`` input and recurrent matrices), so a
    supernet for this space is one cell whose choices change per child."""

    kind = "tree-cell"

    def __init__(self, leaves: int = 8, hidden: int = 128) -> None:
        self.leaves = integer("space.leaves", leaves, 2, MAX_TREE_LEAVES)
        if self.leaves & (self.leaves - 1):
            raise ArchsearchError(f"space.leaves: must be a power of 2 (a full binary tree), got {leaves}")
        self.hidden = integer("space.hidden", hidden, 1, MAX_HIDDEN_SIZE)
        n = 2 * self.leaves - 1
        self._decisions = (
            Decision("combination", tuple(COMBINATIONS)),
            Decision("activation", tuple(CELL_ACTIVATIONS)),
            Decision("node", tuple(range(n))),
        )
        per_node = (Slot(0, eos=False), Slot(1, eos=False))
        self._slots = per_node * (n + 1) + (Slot(2, eos=False), Slot(2, eos=False))

    @property
    def _nodes(self) -> int:
        return 2 * self.leaves - 1

    def to_config(self) -> dict[str, Any]:
        return {"kind": self.kind, "leaves": self.leaves, "hidden": self.hidden}

    def decode(self, tokens: Sequence[int]) -> TreeCell:
        choices = self.check_tokens(tokens)
        if len(choices) != len(self.slots):
            raise ArchsearchError(f"{self}: {len(choices)} tokens, a tree cell needs {len(self.slots)}")
        combos, acts = tuple(COMBINATIONS), tuple(CELL_ACTIVATIONS)
        pairs = [(combos[c], acts[a]) for c, a in zip(choices[0 : -2 : 2], choices[1 : -2 : 2])]
        return TreeCell(tuple(pairs[:-1]), choices[-2], pairs[-1], choices[-1], self.hidden)

    def encode(self, arch: Architecture) -> list[int]:
        if not isinstance(arch, TreeCell) or arch.leaves != self.leaves or arch.hidden != self.hidden:
            raise ArchsearchError(f"{self}: expected a tree cell of {self.leaves} leaves and hidden size "
                                  f"{self.hidden}, got {arch}")  # fmt: skip
        combos, acts = tuple(COMBINATIONS), tuple(CELL_ACTIVATIONS)
        tokens = [t for node in (*arch.nodes, arch.inject_node) for t in (combos.index(node[0]), acts.index(node[1]))]
        return [*tokens, arch.inject, arch.cell]

    def size(self) -> int:
        return (len(COMBINATIONS) * len(CELL_ACTIVATIONS)) ** (self._nodes + 1) * self._nodes**2

    def enumerate(self) -> Iterator[TreeCell]:
        for tokens in itertools.product(*(range(len(self.decisions[s.decision].choices)) for s in self.slots)):
            yield self.decode(tokens)

    def sample(self, rng: np.random.Generator) -> TreeCell:
        return self.decode([int(rng.integers(len(self.decisions[s.decision].choices))) for s in self.slots])

    def mutate(self, arch: Architecture, rng: np.random.Generator) -> TreeCell:
        """Change one choice: a node's combination or activation, or where the memory goes in or out."""
        return _mutate_tokens(self, arch, rng)


def _mutate_tokens(space: SearchSpace, arch: Architecture, rng: np.random.Generator) -> Any:
    """``arch`` with one token of its fixed-length schedule changed to another valid choice."""
    tokens = space.encode(space.validate(arch))
    while True:
        position = int(rng.integers(len(tokens)))
        count = len(space.decisions[space.slots[position].decision].choices)
        if count > 1:
            break
    others = [t for t in range(count) if t != tokens[position]]
    tokens[position] = others[int(rng.integers(len(others)))]
    return space.decode(tokens)


# -- ENAS's DAG ----------------------------------------------------------------------------------------


class DagNode(NamedTuple):
    """The earlier node a DAG node reads (0 for the first node, which reads the input and the state)
    and its activation."""

    source: int
    activation: str

    def __str__(self) -> str:
        return f"{self.source}{_SHORT[self.activation]}"


@dataclass(frozen=True)
class DagCell(CellArchitecture):
    """ENAS's recurrent cell (see the module docstring): node ``j`` (1-based) reads node ``source``
    (``0 < source < j``; the first node's source is 0, the input and the previous state)."""

    kind: ClassVar[str] = "dag-cell"
    nodes: tuple[DagNode, ...]
    hidden: int

    def __post_init__(self) -> None:
        nodes = []
        for j, node in enumerate(self.nodes, start=1):
            try:
                source, activation = node
            except (TypeError, ValueError):
                raise ArchsearchError(f"architecture: a DAG node is [source, activation], got {node!r:.60}") from None
            if type(source) is not int or not (source == 0 if j == 1 else 0 < source < j):
                allowed = "0" if j == 1 else f"1..{j - 1}"
                raise ArchsearchError(f"architecture: node {j} must read node {allowed}, got {source!r:.40}")
            nodes.append(DagNode(source, _check_names("activation", activation, CELL_ACTIVATIONS)))
        if not 1 <= len(nodes) <= MAX_DAG_NODES:
            raise ArchsearchError(f"architecture: a DAG cell has 1 to {MAX_DAG_NODES} nodes, got {len(nodes)}")
        object.__setattr__(self, "nodes", tuple(nodes))
        object.__setattr__(self, "hidden", _hidden(self.hidden))

    @property
    def loose_ends(self) -> tuple[int, ...]:
        """The nodes (1-based) that no other node reads: the cell's output is their mean."""
        read = {node.source for node in self.nodes}
        return tuple(j for j in range(1, len(self.nodes) + 1) if j not in read)

    def weight_shapes(self, in_features: int) -> dict[str, tuple[int, ...]]:
        shapes = {"wx": (in_features, 2 * self.hidden), "w1_0": (self.hidden, 2 * self.hidden)}
        for j, node in enumerate(self.nodes[1:], start=2):
            shapes[f"w{j}_{node.source}"] = (self.hidden, 2 * self.hidden)
        return shapes

    def step_all(self, weights: Weights, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        (h,) = state
        inputs = x @ weights["wx"]
        outputs, ends = [], self.loose_ends
        for t in range(x.shape[0]):
            values = [h]
            for j, (source, activation) in enumerate(self.nodes, start=1):
                previous = values[source]
                if j == 1:
                    gate, value = (inputs[t] + previous @ weights["w1_0"]).chunk(2, dim=-1)
                else:
                    gate, value = (previous @ weights[f"w{j}_{source}"]).chunk(2, dim=-1)
                gate = torch.sigmoid(gate)
                values.append(previous + gate * (CELL_ACTIVATIONS[activation](value) - previous))
            h = values[ends[0]] if len(ends) == 1 else torch.stack([values[j] for j in ends]).mean(0)
            outputs.append(h)
        return torch.stack(outputs), (h,)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "nodes": [list(node) for node in self.nodes], "hidden": self.hidden}

    @classmethod
    def _from_dict(cls, data: dict[str, Any]) -> DagCell:
        try:
            return cls(tuple(data["nodes"]), data["hidden"])
        except (KeyError, TypeError) as exc:
            raise ArchsearchError(f"architecture: malformed DAG cell ({exc!r})") from None

    def __str__(self) -> str:
        return " ".join(str(node) for node in self.nodes) + f" ; h{self.hidden}"


class DagCellSpace(SearchSpace):
    """ENAS's cell space: per node an activation, and for nodes after the first the earlier node it
    reads. A supernet for it holds one weight matrix per possible edge ``i -> j``."""

    kind = "dag-cell"

    def __init__(self, nodes: int = 8, hidden: int = 128) -> None:
        self.nodes = integer("space.nodes", nodes, 2, MAX_DAG_NODES)
        self.hidden = integer("space.hidden", hidden, 1, MAX_HIDDEN_SIZE)
        # node j's source is a decision of its own (choices 1 .. j - 1), so that a controller's head for it
        # offers only the nodes before it
        self._decisions = (
            Decision("activation", tuple(CELL_ACTIVATIONS)),
            *(Decision(f"source_{j}", tuple(range(1, j))) for j in range(2, self.nodes + 1)),
        )
        slots = [Slot(0, eos=False)]
        for j in range(2, self.nodes + 1):
            slots += [Slot(j - 1, eos=False), Slot(0, eos=False)]
        self._slots = tuple(slots)

    def to_config(self) -> dict[str, Any]:
        return {"kind": self.kind, "nodes": self.nodes, "hidden": self.hidden}

    def decode(self, tokens: Sequence[int]) -> DagCell:
        choices = self.check_tokens(tokens)
        if len(choices) != len(self.slots):
            raise ArchsearchError(f"{self}: {len(choices)} tokens, a DAG cell of {self.nodes} nodes needs "
                                  f"{len(self.slots)}")  # fmt: skip
        acts = tuple(CELL_ACTIVATIONS)
        nodes = [DagNode(0, acts[choices[0]])]
        for j in range(2, self.nodes + 1):
            nodes.append(DagNode(choices[2 * j - 3] + 1, acts[choices[2 * j - 2]]))
        return DagCell(tuple(nodes), self.hidden)

    def encode(self, arch: Architecture) -> list[int]:
        if not isinstance(arch, DagCell) or len(arch.nodes) != self.nodes or arch.hidden != self.hidden:
            raise ArchsearchError(f"{self}: expected a DAG cell of {self.nodes} nodes and hidden size "
                                  f"{self.hidden}, got {arch}")  # fmt: skip
        acts = tuple(CELL_ACTIVATIONS)
        tokens = [acts.index(arch.nodes[0].activation)]
        for node in arch.nodes[1:]:
            tokens += [node.source - 1, acts.index(node.activation)]
        return tokens

    def size(self) -> int:
        return len(CELL_ACTIVATIONS) ** self.nodes * math.factorial(self.nodes - 1)

    def enumerate(self) -> Iterator[DagCell]:
        acts = tuple(CELL_ACTIVATIONS)
        sources = itertools.product(*(range(1, j) for j in range(2, self.nodes + 1)))
        for chosen in sources:
            for activations in itertools.product(acts, repeat=self.nodes):
                nodes = [DagNode(0, activations[0])] + [DagNode(s, a) for s, a in zip(chosen, activations[1:])]
                yield DagCell(tuple(nodes), self.hidden)

    def sample(self, rng: np.random.Generator) -> DagCell:
        acts = tuple(CELL_ACTIVATIONS)
        nodes = [DagNode(0, acts[int(rng.integers(len(acts)))])]
        for j in range(2, self.nodes + 1):
            nodes.append(DagNode(int(rng.integers(1, j)), acts[int(rng.integers(len(acts)))]))
        return DagCell(tuple(nodes), self.hidden)

    def mutate(self, arch: Architecture, rng: np.random.Generator) -> DagCell:
        """Change one node's activation or the node it reads."""
        return _mutate_tokens(self, arch, rng)

    def supernet_shapes(self) -> dict[str, tuple[int, ...]]:
        """Every edge's weights: what a supernet over this space holds besides embedding and bias."""
        shapes = {"wx": (self.hidden, 2 * self.hidden), "w1_0": (self.hidden, 2 * self.hidden)}
        for j in range(2, self.nodes + 1):
            for i in range(1, j):
                shapes[f"w{j}_{i}"] = (self.hidden, 2 * self.hidden)
        return shapes


# -- the standard cells ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class StandardCell(CellArchitecture):
    """A tanh RNN, an LSTM or a GRU of hidden size ``hidden`` (PyTorch's equations, one bias per gate)."""

    kind: ClassVar[str] = "rnn-cell"
    cell: str
    hidden: int

    def __post_init__(self) -> None:
        if self.cell not in STANDARD_CELLS:
            raise ArchsearchError(f"architecture: unknown cell {self.cell!r} (known: {', '.join(STANDARD_CELLS)})")
        object.__setattr__(self, "hidden", _hidden(self.hidden))

    @property
    def _gates(self) -> int:
        return {"tanh": 1, "lstm": 4, "gru": 3}[self.cell]

    def state_size(self) -> int:
        return 2 if self.cell == "lstm" else 1

    def weight_shapes(self, in_features: int) -> dict[str, tuple[int, ...]]:
        size = self._gates * self.hidden
        return {"w": (in_features, size), "u": (self.hidden, size), "b": (size,), "bu": (size,)}

    def step_all(self, weights: Weights, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        inputs = torch.addmm(weights["b"], x.flatten(0, 1), weights["w"]).view(*x.shape[:2], -1)
        outputs = []
        h = state[0]
        c = state[1] if self.cell == "lstm" else None
        for t in range(x.shape[0]):
            recurrent = torch.addmm(weights["bu"], h, weights["u"])
            if self.cell == "tanh":
                h = torch.tanh(inputs[t] + recurrent)
            elif self.cell == "lstm":
                i, f, g, o = (inputs[t] + recurrent).chunk(4, dim=-1)
                c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
                h = torch.sigmoid(o) * torch.tanh(c)
            else:
                xr, xz, xn = inputs[t].chunk(3, dim=-1)
                hr, hz, hn = recurrent.chunk(3, dim=-1)
                r, z = torch.sigmoid(xr + hr), torch.sigmoid(xz + hz)
                h = (1 - z) * torch.tanh(xn + r * hn) + z * h
            outputs.append(h)
        return torch.stack(outputs), ((h, c) if self.cell == "lstm" else (h,))

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "cell": self.cell, "hidden": self.hidden}

    @classmethod
    def _from_dict(cls, data: dict[str, Any]) -> StandardCell:
        try:
            return cls(data["cell"], data["hidden"])
        except (KeyError, TypeError) as exc:
            raise ArchsearchError(f"architecture: malformed rnn cell ({exc!r})") from None

    def __str__(self) -> str:
        return f"{self.cell}-{self.hidden}"


def parse_cell(text: str) -> Architecture:
    """An architecture from its string form where that is unambiguous (a standard cell ``lstm-200``), or
    from its JSON."""
    name, _, hidden = text.partition("-")
    if name in STANDARD_CELLS and hidden.isdigit():
        return StandardCell(name, int(hidden))
    return Architecture.from_json(text)


def matched_hidden(cell: str, params: int, vocabulary: int) -> int:
    """The hidden size at which a standard ``cell``'s language model has about ``params`` parameters."""
    best = min(range(1, MAX_HIDDEN_SIZE + 1),
               key=lambda h: abs(StandardCell(cell, h).num_params(vocabulary, vocabulary) - params))  # fmt: skip
    return best


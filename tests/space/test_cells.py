"""Recurrent cells: Zoph & Le's published cell in the tree space, the standard cells against PyTorch's
own, the two cell spaces' contracts, and a supernet path against the stand-alone child."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from archsearch.errors import ArchsearchError
from archsearch.space import Architecture, DagCell, DagCellSpace, StandardCell, TreeCell, TreeCellSpace, nas_cell
from archsearch.space._cells import CellLanguageModel, matched_hidden
from archsearch.strategies import Reinforce


def published_nas_cell(w, u, b, x, h, c):  # noqa: ANN001, ANN201
    """Zoph & Le's cell as TensorFlow's ``NASCell`` writes its equations (``m`` is the hidden state)."""
    sig, tanh, relu = torch.sigmoid, torch.tanh, torch.relu
    i = (x @ w).chunk(8, dim=-1)
    m = (h @ u + b).chunk(8, dim=-1)
    l1 = [sig(i[0] + m[0]), relu(i[1] + m[1]), sig(i[2] + m[2]), relu(i[3] * m[3]),
          tanh(i[4] + m[4]), sig(i[5] + m[5]), tanh(i[6] + m[6]), sig(i[7] + m[7])]  # fmt: skip
    l2_0, l2_1 = tanh(l1[0] * l1[1]), tanh(l1[2] + l1[3])
    l2_2, l2_3 = tanh(l1[4] * l1[5]), sig(l1[6] + l1[7])
    l2_0 = tanh(l2_0 + c)  # the memory injected
    l3_0 = l2_0 * l2_1  # the new memory
    l3_1 = tanh(l2_2 + l2_3)
    return tanh(l3_0 * l3_1), l3_0


def test_the_nas_cell_in_the_tree_space_matches_its_published_equations():
    generator = torch.Generator().manual_seed(0)
    hidden, inputs, batch, steps = 24, 20, 6, 5
    w, u = torch.randn(inputs, 8 * hidden, generator=generator), torch.randn(hidden, 8 * hidden, generator=generator)
    b = torch.randn(8 * hidden, generator=generator)
    x = torch.randn(steps, batch, inputs, generator=generator)
    h, c = torch.randn(batch, hidden, generator=generator), torch.randn(batch, hidden, generator=generator)
    cell = nas_cell(hidden)
    outputs, (h_last, c_last) = cell.step_all({"w": w, "u": u, "b": b}, x, (h, c))
    expected = []
    for t in range(steps):
        h, c = published_nas_cell(w, u, b, x[t], h, c)
        expected.append(h)
    assert torch.allclose(outputs, torch.stack(expected), atol=1e-6, rtol=0)
    assert torch.allclose(c_last, c, atol=1e-6, rtol=0) and torch.equal(h_last, outputs[-1])
    space = TreeCellSpace(leaves=8, hidden=hidden)
    assert space.validate(cell) == cell and Architecture.from_json(cell.to_json()) == cell


@pytest.mark.parametrize("name", ["tanh", "lstm", "gru"])
def test_the_standard_cells_compute_what_pytorchs_own_compute(name):
    hidden, inputs, batch, steps = 12, 12, 4, 6
    cell = StandardCell(name, hidden)
    torch_cell = {"tanh": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[name](inputs, hidden)
    weights = {"w": torch_cell.weight_ih_l0.detach().t(), "u": torch_cell.weight_hh_l0.detach().t(),
               "b": torch_cell.bias_ih_l0.detach(), "bu": torch_cell.bias_hh_l0.detach()}  # fmt: skip
    x = torch.randn(steps, batch, inputs)
    state = tuple(torch.randn(batch, hidden) for _ in range(cell.state_size()))
    outputs, last = cell.step_all(weights, x, state)
    given = (state[0][None], state[1][None]) if name == "lstm" else state[0][None]
    expected, expected_last = torch_cell(x, given)
    assert torch.allclose(outputs, expected.detach(), atol=1e-6)
    expected_last = expected_last if name == "lstm" else (expected_last,)
    for mine, theirs in zip(last, expected_last, strict=True):
        assert torch.allclose(mine, theirs[0].detach(), atol=1e-6)


@pytest.mark.parametrize("space", [TreeCellSpace(leaves=4, hidden=8), DagCellSpace(nodes=5, hidden=8)], ids=str)
def test_a_cell_space_samples_encodes_and_mutates_its_members(space):
    rng = np.random.default_rng(0)
    for _ in range(200):
        arch = space.sample(rng)
        assert space.decode(space.encode(arch)) == arch
        assert Architecture.from_json(arch.to_json()) == arch
        mutant = space.mutate(arch, rng)
        assert mutant != arch and space.contains(mutant)
        assert sum(a != b for a, b in zip(space.encode(arch), space.encode(mutant))) == 1


def test_a_dag_space_counts_its_members_and_offers_only_earlier_nodes():
    space = DagCellSpace(nodes=3, hidden=4)
    members = list(space.enumerate())
    assert len(members) == len(set(members)) == space.size() == 4**3 * 2
    # node j's source is a decision of its own with the choices 1 .. j - 1
    assert [d.choices for d in space.decisions[1:]] == [(1,), (1, 2)]
    controller = Reinforce(space, seed=0)
    for arch in controller.ask(50):
        assert all(0 < node.source < j for j, node in enumerate(arch.nodes[1:], start=2))


def test_the_dag_cells_output_is_the_mean_of_its_loose_ends():
    cell = DagCell(((0, "identity"), (1, "identity"), (1, "identity")), hidden=3)
    assert cell.loose_ends == (2, 3)
    weights = {name: torch.zeros(shape) for name, shape in cell.weight_shapes(3).items()}
    x, h = torch.zeros(1, 2, 3), torch.tensor([[1.0, 2.0, 3.0], [0.0, -2.0, 4.0]])
    # zero weights: every gate is 1/2, every value 0, so each node halves what it reads
    outputs, _ = cell.step_all(weights, x, (h,))
    assert torch.allclose(outputs[0], h / 4)


def test_a_supernet_path_computes_the_stand_alone_child_with_the_same_weights():
    space = DagCellSpace(nodes=6, hidden=10)
    rng = np.random.default_rng(1)
    supernet = CellLanguageModel(space.sample(rng), 30, torch.Generator().manual_seed(0), space.supernet_shapes())
    tokens = torch.randint(30, (7, 3))
    for _ in range(5):
        child = space.sample(rng)
        model = child.build(30, 30)
        shared = supernet.state_dict()
        model.load_state_dict({name: shared[name] for name in model.state_dict()})
        expected, _ = model(tokens, model.initial_state(3))
        got, _ = supernet(tokens, supernet.initial_state(3, child), child)
        assert torch.equal(got, expected)
        assert sum(p.numel() for p in model.parameters()) == child.num_params(30, 30)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"kind": "dag-cell", "nodes": [[0, "tanh"], [2, "tanh"]], "hidden": 8}, "node 2 must read node 1..1"),
        ({"kind": "dag-cell", "nodes": [[0, "swish"]], "hidden": 8}, "unknown activation 'swish'"),
        ({"kind": "dag-cell", "nodes": [[0, "tanh"]], "hidden": 0}, "architecture.hidden"),
        ({"kind": "tree-cell", "nodes": [["add", "tanh"]] * 5, "inject": 0, "inject_node": ["add", "tanh"], "cell": 1,
          "hidden": 4}, "2 * leaves - 1 nodes"),  # fmt: skip
        ({"kind": "tree-cell", "nodes": [["add", "tanh"]] * 3, "inject": 3, "inject_node": ["add", "tanh"], "cell": 1,
          "hidden": 4}, "inject must name a node 0..2"),  # fmt: skip
        ({"kind": "tree-cell", "nodes": [["sub", "tanh"]] * 3, "inject": 0, "inject_node": ["add", "tanh"], "cell": 1,
          "hidden": 4}, "unknown combination 'sub'"),  # fmt: skip
        ({"kind": "rnn-cell", "cell": "transformer", "hidden": 4}, "unknown cell 'transformer'"),
        ({"kind": "rnn-cell", "hidden": 4}, "malformed rnn cell"),
    ],
)
def test_a_malformed_cell_is_one_line_naming_what_is_wrong(data, message):
    with pytest.raises(ArchsearchError) as error:
        Architecture.from_dict(data)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_tree_cells_print_level_by_level():
    assert str(nas_cell(200)) == (
        "+sig +relu +sig *relu +tanh +sig +tanh +sig | *tanh +tanh *tanh +sig | *id +tanh | *tanh ; c>8+tanh ; "
        "c<12 ; h200"
    )
    assert isinstance(nas_cell(8), TreeCell)


def test_a_baselines_hidden_size_matches_a_parameter_count():
    target = DagCellSpace(nodes=8, hidden=128).sample(np.random.default_rng(0)).num_params(10_000, 10_000)
    for name in ("tanh", "lstm", "gru"):
        hidden = matched_hidden(name, target, 10_000)
        got = StandardCell(name, hidden).num_params(10_000, 10_000)
        assert abs(got - target) <= StandardCell(name, hidden + 1).num_params(10_000, 10_000) - got

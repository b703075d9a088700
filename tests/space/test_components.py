"""Component spaces: formulas read and written exactly, normal forms, safe compilation, the closed forms of
the published functions and rules, and the grammars as spaces every strategy can search."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from archsearch.errors import ArchsearchError
from archsearch.space import (
    ActivationArchitecture,
    ActivationSpace,
    Architecture,
    FormulaOptimizer,
    SearchSpace,
    UpdateRuleArchitecture,
    UpdateRuleSpace,
)
from archsearch.space import _formula as f
from archsearch.space._components import BINARY, OPERANDS, RULE_BINARY, RULE_UNARY, UNARY

SWISH = "x * sigmoid(beta * x)"
POWERSIGN = "exp(sign(g) * sign(m)) * g"
ADDSIGN = "(1 + sign(g) * sign(m)) * g"


def activation(text: str) -> ActivationArchitecture:
    return ActivationArchitecture.parse(text)


def rule(text: str) -> UpdateRuleArchitecture:
    return UpdateRuleArchitecture.parse(text)


# -- the formula language ----------------------------------------------------------------------------


@st.composite
def trees(draw: st.DrawFn, depth: int = 0) -> f.Node:
    leaves = [f.variable("x"), f.variable("y"), f.beta(0), f.const(draw(st.sampled_from([0.0, 1.0, 2.0, 1e-07, 0.5])))]
    if depth >= 4 or draw(st.booleans()):
        return draw(st.sampled_from(leaves))
    op = draw(st.sampled_from(sorted(f.OPERATIONS)))
    if op in ("clip", "drop"):
        return f.apply(op, draw(trees(depth + 1)), f.const(0.3))
    return f.apply(op, *(draw(trees(depth + 1)) for _ in range(f.OPERATIONS[op].arity)))


@settings(max_examples=300, deadline=None)
@given(trees())
def test_text_reads_back_to_the_same_tree(tree):
    assert f.parse(f.to_text(tree), {"x", "y"}) == tree


@settings(max_examples=200, deadline=None)
@given(trees())
def test_the_normal_form_is_a_fixpoint_and_computes_the_same_values(tree):
    normal = f.canonical(tree)
    assert f.canonical(normal) == normal
    x, y = torch.linspace(-2, 2, 9, dtype=torch.float64), torch.linspace(1, 3, 9, dtype=torch.float64)
    if "drop" in {n.op for n in f.walk(tree)}:
        return  # random masks
    ones = torch.ones(1, dtype=torch.float64)
    before = f.evaluate(tree, {"x": x, "y": y}, ones)
    after = f.evaluate(normal, {"x": x, "y": y}, ones)
    torch.testing.assert_close(after, before, equal_nan=True, rtol=1e-9, atol=1e-9)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="x+-*/^(),.0123456789e sigmoidbetaclipkeep|_'\"\\", max_size=60))
def test_any_text_is_a_formula_or_one_line_refusal(text):
    try:
        tree = f.parse(text, {"x"})
    except ArchsearchError as exc:
        assert "\n" not in str(exc)
    else:
        assert f.parse(f.to_text(tree), {"x"}) == tree


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ("x * sigmoid(x)", "sigmoid(x) * x"),
        ("x - (-x^2)", "x^2 + x"),
        ("keep(tanh(x), x^3)", "tanh(x)"),
        ("exp(-beta * (x - tanh(x))^2)", "exp(-beta * (tanh(x) - x)^2)"),
        ("beta1 * x + beta2 * sin(x)", "beta1 * sin(x) + beta2 * x"),
        ("max(x, 0)", "max(0, x)"),
    ],
)
def test_equivalent_writings_are_one_architecture(one, other):
    assert activation(one).hash == activation(other).hash
    assert str(activation(one)) == str(activation(other))


def test_different_formulas_are_different_architectures():
    assert activation("x - tanh(x)").hash != activation("tanh(x) - x").hash
    assert activation("x * sigmoid(x)").hash != activation(SWISH).hash


def test_formulas_print_as_readable_mathematics():
    assert str(activation("sigmoid(beta * x) * x")) == SWISH
    assert str(activation("max(0, x)")) == "max(x, 0)"
    assert str(rule(POWERSIGN)) == "g * exp(sign(g) * sign(m))"
    assert f.to_text(f.parse("-(x - 1) / (2 * x)", {"x"})) == "-(x - 1) / (2 * x)"


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("eval(x)", "unknown operation or variable 'eval'"),
        ("__import__(x)", "unknown operation or variable '__import__'"),
        ("x.real", "unexpected character '.'"),
        ("x; 1", "unexpected character ';'"),
        ("sigmoid(x, x)", "sigmoid takes 1 operand, got 2"),
        ("x^4", "only the powers ^2 and ^3"),
        ("x +", "unexpected end"),
        ("", "empty formula"),
        ("clip(x, x)", "clip's second operand must be a number"),
        ("beta2 * x", "betas must be numbered from 1 without gaps"),
        ("sin(" * 40 + "x" + ")" * 40, "too deep"),
        ("x" + " + x" * 300, "operations; at most"),
        ("1e999 * x", "not finite"),
    ],
)
def test_bad_formulas_are_one_line_naming_what_is_wrong(text, needle):
    with pytest.raises(ArchsearchError) as caught:
        ActivationArchitecture.parse(text, where="--activation")
    message = str(caught.value)
    assert message.startswith("--activation: ") and needle in message and "\n" not in message


def test_update_rules_have_no_betas_and_their_own_variables():
    with pytest.raises(ArchsearchError, match="unknown operation or variable 'beta'"):
        rule("beta * g")
    with pytest.raises(ArchsearchError, match="unknown operation or variable 'x'"):
        rule("x")
    with pytest.raises(ArchsearchError, match="unknown operation or variable 'g'"):
        activation("g")


def test_a_deep_tree_from_a_file_is_refused_before_it_is_computed():
    deep = f.variable("x")
    for _ in range(f.MAX_DEPTH + 1):
        deep = f.apply("sin", deep)
    with pytest.raises(ArchsearchError, match="too deep"):
        ActivationArchitecture(deep)
    data = {"kind": "activation", "formula": "sin(" * 50 + "x" + ")" * 50, "child": "mlp", "widths": [4]}
    with pytest.raises(ArchsearchError, match="architecture.formula: formula too deep"):
        Architecture.from_dict(data)


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        ({"kind": "activation", "formula": "x", "child": "rnn", "widths": [4]}, "child must be one of"),
        ({"kind": "activation", "formula": "x", "child": "mlp", "widths": []}, "expected 1 to 8 layer widths"),
        ({"kind": "activation", "formula": "x", "child": "mlp", "widths": [0]}, "architecture.widths"),
        ({"kind": "activation", "formula": 3, "child": "mlp", "widths": [4]}, "expected a formula as text"),
        ({"kind": "activation", "child": "mlp"}, "no formula"),
        ({"kind": "update-rule", "formula": "g", "extra": 1}, "unknown field 'extra'"),
    ],
)
def test_malformed_architectures_from_a_file_are_one_line(data, needle):
    with pytest.raises(ArchsearchError, match=needle):
        Architecture.from_dict(data)


# -- compiled: closed forms ---------------------------------------------------------------------------


X = torch.linspace(-4, 4, 101, dtype=torch.float64)


@pytest.mark.parametrize(
    ("text", "closed_form"),
    [
        ("max(x, 0)", torch.relu),
        (SWISH, lambda x: x * torch.sigmoid(x)),  # beta starts at 1
        ("x * (1 + erf(x / 1.4142135623730951)) / 2", torch.nn.functional.gelu),
        ("tanh(x)", torch.tanh),
        ("softplus(x)", torch.nn.functional.softplus),
        ("sinc(x)", lambda x: torch.where(x == 0, torch.ones_like(x), torch.sin(x) / x)),
    ],
)
def test_activations_compute_their_closed_forms(text, closed_form):
    module = activation(text)._activation()().double()
    torch.testing.assert_close(module(X), closed_form(X))


def test_swish_beta_trains_and_each_layer_has_its_own():
    net = activation(SWISH).build(3, 2, torch.Generator().manual_seed(0))
    betas = [name for name, _ in net.named_parameters() if name.endswith("beta")]
    assert betas == ["activations.0.beta", "activations.1.beta"]
    net(torch.randn(5, 3)).sum().backward()
    assert net.activations[0].beta.grad is not None and net.activations[0].beta.grad.abs().item() > 0


def _steps(optimizer_for, steps: int = 5) -> list[torch.Tensor]:
    """The weights after each of ``steps`` updates on a fixed quadratic-ish loss."""
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(7, dtype=torch.float64))
    target = torch.randn(7, dtype=torch.float64)
    optimizer = optimizer_for([w])
    seen = []
    for _ in range(steps):
        optimizer.zero_grad()
        ((w - target) ** 2 * torch.arange(1, 8)).sum().backward()
        optimizer.step()
        seen.append(w.detach().clone())
    return seen


def test_the_adam_rule_is_torch_adam():
    ours = _steps(lambda p: rule("adam").optimizer(p, 0.05, 0.01, 0))
    torch_adam = _steps(lambda p: torch.optim.Adam(p, lr=0.05, weight_decay=0.01))
    for a, b in zip(ours, torch_adam):
        torch.testing.assert_close(a, b)


def test_the_gradient_rule_is_plain_sgd():
    for a, b in zip(_steps(lambda p: rule("g").optimizer(p, 0.1, 0.0, 0)), _steps(lambda p: torch.optim.SGD(p, 0.1))):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize(
    ("text", "closed_form"),
    [
        (POWERSIGN, lambda g, m: math.e ** (torch.sign(g) * torch.sign(m)) * g),
        (ADDSIGN, lambda g, m: (1 + torch.sign(g) * torch.sign(m)) * g),
    ],
)
def test_powersign_and_addsign_follow_bello_et_al(text, closed_form):
    """w <- w - lr * f(g, m) with m the running average of g (beta 0.9): computed by hand alongside."""
    lr = 0.01
    ours = _steps(lambda p: rule(text).optimizer(p, lr, 0.0, 0))
    torch.manual_seed(0)
    w = torch.randn(7, dtype=torch.float64)
    target = torch.randn(7, dtype=torch.float64)
    m = torch.zeros(7, dtype=torch.float64)
    for step, after in enumerate(ours, 1):
        g = 2 * (w - target) * torch.arange(1, 8)
        m = 0.9 * m + 0.1 * g
        w = w - lr * closed_form(g, m / (1 - 0.9**step))
        torch.testing.assert_close(after, w)


def test_noise_and_dropout_in_a_rule_are_reproducible_from_its_seed():
    one = _steps(lambda p: rule("drop(g, 0.5) + 0.001 * noise").optimizer(p, 0.1, 0.0, 3))
    again = _steps(lambda p: rule("drop(g, 0.5) + 0.001 * noise").optimizer(p, 0.1, 0.0, 3))
    other = _steps(lambda p: rule("drop(g, 0.5) + 0.001 * noise").optimizer(p, 0.1, 0.0, 4))
    assert all(torch.equal(a, b) for a, b in zip(one, again))
    assert not all(torch.equal(a, b) for a, b in zip(one, other))


def test_a_formula_that_overflows_gives_non_finite_values_not_an_exception():
    module = activation("exp(exp(x^3))")._activation()()
    assert not torch.isfinite(module(torch.tensor([10.0]))).all()


# -- the grammars as spaces -------------------------------------------------------------------------


@pytest.fixture(params=["activation", "update-rule"])
def space(request) -> SearchSpace:
    return ActivationSpace() if request.param == "activation" else UpdateRuleSpace()


def test_the_grammars_have_the_published_choices():
    assert len(UNARY) == 25 and len(BINARY) == 10
    assert len(OPERANDS) == 14 and len(RULE_UNARY) == 12 and len(RULE_BINARY) == 5
    assert ActivationSpace().size() == (25 * 25 * 10) + (25 * 25 * 10) ** 2
    assert UpdateRuleSpace(units=1).size() == 14 * 14 * 12 * 12 * 5


def test_sampled_members_encode_decode_and_mutate_within_the_space(space):
    rng = np.random.default_rng(0)
    units = set()
    for _ in range(200):
        arch = space.sample(rng)
        tokens = space.encode(arch)
        assert space.decode(tokens) == arch
        units.add(len(tokens))
        assert Architecture.from_dict(arch.to_dict()) == arch
        mutated = space.mutate(arch, rng)
        assert space.contains(mutated)
        units.add(len(space.encode(mutated)))
    assert len(units) >= 2  # mutation adds and removes units


def test_a_small_grammar_enumerates_its_members_once():
    space = ActivationSpace(unary=["x", "tanh(x)"], binary=["x1 + x2", "x1 * x2"], units=1)
    members = list(space.enumerate())
    assert len(members) == space.size() == 8
    assert len({m.to_json() for m in members}) == 8
    assert len({m.hash for m in members}) == 6  # x + tanh(x) = tanh(x) + x, and likewise for *


def test_the_published_functions_and_rules_are_members():
    activations, rules = ActivationSpace(), UpdateRuleSpace()
    assert activations.contains(activation("sigmoid(beta * x) * x"))  # Swish: sigmoid(x1) * x2
    assert activations.contains(activation("max(x, 0) + x * 0")) is False  # not of the grammar's shape
    assert rules.contains(rule(POWERSIGN))
    addsign = rule("(sign(g) * sign(m) + 1) * g")
    assert rules.contains(addsign) and addsign.hash == rule(ADDSIGN).hash
    assert rules.contains(rule("keep(adam, g)"))


def test_a_space_refuses_members_of_another_child_and_bad_settings():
    with pytest.raises(ArchsearchError, match="is not this space's"):
        ActivationSpace(child="cnn").encode(activation("tanh(x) + x"))
    with pytest.raises(ArchsearchError, match="space.unary: unknown 'relu'"):
        ActivationSpace(unary=["relu"])
    with pytest.raises(ArchsearchError, match="space.units"):
        UpdateRuleSpace(units=4)
    with pytest.raises(ArchsearchError, match="space.child"):
        ActivationSpace(child="rnn")


def test_spaces_rebuild_from_their_config(space):
    assert SearchSpace.from_config(space.to_config()) == space


def test_every_strategy_proposes_members(space):
    from archsearch.config import build_strategy

    for name in ("reinforce", "evolution", "random", "tpe"):
        strategy = build_strategy({"name": name, "seed": 0}, space)
        proposed = strategy.ask(4)
        assert len(proposed) == 4 and all(space.contains(arch) for arch in proposed)


def test_a_formula_optimizer_is_a_torch_optimizer():
    optimizer = rule(POWERSIGN).optimizer([torch.nn.Parameter(torch.zeros(2))], 0.1, 0.0, 0)
    assert isinstance(optimizer, torch.optim.Optimizer) and isinstance(optimizer, FormulaOptimizer)


def test_size_counts_distinct_members_and_enumerate_gives_each_once():
    # x * sigmoid(x) is written both by x1 * x2 (u1 = sigmoid, u2 = x) and by sigmoid(x1) * x2 (u1 = u2 = x)
    space = ActivationSpace(units=1, unary=["x", "sigmoid(x)"], binary=["x1 * x2", "sigmoid(x1) * x2"])
    members = list(space.enumerate())
    assert len(members) == len(set(members)) == space.size() == 6


def test_random_search_proposes_every_member_of_a_small_space_once_then_says_so():
    from archsearch.strategies import RandomSearch

    space = ActivationSpace(units=1, unary=["x", "sigmoid(x)"], binary=["x1 * x2", "sigmoid(x1) * x2"])
    strategy = RandomSearch(space, seed=0)
    assert len(set(strategy.ask(6))) == 6
    with pytest.raises(ArchsearchError, match="all 6 architectures proposed already"):
        strategy.ask(1)


@pytest.mark.parametrize(
    ("space", "text"),
    [
        (ActivationSpace(), SWISH),  # the grammar writes sigmoid(beta * x) * x
        (UpdateRuleSpace(), ADDSIGN),  # the grammar writes (sign(g) * sign(m) + 1) * g
        (UpdateRuleSpace(), "g * exp(sign(g) * sign(m))"),  # PowerSign as str() prints it
        (ActivationSpace(), "exp(-beta * (tanh(x) - x)^2)"),  # the grammar writes (x - tanh(x))^2
    ],
)
def test_a_member_written_in_its_printed_form_is_recognised(space, text):
    arch = (activation if isinstance(space, ActivationSpace) else rule)(text)
    member = space.validate(arch)
    assert member.hash == arch.hash and space.decode(space.encode(member)) == member


def test_every_member_printed_and_read_back_is_the_same_member(space):
    rng = np.random.default_rng(3)
    for _ in range(60):
        arch = space.sample(rng)
        printed = type(arch).parse(str(arch), arch.child, arch.widths)
        assert space.validate(printed) == arch or space.validate(printed).hash == arch.hash


def test_an_activation_without_x_is_a_constant_of_the_right_shape():
    net = activation("beta1 + beta2").build(2, 3, torch.Generator().manual_seed(0))
    assert net(torch.randn(4, 2)).shape == (4, 3)


def test_mutation_changes_the_formula_and_uses_every_move_it_has():
    rng = np.random.default_rng(12)
    tiny = ActivationSpace(unary=["beta", "x"], binary=["x1 + x2"])
    arch = activation("beta + x")
    assert all(tiny.mutate(arch, rng) != arch for _ in range(50))
    fixed = ActivationSpace(unary=["x"], binary=["x1 + x2"])
    assert fixed.mutate(activation("x + x + x"), rng) == activation("x + x")  # only removing a unit is left


def test_trees_built_in_python_are_checked_like_parsed_ones():
    with pytest.raises(ArchsearchError, match="not negative"):
        ActivationArchitecture(f.apply("add", f.variable("x"), f.const(-1.0)))
    with pytest.raises(ArchsearchError, match="not negative"):
        ActivationArchitecture(f.const(float("nan")))
    with pytest.raises(ArchsearchError, match="sigmoid takes 1 operands, got 2"):
        ActivationArchitecture(f.apply("sigmoid", f.variable("x"), f.variable("x")))

"""The multi-objective strategies (NSGA-II, Pareto evolution): proposals in the space, exact resumes, a
trade-off found, and Pareto evolution's crowded tournament."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from archsearch.errors import ArchsearchError
from archsearch.space import CodeSpace, MLPSpace
from archsearch.strategies import NSGA2, STRATEGIES, Outcome, ParetoEvolution
from archsearch.strategies._pareto_evolution import (
    crowded_ranking,
    crowded_winner,
    crowding_distances,
    non_dominated_ranks,
)
from archsearch.study import build_strategy

NAMES = ["nsga2", "pareto-evolution"]
#: two objectives in conflict: mismatches against A and against B, which differ at every position. The
#: front is the codes made of A's and B's characters only, where the two sum to 8; a random code sums to 12
#: on average (a position with neither character counts against both).
A, B = "01230123", "23012301"


def needs(name: str) -> None:
    if name == "nsga2":
        pytest.importorskip("optuna", reason="the nsga2 strategy needs the optional extra archsearch[optuna]")


def mismatches(arch) -> tuple[float, float]:  # noqa: ANN001
    return (float(sum(a != b for a, b in zip(arch.code, A))), float(sum(a != b for a, b in zip(arch.code, B))))


def mlp_objectives(arch) -> tuple[float, float]:  # noqa: ANN001
    """A made-up score to maximise (so negated) against the parameter count (in thousands)."""
    score = sum(np.log2(layer.units) + (layer.activation == "tanh") for layer in arch.layers)
    return (-float(score), arch.num_params(4, 2) / 1000)


def drive(strategy, objectives, steps: int, per_step: int) -> list[list[tuple[float, ...]]]:  # noqa: ANN001
    """Ask and tell ``steps`` times; each step's objective values, in the order proposed."""
    told = []
    for _ in range(steps):
        archs = strategy.ask(per_step)
        results = [Outcome(a, 0.0, objectives=objectives(a)) for a in archs]
        strategy.tell(results)
        told.append([r.objectives for r in results])
    return told


def codes(strategy, steps: int, per_step: int = 4) -> list[list[str]]:  # noqa: ANN001
    told = []
    for _ in range(steps):
        archs = strategy.ask(per_step)
        strategy.tell([Outcome(a, 0.0, objectives=mismatches(a)) for a in archs])
        told.append([a.code for a in archs])
    return told


def roundtrip(state):  # noqa: ANN001, ANN201
    """The state as a study stores it: torch.save, then torch.load(weights_only=True)."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def hypervolume(points, reference=(9.0, 9.0)) -> float:  # noqa: ANN001
    """The area that ``points`` (two objectives, less is better) dominate below ``reference``."""
    front, best = [], reference[1]
    for x, y in sorted(points):
        if y < best:
            front.append((x, y))
            best = y
    edges = [x for x, _ in front[1:]] + [reference[0]]
    return sum((edge - x) * (reference[1] - y) for (x, y), edge in zip(front, edges))


def test_the_hypervolume_helper():
    assert hypervolume([(8.0, 8.0)]) == 1.0
    assert hypervolume([(0.0, 8.0), (8.0, 0.0), (8.0, 8.0)]) == 9.0 + 9.0 - 1.0


@pytest.mark.parametrize("name", NAMES)
def test_both_are_registered_as_multi_objective(name):
    needs(name)
    strategy = build_strategy({"name": name, "seed": 3, "population_size": 6}, CodeSpace("toy", 3, "01"))
    assert type(strategy) is STRATEGIES.lookup(name) and strategy.multi_objective
    assert strategy.to_config()["population_size"] == 6
    assert build_strategy(strategy.to_config(), strategy.space).to_config() == strategy.to_config()


@pytest.mark.parametrize("name", NAMES)
def test_proposals_are_members_of_a_variable_length_space(name):
    needs(name)
    space = MLPSpace(max_layers=4)
    strategy = build_strategy({"name": name, "seed": 1, "population_size": 8}, space)
    archs = []
    for _ in range(6):
        batch = strategy.ask(5)
        strategy.tell([Outcome(a, 0.0, objectives=mlp_objectives(a)) for a in batch])
        archs += batch
    assert all(space.contains(a) for a in archs)
    assert len({len(a.layers) for a in archs}) > 1  # EOS ends some of them early


@pytest.mark.parametrize("name", NAMES)
def test_proposals_are_deterministic_for_a_seed(name):
    needs(name)
    space = CodeSpace("toy", 8, "0123")

    def run(seed):
        return codes(build_strategy({"name": name, "seed": seed, "population_size": 8}, space), 6)

    assert run(5) == run(5)
    assert run(5) != run(6)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("split", [3, 5])  # mid-generation (12 of 8 + 8 told) and on a generation's boundary
def test_state_dict_mid_search_resumes_exactly(name, split):
    needs(name)
    space = CodeSpace("toy", 8, "0123")
    config = {"name": name, "seed": 7, "population_size": 8}
    expected = codes(build_strategy(config, space), 12)
    first = build_strategy(config, space)
    head = codes(first, split)
    resumed = build_strategy(config, space)
    resumed.load_state_dict(roundtrip(first.state_dict()))
    assert head + codes(resumed, 12 - split) == expected
    assert resumed.state_dict()["proposed"] == 48


@pytest.mark.parametrize("split", [3, 4])
def test_nsga2_resumes_exactly_when_children_are_told_late(split):
    """Optuna picks a generation's parents once, when its first child is drawn. A child of the generation
    before told after that (and better than all: it would be picked now) must not change them on resume."""
    pytest.importorskip("optuna")
    space = CodeSpace("toy", 8, "0123")

    def run(strategy, rounds, late=None):  # noqa: ANN001, ANN202
        # each round asks 4 and tells all but the last, which is told a round later, better than everything
        proposed, late = [], list(late or [])
        for _ in range(rounds):
            archs = strategy.ask(4)
            proposed.append([a.code for a in archs])
            told = [Outcome(a, 0.0, objectives=tuple(v - 10 for v in mismatches(a))) for a in late]
            strategy.tell(told + [Outcome(a, 0.0, objectives=mismatches(a)) for a in archs[:-1]])
            late = archs[-1:]
        return proposed, late

    expected, _ = run(NSGA2(space, seed=2, population_size=6), 10)
    first = NSGA2(space, seed=2, population_size=6)
    head, late = run(first, split)  # generation 1 started at round 2, with a child of generation 0 in flight
    state = roundtrip(first.state_dict())
    assert [generation for generation, _ in state["parents"]] == [1]
    resumed = NSGA2(space, seed=2, population_size=6)
    resumed.load_state_dict(state)
    resumed._pending = list(first._pending)  # the child in flight, to be told as the uninterrupted run does
    tail, _ = run(resumed, 10 - split, late)
    assert head + tail == expected


def test_nsga2_crosses_over_the_parameters_optuna_would():
    """The sampler's relative search space, kept by the strategy rather than recomputed from every trial at
    each proposal, is Optuna's intersection search space: the slots every measured child has."""
    optuna = pytest.importorskip("optuna")
    strategy = NSGA2(MLPSpace(units=(1, 2, 4, 8), max_layers=4, min_layers=2), seed=0, population_size=6)
    found = set()
    for _ in range(12):
        archs = strategy.ask(4)
        strategy.tell([Outcome(a, 0.0, objectives=mlp_objectives(a)) for a in archs])
        ours = strategy._sampler().infer_relative_search_space(strategy._study, None)
        everything = optuna.search_space.IntersectionSearchSpace().calculate(strategy._study)
        assert ours == {name: d for name, d in everything.items() if not d.single()}
        assert list(ours) == sorted(ours)
        found.add(len(ours))
    # every child has two layers' units and activations, and the units slot after them (EOS or a count)
    assert min(found) == 5 and max(found) > 5


def test_nsga2_state_holds_generations_and_leaves_failed_children_out():
    pytest.importorskip("optuna")
    space = CodeSpace("toy", 8, "0123")
    strategy = NSGA2(space, seed=0, population_size=4)
    for _ in range(4):
        archs = strategy.ask(4)
        strategy.tell([Outcome(archs[0], 0.0, "failed"), Outcome(archs[1], 0.0, "missing")])
        statuses = ["diverged", "infeasible"]
        strategy.tell([Outcome(a, 0.0, status, mismatches(a)) for a, status in zip(archs[2:], statuses)])
    state = strategy.state_dict()
    assert len(state["history"]) == 8 and state["objectives"] == 2 and state["proposed"] == 16
    # generation 0 needs 4 measured children: the first two steps, then a generation for each two steps
    assert [generation for *_, generation in state["history"]] == [0, 0, 0, 0, 1, 1, 1, 1]


@pytest.mark.parametrize("name", NAMES)
def test_the_front_found_beats_the_random_start(name):
    needs(name)
    space = CodeSpace("toy", 8, "0123")
    for seed in range(2):
        strategy = build_strategy({"name": name, "seed": seed, "population_size": 20}, space)
        told = drive(strategy, mismatches, steps=20, per_step=10)
        start = [p for step in told[:2] for p in step]  # the random phase: the first 20 proposals
        end = [p for step in told[-2:] for p in step]  # the last 20
        # the most a front can cover is 45; random sets of 20 cover about 18 to 26
        assert hypervolume(end) >= max(30.0, hypervolume(start) + 6.0), (seed, hypervolume(start), hypervolume(end))
        assert np.mean([sum(p) for p in end]) < np.mean([sum(p) for p in start]) - 1.5  # closer to the front (8)


@pytest.mark.parametrize("name", NAMES)
def test_an_outcome_without_objectives_is_one_line(name):
    needs(name)
    strategy = build_strategy({"name": name, "seed": 0}, CodeSpace("toy", 3, "01"))
    archs = strategy.ask(2)
    strategy.tell([Outcome(archs[0], 0.0, "failed")])  # measured nothing: it has no objectives to give
    with pytest.raises(ArchsearchError, match=rf"^strategy {name}: needs several objectives \(--objectives \.\.\.\)$"):
        strategy.tell([Outcome(archs[1], 0.5)])


@pytest.mark.parametrize("name", NAMES)
def test_a_changed_number_of_objectives_is_refused(name):
    needs(name)
    strategy = build_strategy({"name": name, "seed": 0}, CodeSpace("toy", 3, "01"))
    archs = strategy.ask(2)
    strategy.tell([Outcome(archs[0], 0.0, objectives=(1.0, 2.0))])
    with pytest.raises(ArchsearchError, match="expected 2 objective values, got 3"):
        strategy.tell([Outcome(archs[1], 0.0, objectives=(1.0, 2.0, 3.0))])


def test_front_size_counts_the_non_dominated():
    space = CodeSpace("toy", 2, "0123")
    strategy = ParetoEvolution(space, seed=0, population_size=4, sample_size=2)
    archs = strategy.ask(4)
    values = [(1.0, 3.0), (2.0, 2.0), (2.0, 3.0), (3.0, 1.0)]  # the third is dominated by the first two
    metrics = strategy.tell([Outcome(a, 0.25 * i, objectives=v) for i, (a, v) in enumerate(zip(archs, values))])
    assert metrics == {"mean_reward": 0.375, "front_size": 3.0}


def test_ranks_and_crowding_distances():
    points = [(1.0, 4.0), (2.0, 2.0), (4.0, 1.0), (3.0, 3.0), (5.0, 5.0), (2.5, 1.8)]
    assert non_dominated_ranks(points) == [0, 0, 0, 1, 2, 0]  # (3,3) is behind (2,2), and (5,5) behind it
    # on the front (1,4), (2.5,1.8), (4,1): the ends are infinite, the middle one spans the whole range twice
    assert crowding_distances([(1.0, 4.0), (2.5, 1.8), (4.0, 1.0)]) == [np.inf, 2.0, np.inf]
    assert crowding_distances([(1.0, 1.0)]) == [np.inf]


def test_the_crowded_comparison_prefers_rank_then_spread_then_age():
    # the front (1,5), (2,3), (2.2,2.9), (5,1); behind it (3,4) and (6,6)
    points = [(6.0, 6.0), (3.0, 4.0), (2.2, 2.9), (2.0, 3.0), (1.0, 5.0), (5.0, 1.0)]
    ranking = crowded_ranking(points)
    assert [rank for rank, _ in ranking] == [2, 1, 0, 0, 0, 0]
    assert crowded_winner([0, 1], ranking) == 1  # the younger one dominates the older
    assert crowded_winner([1, 2], ranking) == 2
    # in the front, (2,3) is crowded by (2.2,2.9); (2.2,2.9) has (5,1) far on its other side
    assert ranking[3][1] < ranking[2][1] < np.inf
    assert crowded_winner([0, 1, 3, 2], ranking) == 2
    # the ends of a front are infinitely far from their neighbours: of two ends the older wins
    assert crowded_winner([5, 2, 4], ranking) == 4
    # ranks and distances are those within all the points, not within the contestants: among 2 and 3
    # alone, both would be ends of their front, and the older (2) would win either way; among 3 and 1, 3
    assert crowded_winner([3, 1], ranking) == 3


def test_pareto_evolution_tournaments_pick_the_non_dominated_contestant():
    space = CodeSpace("toy", 6, "0123")
    strategy = ParetoEvolution(space, seed=0, population_size=4, sample_size=4)
    first = strategy.ask(4)  # the random phase
    # the third dominates every other member, though its reward is the lowest (the reward is not used)
    values = [(2.0, 2.0), (3.0, 1.5), (1.0, 1.0), (1.5, 3.0)]
    strategy.tell([Outcome(a, r, objectives=v) for a, r, v in zip(first, [0.9, 0.8, 0.1, 0.7], values)])
    for _ in range(3):  # a tournament of the whole population: the parent is always the third member
        child = strategy.ask(1)[0]
        assert sum(a != b for a, b in zip(child.code, first[2].code)) == 1
        strategy.tell([Outcome(child, 0.0, "failed")])  # measured nothing: the population stays as it was
    strategy.tell([Outcome(strategy.ask(1)[0], 0.5, objectives=(9.0, 9.0))])
    assert [a for a, _, _ in strategy.population] == [*first[1:], strategy.population[-1][0]]  # the oldest left


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"population_size": 1}, "population_size"),
        ({"mutation_prob": 1.5}, "mutation_prob"),
        ({"crossover_prob": -0.1}, "crossover_prob"),
        ({"population_size": 2.5}, "population_size"),
    ],
)
def test_nsga2_settings_are_checked(options, field):
    pytest.importorskip("optuna")
    with pytest.raises(ArchsearchError, match=f"strategy.{field}"):
        NSGA2(CodeSpace("toy", 3, "01"), **options)

"""Every strategy behind the same interface: finds a toy optimum, resumes exactly, stays in its space."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from archsearch.errors import ArchsearchError
from archsearch.evaluation import TABULAR_BENCHMARKS, LookupEvaluator, TabularBenchmark
from archsearch.space import CodeArchitecture, CodeSpace
from archsearch.strategies import NSGA2, TPE, Outcome, RandomSearch, RegularizedEvolution, Reinforce, outcomes
from archsearch.study import STRATEGIES, Study, build_strategy

TARGET = "310231"


def toy_benchmark(length: int = 6, choices: str = "0123") -> TabularBenchmark:
    """Accuracy = 50 + 50 x fraction of positions that match TARGET: one optimum (100)."""
    space = CodeSpace("toy", length, choices)
    target = TARGET[:length]
    records = {
        arch.code: {"acc": 50.0 + 50.0 * sum(a == b for a, b in zip(arch.code, target)) / length}
        for arch in space.enumerate()
    }
    return TabularBenchmark("toy", space, records, metric="acc", scale=0.01)


def with_tpe(names):
    pytest.importorskip("optuna", reason="the tpe strategy needs the optional extra archsearch[optuna]")
    return names


ALL = sorted(name for name in STRATEGIES if not (STRATEGIES.lookup(name).multi_objective or STRATEGIES.lookup(name).continues))  # see test_multi_objective.py and study/test_population.py


def run_study(name: str, bench: TabularBenchmark, steps: int, per_step: int, seed: int = 0, **options) -> Study:
    study = Study.create(
        None,
        None,
        steps=steps,
        children_per_step=per_step,
        seed=seed,
        space=bench.space,
        strategy=build_strategy({"name": name, "seed": seed, **options}, bench.space),
        evaluator=LookupEvaluator(bench),
    )
    study.run(progress=False)
    return study


@pytest.mark.parametrize("name", ALL)
@pytest.mark.slow
def test_each_strategy_finds_the_toy_optimum(name):
    if name == "tpe":
        with_tpe(name)
    bench = toy_benchmark()  # 4096 codes, one optimum
    # queries: 600 (15 % of the space) for evolution, 300 (7 %) for TPE, whose model of independent
    # positions suits this table (it first hits the optimum after 23 to 89 queries, seeds 0-15), 1200 for
    # reinforce (its median is about 450 here), and all of the space for random search without repeats, the
    # only budget that makes it sure; random search proposes one child at a time whatever the step's size, so
    # it takes them 64 to a step (the same 4096 proposals in the same order as 4 to a step, in fewer steps)
    steps, per_step = {"random": (bench.space.size() // 64, 64), "reinforce": (300, 4), "tpe": (75, 4)}.get(
        name, (150, 4)
    )
    found = []
    for seed in range(3):
        study = run_study(name, bench, steps=steps, per_step=per_step, seed=seed)
        found.append(study.best().architecture.code)
    assert found == [TARGET] * 3, found


def test_random_without_repeats_exhausts_a_small_space():
    bench = toy_benchmark(length=4, choices="012")  # 81 codes
    study = run_study("random", bench, steps=27, per_step=3)
    codes = [t.architecture.code for t in study.trials()]
    assert len(codes) == len(set(codes)) == 81
    assert study.best().reward == pytest.approx(max(r["acc"] for r in bench.records.values()) * 0.01)
    with pytest.raises(ArchsearchError, match="all 81 architectures proposed already"):
        study.strategy.ask(1)


def test_random_with_repeats_is_uniform():
    space = CodeSpace("toy", 2, "012")
    archs = RandomSearch(space, seed=0, unique=False).ask(9000)
    counts = np.array([sum(a.code == m.code for a in archs) for m in space.enumerate()])
    assert counts.min() > 850 and counts.max() < 1150


def test_random_median_queries_match_the_analytical_median():
    """The harness check of the comparison: 2 optima among 6561 codes without repeats -> median 1922."""
    from archsearch.experiments._compare import random_median

    space = CodeSpace("harness", 8, "012")
    optima = {"22212202", "22212220"}
    hits = []
    for seed in range(60):
        strategy = RandomSearch(space, seed=seed)
        for query in range(1, space.size() + 1):
            if strategy.ask(1)[0].code in optima:
                hits.append(query)
                break
    assert random_median(space.size(), 2) == 1922
    # the sample median of 60 runs has a standard error of about 200 queries here
    assert 1922 - 500 < np.median(hits) < 1922 + 500, np.median(hits)


def test_evolution_mutates_tournament_winners_and_ages_out_the_oldest():
    space = CodeSpace("toy", 6, "0123")
    strategy = RegularizedEvolution(space, seed=0, population_size=4, sample_size=4)
    first = strategy.ask(4)  # the random phase
    strategy.tell(outcomes(first, [0.1, 0.9, 0.2, 0.3]))
    child = strategy.ask(1)[0]
    # with a tournament of the whole population, the parent is the best member
    assert sum(a != b for a, b in zip(child.code, first[1].code)) == 1
    strategy.tell(outcomes([child], [0.5]))
    assert [a for a, _ in strategy.population] == [*first[1:], child]  # the oldest left, not the worst


@pytest.mark.parametrize(
    ("options", "field"),
    [({"population_size": 1}, "population_size"), ({"sample_size": 30}, "sample_size")],
)
def test_evolution_settings_are_checked(options, field):
    with pytest.raises(ArchsearchError, match=field):
        RegularizedEvolution(CodeSpace("toy", 3, "01"), **options)


def _history(strategy, bench, steps, per_step=4):
    history = []
    for _ in range(steps):
        archs = strategy.ask(per_step)
        strategy.tell(outcomes(archs, [bench.value(a) * bench.scale for a in archs]))
        history.append([a.code for a in archs])
    return history


def _roundtrip(state):
    """The state as a study stores it: torch.save, then torch.load(weights_only=True)."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


@pytest.mark.parametrize("name", ALL)
def test_state_dict_mid_run_resumes_exactly(name):
    if name == "tpe":
        with_tpe(name)
    bench = toy_benchmark()
    straight = build_strategy({"name": name, "seed": 7}, bench.space)
    expected = _history(straight, bench, 16)
    first = build_strategy({"name": name, "seed": 7}, bench.space)
    head = _history(first, bench, 9)  # past evolution's random phase (20 proposals) and TPE's start-up trials
    resumed = build_strategy({"name": name, "seed": 7}, bench.space)
    resumed.load_state_dict(_roundtrip(first.state_dict()))
    assert head + _history(resumed, bench, 7) == expected


@pytest.mark.parametrize("name", ALL)
def test_a_study_killed_mid_run_resumes_to_the_uninterrupted_study(tmp_path, monkeypatch, name):
    if name == "tpe":
        with_tpe(name)
    bench = toy_benchmark()
    # registered the way a new tabular benchmark is added, so that a reopened study can rebuild its lookup
    monkeypatch.setitem(TABULAR_BENCHMARKS, "toy", lambda: bench)

    def create(path, steps):
        return Study.create(
            path,
            None,
            steps=steps,
            children_per_step=4,
            seed=3,
            space=bench.space,
            strategy=build_strategy({"name": name, "seed": 3}, bench.space),
            evaluator=LookupEvaluator(bench),
        )

    with create(tmp_path / "straight.db", 12) as study:
        study.run(progress=False)
        expected = [(t.architecture.code, t.reward) for t in study.trials()]
    with create(tmp_path / "split.db", 12) as study:
        study.run(steps=7, progress=False)
    with Study.open(tmp_path / "split.db") as study:  # a fresh process would rebuild everything from the file
        study.run(steps=12, progress=False)
        assert [(t.architecture.code, t.reward) for t in study.trials()] == expected


@pytest.mark.parametrize("cls", [RandomSearch, RegularizedEvolution, Reinforce])
def test_proposals_are_members_of_the_space(cls):
    space = CodeSpace("toy", 6, "ab")
    archs = cls(space, seed=1).ask(40)
    assert all(isinstance(a, CodeArchitecture) and space.contains(a) for a in archs)


@pytest.mark.parametrize("name", ["tpe", "nsga2"])
def test_optuna_strategies_report_a_missing_optuna(monkeypatch, name):
    import builtins

    real_import = builtins.__import__

    def no_optuna(name, *args, **kwargs):
        if name == "optuna":
            raise ImportError("No module named 'optuna'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_optuna)
    strategy = {"tpe": TPE, "nsga2": NSGA2}[name]
    with pytest.raises(ArchsearchError, match=rf"^strategy {name}: needs Optuna; .*pip install 'archsearch\[optuna\]'$"):
        strategy(CodeSpace("toy", 3, "01"))


def test_tpe_rejects_an_architecture_it_did_not_propose():
    with_tpe("tpe")
    space = CodeSpace("toy", 3, "01")
    strategy = TPE(space, seed=0)
    proposed = strategy.ask(1)[0]
    other = CodeArchitecture("toy", "111" if proposed.code != "111" else "000")
    with pytest.raises(ValueError, match="was not proposed"):
        strategy.tell(outcomes([other], [0.5]))


def _tpe_after(outcome_of, steps=6):
    """TPE's proposals on the toy table when every child coded as ``outcome_of`` says."""
    bench = toy_benchmark()
    strategy = TPE(bench.space, seed=4, n_startup_trials=4)
    proposed = []
    for _ in range(steps):
        archs = strategy.ask(4)
        strategy.tell([outcome_of(a, bench) for a in archs])
        proposed.append([a.code for a in archs])
    return strategy, proposed


def test_tpe_leaves_failed_and_missing_children_out_of_its_model():
    with_tpe("tpe")

    def measured(arch, bench):
        return Outcome(arch, bench.value(arch) * bench.scale)

    def some_fail(arch, bench):  # children whose code starts with 0 crash; their reward of 0 must not count
        if arch.code[0] == "0":
            return Outcome(arch, 0.0, "failed" if arch.code[1] < "2" else "missing")
        return measured(arch, bench)

    def some_zero(arch, bench):  # what TPE was told before outcomes had a status
        return Outcome(arch, 0.0) if arch.code[0] == "0" else measured(arch, bench)

    failing, proposals = _tpe_after(some_fail)
    zeroed, zero_proposals = _tpe_after(some_zero)
    left_out = sum(code[0] == "0" for step in proposals for code in step)
    assert left_out > 0
    assert len(failing.history) == 24 - left_out  # only measured outcomes are in the model and its state
    assert not any(failing.space.decode(tokens).code[0] == "0" for tokens, _ in failing.history)
    assert len(zeroed.history) == 24
    assert proposals[:1] == zero_proposals[:1] and proposals != zero_proposals  # the model differs after start-up
    # the state holds what the model holds: a resumed TPE proposes what the uninterrupted one does
    resumed = TPE(toy_benchmark().space, seed=4, n_startup_trials=4)
    resumed.load_state_dict(_roundtrip(failing.state_dict()))
    assert [a.code for a in resumed.ask(4)] == [a.code for a in failing.ask(4)]


def test_tpe_fits_a_diverged_child_as_a_measured_reward_of_zero():
    with_tpe("tpe")
    strategy, _ = _tpe_after(lambda arch, bench: Outcome(arch, 0.0, "diverged"), steps=2)
    assert len(strategy.history) == 8
    assert {reward for _, reward in strategy.history} == {0.0}


def test_evolution_keeps_failed_and_missing_children_out_of_its_population():
    space = CodeSpace("toy", 6, "0123")
    strategy = RegularizedEvolution(space, seed=0, population_size=4, sample_size=2)
    first = strategy.ask(4)
    statuses = ["ok", "failed", "diverged", "missing"]
    metrics = strategy.tell([Outcome(a, r, s) for a, r, s in zip(first, [0.4, 0.0, 0.0, 0.0], statuses)])
    assert [a for a, _ in strategy.population] == [first[0], first[2]]
    assert metrics == {"mean_reward": 0.1, "population_best": 0.4}
    assert strategy.tell([Outcome(strategy.ask(1)[0], 0.0, "failed")]) == {"mean_reward": 0.0, "population_best": 0.4}


def test_reinforce_learns_from_every_status_with_its_reward():
    """A failed child's reward of 0 is a real signal to the controller: it must learn to avoid such children."""
    space = CodeSpace("toy", 3, "01")
    told, plain = Reinforce(space, seed=1), Reinforce(space, seed=1)
    archs = told.ask(4)
    assert archs == plain.ask(4)
    statuses = ["ok", "failed", "diverged", "missing"]
    a = told.tell([Outcome(x, r, s) for x, r, s in zip(archs, [0.9, 0.0, 0.0, 0.0], statuses)])
    b = plain.tell(outcomes(archs, [0.9, 0.0, 0.0, 0.0]))
    assert a == b
    assert all(torch.equal(p, q) for p, q in zip(told.controller.parameters(), plain.controller.parameters()))


def test_an_outcome_refuses_an_unknown_status_and_a_reward_that_is_not_finite():
    arch = CodeArchitecture("toy", "010")
    with pytest.raises(ValueError, match="status 'crashed' is not one of ok, diverged, failed, missing"):
        Outcome(arch, 0.0, "crashed")
    with pytest.raises(ValueError, match="reward nan is not finite"):
        Outcome(arch, float("nan"))
    assert Outcome(arch, 0.0, "diverged").measured and not Outcome(arch, 0.0, "missing").measured

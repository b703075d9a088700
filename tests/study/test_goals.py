"""A study's goals: costs recorded for every trial, hard limits, MnasNet's soft target, objectives told to
the strategy, and exact resume with all of them."""

import numpy as np
import pytest
import torch

from archsearch import ArchsearchError, SerialTrainer, Study, TrainConfig
from archsearch._objectives import INFEASIBLE, MNASNET_WEIGHT, Goals
from archsearch.config import SearchConfig, smallest
from archsearch.evaluation import _cost
from archsearch.space import CNNSpace, MLPArchitecture, MLPSpace
from archsearch.strategies import Outcome, RandomSearch
from archsearch.tasks import get_task

from ..conftest import crash
from ..conftest import crashing as crashing_trainer

SPACE = {"kind": "mlp", "units": [2, 4, 8, 16], "activations": ["tanh", "relu"], "max_layers": 3}


def config(moons, **goals):
    return SearchConfig(task=moons, space=SPACE, strategy="random", steps=3, children_per_step=5, seed=3,
                        evaluator=SerialTrainer(moons, TrainConfig(max_epochs=3)), **goals)  # fmt: skip


def key(trial):
    return (trial.number, trial.arch_hash, trial.status, trial.reward, trial.params, trial.flops, trial.train_loss)


@pytest.mark.parametrize("text", ["8-tanh", "4-relu/16-tanh/2-relu"])
def test_an_mlps_closed_form_flops_equal_the_torch_counters(moons, text):
    arch = MLPArchitecture.parse(text)
    assert _cost.flops(arch, moons) == _cost.counted_flops(arch, moons)
    widths = (2, *arch.widths, 2)
    assert _cost.flops(arch, moons) == 2 * sum(a * b for a, b in zip(widths, widths[1:]))


def test_a_cnns_flops_count_its_convolutions_and_grow_with_its_filters():
    digits = get_task("digits")
    space = CNNSpace(filters=(8, 16), kernels=(3,), max_layers=1, skips=False, batch_norm=False)
    archs = {str(arch): arch for arch in space.enumerate()}
    counted = {name: _cost.flops(archs[name], digits) for name in ("8c3s2", "8c3", "16c3")}
    assert 0 < counted["8c3s2"] < counted["8c3"] < counted["16c3"]  # a stride of 2 visits a quarter of the pixels
    h, w = digits.x_train.shape[2:]
    assert counted["8c3"] >= 2 * 8 * 9 * h * w  # the convolution alone: 8 filters of 3x3 over every pixel


def test_every_trial_records_its_flops_and_with_latency_its_timing(moons):
    with Study.create(None, config(moons, latency=True)) as study:
        study.run(progress=False)
        trials = study.trials()
    assert all(t.flops == _cost.flops(t.architecture, moons) for t in trials)
    assert all(t.latency_ms > 0 and t.latency_spread >= 0 for t in trials)
    timed = {}
    for t in trials:  # a repeated architecture keeps its first measurement
        assert timed.setdefault(t.arch_hash, t.latency_ms) == t.latency_ms
    with Study.create(None, config(moons)) as untimed:
        untimed.run(progress=False)
        assert {t.latency_ms for t in untimed.trials()} == {None}


def test_an_architecture_over_a_limit_is_recorded_infeasible_and_not_trained(moons):
    with Study.create(None, config(moons, max_params=60, objectives="val_score:max,params:min")) as study:
        study.run(progress=False)
        trials, best = study.trials(), study.best()
    over = [t for t in trials if t.params > 60]
    assert over and all(t.status == "infeasible" and t.epochs == 0 and t.reward == 0 for t in over)
    assert all("over the limit of 60 (max_params)" in t.error for t in over)
    assert all(t.status == "ok" and t.epochs > 0 for t in trials if t.params <= 60)
    assert best.params <= 60


def test_a_cost_target_scalarises_the_reward_as_mnasnet_does(moons):
    with Study.create(None, config(moons)) as plain:
        plain.run(progress=False)
        rewards = {t.number: t.reward for t in plain.trials()}
    with Study.create(None, config(moons, cost_target="params=40", cost_weight=-0.5)) as study:
        study.run(progress=False)
        for t in study.trials():
            assert t.reward == pytest.approx(rewards[t.number] * (t.params / 40) ** -0.5, rel=1e-12)


def test_the_strategy_is_told_each_trials_objectives_less_is_better(moons, monkeypatch):
    told = []
    monkeypatch.setattr(RandomSearch, "tell", lambda self, outcomes: told.extend(outcomes) or {})
    goals = {"objectives": "val_score:max,flops:min", "max_params": 100}
    with Study.create(None, config(moons, **goals)) as study:
        study.run(progress=False)
        trials = study.trials()
    expected = [(INFEASIBLE, INFEASIBLE) if t.status == "infeasible" else (-t.val_score, t.flops) for t in trials]
    assert [o.objectives for o in told] == expected  # an infeasible child: dominated by every feasible one
    assert {o.status for o in told} == {"ok", "infeasible"}


@pytest.mark.parametrize("crash_after", [2, 7])
def test_a_study_with_goals_resumes_to_the_uninterrupted_one(tmp_path, moons, crash_after):
    goals = {"objectives": "val_score:max,params:min", "max_params": 100, "cost_target": "flops=100"}
    with Study.create(tmp_path / "straight.db", config(moons, **goals)) as straight:
        straight.run(progress=False)
        expected = [key(t) for t in straight.trials()]
    train = TrainConfig(max_epochs=3)
    crashing = SearchConfig(**{**config(moons, **goals).__dict__,
                               "evaluator": crashing_trainer(SerialTrainer, crash_after)(moons, train)})  # fmt: skip
    crash(tmp_path / "crashed.db", crashing)
    with Study.open(tmp_path / "crashed.db") as resumed:
        assert resumed.goals == Goals.parse("val_score:max,params:min", {"params": 100}, "flops=100")
        resumed.run(progress=False)
        assert [key(t) for t in resumed.trials()] == expected


@pytest.mark.parametrize(
    ("goals", "needle"),
    [
        ({"objectives": "val_score:max,size:min"}, "objectives: unknown metric 'size'"),
        ({"objectives": "val_score:up,params:min"}, "objectives: the direction of val_score must be min or max"),
        ({"objectives": "val_score:max"}, "objectives: a trade-off needs at least two objectives"),
        ({"max_params": 6}, "max_params: no architecture of the space has at most 6 params (the smallest has 12)"),
        ({"max_flops": 0}, "max_flops: must be a positive integer, got 0"),
        ({"max_latency_ms": float("nan")}, "max_latency_ms: must be a positive number, got nan"),
        ({"cost_target": "size=3"}, "cost_target: expected COST=VALUE with COST one of params, flops, latency_ms"),
        ({"cost_target": "params=x"}, "cost_target: 'x' is not a number"),
        ({"cost_target": "params=5", "cost_weight": 1.0}, "cost_weight: must be a number in -10..0, got 1.0"),
        ({"cost_weight": -1.0}, "cost_weight: the exponent of cost_target, which is not given"),
        ({"strategy": "nsga2"}, "strategy nsga2: ranks by several objectives; give objectives"),
        ({"max_params": 10**400}, "max_params: must be at most 1e+15"),
        ({"max_latency_ms": 10**400}, "max_latency_ms: must be at most 1e+06"),
    ],
)
def test_bad_goals_are_one_line_before_anything_is_written(tmp_path, moons, goals, needle):
    if goals.get("strategy") == "nsga2":
        pytest.importorskip("optuna")
    path = tmp_path / "s.db"
    with pytest.raises(ArchsearchError) as error:
        Study.create(path, SearchConfig(**{**config(moons).__dict__, **goals}))
    assert needle in str(error.value) and "\n" not in str(error.value)
    assert not path.exists()


@pytest.mark.parametrize(
    ("goals", "needle"),
    [
        ({"latency": True}, "latency: the lookup evaluator trains no networks to time"),
        ({"objectives": "val_score:max,latency_ms:min"}, "objectives: the lookup evaluator trains no networks"),
        ({"max_latency_ms": 2.0}, "max_latency_ms: the lookup evaluator trains no networks to time"),
        ({"cost_target": "latency_ms=2"}, "cost_target: the lookup evaluator trains no networks to time"),
    ],
)
def test_a_table_has_no_latency_to_limit_or_rank_by(goals, needle):
    with pytest.raises(ArchsearchError, match=needle):
        SearchConfig(benchmark="nas-bench-macro", steps=2, **goals).build()
    config = SearchConfig(benchmark="nas-bench-macro", steps=2, children_per_step=5, objectives="val_score:max,flops:min")
    with Study.create(None, config) as study:  # the table's parameters and FLOPs
        study.run(progress=False)
        assert all(t.flops > 0 and t.params > 0 for t in study.trials())


def test_the_smallest_member_is_found_exactly_on_a_small_space_and_by_descent_on_a_large_one(moons):
    small = MLPSpace(units=(2, 4, 8), activations=("tanh",), max_layers=2)
    assert smallest(small, lambda a: a.num_params(2, 2)) == min(a.num_params(2, 2) for a in small.enumerate())
    large = MLPSpace()  # 1 unit in one layer: (2 + 1) * 1 + (1 + 1) * 2 = 7
    assert large.size() > 4000 and smallest(large, lambda a: a.num_params(2, 2)) == 7


def test_goals_from_a_study_file_are_checked(tmp_path):
    good = Goals.parse("val_score:max,latency_ms:min", {"params": 10}, "params=5", -0.2).to_dict()
    assert Goals.from_dict(good) == Goals.parse("val_score:max,latency_ms:min", {"params": 10}, "params=5", -0.2)
    assert Goals.from_dict(good).latency  # an objective on latency times every child
    for bad, needle in (({**good, "limits": {"size": 3}}, "goals.limits: expected costs among"),
                        ({**good, "objectives": ["val_score:max", 3]}, "goals.objectives: expected METRIC"),
                        ({**good, "target": {"cost": "params", "value": -1, "weight": 0}}, "goals.target: must be a"),
                        ({**good, "latency": "yes"}, "goals.latency: expected true or false"),
                        ([], "goals: expected objectives, limits, target and latency")):  # fmt: skip
        with pytest.raises(ArchsearchError, match=needle):
            Goals.from_dict(bad)


def test_outcome_objectives_must_be_finite():
    with pytest.raises(ValueError, match="objectives"):
        Outcome(MLPArchitecture.parse("2-tanh"), 0.5, "ok", (float("nan"), 1.0))
    assert MNASNET_WEIGHT == -0.07 and torch.isfinite(torch.tensor(MNASNET_WEIGHT))


def test_flops_counted_on_the_meta_device_equal_a_real_builds_count():
    from torch.utils.flop_counter import FlopCounterMode

    digits = get_task("digits")
    space = CNNSpace(max_layers=3)
    rng = np.random.default_rng(1)
    for arch in [space.sample(rng) for _ in range(5)]:
        model, inputs = _cost._module(arch, digits)  # a real network with real weights
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(*inputs)
        assert _cost.counted_flops(arch, digits) == counter.get_total_flops() > 0

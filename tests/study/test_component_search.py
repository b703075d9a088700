"""Component searches through the ordinary study: a formula in a fixed child trained like any child,
diverging formulas recorded as such, the same study on every run, and exact resume after a crash."""

import pytest
import torch

from archsearch import SerialTrainer, Study, TrainConfig
from archsearch.config import SearchConfig
from archsearch.space import ActivationArchitecture, ActivationSpace, UpdateRuleArchitecture, UpdateRuleSpace
from archsearch.space import _formula as f

from ..conftest import crash
from ..conftest import crashing as crashing_trainer

SMALL = {"unary": ["x", "tanh(x)", "exp(x)", "sigmoid(x)", "x^3"], "binary": ["x1 + x2", "x1 * x2", "x1 - x2"]}


def config(moons, kind="activation", strategy="reinforce", evaluator=None):
    space = {"kind": kind, "child": "mlp", "widths": [8], **(SMALL if kind == "activation" else {})}
    return SearchConfig(task=moons, space=space, strategy=strategy, steps=3, children_per_step=4, seed=5,
                        evaluator=evaluator or SerialTrainer(moons, TrainConfig(max_epochs=4)))  # fmt: skip


def key(trial):
    return (trial.number, trial.arch_hash, str(trial.architecture), trial.status, trial.reward, trial.train_loss)


@pytest.mark.parametrize("kind", ["activation", "update-rule"])
def test_a_component_search_records_formulas_and_repeats_exactly(tmp_path, moons, kind):
    runs = []
    for name in ("one.db", "two.db"):
        with Study.create(tmp_path / name, config(moons, kind)) as study:
            study.run(progress=False)
            runs.append([key(t) for t in study.trials()])
    assert runs[0] == runs[1] and len(runs[0]) == 12
    assert {k[3] for k in runs[0]} <= {"ok", "diverged"} and "ok" in {k[3] for k in runs[0]}
    architecture = ActivationArchitecture if kind == "activation" else UpdateRuleArchitecture
    assert all(isinstance(t.architecture, architecture) for t in Study.open(tmp_path / "one.db").trials())


@pytest.mark.parametrize("crash_after", [3, 9])
def test_a_component_search_resumes_to_the_uninterrupted_one(tmp_path, moons, crash_after):
    with Study.create(tmp_path / "straight.db", config(moons, "update-rule", "evolution")) as straight:
        straight.run(progress=False)
        expected = [key(t) for t in straight.trials()]
    crashing = crashing_trainer(SerialTrainer, crash_after)(moons, TrainConfig(max_epochs=4))
    crash(tmp_path / "crashed.db", config(moons, "update-rule", "evolution", crashing))
    with Study.open(tmp_path / "crashed.db") as resumed:
        resumed.run(progress=False)
        assert [key(t) for t in resumed.trials()] == expected


def test_a_diverging_formula_is_a_recorded_trial_and_the_search_goes_on(moons):
    trainer = SerialTrainer(moons, TrainConfig(max_epochs=5, lr=0.5))
    exploding = ActivationArchitecture.parse("exp(exp(x^3))", "mlp", (8,))
    result = trainer.train(exploding, 0)
    assert result.status == "diverged" and ("non-finite" in result.error or "nan" in result.error)
    rule = UpdateRuleArchitecture.parse("g / (g - g)", "mlp", (8,))
    assert trainer.train(rule, 0).status == "diverged"
    assert trainer.train(ActivationArchitecture.parse("tanh(x)", "mlp", (8,)), 0).status == "ok"


def test_the_trained_update_rule_is_what_trains_the_child(moons):
    """Adam's own rule through the serial trainer gives the same child as the trainer's Adam."""
    trainer = SerialTrainer(moons, TrainConfig(max_epochs=4))
    by_rule = trainer.train(UpdateRuleArchitecture.parse("adam", "mlp", (8,)), 2)
    relu = ActivationArchitecture.parse("max(x, 0)", "mlp", (8,))
    by_adam = trainer.train(relu, 2)
    assert by_rule.train_loss == pytest.approx(by_adam.train_loss, rel=1e-5)
    assert by_rule.val_curve == pytest.approx(by_adam.val_curve)
    sgd = trainer.train(UpdateRuleArchitecture.parse("g", "mlp", (8,)), 2)
    assert sgd.train_loss != pytest.approx(by_adam.train_loss, rel=1e-3)


def test_the_config_builds_the_child_the_task_needs(moons):
    digits_space = SearchConfig(task="digits", space="update-rule").build().space
    assert isinstance(digits_space, UpdateRuleSpace) and digits_space.child == "cnn"
    parts = SearchConfig(task=moons, space="activation").build()
    assert isinstance(parts.space, ActivationSpace) and parts.space.child == "mlp"
    assert parts.evaluator.name == "serial"
    net = parts.space.sample(__import__("numpy").random.default_rng(0)).build(2, 2)
    assert net(torch.zeros(3, 2)).shape == (3, 2)


def test_a_child_that_does_not_fit_the_task_is_refused(moons):
    from archsearch import ArchsearchError

    with pytest.raises(ArchsearchError, match="space: the activation space trains the cnn child; task 'moons' needs the mlp child"):
        SearchConfig(task=moons, space=ActivationSpace(child="cnn")).build()


class _BiasToMinusInfinity(UpdateRuleArchitecture):
    """Adam, then the first layer's bias set to -inf: behind a ReLU the outputs stay finite."""

    def optimizer(self, params, lr, weight_decay, seed):
        params = list(params)

        class Poisoned(torch.optim.Adam):
            def step(self, closure=None):
                loss = super().step(closure)
                with torch.no_grad():
                    params[1].fill_(-float("inf"))
                return loss

        return Poisoned(params, lr=lr)


def test_weights_that_become_non_finite_make_a_diverged_trial_even_when_the_outputs_stay_finite(moons):
    result = SerialTrainer(moons, TrainConfig(max_epochs=3)).train(_BiasToMinusInfinity(f.variable("g"), "mlp", (8,)), 0)
    assert result.status == "diverged" and result.error == "weights became non-finite at epoch 1"


def test_a_trainer_that_returns_weights_that_are_no_network_makes_a_diverged_trial(tmp_path, moons):
    """A plugin's trainer may return an ok result with a weight that is not finite: the study records the
    child diverged and goes on, instead of stopping on it."""
    import dataclasses

    class Poisoning(SerialTrainer):
        def evaluate(self, archs, seeds):
            for index, result in super().evaluate(archs, seeds):
                if index == 1 and result.status == "ok":
                    weights = {name: tensor.clone() for name, tensor in result.weights.items()}
                    next(iter(weights.values())).view(-1)[0] = float("nan")
                    result = dataclasses.replace(result, weights=weights, val_loss=None)
                yield index, result

    evaluator = Poisoning(moons, TrainConfig(max_epochs=2))
    with Study.create(tmp_path / "p.db", config(moons, "activation", "random", evaluator)) as study:
        study.run(progress=False)
        trials = study.trials()
    assert len(trials) == 12
    poisoned = [t for t in trials if t.number % 4 == 1]
    assert all(t.status == "diverged" and "not finite" in t.error for t in poisoned)
    assert all(t.status in ("ok", "diverged") for t in trials)

"""Scores, and what a study asks an evaluator besides evaluations: refit, validation loss, test score, the
network of stored weights, and deduplication (ReusingEvaluator)."""

from __future__ import annotations

import dataclasses
import pickle

import numpy as np
import pytest
import torch

from archsearch.errors import ArchsearchError
from archsearch.evaluation import (
    BatchedTrainer,
    LookupEvaluator,
    Result,
    ReusingEvaluator,
    SerialTrainer,
    TrainConfig,
    accuracy,
    get_benchmark,
    load_model,
    split_score,
    validation_loss,
)
from archsearch.evaluation._scoring import MIN_R2_GAIN, improved, r2_from_sse, validation_score
from archsearch.space import MLPArchitecture

from ..conftest import FakeEvaluator, fraction_of_wide_layers

ARCH = MLPArchitecture.parse("8-tanh/4-relu")


def test_accuracy_is_an_exact_ratio_of_counts():
    logits = torch.tensor([[2.0, 1.0], [0.0, 3.0], [1.0, 0.0], [0.5, 0.4]])
    assert accuracy(logits, torch.tensor([0, 1, 1, 0])) == 0.75


def test_r2_and_the_early_stopping_score():
    assert r2_from_sse(1.0, 2.0) == 0.5
    assert (r2_from_sse(0.0, 0.0), r2_from_sse(0.1, 0.0)) == (1.0, 0.0)  # a constant target
    y = torch.tensor([1.0, 2.0, 3.0])
    worse = torch.tensor([[3.0], [3.0], [-1.0]])  # SSE 4 + 1 + 16 = 21, SST 2
    assert validation_score(worse, y, regression=True) == pytest.approx(1 - 21 / 2)  # not clipped
    assert improved(0.5 + 2 * MIN_R2_GAIN, 0.5, regression=True) and not improved(0.5 + MIN_R2_GAIN / 2, 0.5, True)
    assert improved(0.51, 0.5, regression=False) and not improved(0.5, 0.5, regression=False)


@pytest.fixture(scope="module")
def trained(moons):
    trainer = SerialTrainer(moons, TrainConfig(max_epochs=6))
    return trainer, trainer.train(ARCH, 3)


def test_a_trainer_scores_kept_weights_as_the_scoring_functions_do(trained, moons):
    trainer, result = trained
    model = trainer.model(ARCH, result.weights)
    assert trainer.test_score(ARCH, result.weights) == split_score(model, moons, "test")
    assert trainer.validation_loss(ARCH, result.weights) == validation_loss(ARCH, moons, result.weights)
    assert trainer.test_score(ARCH, None) is None
    hidden = dataclasses.replace(moons, x_test=moons.x_test[:0], y_test=moons.y_test[:0])
    assert SerialTrainer(hidden).test_score(ARCH, result.weights) is None  # no test rows, as NASClassifier keeps


def test_stored_weights_that_do_not_fit_are_one_line(trained, moons):
    trainer, result = trained
    bad = {**result.weights, "0.weight": torch.zeros(3, 2)}
    with pytest.raises(ArchsearchError, match=r"weights: '0.weight' has shape \[3, 2\], the network \[8, 2\]"):
        trainer.model(ARCH, bad)
    nan = {**result.weights, "0.bias": torch.full((8,), float("nan"))}
    with pytest.raises(ArchsearchError, match="'0.bias' holds values that are not finite"):
        load_model(ARCH, moons, nan)


def test_a_refit_trains_on_train_and_validation_rows_for_the_given_epochs(moons):
    config = TrainConfig(max_epochs=30, patience=3)
    refit = SerialTrainer(moons, config).refit(ARCH, 5, 4)
    assert (refit.epochs, refit.rows) == (4, len(moons.y_train) + len(moons.y_val)) == (4, 900)
    merged = dataclasses.replace(
        moons, x_train=torch.cat([moons.x_train, moons.x_val]), y_train=torch.cat([moons.y_train, moons.y_val])
    )
    reference = SerialTrainer(merged, TrainConfig(max_epochs=4, patience=5, reward_window=1)).train(ARCH, 5)
    assert reference.epochs == 4
    assert all(torch.equal(refit.weights[k], v) for k, v in reference.weights.items())
    batched = BatchedTrainer(moons, config).refit(ARCH, 5, 4)  # the reference retrains, whichever trainer searched
    assert all(torch.equal(batched.weights[k], v) for k, v in refit.weights.items())


def test_a_lookup_trains_nothing_and_says_so():
    lookup = LookupEvaluator(get_benchmark("nas-bench-macro"))
    arch = lookup.benchmark.space.sample(np.random.default_rng(0))
    assert lookup.refits is False
    with pytest.raises(ArchsearchError, match="refit: the 'lookup' evaluator trains nothing"):
        lookup.refit(arch, 0, 3)
    with pytest.raises(ArchsearchError, match="keeps no weights"):
        lookup.model(arch, {})
    assert lookup.validation_loss(arch, {}) is None
    assert lookup.plan([arch, arch], [0, 1]) == {}  # unwrapped: every child is evaluated


def test_reusing_plans_from_earlier_successes_and_from_this_batch(moons):
    inner = FakeEvaluator(moons, fraction_of_wide_layers)
    reusing = ReusingEvaluator(inner)
    a, b, c = (MLPArchitecture.parse(s) for s in ("32-relu", "4-tanh", "8-relu/8-relu"))
    reusing.remember(0, a, Result(reward=1.0, val_score=1.0, seconds=2.0, weights={"w": torch.ones(1)}))
    reusing.remember(1, b, Result.failure("failed", "boom"))  # a failure is never taken from an earlier step
    plan = reusing.plan([b, a, c, c, b], [5, 6, 7, 8, 9])
    assert plan == {1: 0, 3: 7, 4: 5}
    earlier = reusing.reused(0)
    assert (earlier.reward, earlier.seconds, earlier.weights) == (1.0, 0.0, None)
    reusing.remember(5, b, Result.failure("diverged", "nan"))  # this batch's first b: taken whatever its status
    reusing.remember(7, c, Result(reward=0.5))
    assert reusing.reused(5).status == "diverged" and reusing.reused(7).reward == 0.5
    assert reusing.plan([b, c], [10, 11]) == {1: 7}  # the earliest success of c; b never succeeded


def test_reusing_passes_evaluations_and_settings_to_the_evaluator_it_wraps(moons):
    inner = SerialTrainer(moons, TrainConfig(max_epochs=3))
    reusing = ReusingEvaluator(inner)
    reusing.remember(0, ARCH, Result(reward=1.0))
    assert (reusing.name, reusing.batch_dependent, reusing.refits) == ("serial", False, True)
    assert reusing.to_config() == inner.to_config() and reusing.task is moons
    (result,) = reusing.evaluate_all([ARCH, ARCH], [1, 1])[:1]
    assert result.reward == inner.train(ARCH, 1).reward  # evaluating never reuses: the study plans first
    sent = pickle.loads(pickle.dumps(reusing))  # what a worker receives: the wrapped evaluator alone
    assert sent.plan([ARCH], [1]) == {} and sent.to_config() == inner.to_config()


def test_a_lookup_study_that_reuses_still_summarises_its_benchmark():
    from archsearch.strategies import RandomSearch
    from archsearch.study import Study

    lookup = LookupEvaluator(get_benchmark("nas-bench-macro"))
    space = lookup.benchmark.space
    study = Study.create(
        None, None, steps=2, children_per_step=3, space=space, strategy=RandomSearch(space, seed=0, unique=False),
        evaluator=lookup, reuse_evaluations=True,
    )  # fmt: skip
    best = study.run(progress=False)
    summary = study.summary()
    assert summary["benchmark"]["value"] == lookup.benchmark.value(best.architecture)
    assert summary["test_score"] is None and study.evaluator.benchmark is lookup.benchmark

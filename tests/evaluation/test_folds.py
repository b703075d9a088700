"""Cross-validated rewards (``TrainConfig(folds=k)``): the folds, the two trainers, studies; and early
stopping on the validation loss (``monitor="loss"``), with and without folds."""

import dataclasses

import numpy as np
import pytest
import torch

from archsearch import ArchsearchError, Study
from archsearch.evaluation import BatchedTrainer, SerialTrainer, SharedWeightsEvaluator, TrainConfig, validation_loss
from archsearch.evaluation._folds import fold_ids, fold_task, fold_tasks, pooled
from archsearch.space import MLPArchitecture, MLPSpace

from ..conftest import Crash, crashing
from .test_batched import equivalence_archs
from .test_serial import _huge_inputs


def small(task, train=150, val=45):
    """The first rows of each split: a small table, where cross-validation is meant to be used."""
    return dataclasses.replace(
        task, x_train=task.x_train[:train], y_train=task.y_train[:train], x_val=task.x_val[:val], y_val=task.y_val[:val]
    )


def rows(x):
    return {tuple(r) for r in x.tolist()}


@pytest.mark.parametrize("folds", [2, 3, 5, 7])
def test_folds_partition_the_training_and_validation_rows_by_class(moons, folds):
    task = small(moons)
    ids = fold_ids(task, folds)
    y = pooled(task)[1]
    assert ids.tolist() == fold_ids(task, folds).tolist()  # the same folds every time
    assert sorted(set(ids.tolist())) == list(range(folds))
    for label in (0, 1):
        per_fold = torch.bincount(ids[y == label], minlength=folds)
        assert int(per_fold.max() - per_fold.min()) <= 1  # stratified
    tasks = fold_tasks(task, folds)
    assert sum(len(t.y_val) for t in tasks) == len(y)
    assert rows(torch.cat([t.x_val for t in tasks])) == rows(pooled(task)[0])
    for t in tasks:
        assert len(t.y_train) + len(t.y_val) == len(y)
        assert not rows(t.x_train) & rows(t.x_val)


def test_folds_never_see_the_test_rows(moons):
    task = small(moons)
    test = rows(task.x_test)
    for t in fold_tasks(task, 4):
        assert not rows(t.x_train) & test and not rows(t.x_val) & test
        assert t.x_test is task.x_test


def test_regression_folds_each_span_the_target_range(friedman):
    ids = fold_ids(friedman, 5)
    y = pooled(friedman)[1]
    for fold in range(5):
        inside = y[ids == fold]
        assert inside.min() < y.quantile(0.02) and inside.max() > y.quantile(0.98)


def test_the_serial_trainer_scores_the_mean_of_its_folds(moons):
    task = small(moons)
    arch, seed = MLPArchitecture.parse("8-tanh/4-relu"), 3
    config = TrainConfig(folds=3, max_epochs=20)
    (result,) = SerialTrainer(task, config).evaluate_all([arch], [seed])
    one = TrainConfig(max_epochs=20)
    alone = [SerialTrainer(fold_task(task, 3, f), one).train(arch, seed) for f in range(3)]
    mean = sum(r.val_score for r in alone) / 3
    assert result.val_score == pytest.approx(mean)
    assert result.reward == pytest.approx(mean**config.reward_power)
    assert result.kept_epoch == round(sum(r.kept_epoch for r in alone) / 3)
    assert len(result.val_curve) == max(r.epochs for r in alone)
    assert all(torch.equal(result.weights[k], alone[0].weights[k]) for k in result.weights)
    assert result.val_loss > 0


@pytest.mark.parametrize("fixture", ["moons", "friedman"])
def test_the_batched_trainers_folds_equal_the_serial_trainers(request, fixture):
    """Folds trained as members of one group: the same curves, stopping epochs and scores as the
    reference trainer training each fold on its own."""
    task = small(request.getfixturevalue(fixture), 200, 60)
    archs = equivalence_archs()[:10]
    seeds = list(range(50, 60))
    config = TrainConfig(folds=3, max_epochs=25, patience=6)
    reference = SerialTrainer(task, config).evaluate_all(archs, seeds)
    batched = BatchedTrainer(task, config).evaluate_all(archs, seeds)
    assert all(r.status == b.status == "ok" for r, b in zip(reference, batched))
    same = 0
    for r, b in zip(reference, batched):
        same += r.epochs == b.epochs and r.kept_epoch == b.kept_epoch
        n = min(r.epochs, b.epochs)
        assert b.train_loss[:n] == pytest.approx(r.train_loss[:n], rel=1e-4)
        assert b.val_curve[:n] == pytest.approx(r.val_curve[:n], abs=1 / 60 + 1e-6)
        assert b.params == r.params
    assert same >= len(archs) - 1
    close = [pytest.approx(r.val_score, abs=1e-4) == b.val_score for r, b in zip(reference, batched)]
    assert sum(close) >= len(archs) - 1


def test_a_diverging_fold_fails_the_child_and_names_the_fold(moons):
    task = _huge_inputs(moons)
    config = TrainConfig(folds=3, max_epochs=10)
    archs = [MLPArchitecture.parse("32-relu/32-relu")]
    for trainer in (SerialTrainer, BatchedTrainer):
        (result,) = trainer(task, config).evaluate_all(archs, [0])
        assert result.status == "diverged" and result.reward == 0.0
        assert result.error.startswith("fold 1 of 3: ")
        assert "non-finite" in result.error or "loss became" in result.error  # as without folds


def test_bad_fold_settings_are_one_line(moons, friedman):
    task = small(moons, 3, 2)
    with pytest.raises(ArchsearchError, match=r"^trainer.folds: 6 folds need at least 6 .* rows, the task has 5$"):
        SerialTrainer(task, TrainConfig(folds=6))
    with pytest.raises(ArchsearchError, match=r"^trainer.folds: must be"):
        TrainConfig(folds=0)
    with pytest.raises(ArchsearchError, match=r"^trainer.batch_size: the batched trainer cross-validates"):
        BatchedTrainer(moons, TrainConfig(folds=3, batch_size=32))
    with pytest.raises(ArchsearchError, match=r"^trainer.folds: cross-validation trains children from scratch"):
        SharedWeightsEvaluator(moons, MLPSpace(), TrainConfig(folds=3), SerialTrainer(moons))
    assert "folds" not in TrainConfig().to_config() and TrainConfig(folds=4).to_config()["folds"] == 4


def test_a_cross_validated_study_resumes_to_the_uninterrupted_one(tmp_path, moons):
    """Folds follow from the task alone: a study interrupted mid-batch and resumed records the same trials."""
    task = moons  # rebuilt from its config when reopened
    config = TrainConfig(folds=3, max_epochs=6)

    def make(path, evaluator):
        return Study.create(path, task, steps=3, children_per_step=4, seed=1, evaluator=evaluator)

    def trials(study):
        return [(t.number, t.arch_hash, t.reward, t.val_score, t.train_loss, t.kept_epoch) for t in study.trials()]

    with make(tmp_path / "straight.db", BatchedTrainer(task, config)) as straight:
        straight.run(progress=False)
        expected = trials(straight)
        assert straight.config["trainer"]["folds"] == 3
        # its trials' weights are one fold's: the final pick is refit on all the pooled rows, always
        assert straight.config["refit"] is True
        assert straight.refit_summary()["rows"] == len(task.y_train) + len(task.y_val)
    dying = crashing(BatchedTrainer, 6)(task, config)  # two trials into the second step
    with make(tmp_path / "crashed.db", dying) as crashed, pytest.raises(Crash):
        crashed.run(progress=False)
    with Study.open(tmp_path / "crashed.db") as resumed:
        assert resumed.evaluator.config.folds == 3
        resumed.run(progress=False)
        assert trials(resumed) == expected
    assert len({r for _, _, r, *_ in expected}) > 3  # the rewards differ: the children really trained


def test_more_folds_cost_less_than_as_many_separate_groups(moons, monkeypatch):
    """Folds share their group's launched operations: the modelled cost of a group of k folds is below
    k times a single fold's (the fixed price per group and layer is paid once). Both with the PyTorch
    epoch, which cross-validation always uses."""
    monkeypatch.setenv("ARCHSEARCH_KERNEL", "0")
    task = small(moons)
    rng = np.random.default_rng(0)
    archs = [MLPSpace().sample(rng) for _ in range(6)]
    one = BatchedTrainer(task, TrainConfig())._group_cost(archs)
    five = BatchedTrainer(task, TrainConfig(folds=5))._group_cost(archs)
    assert one < five < 5 * one


@pytest.mark.parametrize("fixture, folds", [("moons", 1), ("friedman", 1), ("moons", 3), ("friedman", 3)])
def test_early_stopping_on_the_validation_loss_matches_the_reference_trainer(request, fixture, folds):
    """``monitor="loss"``: both trainers stop when the validation loss has not fallen for ``patience``
    epochs, and record the loss at the kept epoch, with and without folds."""
    task = small(request.getfixturevalue(fixture), 120, 40)
    archs, seeds = equivalence_archs()[:6], list(range(6))
    config = TrainConfig(max_epochs=20, patience=3, monitor="loss", folds=folds)
    reference = SerialTrainer(task, config).evaluate_all(archs, seeds)
    batched = BatchedTrainer(task, config).evaluate_all(archs, seeds)
    same = sum(r.epochs == b.epochs and r.kept_epoch == b.kept_epoch for r, b in zip(reference, batched))
    assert same >= len(archs) - 1
    for r, b in zip(reference, batched):
        assert r.status == b.status == "ok"
        assert b.val_loss == pytest.approx(r.val_loss, rel=1e-3)
    by_score = SerialTrainer(task, dataclasses.replace(config, monitor="score")).evaluate_all(archs, seeds)
    assert [r.epochs for r in by_score] != [r.epochs for r in reference]  # it does watch something else
    if folds == 1:  # the recorded loss is the kept weights' loss on the validation rows
        for r, arch in zip(reference, archs):
            assert r.val_loss == pytest.approx(validation_loss(arch, task, r.weights), rel=1e-5)
    with pytest.raises(ArchsearchError, match=r"^trainer.monitor: must be one of score, loss, got 'accuracy'$"):
        TrainConfig(monitor="accuracy")

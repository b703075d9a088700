"""The batched trainer against the reference trainer, and its own promises."""

import math

import numpy as np
import pytest
import torch

from archsearch import ArchsearchError
from archsearch.evaluation import BatchedTrainer, SerialTrainer, TrainConfig, load_model, split_score
from archsearch.evaluation._batched import MAX_GROUP, plan_groups
from archsearch.evaluation._fused import FusedGroup
from archsearch.space import MLPArchitecture, MLPSpace

from .test_serial import _huge_inputs

CHOSEN = [
    "1-relu",
    "1-tanh",
    "32-tanh",
    "8-tanh/4-relu/4-relu",
    "1-relu/1-tanh/1-relu/1-tanh/1-relu",
    "32-relu/32-relu/32-relu/32-relu/32-relu",
    "32-tanh/32-tanh/32-tanh/32-tanh/32-tanh",
    "2-tanh/32-relu/1-tanh/16-relu/4-tanh",
]


def equivalence_archs():
    """8 chosen (1-unit and 5-layer ones among them) and 16 drawn uniformly from the seed space."""
    rng = np.random.default_rng(0)
    return [MLPArchitecture.parse(a) for a in CHOSEN] + [MLPSpace().sample(rng) for _ in range(16)]


def agreement(ref, fast):
    """(losses within 1e-4 relative, validation within one sample, same stopping epoch)."""
    n = min(ref.epochs, fast.epochs)
    losses = all(math.isclose(a, b, rel_tol=1e-4) for a, b in zip(ref.train_loss[:n], fast.train_loss[:n]))
    vals = all(abs(a - b) <= 1 / 200 + 1e-12 for a, b in zip(ref.val_curve[:n], fast.val_curve[:n]))
    return losses, vals, ref.epochs == fast.epochs


@pytest.mark.parametrize("config", [TrainConfig(), TrainConfig(weight_decay=0.01)], ids=["plain", "weight-decay"])
def test_matches_the_reference_trainer(moons, config):
    archs = equivalence_archs()
    seeds = list(range(100, 100 + len(archs)))
    reference = SerialTrainer(moons, config).evaluate_all(archs, seeds)
    batched = BatchedTrainer(moons, config).evaluate_all(archs, seeds)
    checks = [agreement(r, b) for r, b in zip(reference, batched)]
    assert all(b.status == "ok" for b in batched)
    assert sum(all(c) for c in checks) >= len(archs) - 1, checks
    assert all(vals for _, vals, _ in checks)
    for r, b in zip(reference, batched):
        assert b.params == r.params
        if r.epochs == b.epochs:
            assert b.kept_epoch == r.kept_epoch
            assert b.reward == pytest.approx(r.reward, abs=0.02)


def test_regression_matches_the_reference_trainer(friedman):
    """Mean squared error and clipped R^2: the same curves and stopping epochs as the reference."""
    archs = equivalence_archs()[:14]
    seeds = list(range(200, 200 + len(archs)))
    config = TrainConfig(max_epochs=30)
    reference = SerialTrainer(friedman, config).evaluate_all(archs, seeds)
    batched = BatchedTrainer(friedman, config).evaluate_all(archs, seeds)
    assert all(r.status == b.status == "ok" for r, b in zip(reference, batched))
    same_stop = 0
    for r, b in zip(reference, batched):
        n = min(r.epochs, b.epochs)
        assert b.train_loss[:n] == pytest.approx(r.train_loss[:n], rel=1e-4)
        assert b.val_curve[:n] == pytest.approx(r.val_curve[:n], abs=1e-4)
        assert all(0.0 <= v <= 1.0 for v in b.val_curve)
        same_stop += r.epochs == b.epochs
    assert same_stop >= len(archs) - 1
    assert max(b.val_score for b in batched) > 0.5  # some networks learn Friedman #1


def test_regression_early_stopping_reads_r2_before_clipping(friedman):
    """Children that start worse than the mean (R^2 < 0, scored 0) keep training while R^2 rises."""
    rng = np.random.default_rng(0)
    archs = [MLPSpace().sample(rng) for _ in range(30)]
    config = TrainConfig(max_epochs=40, patience=3)
    for trainer in (SerialTrainer, BatchedTrainer):
        results = trainer(friedman, config).evaluate_all(archs, range(30))
        climbed = [r for r in results if r.val_curve[:4] == [0.0] * 4 and r.val_score > 0.2]
        assert len(climbed) >= 3, [r.val_curve[:6] for r in results]


def test_weight_decay_shrinks_the_weights(moons):
    archs, seeds = [MLPArchitecture.parse("32-relu/32-tanh")], [7]

    def norm(config):
        (result,) = BatchedTrainer(moons, config).evaluate_all(archs, seeds)
        return sum(float(w.square().sum()) for w in result.weights.values())

    plain = TrainConfig(max_epochs=30, patience=40)
    decayed = TrainConfig(max_epochs=30, patience=40, weight_decay=0.1)
    assert norm(decayed) < 0.8 * norm(plain)
    assert "weight_decay" not in plain.to_config() and decayed.to_config()["weight_decay"] == 0.1


def test_initial_weights_are_the_reference_trainers(moons):
    """One epoch, one Adam step: the first training loss depends only on the initial weights."""
    archs = equivalence_archs()
    config = TrainConfig(max_epochs=1)
    reference = SerialTrainer(moons, config).evaluate_all(archs, range(len(archs)))
    batched = BatchedTrainer(moons, config).evaluate_all(archs, range(len(archs)))
    for r, b in zip(reference, batched):
        assert b.train_loss[0] == pytest.approx(r.train_loss[0], rel=1e-6)


def test_kept_weights_reproduce_the_rewarded_validation_accuracy(moons):
    archs = [MLPArchitecture.parse(a) for a in ("8-tanh/4-relu/4-relu", "16-relu/16-relu", "4-tanh")]
    for arch, result in zip(archs, BatchedTrainer(moons, TrainConfig(max_epochs=40)).evaluate_all(archs, [1, 2, 3])):
        assert result.val_curve[result.kept_epoch - 1] == result.val_score
        assert result.reward == pytest.approx(result.val_score**3)
        assert split_score(load_model(arch, moons, result.weights), moons, "val") == result.val_score


def test_minibatches_match_the_reference(moons):
    archs = [MLPArchitecture.parse(a) for a in ("8-tanh/4-relu", "16-relu/2-tanh", "4-relu/4-relu")]
    config = TrainConfig(max_epochs=6, batch_size=128)
    reference = SerialTrainer(moons, config).evaluate_all(archs, [5, 6, 7])
    batched = BatchedTrainer(moons, config).evaluate_all(archs, [5, 6, 7])
    for r, b in zip(reference, batched):
        assert agreement(r, b) == (True, True, True)


def test_a_diverging_child_leaves_its_batch_mates_alone(moons):
    task = _huge_inputs(moons)
    mates = [MLPArchitecture.parse(a) for a in ("8-tanh/8-relu", "8-tanh/4-tanh", "8-tanh/8-tanh")]
    diverging = MLPArchitecture.parse("8-relu/8-relu")
    config = TrainConfig(max_epochs=10)
    with_it = BatchedTrainer(task, config).evaluate_all([mates[0], diverging, mates[1], mates[2]], [0, 1, 2, 3])
    without = BatchedTrainer(task, config).evaluate_all(mates, [0, 2, 3])
    assert with_it[1].status == "diverged" and with_it[1].reward == 0.0
    assert "non-finite" in with_it[1].error or "loss became" in with_it[1].error
    for a, b in zip([with_it[0], with_it[2], with_it[3]], without):
        assert a.status == b.status == "ok"
        assert a.val_curve == b.val_curve
        assert a.train_loss == pytest.approx(b.train_loss, rel=1e-5)


def test_results_do_not_depend_on_the_thread_count(moons):
    rng = np.random.default_rng(3)
    archs = [MLPSpace().sample(rng) for _ in range(12)]
    one = BatchedTrainer(moons, TrainConfig(max_epochs=8, threads=1)).evaluate_all(archs, range(12))
    two = BatchedTrainer(moons, TrainConfig(max_epochs=8, threads=2)).evaluate_all(archs, range(12))
    assert [r.train_loss for r in one] == [r.train_loss for r in two]
    assert [r.val_curve for r in one] == [r.val_curve for r in two]


def test_an_exception_inside_a_group_is_a_failed_trial(moons, monkeypatch):
    from archsearch.evaluation import _batched

    def broken(self, stop=None):
        raise MemoryError("simulated")
        yield  # pragma: no cover

    monkeypatch.setattr(_batched._Group, "train", broken)
    monkeypatch.setattr(FusedGroup, "train", broken)
    results = BatchedTrainer(moons, TrainConfig(max_epochs=3)).evaluate_all(
        [MLPArchitecture.parse("4-relu"), MLPArchitecture.parse("4-relu/4-relu")], [0, 1]
    )
    assert [r.status for r in results] == ["failed", "failed"]
    assert results[0].error == "MemoryError: simulated"


def test_only_mlps(moons):
    from dataclasses import dataclass

    from archsearch.space import Architecture

    @dataclass(frozen=True)
    class Other(Architecture):
        kind = "other-test-kind"

        def to_dict(self):
            return {"kind": self.kind}

        @classmethod
        def _from_dict(cls, data):
            return cls()

        def build(self, in_features, out_features, generator=None):
            return torch.nn.Linear(in_features, out_features)

        def num_params(self, in_features, out_features):
            return (in_features + 1) * out_features

    with pytest.raises(ArchsearchError, match="MLPs only"):
        list(BatchedTrainer(moons).evaluate([Other()], [0]))


def test_plan_groups_keeps_equal_profiles_together_and_groups_small():
    rng = np.random.default_rng(0)
    space = MLPSpace()
    archs = [space.sample(rng) for _ in range(100)] + [MLPArchitecture.parse("4-relu/4-tanh")] * 3
    groups = plan_groups(archs, 2, 2, 900)
    assert sorted(i for g in groups for i in g) == list(range(len(archs)))
    assert all(len(g) <= MAX_GROUP for g in groups)
    assert all(len({len(archs[i].layers) for i in g}) == 1 for g in groups)
    assert any({100, 101, 102} <= set(g) for g in groups)
    assert plan_groups(archs, 2, 2, 900) == groups  # deterministic
    assert len(groups) < len(archs) / 2


def test_identical_children_are_trained_identically(moons):
    arch = MLPArchitecture.parse("16-relu/16-relu")
    results = BatchedTrainer(moons, TrainConfig(max_epochs=10)).evaluate_all([arch] * 3, [4, 4, 5])
    assert results[0].train_loss == results[1].train_loss
    assert results[0].train_loss != results[2].train_loss
    assert all(torch.equal(results[0].weights[k], results[1].weights[k]) for k in results[0].weights)

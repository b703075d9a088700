import pytest
import torch

from archsearch import ArchsearchError
from archsearch.evaluation import SerialTrainer, TrainConfig, load_model, split_score
from archsearch.space import MLPArchitecture
from archsearch.tasks import Task

ARCH = MLPArchitecture.parse("8-tanh/4-relu/4-relu")


def test_same_seed_same_result_and_other_seed_differs(moons):
    trainer = SerialTrainer(moons, TrainConfig(max_epochs=15))
    a, b, c = trainer.train(ARCH, 1), trainer.train(ARCH, 1), trainer.train(ARCH, 2)
    assert a.train_loss == b.train_loss and a.val_curve == b.val_curve and a.reward == b.reward
    assert a.train_loss != c.train_loss


def test_reward_is_the_cube_of_the_best_of_the_last_five_epochs(moons):
    result = SerialTrainer(moons, TrainConfig(max_epochs=30, patience=30)).train(ARCH, 0)
    assert result.status == "ok" and result.epochs == 30
    assert result.val_score == max(result.val_curve[-5:])
    assert result.reward == pytest.approx(result.val_score**3)
    assert result.params == ARCH.num_params(2, 2)
    assert all(v * 200 == round(v * 200) for v in result.val_curve)  # exact fractions of 200 points


def test_kept_weights_reproduce_the_rewarded_validation_accuracy(moons):
    result = SerialTrainer(moons, TrainConfig(max_epochs=40, patience=40)).train(ARCH, 3)
    assert 36 <= result.kept_epoch <= 40
    assert result.val_curve[result.kept_epoch - 1] == result.val_score
    model = load_model(ARCH, moons, result.weights)
    assert split_score(model, moons, "val") == result.val_score


def test_early_stopping_waits_patience_epochs_without_improvement(moons):
    # a 1-unit relu net is stuck at chance level from the start
    result = SerialTrainer(moons, TrainConfig(max_epochs=100, patience=7)).train(MLPArchitecture.parse("1-relu"), 0)
    curve = result.val_curve
    assert result.epochs < 100
    first_best = curve.index(max(curve))  # the last improvement
    assert len(curve) == first_best + 1 + 7


def test_minibatch_training_differs_from_full_batch_and_is_deterministic(moons):
    full = SerialTrainer(moons, TrainConfig(max_epochs=5)).train(ARCH, 0)
    mini = SerialTrainer(moons, TrainConfig(max_epochs=5, batch_size=64))
    a, b = mini.train(ARCH, 0), mini.train(ARCH, 0)
    assert a.train_loss == b.train_loss
    assert a.train_loss != full.train_loss
    assert a.train_loss[-1] < full.train_loss[-1]  # 11 updates per epoch instead of 1


def _huge_inputs(moons: Task) -> Task:
    scale = 1e38
    return Task(
        "huge",
        moons.x_train * scale,
        moons.y_train,
        moons.x_val * scale,
        moons.y_val,
        moons.x_test * scale,
        moons.y_test,
        2,
    )


def test_a_diverging_child_is_a_recorded_trial_with_reward_zero(moons):
    trainer = SerialTrainer(_huge_inputs(moons), TrainConfig(max_epochs=5))
    result = trainer.train(MLPArchitecture.parse("32-relu/32-relu"), 0)
    assert result.status == "diverged" and result.reward == 0.0
    assert "non-finite" in result.error or "loss became" in result.error
    # tanh saturates instead of overflowing: the same data trains
    assert trainer.train(MLPArchitecture.parse("8-tanh"), 0).status == "ok"


def test_an_exception_inside_a_child_is_a_failed_trial(moons, monkeypatch):
    def broken_build(self, *args, **kwargs):
        raise RuntimeError("out of memory (simulated)")

    monkeypatch.setattr(MLPArchitecture, "build", broken_build)
    results = SerialTrainer(moons, TrainConfig(max_epochs=3)).evaluate_all([ARCH, ARCH], [0, 1])
    assert [r.status for r in results] == ["failed", "failed"]
    assert results[0].reward == 0.0
    assert results[0].error == "RuntimeError: out of memory (simulated)"


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"max_epochs": 0}, "trainer.max_epochs"),
        ({"patience": 0}, "trainer.patience"),
        ({"lr": 0.0}, "trainer.lr"),
        ({"batch_size": 0}, "trainer.batch_size"),
        ({"reward_window": 0}, "trainer.reward_window"),
    ],
)
def test_bad_settings_name_the_field(kwargs, field):
    with pytest.raises(ArchsearchError, match=field):
        TrainConfig(**kwargs)


def test_unavailable_device_is_refused(moons):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ArchsearchError, match="trainer.device"):
        SerialTrainer(moons, TrainConfig(device="cuda"))


def test_reward_window_arithmetic():
    config = TrainConfig(reward_window=3, reward_power=2.0)
    assert config.reward([0.5, 0.9, 0.6, 0.8, 0.7]) == (pytest.approx(0.64), 0.8, 4)
    assert config.reward([0.5]) == (0.25, 0.5, 1)


def test_cnn_child_validates_without_dropout_and_stops_at_its_time_limit():
    from archsearch.evaluation import load_model, split_score
    from archsearch.space import CNNArchitecture
    from archsearch.tasks import digits

    task = digits()
    arch = CNNArchitecture.parse("16c3-d0.5/16c3-max-d0.5")
    config = TrainConfig(max_epochs=3, patience=3, lr=1e-3, batch_size=64)
    result = SerialTrainer(task, config).train(arch, seed=0)
    assert result.status == "ok" and result.epochs == 3
    # validation ran in eval mode: the kept weights score exactly the recorded accuracy
    assert split_score(load_model(arch, task, result.weights), task, "val") == result.val_score
    assert result.val_score > 0.5
    again = SerialTrainer(task, config).train(arch, seed=0)
    assert again.val_curve == result.val_curve and again.train_loss == result.train_loss

    limited = SerialTrainer(task, TrainConfig(max_epochs=50, patience=50, lr=1e-3, batch_size=8, time_limit=0.3))
    stopped = limited.train(arch, seed=0)
    assert stopped.status == "ok" and 1 <= stopped.epochs < 50
    assert len(stopped.val_curve) == stopped.epochs and stopped.weights is not None
    assert stopped.seconds < 5


def test_cnn_child_with_batch_norm_keeps_standard_layout_weights_with_running_statistics():
    """Children train channels-last; what they keep is ordinary contiguous CPU tensors (batch
    norm's running statistics included) that score, loaded into a plain module, exactly the
    recorded validation accuracy; the two layouts compute the same outputs."""
    from archsearch.space import CNNArchitecture
    from archsearch.tasks import digits

    task = digits()
    arch = CNNArchitecture.parse("8c3-bn/16c3s2-bn-max-d0.25/8c3-bn+0")
    result = SerialTrainer(task, TrainConfig(max_epochs=3, patience=3, lr=1e-3, batch_size=64)).train(arch, seed=1)
    assert result.status == "ok" and result.val_score > 0.5
    assert all(w.is_contiguous() and w.device.type == "cpu" for w in result.weights.values())
    assert int(result.weights["norms.0.num_batches_tracked"]) == result.kept_epoch * 20  # 1258 rows / 64
    model = load_model(arch, task, result.weights)
    assert split_score(model, task, "val") == result.val_score
    x = task.split("val")[0]
    with torch.no_grad():
        plain = model(x)
        last = model.to(memory_format=torch.channels_last)(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(last, plain, rtol=1e-4, atol=1e-5)

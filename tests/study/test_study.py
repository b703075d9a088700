import sqlite3
from dataclasses import astuple

import pytest
import torch

from archsearch import ArchsearchError, MLPSpace, Reinforce, SerialTrainer, Study, TrainConfig
from archsearch.evaluation import split_score
from archsearch.study import child_seed
from archsearch.study._storage import rank

from ..conftest import Crash, FakeEvaluator, downgrade, fraction_of_wide_layers
from ..conftest import crashing as crashing_trainer


def make(path, moons, steps=4, per_step=5, seed=0, evaluator=None):
    evaluator = evaluator or SerialTrainer(moons, TrainConfig(max_epochs=4))
    return Study.create(path, moons, steps=steps, children_per_step=per_step, seed=seed, evaluator=evaluator)


def key(trial):
    return (
        trial.number,
        trial.step,
        trial.slot,
        trial.arch_hash,
        trial.reward,
        trial.seed,
        trial.train_loss,
        trial.params,
    )


def test_run_records_every_trial_and_every_step(tmp_path, moons):
    with make(tmp_path / "s.db", moons) as study:
        best = study.run(progress=False)
        trials = study.trials()
        assert [t.number for t in trials] == list(range(20))
        assert [(t.step, t.slot) for t in trials] == [(s, k) for s in range(4) for k in range(5)]
        assert [s for s, _ in study.step_metrics()] == [0, 1, 2, 3]
        assert set(study.step_metrics()[0][1]) >= {"loss", "entropy", "baseline", "mean_reward"}
        assert best == study.best() == min((t for t in trials if t.status == "ok"), key=rank)
        assert trials[7].seed == child_seed(0, 1, 2)
        assert study.completed_steps() == 4


def test_reopened_study_rebuilds_its_components(tmp_path, moons):
    path = tmp_path / "s.db"
    make(path, moons, steps=1).run(progress=False)
    study = Study.open(path)
    assert study.task.name == "moons" and study.space == MLPSpace()
    assert isinstance(study.strategy, Reinforce) and isinstance(study.evaluator, SerialTrainer)
    assert study.evaluator.config.max_epochs == 4
    assert (study.steps, study.children_per_step, study.seed) == (1, 5, 0)


def test_same_seed_same_trials_and_other_seed_differs(tmp_path, moons):
    runs = []
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        with make(tmp_path / f"{name}.db", moons, steps=3, seed=seed) as study:
            study.run(progress=False)
            runs.append([key(t) for t in study.trials()])
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


@pytest.mark.parametrize("crash_after", [0, 3, 5, 12])
def test_resume_after_a_crash_gives_the_uninterrupted_study(tmp_path, moons, crash_after):
    config = TrainConfig(max_epochs=4)
    with make(tmp_path / "straight.db", moons, evaluator=SerialTrainer(moons, config)) as straight:
        straight.run(progress=False)
        expected = [key(t) for t in straight.trials()]
        expected_steps = straight.step_metrics()

    path = tmp_path / "crashed.db"
    crashing = make(path, moons, evaluator=crashing_trainer(SerialTrainer, crash_after)(moons, config))
    with pytest.raises(Crash):
        crashing.run(progress=False)
    committed = [key(t) for t in crashing.trials()]
    assert len(committed) == crash_after
    crashing.close()

    with Study.open(path) as resumed:
        resumed.run(progress=False)
        assert [key(t) for t in resumed.trials()] == expected
        assert resumed.step_metrics() == expected_steps
        assert resumed.best().number == straight_best_number(expected)


def straight_best_number(keys):
    return min(keys, key=lambda k: (-k[4], k[7], k[0]))[0]


def test_run_can_extend_the_budget(tmp_path, moons):
    path = tmp_path / "s.db"
    make(path, moons, steps=2).run(progress=False)
    with Study.open(path) as study:
        study.run(steps=3, progress=False)
        assert study.completed_steps() == 3 and len(study.trials()) == 15
    assert Study.open(path).steps == 3


def test_best_model_and_test_score_are_measured_once(tmp_path, moons):
    path = tmp_path / "s.db"
    with make(path, moons, steps=2, evaluator=SerialTrainer(moons, TrainConfig(max_epochs=30))) as study:
        study.run(progress=False)
        summary = study.summary()
    assert set(summary) >= {"architecture", "val_score", "test_score", "params"}
    assert summary["test_score"] > 0.8  # moons: even a small network separates the half-moons
    stored = sqlite3.connect(path).execute("SELECT number, test_score FROM models").fetchall()
    assert stored == [(summary["trial"], summary["test_score"])]
    with Study.open(path, readonly=True) as again:
        model = again.best_model()
        x, _ = moons.split("val")
        assert model(x).shape == (len(x), 2)
        assert split_score(model, moons, "test") == pytest.approx(summary["test_score"])


def test_failed_children_never_become_best(tmp_path, moons):
    def reward(arch):
        return 0.5

    class HalfFailing(FakeEvaluator):
        def evaluate(self, archs, seeds):
            for index, result in super().evaluate(archs, seeds):
                if index % 2:
                    result.status, result.reward, result.error = "failed", 0.0, "boom"
                yield index, result

    study = make(tmp_path / "s.db", moons, steps=2, per_step=4, evaluator=HalfFailing(moons, reward))
    study.run(progress=False)
    assert [t.status for t in study.trials()[:4]] == ["ok", "failed", "ok", "failed"]
    assert study.best().status == "ok"
    assert study.trials()[1].error == "boom"


def test_a_study_that_learns_with_a_fake_evaluator(tmp_path, moons):
    study = make(
        tmp_path / "s.db", moons, steps=60, per_step=10, evaluator=FakeEvaluator(moons, fraction_of_wide_layers)
    )
    study.run(progress=False)
    rewards = [t.reward for t in study.trials()]
    assert sum(rewards[:50]) / 50 < 0.35 and sum(rewards[-50:]) / 50 > 0.8


def test_existing_path_is_never_overwritten(tmp_path, moons):
    path = tmp_path / "s.db"
    path.write_text("precious")
    with pytest.raises(ArchsearchError, match="already exists"):
        make(path, moons)
    assert path.read_text() == "precious"


@pytest.mark.parametrize("content", [b"hello, not a database", b""])
def test_a_file_that_is_not_a_study(tmp_path, content):
    path = tmp_path / "x.db"
    path.write_bytes(content)
    with pytest.raises(ArchsearchError, match="not an archsearch study"):
        Study.open(path)
    assert path.read_bytes() == content


def test_a_sqlite_file_of_someone_else(tmp_path):
    path = tmp_path / "other.db"
    sqlite3.connect(path).execute("CREATE TABLE t (x)").connection.commit()
    with pytest.raises(ArchsearchError, match="not an archsearch study"):
        Study.open(path)


def test_missing_study_and_missing_directory(tmp_path, moons):
    with pytest.raises(ArchsearchError, match="no such study"):
        Study.open(tmp_path / "missing.db")
    with pytest.raises(ArchsearchError, match="does not exist"):
        make(tmp_path / "nowhere" / "s.db", moons)
    assert not (tmp_path / "nowhere").exists() and not (tmp_path / "missing.db").exists()


@pytest.mark.parametrize("field, kwargs", [("steps", {"steps": 0}), ("children_per_step", {"per_step": -1})])
def test_bad_budget_names_the_field(tmp_path, moons, field, kwargs):
    with pytest.raises(ArchsearchError, match=field):
        make(tmp_path / "s.db", moons, **kwargs)
    assert not (tmp_path / "s.db").exists()


def test_a_second_runner_is_refused(tmp_path, moons):
    path = tmp_path / "s.db"
    first = make(path, moons, steps=2)
    second_opened = []

    def callback(info):
        if not second_opened:
            with Study.open(path) as second, pytest.raises(ArchsearchError, match="another process"):
                second.run(progress=False)
            second_opened.append(True)

    first.run(progress=False, callback=callback)
    assert second_opened and first.completed_steps() == 2


def test_trial_rows_are_complete(tmp_path, moons):
    with make(tmp_path / "s.db", moons, steps=1, per_step=2) as study:
        study.run(progress=False)
        trial = study.trials()[0]
    assert all(
        value is not None
        for name, value in zip(trial.__dataclass_fields__, astuple(trial))
        if name not in ("error", "cached_from", "latency_ms", "latency_spread", "parent")
    )
    assert trial.epochs == len(trial.train_loss) == len(trial.val_curve) == 4


@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "pytorch"])
@pytest.mark.parametrize("crash_after", [2, 6])
def test_batched_resume_reproduces_the_uninterrupted_study(tmp_path, moons, monkeypatch, crash_after, compiled):
    """The PyTorch epoch's rounding depends on batch-mates: an interrupted batch is re-run whole. The
    compiled epoch computes each child alone: only the children the interruption lost are trained."""
    from archsearch.evaluation import BatchedTrainer

    monkeypatch.setenv("ARCHSEARCH_KERNEL", "1" if compiled else "0")
    config = TrainConfig(max_epochs=6)
    with make(tmp_path / "straight.db", moons, evaluator=BatchedTrainer(moons, config)) as straight:
        straight.run(progress=False)
        expected = [key(t) for t in straight.trials()]
    path = tmp_path / "crashed.db"
    dying = crashing_trainer(BatchedTrainer, crash_after)(moons, config)
    with make(path, moons, evaluator=dying) as crashing, pytest.raises(Crash):
        crashing.run(progress=False)
    with Study.open(path) as resumed:
        assert resumed.evaluator.name == "batched" and resumed.evaluator.fused is compiled
        recorded, trained, evaluate = len(resumed.trials()), [], resumed.evaluator.evaluate
        monkeypatch.setattr(resumed.evaluator, "evaluate", lambda a, s: (trained.append(len(a)), evaluate(a, s))[1])
        resumed.run(progress=False)
        assert [key(t) for t in resumed.trials()] == expected
    lost = len(expected) - recorded
    assert sum(trained) == lost if compiled else sum(trained) > lost


def always_the_same(space):
    """A strategy stand-in that keeps proposing from a short list, to exercise the cache."""
    from archsearch.space import MLPArchitecture
    from archsearch.strategies import Strategy

    class Repeating(Strategy):
        name = "repeating-test"

        def ask(self, n):
            pool = ["4-relu", "8-tanh", "4-relu", "16-relu/16-relu"]
            return [MLPArchitecture.parse(pool[i % len(pool)]) for i in range(n)]

        def tell(self, outcomes):
            return {}

        def state_dict(self):
            return {}

        def load_state_dict(self, state):
            pass

    return Repeating(space)


def test_reuse_evaluations_trains_each_architecture_once(tmp_path, moons):
    space = MLPSpace()
    evaluator = FakeEvaluator(moons, fraction_of_wide_layers)
    study = Study.create(
        tmp_path / "s.db",
        moons,
        steps=3,
        children_per_step=5,
        space=space,
        strategy=always_the_same(space),
        evaluator=evaluator,
        reuse_evaluations=True,
    )
    study.run(progress=False)
    trials = study.trials()
    assert len(evaluator.calls) == 3  # three distinct architectures: every other proposal is a hit
    assert [t.cached_from for t in trials[:5]] == [None, None, 0, None, 0]
    assert all(t.cached_from is not None for t in trials[5:])
    for trial in trials:
        if trial.cached_from is not None:
            source = trials[trial.cached_from]
            assert source.cached_from is None and source.arch_hash == trial.arch_hash
            assert (trial.reward, trial.val_curve) == (source.reward, source.val_curve)
    assert Study.open(tmp_path / "s.db").reuse_evaluations is True


def test_without_reuse_every_proposal_is_trained(tmp_path, moons):
    space = MLPSpace()
    evaluator = FakeEvaluator(moons, fraction_of_wide_layers)
    study = Study.create(
        tmp_path / "s.db",
        moons,
        steps=2,
        children_per_step=5,
        space=space,
        strategy=always_the_same(space),
        evaluator=evaluator,
    )
    study.run(progress=False)
    assert len(evaluator.calls) == 10
    assert all(t.cached_from is None for t in study.trials())


def test_reuse_survives_a_resume(tmp_path, moons):
    from archsearch.evaluation import BatchedTrainer

    space = MLPSpace()
    path = tmp_path / "s.db"
    config = TrainConfig(max_epochs=4)
    study = Study.create(
        path,
        moons,
        steps=1,
        children_per_step=4,
        space=space,
        strategy=Reinforce(space, seed=2),
        evaluator=BatchedTrainer(moons, config),
        reuse_evaluations=True,
    )
    study.run(progress=False)
    first = study.trials()
    study.close()
    with Study.open(path) as again:
        again.strategy.ask = lambda n: [t.architecture for t in first][:n]  # propose the same again
        calls = []
        original = again.evaluator.evaluate
        again.evaluator.evaluate = lambda archs, seeds: (calls.append(len(archs)), original(archs, seeds))[1]
        again.run(steps=2, progress=False)
        assert calls == []  # every architecture of step 1 was a hit on step 0's trials
        assert [t.cached_from for t in again.trials()[4:]] == [t.cached_from or t.number for t in first]


def test_equal_rewards_go_to_the_lower_validation_loss(tmp_path, moons):
    from archsearch.evaluation import BatchedTrainer, TrainConfig, validation_loss

    study = Study.create(
        tmp_path / "s.db", moons, steps=4, children_per_step=6, seed=2,
        evaluator=BatchedTrainer(moons, TrainConfig(max_epochs=6)),
    )  # fmt: skip
    best = study.run(progress=False)
    trials = [t for t in study.trials() if t.status == "ok"]
    assert all(t.val_loss is not None and t.val_loss > 0 for t in trials)
    tied = [t for t in trials if t.reward == best.reward]
    assert best.val_loss == min(t.val_loss for t in tied)
    stored = study._storage.best_model()
    assert stored[0] == best.number
    assert best.val_loss == pytest.approx(validation_loss(best.architecture, moons, stored[1]), rel=1e-6)
    assert [t.number for t in study.trials(top=len(trials))] == [t.number for t in sorted(trials, key=rank)]


def test_rank_prefers_a_known_validation_loss_then_fewer_parameters():
    from types import SimpleNamespace as T

    trials = [
        T(reward=0.9, val_loss=None, params=5, number=0, kind="final"),
        T(reward=0.9, val_loss=0.3, params=50, number=1, kind="final"),
        T(reward=0.9, val_loss=0.3, params=40, number=2, kind="final"),
        T(reward=0.9, val_loss=0.1, params=90, number=3, kind="final"),
        T(reward=0.95, val_loss=0.9, params=99, number=4, kind="final"),
        T(reward=1.0, val_loss=0.0, params=1, number=5, kind="proxy"),  # scored with shared weights: after all trained
    ]
    assert [t.number for t in sorted(trials, key=rank)] == [4, 3, 2, 1, 0, 5]


def test_a_study_from_the_first_schema_is_upgraded_on_open(tmp_path, moons):

    path = tmp_path / "old.db"
    study = Study.create(
        path, moons, steps=2, children_per_step=2, evaluator=SerialTrainer(moons, TrainConfig(max_epochs=2))
    )
    study.run(progress=False)
    study.close()
    downgrade(path, 1)  # what a study written before validation losses looks like
    with Study.open(path, readonly=True) as old:  # readable as it is, ties by parameters
        assert old.best() is not None and all(t.val_loss is None for t in old.trials())
        assert [t.number for t in old.trials(top=4)] == [t.number for t in sorted(old.trials(), key=rank)]
    with Study.open(path) as upgraded:
        assert len(upgraded.trials()) == 4 and all(t.val_loss is None for t in upgraded.trials())
        upgraded.run(steps=3, progress=False)
        assert len(upgraded.trials()) == 6
    with Study.open(path, readonly=True) as reread:
        assert reread.best() is not None


def test_save_children_keeps_every_trained_network(tmp_path, moons):
    from archsearch.evaluation import BatchedTrainer, split_score

    path = tmp_path / "s.db"
    study = Study.create(path, moons, steps=2, children_per_step=3, save_children=True,
                         evaluator=BatchedTrainer(moons, TrainConfig(max_epochs=4)))  # fmt: skip
    best = study.run(progress=False)
    assert sorted(p.name for p in study.children_dir.iterdir()) == [f"{n}.safetensors" for n in range(6)]
    assert study.children_dir == tmp_path / "s.db.children"
    for trial in study.trials():  # the kept weights are the ones that set the trial's reward
        assert split_score(study.child_model(trial.number), moons, "val") == trial.val_score
    x = moons.x_test
    assert torch.equal(study.child_model(best.number)(x), study.best_model()(x))
    study.close()
    assert Study.open(path).save_children is True


def test_without_save_children_only_the_best_is_kept(tmp_path, moons):
    study = Study.create(tmp_path / "s.db", moons, steps=1, children_per_step=2,
                         evaluator=FakeEvaluator(moons, fraction_of_wide_layers))  # fmt: skip
    study.run(progress=False)
    assert not study.children_dir.exists()
    with pytest.raises(ArchsearchError, match="no saved weights for trial 0"):
        study.child_model(0)
    with pytest.raises(ArchsearchError, match="save_children: a study kept in memory"):
        Study.create(None, moons, steps=1, save_children=True)


def test_refit_retrains_the_pick_on_training_and_validation_rows(tmp_path, moons):
    import dataclasses

    from archsearch.evaluation import BatchedTrainer, load_model, split_score

    config = TrainConfig(max_epochs=12, patience=4)
    path = tmp_path / "refit.db"
    study = Study.create(path, moons, steps=2, children_per_step=4, seed=5, refit=True,
                         evaluator=BatchedTrainer(moons, config))  # fmt: skip
    study.run(progress=False)
    best = study.best()
    summary = study.summary()
    assert summary["refit"] == {"epochs": best.kept_epoch, "rows": 900}
    # the same initial weights, trained for kept_epoch epochs on train + validation, by the reference trainer
    merged = dataclasses.replace(moons, x_train=torch.cat([moons.x_train, moons.x_val]),
                                 y_train=torch.cat([moons.y_train, moons.y_val]))  # fmt: skip
    again = dataclasses.replace(config, max_epochs=best.kept_epoch, patience=best.kept_epoch + 1, reward_window=1)
    expected = SerialTrainer(merged, again).train(best.architecture, best.seed).weights
    model = study.best_model()
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, expected[name])
    searched = load_model(best.architecture, moons, study._storage.best_model()[1])
    assert not torch.equal(searched[0].weight, model[0].weight)  # the search's own weights are kept apart
    assert summary["test_score"] == split_score(model, moons, "test")
    study.close()
    with Study.open(path, readonly=True) as reopened:  # stored: nothing is retrained on reading
        assert reopened.summary()["refit"] == summary["refit"]
        assert reopened.test_score() == summary["test_score"]
        assert torch.equal(reopened.best_model()[0].weight, model[0].weight)


def test_without_refit_the_model_is_the_searchs_own(tmp_path, moons):
    study = Study.create(None, moons, steps=1, children_per_step=3,
                         evaluator=SerialTrainer(moons, TrainConfig(max_epochs=3)))  # fmt: skip
    study.run(progress=False)
    assert study.summary()["refit"] is None


def test_refit_needs_a_trainer(moons):
    from archsearch.evaluation import LookupEvaluator, get_benchmark

    bench = get_benchmark("nas-bench-macro")
    with pytest.raises(ArchsearchError, match="refit: retrains the final pick; the .lookup. evaluator trains nothing"):
        Study.create(None, None, steps=1, space=bench.space, strategy=Reinforce(bench.space),
                     evaluator=LookupEvaluator(bench), refit=True)  # fmt: skip


def test_a_study_does_not_depend_on_the_callers_thread_count(tmp_path, moons):
    """The controller runs on one thread during a run, and the caller's setting comes back after."""
    studies = []
    for threads in (1, 3):
        torch.set_num_threads(threads)
        with make(tmp_path / f"t{threads}.db", moons, steps=3) as study:
            study.run(progress=False)
            assert torch.get_num_threads() == threads
            studies.append([key(t) for t in study.trials()])
    assert studies[0] == studies[1]


def test_the_strategy_learns_each_childs_status_and_tpe_leaves_crashes_out(moons):
    """A crashed child is a recorded trial with reward 0, and TPE is told it failed, not that it scored 0."""
    from archsearch.evaluation import Result
    from archsearch.strategies import TPE

    class CrashingOnTinyLayers(FakeEvaluator):
        def evaluate(self, archs, seeds):
            for index, result in super().evaluate(archs, seeds):
                if any(layer.units == 1 for layer in archs[index].layers):
                    result = Result.failure("failed", "RuntimeError: boom", result.params)
                yield index, result

    space = MLPSpace()
    study = Study.create(
        None, moons, steps=3, children_per_step=5, space=space, strategy=TPE(space, seed=1, n_startup_trials=5),
        evaluator=CrashingOnTinyLayers(moons, fraction_of_wide_layers),
    )  # fmt: skip
    study.run(progress=False)
    trials = study.trials()
    failed = [t for t in trials if t.status == "failed"]
    assert failed and all(t.reward == 0.0 and t.error == "RuntimeError: boom" for t in failed)
    measured = [(space.encode(t.architecture), t.reward) for t in trials if t.status == "ok"]
    assert study.strategy.history == measured  # in the order told, crashes left out


def test_an_interrupted_replacement_leaves_the_old_study_as_it_was(tmp_path, monkeypatch):
    from archsearch.study import _storage

    path = tmp_path / "s.db"
    with Study.create(path, "moons", steps=1, children_per_step=2) as study:
        study.run(progress=False)
    before = path.read_bytes()

    def interrupted(temp):
        _storage.Storage.create(temp, {"half": True}).close()
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _storage.replace_study(path, interrupted)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("s.db-")) == ["s.db"]
    with Study.create(path, "moons", steps=1, children_per_step=3, seed=4, overwrite=True) as study:
        assert study.trials() == [] and study.seed == 4
        study.run(progress=False)
        assert len(study.trials()) == 3

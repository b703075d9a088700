"""The final ensemble (``ensemble=K``, ``search --ensemble K``): which trials are its members, how they
are trained, how they predict together, and what it does with a study file that is altered."""

import dataclasses
import json
import sqlite3

import pytest
import torch

from archsearch import ArchsearchError, SearchConfig, Study
from archsearch.evaluation import BatchedTrainer, Ensemble, SerialTrainer, TrainConfig, split_score
from archsearch.space import MLPSpace

from ..conftest import Crash

CONFIG = TrainConfig(max_epochs=8, patience=3)


def small(task, train=200, val=60):
    return dataclasses.replace(
        task, x_train=task.x_train[:train], y_train=task.y_train[:train], x_val=task.x_val[:val], y_val=task.y_val[:val]
    )


def study(path, task, ensemble=4, trainer=SerialTrainer, steps=3, **options):
    made = Study.create(path, small(task), steps=steps, children_per_step=5, seed=1,
                        space=MLPSpace(units=(4, 8), activations=("tanh",), max_layers=2), evaluator=trainer(small(task), CONFIG),
                        ensemble=ensemble, **options)  # fmt: skip
    made.run()
    return made


def test_members_are_the_best_trials_one_per_architecture(moons):
    s = study(None, moons)
    members = s.ensemble_members()
    ranked = s.trials(top=15)
    assert [t.number for t in members] == [t.number for t in s.ensemble_picks()]
    assert members[0].number == s.best().number
    assert len(members) == 4 and len({t.arch_hash for t in members}) == 4
    for trial in members:  # no better trial of another architecture was left out
        better = ranked[: ranked.index(trial)]
        assert {t.arch_hash for t in better} <= {m.arch_hash for m in members}
    assert len({t.arch_hash for t in ranked}) < len(ranked)  # the space repeats architectures: they were skipped
    assert s.summary()["ensemble"] == {"size": 4, "members": [t.number for t in members],
                                       "test_score": s.ensemble_summary()["test_score"]}  # fmt: skip


def test_members_are_the_searchs_own_networks(moons, tmp_path):
    """Trained again from their seeds by the reference trainer: the serial search's weights, bit for bit."""
    s = study(tmp_path / "s.db", moons, save_children=True)
    for trial, network in zip(s.ensemble_members(), s.ensemble_model().members):
        saved = s.child_model(trial.number).state_dict()
        assert all(torch.equal(network.state_dict()[k], v) for k, v in saved.items())


def test_a_batched_search_s_members_match_within_float_rounding(moons, tmp_path):
    s = study(tmp_path / "s.db", moons, trainer=BatchedTrainer, save_children=True)
    for trial, network in zip(s.ensemble_members()[1:], s.ensemble_model().members[1:]):
        saved = s.child_model(trial.number).state_dict()
        assert all(torch.allclose(network.state_dict()[k], v, atol=1e-4) for k, v in saved.items())


def test_a_refitting_study_s_members_are_refits(moons):
    s = study(None, moons, refit=True)
    members, networks = s.ensemble_members(), s.ensemble_model().members
    assert all(torch.equal(networks[0].state_dict()[k], v) for k, v in s.best_model().state_dict().items())
    for trial, network in zip(members[1:], networks[1:]):
        refit = s.evaluator.refit(trial.architecture, trial.seed, trial.kept_epoch).weights
        assert all(torch.equal(network.state_dict()[k], v) for k, v in refit.items())


def test_a_classifier_averages_probabilities_and_a_regressor_outputs(moons, friedman):
    for task in (moons, friedman):
        s = study(None, task, ensemble=3)
        model, x = s.ensemble_model(), s.task.x_test
        outputs = torch.stack([network(x) for network in model.members]).detach()
        with torch.no_grad():
            combined = model(x)
        if task is moons:
            assert torch.allclose(combined.softmax(-1), outputs.softmax(-1).mean(0), atol=1e-6)
            expected = (outputs.softmax(-1).mean(0).argmax(-1) == s.task.y_test).float().mean().item()
            assert s.ensemble_summary()["test_score"] == pytest.approx(expected)
        else:
            assert torch.allclose(combined, outputs.mean(0), atol=1e-6)
        assert s.ensemble_summary()["test_score"] == pytest.approx(split_score(model, s.task, "test"))
    with pytest.raises(ArchsearchError, match="at least one network"):
        Ensemble([], regression=False)


def test_an_ensemble_is_built_once_and_again_when_a_longer_search_changes_the_best(moons, tmp_path, monkeypatch):
    s = study(tmp_path / "s.db", moons)
    before = [t.number for t in s.ensemble_members()]

    def refuse(*args):  # noqa: ANN002, ANN202
        raise AssertionError("retrained")

    monkeypatch.setattr(SerialTrainer, "retrain", refuse)
    assert s.build_ensemble()["members"] == before  # stored: nothing trained again
    monkeypatch.undo()
    s.run(steps=6)
    assert [t.number for t in s.ensemble_members()] == [t.number for t in s.ensemble_picks()]
    s.close()
    with Study.open(tmp_path / "s.db", readonly=True) as reopened:
        assert reopened.summary()["ensemble"]["members"] == [t.number for t in reopened.ensemble_picks()]


def test_a_failed_ensemble_leaves_the_study_usable_and_a_later_run_builds_it(moons, tmp_path, monkeypatch):
    def fail(*args):  # noqa: ANN002, ANN202
        raise ArchsearchError("the retrained network diverged: loss nan")

    monkeypatch.setattr(SerialTrainer, "retrain", fail)
    with pytest.warns(UserWarning, match=r"training trial \d+ for the ensemble failed .*the study's model is its best"):
        s = study(tmp_path / "s.db", moons)
    assert s.ensemble_members() is None and s.summary()["ensemble"] is None and s.test_score() is not None
    monkeypatch.undo()
    s.run()  # every step is done: the run builds what is missing
    assert len(s.ensemble_members()) == 4


def test_a_crash_while_training_members_stores_nothing(moons, tmp_path, monkeypatch):
    path, retrain, calls = tmp_path / "s.db", SerialTrainer.retrain, []

    def dies_second(self, arch, seed):  # noqa: ANN001, ANN202
        calls.append(seed)
        if len(calls) == 2:
            raise Crash
        return retrain(self, arch, seed)

    monkeypatch.setattr(SerialTrainer, "retrain", dies_second)
    with pytest.raises(Crash):
        study(path, moons, ensemble=3)
    monkeypatch.undo()
    with Study.open(path) as resumed:
        assert resumed.ensemble_members() is None and resumed.completed_steps() == 3
        resumed.run()
        assert len(resumed.ensemble_members()) == 3


def tamper(path, statement, *args):
    with sqlite3.connect(path) as db:
        db.execute(statement, args)
    db.close()


@pytest.mark.parametrize(
    "statement, args, error",
    [
        ("UPDATE ensemble SET member = 7 WHERE member = 1", (), r"the ensemble's member 2 is of trial \d+: members are"),
        ("UPDATE ensemble SET number = 'x' WHERE member = 0", (), r"member 0 is of trial x: members are numbered from 0"),
        ("INSERT INTO meta VALUES ('ensemble_test_score', ?)", ("NaN",), r"the ensemble's test_score NaN is not a finite number$"),
    ],
)
def test_an_altered_ensemble_is_one_line(moons, tmp_path, statement, args, error):
    path = tmp_path / "s.db"
    study(path, moons).close()
    tamper(path, "DELETE FROM meta WHERE key = 'ensemble_test_score'")
    tamper(path, statement, *args)
    with Study.open(path, readonly=True) as s, pytest.raises(ArchsearchError, match=error):
        s.summary()


def test_unreadable_or_stale_member_weights(moons, tmp_path):
    path = tmp_path / "s.db"
    study(path, moons).close()
    tamper(path, "UPDATE ensemble SET weights = x'00' WHERE member = 1")
    tamper(path, "DELETE FROM meta WHERE key = 'ensemble_test_score'")
    with Study.open(path, readonly=True) as s:
        with pytest.warns(UserWarning, match=r"the ensemble weights of trial \d+ cannot be read .*; no ensemble"):
            assert s.summary()["ensemble"] is None
        assert s.test_score() is not None  # the best network alone still works
    with Study.open(path, readonly=True) as s:
        other = next(t.number for t in s.trials() if t.number not in s._storage.ensemble_members())
    tamper(path, "UPDATE ensemble SET number = ? WHERE member = 1", other)  # not the best trials: an old ensemble
    with Study.open(path, readonly=True) as s:
        assert s.ensemble_members() is None
        with pytest.raises(ArchsearchError, match=r"has no ensemble of its best trials \(search with --ensemble K\)$"):
            s.ensemble_model()


@pytest.mark.parametrize("value, error", [(0, "must be at least 1, got 0"), (101, "must be at most 100, got 101"),
                                          ("3", "must be an integer")])  # fmt: skip
def test_a_stored_ensemble_size_is_checked(moons, tmp_path, value, error):
    path = tmp_path / "s.db"
    study(path, moons, ensemble=2, steps=1).close()
    config = json.loads(sqlite3.connect(path).execute("SELECT value FROM meta WHERE key = 'config'").fetchone()[0])
    tamper(path, "UPDATE meta SET value = ? WHERE key = 'config'", json.dumps({**config, "ensemble": value}))
    with pytest.raises(ArchsearchError, match=f"config.ensemble: {error}"):
        Study.open(path, readonly=True)


def test_what_cannot_ensemble_is_refused(moons):
    with pytest.raises(ArchsearchError, match="ensemble: trains the best architectures again as the final model; the 'lookup' evaluator does not$"):
        Study.create(None, SearchConfig(benchmark="nas-bench-macro", steps=1, ensemble=3))
    with pytest.raises(ArchsearchError, match="ensemble: trains the best architectures again as the final model; the 'shared' evaluator does not$"):
        Study.create(None, SearchConfig(task="moons", weight_sharing=True, steps=1, ensemble=3))
    for size, error in ((0, "ensemble: must be a positive integer, got 0"), (101, "ensemble: must be at most 100")):
        with pytest.raises(ArchsearchError, match=error):
            Study.create(None, small(moons), steps=1, ensemble=size)


def test_a_table_of_ones_own_gets_an_ensemble_of_5_by_default(tmp_path):
    """The default follows the data: a data file of rows (``--data``) ends with the 5 best averaged; a
    named task (the seed experiment) keeps the best network alone; a given K wins either way."""
    from sklearn.datasets import load_iris

    from archsearch.config import TABLE_ENSEMBLE

    path = tmp_path / "iris.csv"
    load_iris(as_frame=True).frame.to_csv(path, index=False)
    table = SearchConfig(data=str(path), target="target", steps=1)
    assert TABLE_ENSEMBLE == 5 and table.final_ensemble(table.build()) == 5
    assert dataclasses.replace(table, ensemble=1).final_ensemble(table.build()) == 1
    named = SearchConfig(task="moons", steps=1)
    assert named.final_ensemble(named.build()) == 1
    assert dataclasses.replace(named, ensemble=3).final_ensemble(named.build()) == 3
    with Study.create(tmp_path / "t.db", dataclasses.replace(table, steps=2, children_per_step=4)) as study:
        assert study.config["ensemble"] == study.ensemble_size == 5
        study.run()
        assert len(study.summary()["ensemble"]["members"]) == 5
    with Study.create(None, named) as study:
        assert "ensemble" not in study.config and study.ensemble_size == 1


def test_one_successful_architecture_makes_no_ensemble(moons):
    s = study(None, moons, steps=1, ensemble=5)  # fewer distinct architectures than asked: all of them
    assert len(s.ensemble_members()) == len({t.arch_hash for t in s.trials() if t.status == "ok"}) < 5
    s2 = Study.create(None, small(moons), steps=1, children_per_step=1, seed=1, ensemble=5,
                      evaluator=SerialTrainer(small(moons), CONFIG))  # fmt: skip
    s2.run()
    assert s2.build_ensemble() is None and s2.ensemble_members() is None and s2.summary()["ensemble"] is None

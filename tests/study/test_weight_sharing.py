"""A weight-sharing study (ENAS): its phases and kinds, its pick, and exact resume after an interruption
anywhere: in a pass of supernet training, between proxy trials, in derivation and in retraining."""

from __future__ import annotations

import sqlite3

import pytest
import torch

from archsearch import SearchConfig
from archsearch.errors import ArchsearchError
from archsearch.evaluation import SharedWeightsEvaluator
from archsearch.space import CNNSpace, MLPSpace
from archsearch.study import Study

from ..conftest import study_rows

SHARED = {"derive": 8, "retrain": 2, "controller_steps": 2, "reward_rows": 64}


def config(**changes) -> SearchConfig:  # noqa: ANN003
    settings = dict(task="moons", weight_sharing=True, steps=4, children_per_step=3, seed=3, shared=SHARED,
                    space=MLPSpace(units=(2, 4, 8), max_layers=2), training={"max_epochs": 8, "batch_size": 64})  # fmt: skip
    return SearchConfig(**{**settings, **changes})


def test_phases_kinds_and_the_pick(tmp_path):
    with Study.create(tmp_path / "ws.db", config()) as study:
        best = study.run(progress=False)
        trials = study.trials()
        phases = study.phases()
        summary = study.summary()
    search = [t for t in trials if t.phase == "search"]
    derived = [t for t in trials if t.phase == "derive"]
    final = [t for t in trials if t.phase == "retrain"]
    assert len(search) == 12 and {t.kind for t in search} == {"proxy"} and all(t.epochs == 0 for t in search)
    assert 2 <= len(derived) <= 8 and {t.kind for t in derived} == {"proxy"}
    assert len({t.arch_hash for t in derived}) == len(derived)  # duplicates dropped
    assert len(final) == 2 and {t.kind for t in final} == {"final"} and all(t.epochs > 0 for t in final)
    # the two retrained are the two best derived by their proxy score, trained from scratch
    ranked = sorted(derived, key=lambda t: (-t.reward, t.val_loss, t.params, t.number))
    assert [t.arch_hash for t in final] == [t.arch_hash for t in ranked[:2]]
    assert [t.number for t in trials] == list(range(len(trials)))
    assert best.kind == "final" and best.number in {t.number for t in final}
    assert summary["kind"] == "final" and summary["test_score"] is not None
    assert phases["search_trials"] == 12 and phases["retrained"] == 2 and phases["tau_pairs"] == 2
    assert [f["proxy_val_score"] for f in phases["final"]] == [t.val_score for t in ranked[:2]]


def test_the_supernet_trains_between_steps_and_its_state_is_committed_with_the_strategy(tmp_path):
    path = tmp_path / "ws.db"
    with Study.create(path, config(steps=3)) as study:
        study.run(progress=False)
        evaluator = study.evaluator
        assert evaluator.passes == 2  # before steps 0 and 2 (controller_steps=2)
        committed = study._storage.evaluator_state()
    assert committed[0] == 2 and committed[1]["passes"] == 2
    for name, tensor in evaluator.supernet.state_dict().items():
        assert torch.equal(committed[1]["supernet"][name], tensor), name
    with sqlite3.connect(path) as db:
        metrics = [row[0] for row in db.execute("SELECT metrics FROM steps ORDER BY step")]
    db.close()
    assert ["shared_loss" in m for m in metrics] == [True, False, True]


class Interrupt(BaseException):
    """What a kill does to a run: it stops wherever it is, and only what was committed remains."""


@pytest.mark.parametrize(
    ("method", "call"),
    [("train_pass", 2), ("_proxy", 5), ("score", 3), ("train_final", 2)],
    ids=["in-a-pass", "between-proxy-trials", "in-derivation", "in-retraining"],
)
def test_an_interrupted_study_resumes_to_the_uninterrupted_one(tmp_path, monkeypatch, method, call):
    straight, killed = tmp_path / "straight.db", tmp_path / "killed.db"
    with Study.create(straight, config()) as study:
        study.run(progress=False)
    calls = {"n": 0}
    original = getattr(SharedWeightsEvaluator, method)

    def interrupted(self, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        calls["n"] += 1
        if calls["n"] == call:
            raise Interrupt
        return original(self, *args, **kwargs)

    monkeypatch.setattr(SharedWeightsEvaluator, method, interrupted)
    with Study.create(killed, config()) as study, pytest.raises(Interrupt):
        study.run(progress=False)
    monkeypatch.setattr(SharedWeightsEvaluator, method, original)
    with Study.open(killed) as study:
        study.run(progress=False)
    assert calls["n"] == call and study_rows(killed) == study_rows(straight)


def test_a_cnn_search_with_shared_weights_ends_with_a_trained_cnn(tmp_path):
    space = CNNSpace(filters=(4, 8), kernels=(3,), strides=(1, 2), dropouts=(0.0,), max_layers=3)
    changes = dict(task="digits", space=space, steps=2, training={"max_epochs": 1, "threads": 1})
    with Study.create(tmp_path / "cnn.db", config(**changes)) as study:
        best = study.run(progress=False)
        assert best.kind == "final" and best.architecture.kind == "cnn"
        assert 0.0 < study.test_score() <= 1.0
        model = study.best_model()
    assert sum(p.numel() for p in model.parameters()) == best.params


def test_an_interrupted_cnn_study_resumes_to_the_uninterrupted_one(tmp_path, monkeypatch):
    """The supernet of a CNN space holds batch normalization's running statistics besides its weights."""
    space = CNNSpace(filters=(4, 8), kernels=(3,), strides=(1, 2), dropouts=(0.0, 0.25), max_layers=2)
    changes = dict(task="digits", space=space, steps=4, training={"max_epochs": 1, "threads": 1})
    straight, killed = tmp_path / "straight.db", tmp_path / "killed.db"
    with Study.create(straight, config(**changes)) as study:
        study.run(progress=False)
    original = SharedWeightsEvaluator.train_pass

    def interrupted(self, archs):  # noqa: ANN001, ANN202
        if self.passes == 1:
            raise Interrupt
        return original(self, archs)

    monkeypatch.setattr(SharedWeightsEvaluator, "train_pass", interrupted)
    with Study.create(killed, config(**changes)) as study, pytest.raises(Interrupt):
        study.run(progress=False)
    monkeypatch.setattr(SharedWeightsEvaluator, "train_pass", original)
    with Study.open(killed) as study:
        study.run(progress=False)
    assert study_rows(killed) == study_rows(straight)


def test_growing_the_budget_after_derivation_is_refused_and_changes_nothing(tmp_path):
    path = tmp_path / "ws.db"
    with Study.create(path, config()) as study:
        study.run(progress=False)
    before = study_rows(path)
    with Study.open(path) as study, pytest.raises(ArchsearchError, match="has derived its picks from 4 steps"):
        study.run(steps=6, progress=False)
    assert study_rows(path) == before


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"benchmark": "nas-bench-macro", "task": None, "space": None}, "weight_sharing: a tabular benchmark"),
        ({"executor": "process", "workers": 2}, "executor: weight_sharing scores children in the one process"),
        ({"reuse_evaluations": True}, "reuse_evaluations: cannot be combined with weight_sharing"),
        ({"shared": {"epochs": 3}}, "shared: unknown setting 'epochs'"),
        ({"shared": {"sharing": "diagonal"}}, "trainer.sharing: must be one of slice, separate"),
        ({"weight_sharing": False}, "shared.derive: a setting of weight sharing; add weight_sharing"),
    ],
)
def test_what_weight_sharing_cannot_do_is_one_line(tmp_path, changes, message):
    with pytest.raises(ArchsearchError, match=message):
        Study.create(tmp_path / "ws.db", config(**changes))
    assert list(tmp_path.iterdir()) == []


def test_a_space_without_a_supernet_is_refused(tmp_path):
    from archsearch.evaluation import get_benchmark

    space = get_benchmark("nas-bench-macro").space
    with pytest.raises(ArchsearchError, match="weight sharing supports the mlp and cnn spaces, not code"):
        Study.create(tmp_path / "ws.db", config(space=space))
    assert list(tmp_path.iterdir()) == []


def _tampered_state(state: dict, how: str) -> dict:
    weights = dict(state["supernet"])
    first = next(name for name, tensor in weights.items() if tensor.is_floating_point())
    optimizer = {**state["optimizer"], "state": dict(state["optimizer"]["state"])}
    index = next(iter(optimizer["state"]))
    if how == "shape":
        weights[first] = torch.zeros(3, 3)
    elif how == "nan":
        weights[first] = torch.full_like(weights[first], float("nan"))
    elif how == "moments":
        optimizer["state"][index] = {**optimizer["state"][index], "exp_avg": torch.zeros(2)}
    elif how == "generator":
        return {**state, "generator": torch.zeros(3, dtype=torch.uint8)}
    elif how == "passes":
        return {**state, "passes": -1}
    return {**state, "supernet": weights, "optimizer": optimizer}


@pytest.mark.parametrize("how", ["shape", "nan", "moments", "generator", "passes", "bytes", "deleted"])
def test_a_tampered_supernet_state_refuses_resume_in_one_line_and_changes_nothing(tmp_path, how):
    from archsearch.study._storage import to_blob

    path = tmp_path / "ws.db"
    with Study.create(path, config(steps=6)) as study, pytest.raises(Interrupt):
        original = study.evaluator.train_pass

        def stop(archs):  # noqa: ANN001, ANN202
            if study.evaluator.passes == 2:
                raise Interrupt
            return original(archs)

        study.evaluator.train_pass = stop
        study.run(progress=False)
    with sqlite3.connect(path) as db:
        step, blob = db.execute("SELECT step, state FROM evaluator_state").fetchone()
        if how == "deleted":
            db.execute("DELETE FROM evaluator_state")
        else:
            state = torch.load(__import__("io").BytesIO(blob), weights_only=True)
            new = b"not a blob" if how == "bytes" else to_blob(_tampered_state(state, how))
            db.execute("UPDATE evaluator_state SET state = ?", (new,))
    db.close()
    before = path.read_bytes()
    with Study.open(path) as study, pytest.raises(ArchsearchError) as error:
        study.run(progress=False)
    message = str(error.value)
    assert "\n" not in message and ("shared weights" in message or "evaluator's state" in message), message
    assert "resume does not" in message and path.read_bytes() == before

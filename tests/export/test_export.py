"""Export round trips: weights, standalone code and ONNX give the study's best model's predictions."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from archsearch.errors import ArchsearchError
from archsearch.evaluation import BatchedTrainer, SerialTrainer, TrainConfig
from archsearch.export import EXPORT_FILES, export_best, onnx_available
from archsearch.study import Study
from archsearch.tasks import from_file, get_task


def _study(path, task):
    study = Study.create(
        path, task, steps=2, children_per_step=4, seed=1, evaluator=BatchedTrainer(task, TrainConfig(max_epochs=8))
    )
    study.run(progress=False)
    return study


@pytest.fixture(scope="module")
def wine(tmp_path_factory):
    """A study on a CSV with standardised features and string labels, exported."""
    from sklearn.datasets import load_wine

    folder = tmp_path_factory.mktemp("wine")
    data = load_wine()
    with open(folder / "wine.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([*data.feature_names, "cultivar"])
        writer.writerows([*x, "abc"[y]] for x, y in zip(data.data, data.target))
    task = from_file(str(folder / "wine.csv"), "cultivar")
    study = _study(folder / "wine.db", task)
    paths = export_best(study, folder / "best")
    return study, task, paths


def _raw(task, split):
    """The split's rows as the user's file holds them (before standardisation)."""
    pre = task.preprocessing
    x = task.split(split)[0].double()
    return (x * torch.tensor(pre["std"]) + torch.tensor(pre["mean"])).tolist()


def test_files_written(wine):
    _, _, paths = wine
    expected = {"architecture.json", "model.py", "weights.safetensors"} | (
        {"model.onnx"} if onnx_available() else set()
    )
    assert set(paths) == expected and all(p.stat().st_size > 0 for p in paths.values())
    description = json.loads(paths["architecture.json"].read_text())
    assert description["preprocessing"]["classes"] == ["a", "b", "c"]
    assert len(description["preprocessing"]["features"]) == 13


def test_weights_round_trip(wine):
    from safetensors.torch import load_file

    study, _, paths = wine
    expected = study.best_model().state_dict()
    loaded = load_file(str(paths["weights.safetensors"]))
    assert loaded.keys() == expected.keys()
    for name, tensor in expected.items():
        assert torch.equal(loaded[name], tensor)


def test_standalone_code_predicts_like_the_best_model_without_archsearch(wine):
    study, task, paths = wine
    with torch.no_grad():
        expected = [["a", "b", "c"][i] for i in study.best_model()(task.x_test).argmax(1).tolist()]
    script = (
        "import json, sys\n"
        "sys.modules['archsearch'] = None  # importing archsearch now fails\n"
        "import model\n"
        "print(json.dumps(model.predict(json.loads(sys.stdin.read()))))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script],
        input=json.dumps(_raw(task, "test")),
        cwd=paths["model.py"].parent,
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(proc.stdout) == expected


def test_onnx_gives_the_same_logits(wine):
    ort = pytest.importorskip("onnxruntime", reason="ONNX export needs the optional extra archsearch[onnx]")
    study, task, paths = wine
    assert "model.onnx" in paths
    session = ort.InferenceSession(str(paths["model.onnx"]))
    for split in ("train", "test"):  # two batch sizes: the number of rows is free
        x = task.split(split)[0]
        (logits,) = session.run(None, {"features": x.numpy()})
        with torch.no_grad():
            np.testing.assert_allclose(logits, study.best_model()(x).numpy(), atol=1e-5)


def test_moons_export_without_scaling(tmp_path):
    task = get_task("moons")
    study = _study(tmp_path / "m.db", task)
    paths = export_best(study, tmp_path / "best", onnx=False)
    assert "model.onnx" not in paths
    namespace: dict = {}
    exec(paths["model.py"].read_text().replace("HERE = Path(__file__)", "HERE = Path(__import__('os').getcwd())"),
         namespace)  # fmt: skip
    model = namespace["load_model"](paths["weights.safetensors"])
    with torch.no_grad():
        assert torch.equal(model(task.x_val), study.best_model()(task.x_val))
    assert namespace["predict"](task.x_val.tolist(), model) == study.best_model()(task.x_val).argmax(1).tolist()


def test_regression_export_round_trip(tmp_path, friedman):
    """model.py predicts in the target's units; ONNX gives the standardised output as 'outputs'."""
    task = friedman
    study = _study(tmp_path / "f.db", task)
    paths = export_best(study, tmp_path / "best")
    description = json.loads(paths["architecture.json"].read_text())
    assert description["problem"] == "regression" and description["source"]["metric"] == "r2"
    pre = task.preprocessing
    with torch.no_grad():
        standardised = study.best_model()(task.x_test)[:, 0].double()
    expected = (standardised * pre["target_std"] + pre["target_mean"]).tolist()
    namespace: dict = {}
    exec(paths["model.py"].read_text().replace("HERE = Path(__file__)", f"HERE = Path({str(paths['model.py'])!r})"),
         namespace)  # fmt: skip
    assert namespace["predict"](_raw(task, "test")) == pytest.approx(expected, abs=1e-4)
    if onnx_available():
        ort = pytest.importorskip("onnxruntime")
        session = ort.InferenceSession(str(paths["model.onnx"]))
        assert [o.name for o in session.get_outputs()] == ["outputs"]
        (outputs,) = session.run(None, {"features": task.x_test.numpy()})
        np.testing.assert_allclose(outputs[:, 0], standardised.numpy(), atol=1e-5)


def test_export_refuses_a_study_without_a_network(tmp_path):
    from archsearch.evaluation import LookupEvaluator, get_benchmark
    from archsearch.strategies import RandomSearch

    bench = get_benchmark("nas-bench-macro")
    study = Study.create(
        None, None, steps=1, children_per_step=2, space=bench.space, strategy=RandomSearch(bench.space),
        evaluator=LookupEvaluator(bench),
    )  # fmt: skip
    with pytest.raises(ArchsearchError, match="no successful trial"):
        export_best(study, tmp_path / "x")
    study.run(progress=False)
    with pytest.raises(ArchsearchError, match="export builds MLP and CNN networks"):
        export_best(study, tmp_path / "x")


def _ensemble_study(path, task):
    study = Study.create(path, task, steps=2, children_per_step=4, seed=1, ensemble=3,
                         evaluator=SerialTrainer(task, TrainConfig(max_epochs=8)))  # fmt: skip
    study.run(progress=False)
    return study


def _predict_in_a_fresh_python(folder, rows):
    """``model.predict(rows)`` of the folder's model.py in a Python without archsearch."""
    script = (
        "import json, sys\n"
        "sys.modules['archsearch'] = None  # importing archsearch now fails\n"
        "import model\n"
        "print(json.dumps(model.predict(json.loads(sys.stdin.read()))))\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], input=json.dumps(rows), cwd=folder, capture_output=True,
                          text=True, check=True)  # fmt: skip
    return json.loads(proc.stdout)


@pytest.mark.parametrize("fixture", ["wine", "friedman"])
def test_an_ensemble_exports_as_its_members_and_their_average(request, tmp_path, fixture):
    """Each member is a whole export of its own; model.py and model.onnx give the ensemble's predictions."""
    task = request.getfixturevalue(fixture)[1] if fixture == "wine" else request.getfixturevalue(fixture)
    study = _ensemble_study(tmp_path / "e.db", task)
    members, model = study.ensemble_members(), study.ensemble_model()
    paths = export_best(study, tmp_path / "out", onnx=None if fixture == "wine" else False)  # ONNX: slow, once
    folders = [f"member-{i}" for i in (1, 2, 3)]
    assert {*paths} >= {"ensemble.json", "model.py", *(f"{f}/{n}" for f in folders for n in EXPORT_FILES[:3])}
    assert not any(f"{f}/model.onnx" in paths for f in folders)  # one ONNX graph: the whole ensemble's
    description = json.loads(paths["ensemble.json"].read_text())
    assert description["members"] == folders
    assert description["source"]["trials"] == [t.number for t in members]
    assert description["source"]["test_score"] == study.ensemble_summary()["test_score"]
    for trial, folder, network in zip(members, folders, model.members):
        member = json.loads((tmp_path / "out" / folder / "architecture.json").read_text())
        assert member["source"]["trial"] == trial.number
        assert member["source"]["test_score"] == pytest.approx(study.evaluator.model_test_score(network))
    with torch.no_grad():
        outputs = model(task.x_test)
    if task.regression:
        pre = task.preprocessing
        expected = (outputs[:, 0].double() * pre["target_std"] + pre["target_mean"]).tolist()
        assert _predict_in_a_fresh_python(tmp_path / "out", _raw(task, "test")) == pytest.approx(expected, abs=1e-4)
    else:
        expected = [["a", "b", "c"][i] for i in outputs.argmax(1).tolist()]
        assert _predict_in_a_fresh_python(tmp_path / "out", _raw(task, "test")) == expected
    if "model.onnx" in paths:
        ort = pytest.importorskip("onnxruntime")
        session = ort.InferenceSession(str(paths["model.onnx"]))
        (onnx_outputs,) = session.run(None, {"features": task.x_test.numpy()})
        np.testing.assert_allclose(onnx_outputs, outputs.numpy(), atol=1e-5)


def test_any_trial_with_kept_weights_exports(tmp_path, moons):
    """``export --trial N``: the best's search weights, an ensemble member's or a saved child's; each
    network's own test score in its source."""
    from archsearch.export import export_trial

    study = Study.create(tmp_path / "s.db", moons, steps=2, children_per_step=4, seed=1, ensemble=2,
                         save_children=True, refit=True,
                         evaluator=SerialTrainer(moons, TrainConfig(max_epochs=8)))  # fmt: skip
    study.run(progress=False)
    best, member = study.ensemble_members()
    other = next(t for t in study.trials() if t.number not in (best.number, member.number) and t.status == "ok")
    for trial in (best, member, other):
        paths = export_trial(study, trial.number, tmp_path / f"t{trial.number}", onnx=False)
        description = json.loads(paths["architecture.json"].read_text())
        saved = study.child_model(trial.number)  # the search's own weights, whatever the study refit
        with torch.no_grad():
            assert torch.equal(load_exported(paths)(moons.x_test), saved(moons.x_test))
        assert description["source"]["trial"] == trial.number and description["source"]["refit"] is None
        assert description["source"]["test_score"] == pytest.approx(study.evaluator.model_test_score(saved))
    for child in study.children_dir.iterdir():
        child.unlink()
    export_trial(study, best.number, tmp_path / "again", onnx=False)  # kept in the study itself
    with pytest.raises(ArchsearchError, match=rf"no weights of trial {member.number}: the study keeps its best"):
        export_trial(study, member.number, tmp_path / "m", onnx=False)  # the study refits: its members are refits
    with pytest.raises(ArchsearchError, match="no trial 99$"):
        export_trial(study, 99, tmp_path / "none", onnx=False)
    assert not (tmp_path / "m").exists() and not (tmp_path / "none").exists()


def load_exported(paths):
    """The network of an export folder, through its own model.py."""
    namespace: dict = {}
    exec(paths["model.py"].read_text().replace("HERE = Path(__file__)", f"HERE = Path({str(paths['model.py'])!r})"),
         namespace)  # fmt: skip
    return namespace["load_model"](paths["weights.safetensors"])

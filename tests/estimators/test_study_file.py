"""A study written by NASClassifier / NASRegressor is a whole study: it keeps its data, and every
command works on it from the file alone (issue 16, point 7)."""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
import shutil
import sqlite3

import numpy as np
import pytest
import torch
from safetensors.torch import save
from sklearn.datasets import load_wine, make_friedman1
from sklearn.model_selection import train_test_split

from archsearch import NASClassifier, NASRegressor, Study
from archsearch.cli import main
from archsearch.errors import ArchsearchError
from archsearch.tasks import Task, from_arrays, get_task, pack

TINY = {"budget": 6, "children_per_step": 3, "max_epochs": 2}


def _wine():
    X, y = load_wine(return_X_y=True)
    return X, np.array(["barolo", "grignolino", "barbera"])[y]


def _friedman():
    return make_friedman1(n_samples=120, noise=0.5, random_state=0)


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """Each estimator fitted once with a study file, which the tests copy before changing anything."""
    folder = tmp_path_factory.mktemp("estimators")
    out = {}
    for kind, estimator, (X, y) in (("classifier", NASClassifier, _wine()), ("regressor", NASRegressor, _friedman())):
        model = estimator(study_path=str(folder / f"{kind}.db"), **TINY).fit(X, y)
        model.study_.close()
        out[kind] = (model, folder / f"{kind}.db", X, y)
    return out


def _copy(fitted, kind, tmp_path):
    model, path, X, y = fitted[kind]
    shutil.copy(path, tmp_path / path.name)
    return model, tmp_path / path.name, X, y


def _run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _one_line_error(code, err, *words):
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    for word in words:
        assert word in err, err


@pytest.mark.parametrize("kind", ["classifier", "regressor"])
def test_best_and_trials_read_an_estimators_study(fitted, kind, capsys):
    model, path, _, _ = fitted[kind]
    metric = "accuracy" if kind == "classifier" else "r2"
    code, out, err = _run(capsys, "best", path)
    assert code == 0 and err == "", err
    assert f"best: {model.best_architecture_}" in out and f"test_{metric} None" in out
    code, out, _ = _run(capsys, "best", path, "--json")
    summary = json.loads(out)
    assert code == 0 and summary["test_score"] is None and summary["metric"] == metric
    assert summary["architecture"] == str(model.best_architecture_) and summary["trials"] == 6
    code, out, _ = _run(capsys, "trials", path, "--json")
    assert code == 0 and len(json.loads(out)) == 6


@pytest.mark.parametrize("kind", ["classifier", "regressor"])
def test_reopened_study_rebuilds_the_estimators_data_and_model(fitted, kind):
    model, path, X, y = fitted[kind]
    with Study.open(path, readonly=True) as study:
        task = study.task
        summary = study.summary()
        network = study.best_model()
    assert summary["architecture"] == str(model.best_architecture_) and summary["test_score"] is None
    codes = np.unique(y, return_inverse=True)[1] if kind == "classifier" else None
    train, val = train_test_split(np.arange(len(X)), test_size=0.2, random_state=0, stratify=codes)
    x = torch.as_tensor((X - model.mean_) / model.scale_, dtype=torch.float32)
    # the stored rows are the estimator's own split and standardisation, bit for bit
    assert torch.equal(task.x_train, x[train]) and torch.equal(task.x_val, x[val]) and len(task.y_test) == 0
    assert task.problem == model._problem
    pre = task.preprocessing
    np.testing.assert_array_equal(pre["mean"], model.mean_)
    np.testing.assert_array_equal(pre["std"], model.scale_)
    if kind == "classifier":
        assert pre["classes"] == ["barbera", "barolo", "grignolino"] == list(model.classes_)
        assert torch.equal(task.y_val, torch.as_tensor(codes[val]))
    else:
        assert (pre["target_mean"], pre["target_std"]) == (model.target_mean_, model.target_scale_)
    with torch.no_grad():
        np.testing.assert_allclose(network(x).numpy(), model._outputs(X).numpy(), rtol=1e-4, atol=1e-5)


def _load_module(path):
    spec = importlib.util.spec_from_file_location(f"exported_{path.parent.name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("kind", ["classifier", "regressor"])
def test_report_and_export_of_an_estimators_study(fitted, kind, tmp_path, capsys):
    model, path, X, _ = fitted[kind]
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    code, out, err = _run(capsys, "report", path, "--out", tmp_path / "report.html")
    assert code == 0 and err == "", err
    html = (tmp_path / "report.html").read_text()
    assert str(model.best_architecture_) in html and "<dd>None</dd>" in html  # no test split: no test score
    # ONNX is left out: it depends on the network and the input width only, which tests/export covers, and an
    # export costs seconds
    code, out, err = _run(capsys, "export", path, "--out", tmp_path / "export", "--no-onnx")
    assert code == 0 and err == "", err
    assert {p.name for p in (tmp_path / "export").iterdir()} == {"weights.safetensors", "architecture.json", "model.py"}
    exported = _load_module(tmp_path / "export" / "model.py")
    predicted = exported.predict(X[:40].tolist())
    if kind == "classifier":
        assert predicted == list(model.predict(X[:40]))
    else:
        np.testing.assert_allclose(predicted, model.predict(X[:40]), rtol=1e-4, atol=1e-4)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before


def test_resume_continues_on_the_stored_data_as_one_uninterrupted_search(fitted, tmp_path, capsys):
    """Resumed from the file alone, the search trains the same networks to the same rewards as a search
    that had the budget from the start: the stored data is the estimator's, bit for bit."""
    _, path, X, y = _copy(fitted, "classifier", tmp_path)
    code, out, err = _run(capsys, "resume", path, "--steps", 3, "--quiet")
    assert code == 0 and "Traceback" not in err, err
    whole = NASClassifier(**{**TINY, "budget": 9}).fit(X, y)
    with Study.open(path, readonly=True) as resumed:
        got = [(t.arch_hash, t.reward, t.val_loss) for t in resumed.trials()]
    assert got == [(t.arch_hash, t.reward, t.val_loss) for t in whole.study_.trials()] and len(got) == 9


def test_resume_of_a_regressors_study(fitted, tmp_path, capsys):
    _, path, _, _ = _copy(fitted, "regressor", tmp_path)
    code, _, err = _run(capsys, "resume", path, "--steps", 3, "--quiet")
    assert code == 0 and "Traceback" not in err, err
    with Study.open(path, readonly=True) as study:
        assert len(study.trials()) == 9 and study.completed_steps() == 3


def _tamper(path, sql, *args):
    with sqlite3.connect(path) as db:
        db.execute(sql, args)
    db.close()


def _flip_a_byte_of_the_data(path):
    with sqlite3.connect(path) as db:
        data = bytearray(db.execute("SELECT data FROM task_data").fetchone()[0])
        data[len(data) // 2] ^= 0xFF
        db.execute("UPDATE task_data SET data = ?", (bytes(data),))
    db.close()


def _set_task_config(path, **changes):
    with sqlite3.connect(path) as db:
        config = json.loads(db.execute("SELECT value FROM meta WHERE key = 'config'").fetchone()[0])
        config["task"].update(changes)
        db.execute("UPDATE meta SET value = ? WHERE key = 'config'", (json.dumps(config),))
    db.close()


def test_damaged_stored_data_is_one_line_and_trials_still_read(fitted, tmp_path, capsys):
    _, path, _, _ = _copy(fitted, "classifier", tmp_path)
    _flip_a_byte_of_the_data(path)
    code, _, err = _run(capsys, "best", path)
    _one_line_error(code, err, str(path), "SHA-256")
    code, _, err = _run(capsys, "export", path, "--out", tmp_path / "export")
    _one_line_error(code, err, str(path), "SHA-256")
    assert not (tmp_path / "export" / "model.py").exists()
    assert _run(capsys, "trials", path)[0] == 0  # the trials do not need the data


def test_missing_stored_data_is_one_line(fitted, tmp_path, capsys):
    _, path, _, _ = _copy(fitted, "regressor", tmp_path)
    _tamper(path, "DROP TABLE task_data")
    code, _, err = _run(capsys, "report", path, "--out", tmp_path / "r.html")
    _one_line_error(code, err, str(path), "data")
    code, _, err = _run(capsys, "resume", path, "--steps", 3)
    _one_line_error(code, err, str(path), "data")


def test_tampered_preprocessing_is_one_line(fitted, tmp_path, capsys):
    _, path, _, _ = _copy(fitted, "classifier", tmp_path)
    features = [f"x{i}" for i in range(13)]
    _set_task_config(path, preprocessing={"features": features, "mean": ["0"] * 13, "std": [1] * 13})
    code, _, err = _run(capsys, "export", path, "--out", tmp_path / "export")
    _one_line_error(code, err, str(path), "'mean'")


# -- the stored task on its own ---------------------------------------------------------------------------


def _task(**changes) -> Task:
    x = torch.linspace(-1, 1, 40).reshape(20, 2)
    y = torch.arange(20) % 2
    task = Task("mine", x[:12], y[:12], x[12:16], y[12:16], x[16:], y[16:], 2)
    return dataclasses.replace(task, **changes)


def test_pack_round_trip_and_defaults():
    config, data = pack(_task())
    task = get_task({**config, "data": data})
    for name in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"):
        assert torch.equal(getattr(task, name), getattr(_task(), name))
    # a task built in memory gets the preprocessing that says its inputs and outputs are used as they are
    assert task.preprocessing == {"features": ["x0", "x1"], "classes": [0, 1]}
    assert task.name == "mine" and config["name"] == "arrays" and config["sha256"] == hashlib.sha256(data).hexdigest()


def _blob(**tensors):
    base = {name: getattr(_task(), name) for name in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")}
    data = save({k: v.contiguous() for k, v in {**base, **tensors}.items() if v is not None})
    return data, hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize(
    ("tensors", "config", "message"),
    [
        ({"x_val": torch.full((4, 2), float("nan"))}, {}, "x_val holds NaN"),
        ({"x_train": torch.zeros(12, 2, dtype=torch.float64)}, {}, "x_train must be float32"),
        ({"y_test": torch.tensor([0, 1, 2, 0])}, {}, "y_test holds class indices outside 0..1"),
        ({"y_val": torch.zeros(3, dtype=torch.int64)}, {}, "y_val has shape (3,) for 4 rows"),
        ({"x_test": torch.zeros(4, 3)}, {}, "x_test has shape (4, 3)"),
        ({"x_val": torch.zeros(0, 2), "y_val": torch.zeros(0, dtype=torch.int64)}, {}, "the val split has no rows"),
        ({"y_test": None}, {}, "lack 'y_test'"),
        ({"extra": torch.zeros(1)}, {}, "unknown 'extra'"),
        ({}, {"problem": "clustering"}, "problem must be one of"),
        ({}, {"n_classes": 1}, "n_classes must be at least 2"),
        ({}, {"preprocessing": {"features": ["a", "b"], "classes": [0]}}, "'classes' must be 2 labels"),
        ({}, {"preprocessing": {"features": ["a"], "classes": [0, 1]}}, "'features' must be a list of 2"),
        ({}, {"preprocessing": {"features": ["a", "b"], "classes": [0, 1], "mean": [0, 0]}}, "both 'mean' and 'std'"),
        ({}, {"preprocessing": {"features": ["a", "b"], "classes": [0, 1], "target_std": 1}}, "is for regression"),
        ({}, {"preprocessing": ["a", "b"]}, "must be a JSON object"),
    ],
)
def test_stored_arrays_are_checked_before_use(tensors, config, message):
    data, digest = _blob(**tensors)
    arguments = {"preprocessing": {"features": ["a", "b"], "classes": [0, 1]}, "n_classes": 2, **config}
    with pytest.raises(ArchsearchError, match="task 'arrays': ") as error:
        from_arrays(data, sha256=digest, **arguments)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_stored_arrays_must_match_their_digest_and_parse():
    data, digest = _blob()
    with pytest.raises(ArchsearchError, match="do not match their SHA-256"):
        from_arrays(data[:-1] + b"\x00", sha256=digest, n_classes=2)
    garbage = b"\x10" + b"\x00" * 7 + b"{not json"
    with pytest.raises(ArchsearchError, match="stored arrays are unreadable"):
        from_arrays(garbage, sha256=hashlib.sha256(garbage).hexdigest(), n_classes=2)
    with pytest.raises(ArchsearchError, match="stored in a study file; open the study"):
        get_task("arrays")


def test_study_create_stores_a_task_built_in_memory(tmp_path, capsys):
    """Decision: a Task whose config names no known kind is stored like an estimator's, not refused."""
    task = _task(y_train=torch.arange(12) % 3, n_classes=3, preprocessing={"note": "kept as it is"})
    path = tmp_path / "mine.db"
    Study.create(path, task, steps=1, children_per_step=2).close()
    with Study.open(path, readonly=True) as study:
        rebuilt = study.task
        assert study.config["task"]["name"] == "arrays"
    assert torch.equal(rebuilt.y_train, task.y_train) and rebuilt.n_classes == 3
    assert rebuilt.preprocessing == {"note": "kept as it is", "features": ["x0", "x1"], "classes": [0, 1, 2]}
    assert _run(capsys, "resume", path, "--quiet")[0] == 0
    assert "test_accuracy" in _run(capsys, "best", path)[1]


def test_study_create_refuses_a_task_that_cannot_be_stored_and_leaves_no_file(tmp_path):
    path = tmp_path / "bad.db"
    with pytest.raises(ArchsearchError, match="task 'mine': x_train must be float32"):
        Study.create(path, _task(x_train=torch.zeros(12, 2, dtype=torch.float64)), steps=1)
    with pytest.raises(ArchsearchError, match="preprocessing must be JSON data"):
        Study.create(path, _task(preprocessing={"scaler": object()}), steps=1)
    assert list(tmp_path.iterdir()) == []

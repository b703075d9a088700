"""The user's own data: CSV and .npz files, their splits, and every bad input as one clear error."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch

from archsearch.errors import ArchsearchError
from archsearch.tasks import from_file, get_task


def write_csv(path, header, rows):
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture
def wine_csv(tmp_path):
    from sklearn.datasets import load_wine

    data = load_wine()
    rows = [[*x, "abc"[y]] for x, y in zip(data.data, data.target)]
    return write_csv(tmp_path / "wine.csv", [*data.feature_names, "cultivar"], rows), data


def test_csv_split_is_stratified_and_standardised_on_training_rows_only(wine_csv):
    path, data = wine_csv
    task = from_file(str(path), "cultivar")
    assert task.n_classes == 3 and task.in_features == 13
    sizes = [len(task.split(s)[1]) for s in ("train", "val", "test")]
    assert sum(sizes) == 178 and abs(sizes[0] - 0.7 * 178) <= 3 and abs(sizes[1] - 0.2 * 178) <= 3
    overall = np.bincount(data.target) / 178
    for split in ("train", "val", "test"):
        share = np.bincount(task.split(split)[1].numpy(), minlength=3) / len(task.split(split)[1])
        assert np.abs(share - overall).max() < 0.06, (split, share)
    assert torch.allclose(task.x_train.mean(0), torch.zeros(13), atol=1e-5)
    assert torch.allclose(task.x_train.std(0, unbiased=False), torch.ones(13), atol=1e-4)
    assert task.x_val.mean(0).abs().max() > 1e-3  # validation rows did not set the statistics


def test_same_seed_same_split_other_seed_differs(wine_csv):
    path, _ = wine_csv
    a, b, c = (
        from_file(str(path), "cultivar"),
        from_file(str(path), "cultivar"),
        from_file(str(path), "cultivar", split_seed=1),
    )
    assert torch.equal(a.x_test, b.x_test) and not torch.equal(a.x_test, c.x_test)


def test_a_study_config_rebuilds_the_task_and_refuses_a_changed_file(wine_csv):
    path, _ = wine_csv
    task = from_file(str(path), "cultivar", fractions=(0.6, 0.2, 0.2))
    again = get_task(task.config)
    assert torch.equal(task.x_train, again.x_train) and torch.equal(task.y_test, again.y_test)
    path.write_text(path.read_text().replace("a\n", "b\n", 1))
    with pytest.raises(ArchsearchError, match="has changed since the study was created"):
        get_task(task.config)


def test_categorical_columns_are_one_hot_and_string_labels_become_classes(tmp_path):
    rows = [[i * 0.1, ["red", "green", "blue"][i % 3], "yes" if i % 2 else "no"] for i in range(30)]
    task = from_file(str(write_csv(tmp_path / "d.csv", ["x", "colour", "label"], rows)), "label")
    assert task.in_features == 1 + 3 and task.n_classes == 2
    raw = torch.cat([task.x_train, task.x_val, task.x_test])
    assert len(torch.unique(raw[:, 1:].round(decimals=4), dim=0)) == 3  # three distinct one-hot patterns


def test_npz_arrays(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(60, 4)), np.repeat([0, 1, 2], 20)
    np.savez(tmp_path / "d.npz", X=x, y=y)
    task = from_file(str(tmp_path / "d.npz"))
    assert (
        task.in_features == 4 and task.n_classes == 3 and len(task.y_train) + len(task.y_val) + len(task.y_test) == 60
    )


def put(path, content):
    (path.write_bytes if isinstance(content, bytes) else path.write_text)(content)
    return path


GOOD_ROWS = [[i, i % 2] for i in range(30)]


@pytest.mark.parametrize(
    ("make", "target", "message"),
    [
        (lambda d: d / "missing.csv", "y", "missing.csv: no such file"),
        (lambda d: put(d / "empty.csv", ""), "y", "the file is empty"),
        (lambda d: put(d / "blank.csv", "\n\n  \n"), "y", "the file is empty"),
        (lambda d: put(d / "header.csv", "x,y\n"), "y", "no data rows"),
        (lambda d: put(d / "bin.csv", b"\xff\xfe\x00x,y\n\x81"), "y", "not a readable CSV"),
        (lambda d: put(d / "ragged.csv", "x,y\n1,0\n2\n"), "y", "line 3 has 1 fields"),
        (lambda d: write_csv(d / "a.csv", ["x", "y"], GOOD_ROWS), "label", "no column 'label'"),
        (lambda d: write_csv(d / "a.csv", ["x", "y"], GOOD_ROWS), None, "name its label column with --target"),
        (lambda d: write_csv(d / "a.csv", ["x", "x"], GOOD_ROWS), "x", "the column name 'x' appears twice"),
        (
            lambda d: write_csv(d / "a.csv", ["x", "y"], [[1, 0]] * 3 + [["", 1]] * 2),
            "y",
            "column 'x' has 2 empty cells",
        ),
        (
            lambda d: write_csv(d / "a.csv", ["x", "y"], [[v, i % 2] for i, v in enumerate([1, "nan", "inf", 4] * 5)]),
            "y",
            "column 'x' holds NaN or infinite values in 10 rows",
        ),
        (lambda d: write_csv(d / "a.csv", ["x", "y"], [[i, 1] for i in range(20)]), "y", "one class only"),
        (lambda d: write_csv(d / "a.csv", ["x", "y"], [[i, i % 2] for i in range(6)]), "y", "at least"),
        (lambda d: write_csv(d / "a.csv", ["x", "y"], [[i, min(i, 2)] for i in range(20)]), "y", "class 0.0 has 1 row"),
        (lambda d: write_csv(d / "a.csv", ["y"], [[i % 2] for i in range(20)]), "y", "no feature columns"),
        (lambda d: put(d / "a.txt", "x"), "y", "unknown file type '.txt'"),
        (lambda d: d, "y", "not a file"),
    ],
)
def test_bad_csv_inputs_are_one_clear_error(tmp_path, make, target, message):
    path = make(tmp_path)
    with pytest.raises(ArchsearchError, match=message.replace("(", r"\(").replace(".", r"\.")):
        from_file(str(path), target)


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"X": np.zeros((20, 2))}, "no array 'y'"),
        ({"X": np.zeros((20, 2)), "y": np.arange(19) % 2}, "X has 20 rows but y has 19"),
        ({"X": np.zeros(20), "y": np.arange(20) % 2}, "X must be a 2-D array"),
        (
            {"X": np.where(np.arange(40).reshape(20, 2) == 5, np.nan, 1.0), "y": np.arange(20) % 2},
            "NaN or infinite values in 1 rows",
        ),
        (
            {"X": np.zeros((20, 2)), "y": np.where(np.arange(20) == 3, np.inf, np.arange(20) % 2)},
            "y holds NaN or infinite",
        ),
        ({"X": np.array([["a", "b"]] * 20), "y": np.arange(20) % 2}, "X must be numeric"),
    ],
)
def test_bad_npz_inputs_are_one_clear_error(tmp_path, arrays, message):
    np.savez(tmp_path / "d.npz", **arrays)
    with pytest.raises(ArchsearchError, match=message):
        from_file(str(tmp_path / "d.npz"))


def test_a_corrupt_npz(tmp_path):
    (tmp_path / "d.npz").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(ArchsearchError, match="not a readable .npz file"):
        from_file(str(tmp_path / "d.npz"))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"problem": "ranking"}, "--problem: must be one of classification, regression"),
        ({"fractions": (0.8, 0.3, 0.1)}, "sum to 1"),
        ({"fractions": (0.5, 0.5)}, "three fractions"),
    ],
)
def test_unsupported_settings(wine_csv, kwargs, message):
    with pytest.raises(ArchsearchError, match=message):
        from_file(str(wine_csv[0]), "cultivar", **kwargs)


def test_npz_without_rows_or_columns(tmp_path):
    for shape in ((0, 3), (20, 0)):
        np.savez(tmp_path / "d.npz", X=np.zeros(shape), y=np.arange(shape[0]) % 2)
        with pytest.raises(ArchsearchError, match="it needs rows and at least one feature column"):
            from_file(str(tmp_path / "d.npz"))


def test_csv_cells_keep_quoted_newlines_and_form_feeds(tmp_path):
    cells = ["a\fb", "a\nb"]
    text = "x,colour,label\n" + "".join(f'{i},"{cells[i % 2]}",{i % 2}\n' for i in range(30))
    (tmp_path / "d.csv").write_text(text)
    task = from_file(str(tmp_path / "d.csv"), "label")
    assert task.preprocessing["features"] == ["x", "colour=a\nb", "colour=a\fb"]


def test_regression_csv_is_split_at_random_and_its_target_standardised_on_training_rows(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 3))
    y = 50 + 10 * x[:, 0] - 5 * x[:, 1] + rng.normal(size=200)
    path = write_csv(tmp_path / "r.csv", ["a", "b", "c", "price"], [[*row, value] for row, value in zip(x, y)])
    task = from_file(str(path), "price")  # fractional numbers: inferred as regression
    assert task.problem == "regression" and task.out_features == 1 and task.n_classes == 0
    assert [len(task.split(s)[1]) for s in ("train", "val", "test")] == [140, 40, 20]
    assert task.y_train.dtype == torch.float32
    assert abs(float(task.y_train.mean())) < 1e-5 and float(task.y_train.std(correction=0)) == pytest.approx(1, 1e-5)
    pre = task.preprocessing
    restored = task.y_test.double() * pre["target_std"] + pre["target_mean"]
    assert set(np.round(restored.numpy(), 3)) <= set(np.round(y, 3))  # scaled back: the file's own values
    train_rows = np.isin(
        np.round(y, 3), np.round((task.y_train.double() * pre["target_std"] + pre["target_mean"]).numpy(), 3)
    )
    assert pre["target_mean"] == pytest.approx(y[train_rows].mean()) and pre["target_mean"] != pytest.approx(y.mean())
    assert get_task(task.config).y_val.tolist() == task.y_val.tolist()
    assert task.config["problem"] == "regression"


@pytest.mark.parametrize(
    ("labels", "problem"),
    [
        ([i % 3 for i in range(30)], "classification"),  # a few integers
        (["low", "high"] * 15, "classification"),  # text
        ([i * 0.5 for i in range(30)], "regression"),  # fractional numbers
    ],
)
def test_the_problem_is_inferred_when_clear(tmp_path, labels, problem):
    path = write_csv(tmp_path / "a.csv", ["x", "y"], [[i, label] for i, label in enumerate(labels)])
    assert from_file(str(path), "y").problem == problem


@pytest.mark.parametrize(
    ("labels", "problem", "message"),
    [
        (list(range(30)), None, "y' holds 30 distinct integers; say --problem classification or --problem regression"),
        (["low", "high", "3"] * 10, "regression", "target 'y' is not numeric (e.g. 'low'); regression needs numbers"),
        ([2.5] * 30, "regression", "target 'y' is constant (2.5); nothing to predict"),
        ([0.5, 1.5] * 4, "regression", "8 rows; a train/validation/test split needs at least 10"),
    ],
)
def test_bad_regression_targets_are_one_clear_error(tmp_path, labels, problem, message):
    path = write_csv(tmp_path / "a.csv", ["x", "y"], [[i, label] for i, label in enumerate(labels)])
    with pytest.raises(ArchsearchError, match=message.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        from_file(str(path), "y", problem=problem)


def test_regression_npz_with_numbers_stored_as_text(tmp_path):
    np.savez(tmp_path / "d.npz", X=np.arange(40.0).reshape(20, 2), y=np.array([f"{i / 3:.4f}" for i in range(20)]))
    task = from_file(str(tmp_path / "d.npz"), problem="regression")
    assert task.problem == "regression" and task.y_train.dtype == torch.float32


@pytest.mark.parametrize(
    ("y", "problem", "message"),
    [
        (np.arange(20) + 1j, None, "y must be real numbers or labels"),
        (np.r_[np.zeros(18), 1, 5], None, "has 1 row.*--problem regression if it is a quantity"),
        (np.arange(12) / 3, "regression", "R\\^2 needs at least 2 validation and 2 test rows \\(this gives 2 and 1\\)"),
    ],
)
def test_more_bad_targets(tmp_path, y, problem, message):
    np.savez(tmp_path / "d.npz", X=np.zeros((len(y), 2)), y=y)
    with pytest.raises(ArchsearchError, match=message):
        from_file(str(tmp_path / "d.npz"), problem=problem)


def test_regression_npz_needs_a_numeric_y(tmp_path):
    np.savez(tmp_path / "d.npz", X=np.zeros((20, 2)), y=np.array(["a", "b"] * 10))
    with pytest.raises(ArchsearchError, match="y is not numeric"):
        from_file(str(tmp_path / "d.npz"), problem="regression")

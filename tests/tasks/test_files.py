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
        ({"X": np.array([["a", "b"]] * 20), "y": np.arange(20) % 2}, "array 'X' has dtype <U1; expected numbers"),
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
        (np.arange(20) + 1j, None, "array 'y' has dtype complex128; expected numbers or text labels"),
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


# -- hostile files: each is one ArchsearchError naming the file (issue 16) ----------------------------------


def npz_bytes(**arrays) -> bytes:
    import io

    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


GOOD_X, GOOD_Y = np.arange(40.0).reshape(20, 2), np.arange(20) % 2


def test_an_unreadable_file_is_named(tmp_path, monkeypatch):
    from pathlib import Path

    path = write_csv(tmp_path / "secret.csv", ["x", "y"], GOOD_ROWS)

    def refuse(self):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_bytes", refuse)
    with pytest.raises(ArchsearchError, match=r"secret\.csv: cannot read the file \(Permission denied\)$"):
        from_file(str(path), "y")


def test_a_fifo_or_a_folder_is_not_read(tmp_path):
    import os

    os.mkfifo(tmp_path / "pipe.csv")  # opening it would block: it must not be opened
    with pytest.raises(ArchsearchError, match=r"pipe\.csv: not a file \(a FIFO, socket or device\)"):
        from_file(str(tmp_path / "pipe.csv"), "y")
    (tmp_path / "folder.npz").mkdir()
    with pytest.raises(ArchsearchError, match=r"folder\.npz: not a file \(a directory\)"):
        from_file(str(tmp_path / "folder.npz"))
    with pytest.raises(ArchsearchError, match="cannot read the file"):
        from_file(str(tmp_path / ("x" * 300 + ".csv")), "y")  # a name too long for the file system


def test_a_file_larger_than_memory_allows_is_refused_before_reading(tmp_path, monkeypatch):
    import archsearch.tasks._files as files

    path = write_csv(tmp_path / "a.csv", ["x", "y"], GOOD_ROWS)
    monkeypatch.setattr(files, "_memory_bytes", lambda: 400)
    with pytest.raises(ArchsearchError, match=r"a\.csv: 0\.0 MiB, more than a quarter of this machine's memory$"):
        from_file(str(path), "y")


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        (
            {"X": np.array([[1, None]] * 20, dtype=object), "y": GOOD_Y},
            "array 'X' has dtype object; expected numbers",
        ),
        (
            {"X": np.zeros((20, 2), dtype="datetime64[s]"), "y": GOOD_Y},
            r"array 'X' has dtype datetime64\[s\]; expected numbers",
        ),
        (
            {"X": np.zeros((20, 2), dtype="timedelta64[ms]"), "y": GOOD_Y},
            r"array 'X' has dtype timedelta64\[ms\]; expected numbers",
        ),
        (
            {"X": np.zeros((20, 2), dtype=complex), "y": GOOD_Y},
            "array 'X' has dtype complex128; expected numbers",
        ),
        (
            {"X": np.zeros((20, 2), dtype=[("a", "<i4"), ("b", "<f8")]), "y": GOOD_Y},
            r"array 'X' has dtype \[\('a', '<i4'\), \('b', '<f8'\)\]; expected numbers",
        ),
        (
            {"X": GOOD_X, "y": np.array(["a", None] * 10, dtype=object)},
            "array 'y' has dtype object; expected numbers or text labels",
        ),
        (
            {"X": GOOD_X, "y": np.zeros(20, dtype="datetime64[D]")},
            r"array 'y' has dtype datetime64\[D\]; expected numbers or text labels",
        ),
        ({"X": np.zeros((20, 2, 1)), "y": GOOD_Y}, r"X must be a 2-D array \(rows x features\), got shape \(20, 2, 1"),
        ({"X": GOOD_X, "y": GOOD_Y.reshape(20, 1)}, r"y must be a 1-D array of labels, got shape \(20, 1\)"),
        (
            {"X": np.where(np.arange(40).reshape(20, 2) == 7, 1e300, 1.0), "y": GOOD_Y},
            r"array 'X' holds 1 values beyond the range of 32-bit floats \(±3\.4e\+38\), the first X\[3, 1\] = 1e\+3",
        ),
        (
            {"X": GOOD_X, "y": np.where(np.arange(20) == 5, -1e300, np.arange(20) / 3)},
            r"array 'y' holds 1 values beyond the range of 32-bit floats \(±3\.4e\+38\), the first y\[5\] = -1e\+300",
        ),
        ({"X": GOOD_X[:0], "y": GOOD_Y[:0]}, r"X has shape \(0, 2\); it needs rows and at least one feature column"),
        ({"x": GOOD_X, "y": GOOD_Y}, r"no array 'X' \(found: 'x', 'y'\)"),
    ],
)
def test_hostile_npz_arrays_are_named_with_their_dtype_or_shape(tmp_path, arrays, message):
    (tmp_path / "data.npz").write_bytes(npz_bytes(**arrays))
    with pytest.raises(ArchsearchError, match=r"data\.npz: " + message):
        from_file(str(tmp_path / "data.npz"))


def test_a_target_of_numbers_as_text_beyond_float32_is_refused(tmp_path):
    y = np.array([f"{i / 3:.4f}" for i in range(19)] + ["1e300"])
    (tmp_path / "d.npz").write_bytes(npz_bytes(X=GOOD_X, y=y))
    with pytest.raises(ArchsearchError, match=r"array 'y' holds 1 values beyond .* the first y\[19\] = 1e\+300"):
        from_file(str(tmp_path / "d.npz"), problem="regression")


def test_byte_string_labels_are_text_classes(tmp_path):
    (tmp_path / "d.npz").write_bytes(npz_bytes(X=GOOD_X, y=np.array([b"no", b"yes"] * 10)))
    task = from_file(str(tmp_path / "d.npz"))
    assert task.n_classes == 2 and task.preprocessing["classes"] == ["no", "yes"]


def write_npy_member(path, header: dict, body: bytes) -> None:
    import io
    import zipfile

    member = io.BytesIO()
    np.lib.format.write_array_header_1_0(member, header)
    member.write(body)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("X.npy", member.getvalue())
        archive.writestr("y.npy", npz_member(GOOD_Y))


def npz_member(array) -> bytes:
    import io

    member = io.BytesIO()
    np.save(member, array)
    return member.getvalue()


def test_an_array_header_that_claims_more_than_the_file_holds_is_refused_before_allocating(tmp_path):
    header = {"descr": "<f8", "fortran_order": False, "shape": (10**9, 10**6)}
    write_npy_member(tmp_path / "d.npz", header, b"\0" * 64)
    with pytest.raises(ArchsearchError, match=r"'X' declares shape \(1000000000, 1000000\) of float64 .* but holds"):
        from_file(str(tmp_path / "d.npz"))


def test_an_array_larger_than_memory_allows_is_refused_before_reading(tmp_path, monkeypatch):
    import archsearch.tasks._files as files

    np.savez_compressed(tmp_path / "d.npz", X=np.zeros((2000, 100)), y=np.arange(2000) % 2)  # 1.5 MiB in 2 KiB
    assert (tmp_path / "d.npz").stat().st_size < 2**15
    monkeypatch.setattr(files, "_memory_bytes", lambda: 4 * 2**20)
    with pytest.raises(ArchsearchError, match=r"d\.npz: array 'X' of shape \(2000, 100\) needs 1\.5 MiB, more than"):
        from_file(str(tmp_path / "d.npz"))


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda good: b"garbage, not a zip" * 100, "not a readable .npz file .*BadZipFile"),
        (lambda good: good[: len(good) // 2], "not a readable .npz file"),
        (lambda good: good.replace(np.float64(7.0).tobytes(), np.float64(8.0).tobytes(), 1), "Bad CRC-32"),
        (lambda good: npz_member(GOOD_X), "not a readable .npz file"),  # a lone .npy file named .npz
    ],
)
def test_a_damaged_npz_archive_is_one_line(tmp_path, damage, message):
    (tmp_path / "d.npz").write_bytes(damage(npz_bytes(X=GOOD_X, y=GOOD_Y)))
    with pytest.raises(ArchsearchError, match=message) as caught:
        from_file(str(tmp_path / "d.npz"))
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("cell", "message"),
    [
        (
            "1e400",
            r"column 'x' holds 1 numbers beyond the range of 32-bit floats \(±3\.4e\+38\), the first on line 6: '1e4",
        ),
        ("-1e300", r"column 'x' holds 1 numbers beyond .*, the first on line 6: '-1e300'"),
        ("-inf", r"column 'x' holds NaN or infinite values in 1 rows \(the first on line 6: '-inf'\)"),
    ],
)
def test_csv_numbers_beyond_float32_name_their_column_and_line(tmp_path, cell, message):
    rows = [[i, i % 2] for i in range(30)]
    rows[4][0] = cell
    with pytest.raises(ArchsearchError, match=message):
        from_file(str(write_csv(tmp_path / "a.csv", ["x", "y"], rows)), "y")


def test_a_csv_target_beyond_float32_and_line_numbers_past_quoted_line_breaks(tmp_path):
    text = "note,x,y\n" + "".join(f'"two\nlines",{i},{i / 3}\n' for i in range(20)) + '"last",1,3e39\n'
    (tmp_path / "a.csv").write_text(text)
    with pytest.raises(ArchsearchError, match=r"target 'y' holds 1 numbers beyond .* the first on line 42: '3e39'"):
        from_file(str(tmp_path / "a.csv"), "y")


def test_a_one_hot_encoding_larger_than_memory_is_refused_naming_the_column(tmp_path, monkeypatch):
    import archsearch.tasks._files as files

    rows = [[i, f"id-{i}", i % 2] for i in range(30)]
    path = write_csv(tmp_path / "a.csv", ["x", "name", "y"], rows)
    monkeypatch.setattr(files, "_memory_bytes", lambda: 2 * 30 * 31 * 20 - 1)
    with pytest.raises(ArchsearchError, match=r"31 feature columns need more memory.*\(column 'name' alone becomes 30"):
        from_file(str(path), "y")
    monkeypatch.setattr(files, "_memory_bytes", lambda: 2 * 30 * 31 * 20)
    assert from_file(str(path), "y").in_features == 31


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"path": 7}, "the data file's path and target must be text"),
        ({"path": "d.csv", "target": ["y"]}, "the data file's path and target must be text"),
        ({"path": "d.csv", "target": "y", "fractions": "0.7"}, "--split: need three fractions"),
        ({"path": "d.csv", "target": "y", "fractions": [0.7, "0.2", 0.1]}, "--split: need three fractions"),
        ({"path": "d.csv", "target": "y", "split_seed": 1.5}, "--split-seed: must be an integer"),
        ({"path": "a\0b.csv", "target": "y"}, "cannot read the file"),
    ],
)
def test_a_study_config_with_garbage_is_refused(tmp_path, config, message):
    with pytest.raises(ArchsearchError, match=message):
        get_task({"name": "file", **config})


def pandas_style_csv(path, values):
    """A CSV as pandas writes a float column: whole numbers as ``151.0``, a feature column beside it."""
    lines = ["x,y", *(f"{i},{float(value)!r}" for i, value in enumerate(values))]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_many_whole_numbers_written_as_decimals_are_a_regression_target_and_the_task_says_why(tmp_path):
    values = [25 + (i * 37) % 300 for i in range(120)]  # 120 distinct whole numbers, like diabetes' target
    path = pandas_style_csv(tmp_path / "d.csv", values)
    assert "\n0,25.0\n" in path.read_text()
    task = from_file(str(path), "y")
    assert task.problem == "regression" and task.n_classes == 0
    assert task.inferred.startswith("the 120 distinct values of target 'y' are written as decimals")
    assert get_task(task.config).problem == "regression"  # stored: a reopened study does not infer again


def test_a_few_whole_numbers_written_as_decimals_stay_classes(tmp_path):
    """Class labels often pass through floats (0.0, 1.0, 2.0): a few whole numbers are classes, said so."""
    task = from_file(str(pandas_style_csv(tmp_path / "d.csv", [i % 3 for i in range(30)])), "y")
    assert task.problem == "classification" and task.preprocessing["classes"] == [0.0, 1.0, 2.0]
    assert task.inferred == "target 'y' holds 3 distinct whole numbers; --problem regression if it is a quantity"


@pytest.mark.parametrize(
    ("cells", "problem", "why"),
    [
        ([str(i % 3) for i in range(30)], "classification", "target 'y' holds 3 distinct integers"),
        (["low", "high"] * 15, "classification", "target 'y' holds text"),
        ([f"{i / 2}" for i in range(30)], "regression", "target 'y' holds fractional numbers"),
        ([f"{i}e0" for i in range(30)], "regression", "the 30 distinct values of target 'y' are written as decimals"),
    ],
)
def test_the_task_says_why_its_problem_was_inferred(tmp_path, cells, problem, why):
    (tmp_path / "d.csv").write_text("x,y\n" + "".join(f"{i},{cell}\n" for i, cell in enumerate(cells)))
    task = from_file(str(tmp_path / "d.csv"), "y")
    assert task.problem == problem and task.inferred.startswith(why)
    assert from_file(str(tmp_path / "d.csv"), "y", problem=problem).inferred is None  # given, not inferred


def test_whole_numbers_some_written_as_integers_are_still_refused(tmp_path):
    """Only a column whose every value is written as a decimal is taken for a quantity."""
    cells = [str(i) if i % 2 else f"{i}.0" for i in range(30)]
    (tmp_path / "d.csv").write_text("x,y\n" + "".join(f"{i},{cell}\n" for i, cell in enumerate(cells)))
    with pytest.raises(ArchsearchError, match="holds 30 distinct integers; say --problem classification"):
        from_file(str(tmp_path / "d.csv"), "y")


@pytest.mark.parametrize(
    ("y", "problem", "why"),
    [
        (np.arange(40.0), "regression", "the 40 distinct values of y are stored as floats"),
        (np.arange(40.0) % 2, "classification", "y holds 2 distinct whole numbers"),
        (np.arange(40) % 2 == 0, "classification", "y holds booleans"),
    ],
)
def test_an_npz_float_array_is_read_as_decimals(tmp_path, y, problem, why):
    np.savez(tmp_path / "d.npz", X=np.arange(80.0).reshape(40, 2), y=y)
    task = from_file(str(tmp_path / "d.npz"))
    assert task.problem == problem and task.inferred.startswith(why)


def test_many_integers_in_an_npz_are_still_refused(tmp_path):
    np.savez(tmp_path / "d.npz", X=np.zeros((40, 2)), y=np.arange(40))
    with pytest.raises(ArchsearchError, match="y holds 40 distinct integers; say --problem"):
        from_file(str(tmp_path / "d.npz"))


@pytest.mark.parametrize("problem", ["classification", "regression"])
def test_the_task_knows_which_file_rows_each_split_holds(tmp_path, problem):
    """The rows are disjoint, cover the file, and are the rows whose features and target the splits hold."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(90, 2)).round(3)
    y = np.arange(90) % 3 if problem == "classification" else (x[:, 0] * 10).round(2) + 0.5
    lines = ["a,b,y", *(f"{a},{b},{t}" for (a, b), t in zip(x, y)), ""]
    lines.insert(10, "")  # a blank line is not a row
    (tmp_path / "d.csv").write_text("\n".join(lines))
    task = from_file(str(tmp_path / "d.csv"), "y", problem=problem, split_seed=4)
    rows = task.rows
    everything = np.concatenate([rows.train, rows.val, rows.test])
    assert np.array_equal(np.sort(everything), np.arange(90)) and everything.dtype == np.int64
    pre = task.preprocessing
    for split, indices in (("train", rows.train), ("val", rows.val), ("test", rows.test)):
        features, target = task.split(split)
        raw = features.double().numpy() * pre["std"] + np.array(pre["mean"])
        assert np.allclose(raw, x[indices], atol=1e-5)
        if problem == "regression":
            assert np.allclose(target.double().numpy() * pre["target_std"] + pre["target_mean"], y[indices], atol=1e-4)
        else:
            assert np.array_equal(np.array(pre["classes"])[target.numpy()], y[indices])
    with pytest.raises(ValueError, match="read-only"):
        rows.train[0] = 1

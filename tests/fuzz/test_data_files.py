"""Generated data files for ``archsearch search --data``: CSV tables and ``.npz`` archives.

Headers, cells, encodings, dtypes and shapes are generated, valid and hostile mixed. Each case:
exit 0 or 2, one line when refused, no traceback, the data file's bytes unchanged, and no study left
behind by a refusal; a study that was written can be read back with ``best``.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ._harness import Folder, Ref, check_case
from .test_arguments import fuzz_settings

pytestmark = pytest.mark.fuzz

#: generated cases per file kind; the sum is what docs/hostile-input.md reports
EXAMPLES = {"csv": 24, "npz": 24}
#: one child of one step trained for one epoch: a valid file costs a fraction of a second
TRAIN = ["--strategy", "random", "--steps", "1", "--children-per-step", "1", "--max-epochs", "1", "--quiet"]

NAMES = st.one_of(
    st.sampled_from(["a", "b", "c", "label", "label", "", " ", "x y", "é", "a", "1", "nan", '"q"']),
    st.text(max_size=6),
)
HOSTILE_CELLS = st.one_of(
    st.sampled_from(["", "nan", "NaN", "inf", "-inf", "1e400", "-1e400", "1e-400", "text", " 3 ", "١", '"1,2"',
                     "9" * 400, "0x10", "True", "None", "\t", "1,2", '"', "\r", "-", "1e308"]),
    st.text(max_size=5),
)


def _aspects(draw: st.DrawFn, names: tuple[str, ...]) -> set[str]:
    """Which aspects of a generated file are hostile: none (a valid file) or one or two of ``names``."""
    return set(draw(st.lists(st.sampled_from(names), max_size=2, unique=True)))


CSV_ASPECTS = ("name", "whole file", "header", "few rows", "labels", "cells", "ragged", "newline", "encoding",
               "target", "problem")


@st.composite
def csv_files(draw: st.DrawFn) -> tuple[str, bytes, list[str]]:
    """(file name, bytes, flags): a table of numeric features and a label column, valid or with one or two
    hostile aspects (name, content, header, rows, labels, cells, shape, line endings, encoding, flags)."""
    hostile = _aspects(draw, CSV_ASPECTS)
    name = draw(st.sampled_from(["input.CSV", "input.txt", "input", "input.npz"])) if "name" in hostile else "input.csv"
    width = draw(st.integers(2, 5))
    header = [f"f{i}" for i in range(width - 1)] + ["label"]
    if "header" in hostile:
        header = draw(st.lists(NAMES, min_size=width, max_size=width))
    rows = draw(st.integers(0, 6) if "few rows" in hostile else st.integers(20, 40))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    labels = ("yes", "no")
    if "labels" in hostile:
        labels = draw(st.sampled_from([("0", "1", "2"), ("1.5", "2.25", "-3.125"), ("a",), ("", "x"), ("nan", "1")]))
    table = [header] + [
        [f"{value:.3f}" for value in rng.normal(size=width - 1)] + [labels[int(rng.integers(len(labels)))]]
        for _ in range(rows)
    ]
    if "cells" in hostile and rows:
        for _ in range(draw(st.integers(1, 4))):
            row, column = draw(st.integers(1, rows)), draw(st.integers(0, width - 1))
            table[row][column] = draw(HOSTILE_CELLS)
    if "ragged" in hostile and rows:
        table[draw(st.integers(1, rows))].append("extra")
    newline = draw(st.sampled_from(["\r", "\r\n", ""])) if "newline" in hostile else "\n"
    text = newline.join(",".join(row) for row in table) + newline
    encoding = draw(st.sampled_from(["utf-8-sig", "latin-1", "utf-16"])) if "encoding" in hostile else "utf-8"
    data = text.encode(encoding, errors="replace")
    if "whole file" in hostile:
        data = draw(st.sampled_from([b"", b"\n", b"   \n\n", b"\x00\x01\x02\xff" * 20, b"label\n", b"a,label\n1,yes\n",
                                     b"PK\x03\x04garbage", b"a,label\n" + b"1," * 5000 + b"yes\n"]))
    target = ["--target", "label"]
    if "target" in hostile:
        target = draw(st.sampled_from([[], ["--target", header[0]], ["--target", "missing"], ["--target", ""],
                                       ["--target", "LABEL"]]))
    problem = draw(st.sampled_from([["--problem", "regression"], ["--problem", "classification"]])) if (
        "problem" in hostile
    ) else []
    return name, data, target + problem


DTYPES = ["float32", "float64", "float64", "int64", "int8", "uint64", "bool", "float16", "complex64", "U3", "S3",
          "M8[s]", "m8[s]", "O", "V8", "structured"]


def _array(values: np.ndarray, dtype: str) -> np.ndarray:
    if dtype == "structured":
        out = np.zeros(values.shape, dtype=[("a", "<f4"), ("b", "<i4")])
        out["a"] = values
        return out
    if dtype == "V8":
        return np.zeros(values.shape, dtype="V8")
    if dtype in ("M8[s]", "m8[s]"):
        return np.nan_to_num(values * 1e6).astype("int64").astype(dtype)
    if dtype == "O":
        return values.astype(object)
    with np.errstate(invalid="ignore", over="ignore"):
        return values.astype(dtype)


def _inflated_member(shape: tuple[int, ...]) -> bytes:
    """An .npy whose header claims ``shape`` of float64 but holds a few bytes: reading must not allocate it."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": "<f8", "fortran_order": False, "shape": shape})
    return buffer.getvalue() + b"\x00" * 64


NPZ_ASPECTS = ("name", "values", "x shape", "y shape", "x dtype", "y dtype", "keys", "damage", "labels", "flags")


@st.composite
def npz_files(draw: st.DrawFn) -> tuple[str, bytes, list[str]]:
    """(file name, bytes, flags): arrays X and y, valid or with one or two hostile aspects (name, values,
    shapes, dtypes, keys, a damaged or inflated archive, labels, flags)."""
    hostile = _aspects(draw, NPZ_ASPECTS)
    name = draw(st.sampled_from(["input.NPZ", "input.npy", "input.csv"])) if "name" in hostile else "input.npz"
    rows, features = draw(st.integers(20, 40)), draw(st.integers(1, 4))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x = rng.normal(size=(rows, features))
    if "values" in hostile:
        for _ in range(draw(st.integers(1, 3))):
            x.flat[int(rng.integers(x.size))] = draw(st.sampled_from([np.nan, np.inf, -np.inf, 1e308, -0.0]))
    y = rng.integers(2, size=rows).astype(draw(st.sampled_from(["int64", "float64"])))
    if "labels" in hostile:
        y = draw(st.sampled_from([rng.normal(size=rows), np.zeros(rows), np.arange(rows), np.full(rows, np.nan),
                                  rng.integers(-(2**62), 2**62, size=rows)]))
    if "x shape" in hostile:
        x = draw(st.sampled_from([x.reshape(-1), x[..., None], np.array(1.0), np.vstack([x, x[:1]]), x[:0], x[:, :0],
                                  x[:2]]))
    if "y shape" in hostile:
        y = draw(st.sampled_from([y[:, None], y[: rows // 2], np.array(1), np.stack([y, y], axis=1), y[:0]]))
    arrays = {
        "X": _array(x, draw(st.sampled_from(DTYPES))) if "x dtype" in hostile else _array(x, "float32"),
        "y": _array(y, draw(st.sampled_from(DTYPES))) if "y dtype" in hostile else y,
    }
    keys = ("X", "y")
    if "keys" in hostile:
        keys = draw(st.sampled_from([("x", "y"), ("X",), ("X", "y", "extra"), ("X", "Y"), ()]))
    renamed = {new: arrays[old] for new, old in zip(keys, ["X", "y", "y"], strict=False)}
    buffer = io.BytesIO()
    (np.savez_compressed if draw(st.booleans()) else np.savez)(buffer, **renamed)
    data = buffer.getvalue()
    if "damage" in hostile:
        damage = draw(st.sampled_from(["truncate", "not a zip", "empty zip", "text member", "inflated", "overflowing"]))
        if damage == "truncate":
            data = data[: draw(st.integers(0, len(data) - 1))]
        elif damage == "not a zip":
            data = b"X,y\n1,2\n"
        else:
            buffer = io.BytesIO()
            with zipfile.ZipFile(buffer, "w") as archive:
                if damage == "text member":
                    archive.writestr("X.npy", "not an array")
                    archive.writestr("y.npy", "nor this")
                elif damage in ("inflated", "overflowing"):
                    shape = (10**6, 10**6) if damage == "inflated" else (2**62, 2**62)
                    archive.writestr("X.npy", _inflated_member(shape))
                    archive.writestr("y.npy", _inflated_member((10**6,)))
            data = buffer.getvalue()
    flags = []
    if "flags" in hostile:
        flags = draw(st.sampled_from([["--target", "y"], ["--problem", "regression"], ["--problem", "classification"],
                                      ["--split", "0.5,0.5,0"], ["--split", "0.98,0.01,0.01"]]))
    return name, data, flags


def _check_data_file(name: str, data: bytes, flags: list[str], case_folder: Folder) -> None:
    with case_folder() as folder:
        (folder / name).write_bytes(data)
        refs = {"input": Path(name), "study": Path("out.db")}
        outcome = check_case(["search", "--data", Ref("input"), *flags, *TRAIN, "--study", Ref("study")], folder, refs)
        if outcome.code == 0:
            assert (folder / "out.db").is_file()
            check_case(["best", Ref("study"), "--json"], folder, refs)


@fuzz_settings(EXAMPLES["csv"])
@given(case=csv_files())
def test_generated_csv_files(case: tuple[str, bytes, list[str]], case_folder: Folder) -> None:
    """A generated CSV file is searched or refused in one line, and never changed."""
    _check_data_file(*case, case_folder)


@fuzz_settings(EXAMPLES["npz"])
@given(case=npz_files())
def test_generated_npz_files(case: tuple[str, bytes, list[str]], case_folder: Folder) -> None:
    """A generated .npz archive is searched or refused in one line, and never changed."""
    _check_data_file(*case, case_folder)

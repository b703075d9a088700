"""The user's own data: a CSV file with a header row, or an ``.npz`` file with arrays ``X`` and ``y``.

Classification: the target's distinct values (numbers or strings) become
classes 0..k-1 in sorted order and the rows are split stratified by class.
Regression: the target must be numeric; the rows are split at random and the
target is standardised like the features (predictions are scaled back). The
problem is inferred when clear: a target with text or with at most
``MAX_INFERRED_CLASSES`` distinct integers is a classification target, one with
fractional numbers a regression target; anything else must be named
(``--problem``). Splits use ``split_seed`` (default fractions 70 / 20 / 10, as
in the seed paper), and every feature is standardised with the mean and
standard deviation of the *training* split only, so nothing about the
validation or test rows leaks into training.

CSV columns: a column whose every cell parses as a number is numeric; any other
column is categorical and is one-hot encoded (one 0/1 column per distinct value,
named ``column=value``). An empty cell is an error, as are NaN and infinite
values: archsearch never guesses a value. The file's SHA-256 is stored with the
study, and reopening a study whose file has changed is refused.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from archsearch.errors import ArchsearchError
from archsearch.tasks._task import Task

PROBLEMS = ("classification", "regression")
MAX_INFERRED_CLASSES = 20


def from_file(
    path: str,
    target: str | None = None,
    problem: str | None = None,
    fractions: Sequence[float] = (0.7, 0.2, 0.1),
    split_seed: int = 0,
    sha256: str | None = None,
) -> Task:
    """A task from ``path`` (``.csv`` with ``target`` naming the label column, or ``.npz``).

    ``problem`` is ``"classification"``, ``"regression"`` or ``None`` (inferred from the target).
    """
    file = Path(path)
    if problem is not None and problem not in PROBLEMS:
        raise ArchsearchError(f"--problem: must be one of {', '.join(PROBLEMS)}, got {problem!r}")
    _check_fractions(fractions)
    if not file.exists():
        raise ArchsearchError(f"{file}: no such file")
    if not file.is_file():
        raise ArchsearchError(f"{file}: not a file")
    data = file.read_bytes()
    if not data.strip():
        raise ArchsearchError(f"{file}: the file is empty")
    digest = hashlib.sha256(data).hexdigest()
    if sha256 is not None and sha256 != digest:
        raise ArchsearchError(f"{file}: the file has changed since the study was created (SHA-256 differs)")
    if file.suffix.lower() == ".npz":
        if target is not None:
            raise ArchsearchError(f"--target: {file} is an .npz file, whose labels are its array 'y'")
        x, labels = _read_npz(file)
        names = [f"x{i}" for i in range(x.shape[1])]
    elif file.suffix.lower() == ".csv":
        if not target:
            raise ArchsearchError(f"--target: {file} is a CSV file; name its label column with --target")
        x, labels, names = _read_csv(file, data, target)
    else:
        raise ArchsearchError(f"{file}: unknown file type {file.suffix!r} (expected .csv or .npz)")
    inferred = problem is None
    problem = problem or _infer_problem(file, target, labels)
    if problem == "regression":
        y, extra = _regression_target(file, target, labels)
        train, val, test = _random_split(file, len(y), fractions, split_seed)
        y_mean, y_std = scale_of(y[train])
        y = (y - y_mean) / y_std
        extra.update(target_mean=float(y_mean), target_std=float(y_std))
        n_classes, y_dtype = 0, torch.float32
    else:
        classes, y = np.unique(labels, return_inverse=True)
        if len(classes) < 2:
            raise ArchsearchError(f"{file}: the target has one class only ({_label(classes[0])}); nothing to classify")
        try:
            train, val, test = _stratified_split(file, y, classes, fractions, split_seed)
        except ArchsearchError as exc:
            if not inferred or labels.dtype.kind in "OUSb":
                raise
            raise ArchsearchError(
                f"{exc} (the target was taken for classes; --problem regression if it is a quantity)"
            ) from None
        extra = {"classes": [c.item() if isinstance(c, np.generic) else c for c in classes]}
        n_classes, y_dtype = len(classes), torch.int64
    mean, std = scale_of(x[train])
    x = (x - mean) / std

    def tensors(rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.as_tensor(x[rows], dtype=torch.float32), torch.as_tensor(y[rows], dtype=y_dtype)

    (x_train, y_train), (x_val, y_val), (x_test, y_test) = tensors(train), tensors(val), tensors(test)
    config = {
        "name": "file",
        "path": str(file.resolve()),
        "target": target,
        "problem": problem,
        "fractions": [float(f) for f in fractions],
        "split_seed": int(split_seed),
        "sha256": digest,
    }
    preprocessing = {"features": names, "mean": mean.tolist(), "std": std.tolist(), **extra}
    return Task(file.stem, x_train, y_train, x_val, y_val, x_test, y_test, n_classes, config, preprocessing, problem)


def scale_of(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation per column (over axis 0) for standardising; a constant column
    gets scale 1, so it becomes 0 rather than a division by zero."""
    mean, std = values.mean(axis=0), values.std(axis=0)
    return mean, np.where(std == 0, 1.0, std)


def _infer_problem(file: Path, target: str | None, labels: np.ndarray) -> str:
    """Classification for text or a few distinct integers, regression for fractional numbers."""
    if labels.dtype.kind in "OUSb":
        return "classification"
    values = labels.astype(np.float64)
    if not np.all(values == np.round(values)):
        return "regression"
    distinct = len(np.unique(values))
    if distinct <= MAX_INFERRED_CLASSES:
        return "classification"
    name = f"target {target!r}" if target else "y"
    raise ArchsearchError(
        f"--problem: {file}: {name} holds {distinct} distinct integers; say --problem classification "
        "or --problem regression"
    )


def _regression_target(file: Path, target: str | None, labels: np.ndarray) -> tuple[np.ndarray, dict]:
    name = f"target {target!r}" if target else "y"
    if labels.dtype.kind in "OUS":
        numbers = _as_numbers([str(v) for v in labels])
        if numbers is None:
            example = next(str(v) for v in labels if _as_numbers([str(v)]) is None)
            raise ArchsearchError(f"{file}: {name} is not numeric (e.g. {example!r}); regression needs numbers")
        if not np.isfinite(numbers).all():
            raise ArchsearchError(
                f"{file}: {name} holds NaN or infinite values in {int((~np.isfinite(numbers)).sum())} rows"
            )
        labels = numbers
    y = labels.astype(np.float64)
    if np.ptp(y) == 0:
        raise ArchsearchError(f"{file}: {name} is constant ({y[0]:g}); nothing to predict")
    return y, {}


def _random_split(
    file: Path, rows: int, fractions: Sequence[float], seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row indices of train, validation and test for regression: a seeded permutation cut in three."""
    if rows < 10:
        raise ArchsearchError(f"{file}: {rows} rows; a train/validation/test split needs at least 10")
    order = np.random.default_rng(np.random.SeedSequence([seed, 20_11])).permutation(rows)
    n_val = max(1, round(fractions[1] * rows))
    n_test = max(1, round(fractions[2] * rows))
    n_train = rows - n_val - n_test
    if n_train < 2 or min(n_val, n_test) < 2:
        raise ArchsearchError(
            f"{file}: {rows} rows are too few for the split {list(fractions)}: R^2 needs at least 2 validation "
            f"and 2 test rows (this gives {n_val} and {n_test}) and 2 training rows"
        )
    return order[:n_train], order[n_train : n_train + n_val], order[n_train + n_val :]


def _check_fractions(fractions: Sequence[float]) -> None:
    if len(fractions) != 3 or any(not (0 < f < 1) for f in fractions) or not math.isclose(sum(fractions), 1.0):
        raise ArchsearchError(
            "--split: need three fractions in (0, 1) for train, validation and test that sum to 1, "
            f"got {list(fractions)}"
        )


def _read_npz(file: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with np.load(file, allow_pickle=False) as archive:
            missing = [key for key in ("X", "y") if key not in archive.files]
            if missing:
                raise ArchsearchError(f"{file}: no array {missing[0]!r} (found: {', '.join(archive.files) or 'none'})")
            x, y = archive["X"], archive["y"]
    except ArchsearchError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise ArchsearchError(f"{file}: not a readable .npz file ({exc})") from None
    if x.ndim != 2:
        raise ArchsearchError(f"{file}: X must be a 2-D array (rows x features), got shape {x.shape}")
    if y.ndim != 1:
        raise ArchsearchError(f"{file}: y must be a 1-D array of labels, got shape {y.shape}")
    if len(x) != len(y):
        raise ArchsearchError(f"{file}: X has {len(x)} rows but y has {len(y)}")
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise ArchsearchError(f"{file}: X has shape {x.shape}; it needs rows and at least one feature column")
    if not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.complexfloating):
        raise ArchsearchError(f"{file}: X must be numeric, got {x.dtype}")
    x = x.astype(np.float64)
    bad = ~np.isfinite(x)
    if bad.any():
        column = int(np.flatnonzero(bad.any(axis=0))[0])
        rows = int(bad.any(axis=1).sum())
        raise ArchsearchError(f"{file}: X holds NaN or infinite values in {rows} rows (first in column {column})")
    if y.dtype.kind == "c":
        raise ArchsearchError(f"{file}: y must be real numbers or labels, got {y.dtype}")
    if np.issubdtype(y.dtype, np.floating) and not np.isfinite(y).all():
        raise ArchsearchError(f"{file}: y holds NaN or infinite values in {int((~np.isfinite(y)).sum())} rows")
    return x, y


def _read_csv(file: Path, data: bytes, target: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    try:
        text = data.decode("utf-8-sig")
        rows = list(csv.reader(io.StringIO(text, newline="")))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise ArchsearchError(f"{file}: not a readable CSV file ({exc})") from None
    rows = [row for row in rows if any(cell.strip() for cell in row)]
    if not rows:
        raise ArchsearchError(f"{file}: the file is empty")
    header, body = [name.strip() for name in rows[0]], rows[1:]
    if not body:
        raise ArchsearchError(f"{file}: a header row but no data rows")
    if target not in header:
        raise ArchsearchError(f"--target: no column {target!r} in {file} (columns: {', '.join(header)})")
    if len(set(header)) != len(header):
        duplicate = next(name for name in header if header.count(name) > 1)
        raise ArchsearchError(f"{file}: the column name {duplicate!r} appears twice")
    for number, row in enumerate(body, start=2):
        if len(row) != len(header):
            raise ArchsearchError(f"{file}: line {number} has {len(row)} fields, the header has {len(header)}")
    columns = {name: [row[i].strip() for row in body] for i, name in enumerate(header)}
    for name, cells in columns.items():
        empty = sum(cell == "" for cell in cells)
        if empty:
            raise ArchsearchError(f"{file}: column {name!r} has {empty} empty cells")
    labels = columns.pop(target)
    numeric_labels = _as_numbers(labels)
    if numeric_labels is not None:
        bad = ~np.isfinite(numeric_labels)
        if bad.any():
            raise ArchsearchError(f"{file}: target {target!r} holds NaN or infinite values in {int(bad.sum())} rows")
    if not columns:
        raise ArchsearchError(f"{file}: no feature columns besides the target {target!r}")
    features: list[np.ndarray] = []
    names: list[str] = []
    for name, cells in columns.items():
        numbers = _as_numbers(cells)
        if numbers is None:
            values = sorted(set(cells))
            features.extend((np.array(cells) == value).astype(np.float64) for value in values)
            names.extend(f"{name}={value}" for value in values)
            continue
        bad = ~np.isfinite(numbers)
        if bad.any():
            raise ArchsearchError(f"{file}: column {name!r} holds NaN or infinite values in {int(bad.sum())} rows")
        features.append(numbers)
        names.append(name)
    y = numeric_labels if numeric_labels is not None else np.array(labels)
    return np.stack(features, axis=1), y, names


def _label(value: object) -> str:
    """A class label as the user wrote it: 0.0, or 'red'."""
    return repr(value.item() if isinstance(value, np.generic) else value)


def _as_numbers(cells: list[str]) -> np.ndarray | None:
    """The cells as floats, or ``None`` when any cell is not a number (a categorical column)."""
    try:
        return np.array([float(cell) for cell in cells], dtype=np.float64)
    except ValueError:
        return None


def _stratified_split(
    file: Path, y: np.ndarray, classes: np.ndarray, fractions: Sequence[float], seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row indices of train, validation and test: every class split in the same proportions."""
    counts = np.bincount(y)
    smallest = int(counts.min())
    if smallest < 3:
        raise ArchsearchError(
            f"{file}: class {_label(classes[counts.argmin()])} has {smallest} row(s); a stratified "
            "train/validation/test split needs at least 3 rows of every class"
        )
    if len(y) < 10:
        raise ArchsearchError(f"{file}: {len(y)} rows; a train/validation/test split needs at least 10")
    rng = np.random.default_rng(np.random.SeedSequence([seed, 20_11]))
    parts: list[list[int]] = [[], [], []]
    for label in range(len(counts)):
        rows = rng.permutation(np.flatnonzero(y == label))
        n_val = max(1, round(fractions[1] * len(rows)))
        n_test = max(1, round(fractions[2] * len(rows)))
        n_train = len(rows) - n_val - n_test
        if n_train < 1:
            raise ArchsearchError(
                f"{file}: class {_label(classes[label])} has too few rows for the split {list(fractions)}"
            )
        parts[0] += rows[:n_train].tolist()
        parts[1] += rows[n_train : n_train + n_val].tolist()
        parts[2] += rows[n_train + n_val :].tolist()
    return tuple(rng.permutation(np.array(p, dtype=np.int64)) for p in parts)  # type: ignore[return-value]

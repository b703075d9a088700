"""The user's own data: a CSV file with a header row, or an ``.npz`` file with arrays ``X`` and ``y``.

Classification: the target's distinct values (numbers or strings) become
classes 0..k-1 in sorted order and the rows are split stratified by class.
Regression: the target must be numeric; the rows are split at random and the
target is standardised like the features (predictions are scaled back). Without
``--problem`` the problem is inferred from the target's values and how they are
written, and the task says why (:attr:`FileTask.inferred`):

- text (or booleans): classification;
- a fractional number among them: regression;
- at most ``MAX_INFERRED_CLASSES`` distinct whole numbers, however written
  (``3`` or ``3.0``): classification, as class labels are often stored as floats;
- more distinct whole numbers, every one written as a decimal (``151.0``, ``1e3``;
  in an ``.npz``, a float array): regression, as pandas and NumPy write a column
  of measured numbers; many class labels are written as integers;
- more distinct whole numbers written as integers (``151``) are refused: class
  labels or a count, the user says which.

Splits use ``split_seed`` (default fractions 70 / 20 / 10, as in the seed
paper), and every feature is standardised with the mean and standard deviation
of the *training* split only, so nothing about the validation or test rows leaks
into training. The task keeps which rows of the file each split holds
(:attr:`FileTask.rows`), so that a user can fit other models on the same rows
(``Study.split_indices``).

CSV columns: a column whose every cell parses as a number is numeric; any other
column is categorical and is one-hot encoded (one 0/1 column per distinct value,
named ``column=value``). An empty cell is an error, as are NaN and infinite
values and numbers beyond the range of 32-bit floats (children train in float32):
archsearch never guesses a value. The file's SHA-256 is stored with the
study, and reopening a study whose file has changed is refused.

An ``.npz`` file is untrusted input: it is opened as a zip archive and each
array's header (dtype, shape, size) is checked before its values are read;
nothing is ever unpickled.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
import os
import stat
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from archsearch.errors import ArchsearchError
from archsearch.tasks._task import Task

PROBLEMS = ("classification", "regression")
MAX_INFERRED_CLASSES = 20


@dataclass(frozen=True)
class SplitIndices:
    """Which rows of the user's file each split holds: 0-based indices of the data rows (the header and
    blank lines are not rows; in an ``.npz``, rows of ``X``), read-only int64 arrays in the order of the
    task's rows, so ``task.x_train[i]`` is row ``train[i]`` of the file."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray


@dataclass(frozen=True, eq=False, repr=False)
class FileTask(Task):
    """A task read from the user's file by :func:`from_file`. ``rows`` says which rows of the file each
    split holds; ``inferred`` says why the problem was inferred (``None`` when ``problem`` was given)."""

    rows: SplitIndices = field(kw_only=True)
    inferred: str | None = field(default=None, kw_only=True)


def from_file(
    path: str,
    target: str | None = None,
    problem: str | None = None,
    fractions: Sequence[float] = (0.7, 0.2, 0.1),
    split_seed: int = 0,
    sha256: str | None = None,
) -> FileTask:
    """A task from ``path`` (``.csv`` with ``target`` naming the label column, or ``.npz``).

    ``problem`` is ``"classification"``, ``"regression"`` or ``None`` (inferred from the target).
    """
    if not isinstance(path, (str, os.PathLike)) or (target is not None and not isinstance(target, str)):
        raise ArchsearchError(f"task: the data file's path and target must be text, got {path!r} and {target!r}")
    if isinstance(split_seed, bool) or not isinstance(split_seed, int):
        raise ArchsearchError(f"--split-seed: must be an integer, got {split_seed!r}")
    file = Path(path)
    if problem is not None and problem not in PROBLEMS:
        raise ArchsearchError(f"--problem: must be one of {', '.join(PROBLEMS)}, got {problem!r}")
    _check_fractions(fractions)
    data = _read_bytes(file)
    if not data.strip():
        raise ArchsearchError(f"{file}: the file is empty")
    digest = hashlib.sha256(data).hexdigest()
    if sha256 is not None and sha256 != digest:
        raise ArchsearchError(f"{file}: the file has changed since the study was created (SHA-256 differs)")
    x, labels, names, decimals = _read_table(file, data, target)
    inferred = None
    if problem is None:
        problem, inferred = _infer_problem(file, target, labels, decimals)
    y, extra, rows = _target_and_split(file, target, labels, problem, fractions, split_seed, inferred is not None)
    mean, std = scale_of(x[rows.train])
    x = (x - mean) / std
    y_dtype = torch.float32 if problem == "regression" else torch.int64

    def tensors(split: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.as_tensor(x[split], dtype=torch.float32), torch.as_tensor(y[split], dtype=y_dtype)

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
    n_classes = len(extra.get("classes", ()))
    splits = (*tensors(rows.train), *tensors(rows.val), *tensors(rows.test))
    return FileTask(file.stem, *splits, n_classes, config, preprocessing, problem, rows=rows, inferred=inferred)


def _read_table(file: Path, data: bytes, target: str | None) -> tuple[np.ndarray, np.ndarray, list[str], bool]:
    """Features, target values and feature names of a CSV or ``.npz`` file, and whether every target value
    is written as a decimal (a CSV's ``151.0`` or ``1e3``, an ``.npz``'s float array)."""
    if file.suffix.lower() == ".npz":
        if target is not None:
            raise ArchsearchError(f"--target: {file} is an .npz file, whose labels are its array 'y'")
        x, labels = _read_npz(file, data)
        return x, labels, [f"x{i}" for i in range(x.shape[1])], labels.dtype.kind == "f"
    if file.suffix.lower() == ".csv":
        if not target:
            raise ArchsearchError(f"--target: {file} is a CSV file; name its label column with --target")
        return _read_csv(file, data, target)
    raise ArchsearchError(f"{file}: unknown file type {file.suffix!r} (expected .csv or .npz)")


def _target_and_split(
    file: Path,
    target: str | None,
    labels: np.ndarray,
    problem: str,
    fractions: Sequence[float],
    seed: int,
    inferred: bool,
) -> tuple[np.ndarray, dict[str, Any], SplitIndices]:
    """The target as the task holds it (standardised values, or class indices), what preprocessing records
    about it, and the split: at random for regression, stratified by class for classification."""
    if problem == "regression":
        y, extra = _regression_target(file, target, labels)
        rows = _random_split(file, len(y), fractions, seed)
        y_mean, y_std = scale_of(y[rows[0]])
        extra.update(target_mean=float(y_mean), target_std=float(y_std))
        return (y - y_mean) / y_std, extra, SplitIndices(*(_frozen(part) for part in rows))
    classes, y = np.unique(labels, return_inverse=True)
    if len(classes) < 2:
        raise ArchsearchError(f"{file}: the target has one class only ({_label(classes[0])}); nothing to classify")
    try:
        rows = _stratified_split(file, y, classes, fractions, seed)
    except ArchsearchError as exc:
        if not inferred or labels.dtype.kind in "OUSb":
            raise
        raise ArchsearchError(
            f"{exc} (the target was taken for classes; --problem regression if it is a quantity)"
        ) from None
    extra = {"classes": [c.item() if isinstance(c, np.generic) else c for c in classes]}
    return y, extra, SplitIndices(*(_frozen(part) for part in rows))


def _frozen(rows: np.ndarray) -> np.ndarray:
    """Row indices as a read-only int64 array: a split handed to users cannot be changed by accident."""
    rows = np.array(rows, dtype=np.int64)
    rows.setflags(write=False)
    return rows


def scale_of(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation per column (over axis 0) for standardising; a constant column
    gets scale 1, so it becomes 0 rather than a division by zero."""
    mean, std = values.mean(axis=0), values.std(axis=0)
    return mean, np.where(std == 0, 1.0, std)


def _infer_problem(file: Path, target: str | None, labels: np.ndarray, decimals: bool) -> tuple[str, str]:
    """The problem the target's values make clear, and why (the rule is in the module docstring);
    many distinct whole numbers written as integers are refused: class labels or a count?"""
    name = f"target {target!r}" if target else "y"
    if labels.dtype.kind == "b":
        return "classification", f"{name} holds booleans"
    if labels.dtype.kind in "OUS":
        return "classification", f"{name} holds text"
    values = labels.astype(np.float64)
    if not np.all(values == np.round(values)):
        return "regression", f"{name} holds fractional numbers"
    distinct = len(np.unique(values))
    if distinct <= MAX_INFERRED_CLASSES:
        kind = "whole numbers" if decimals else "integers"
        return "classification", f"{name} holds {distinct} distinct {kind}; --problem regression if it is a quantity"
    if decimals:
        written = "written as decimals" if target else "stored as floats"
        hint = "--problem classification if they are classes"
        return "regression", f"the {distinct} distinct values of {name} are {written}; {hint}"
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
        _check_float32_range(file, "y", numbers)
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
    numbers = (
        isinstance(fractions, (list, tuple))
        and all(isinstance(f, (int, float)) and not isinstance(f, bool) for f in fractions)
    )
    if (
        not numbers
        or len(fractions) != 3
        or any(not (0 < f < 1) for f in fractions)
        or not math.isclose(sum(fractions), 1.0)
    ):
        raise ArchsearchError(
            "--split: need three fractions in (0, 1) for train, validation and test that sum to 1, "
            f"got {list(fractions)}"
        )


def _read_bytes(file: Path) -> bytes:
    """The whole file, or one line saying why it cannot be read (missing, a folder or a FIFO, no permission)."""
    try:
        info = file.stat()
        if not stat.S_ISREG(info.st_mode):
            kind = "a directory" if stat.S_ISDIR(info.st_mode) else "a FIFO, socket or device"
            raise ArchsearchError(f"{file}: not a file ({kind})")
        if info.st_size > _memory_bytes() // 4:
            raise ArchsearchError(f"{file}: {_size(info.st_size)}, more than a quarter of this machine's memory")
        return file.read_bytes()
    except ArchsearchError:
        raise
    except FileNotFoundError:
        raise ArchsearchError(f"{file}: no such file") from None
    except (OSError, ValueError) as exc:  # ValueError: a path with a NUL character
        raise ArchsearchError(f"{file}: cannot read the file ({getattr(exc, 'strerror', None) or exc})") from None


def _memory_bytes() -> int:
    """This machine's physical memory (a bound on what an input file may make us allocate)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # pragma: no cover -- not POSIX
        return 8 * 2**30


def _size(size: int) -> str:
    return f"{size / 2**30:.1f} GiB" if size >= 2**30 else f"{size / 2**20:.1f} MiB"


def _read_npz(file: Path, data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Arrays ``X`` and ``y`` of the archive ``data``; every check is made on an array's header before
    its values are read, so a damaged or hostile file cannot make us allocate what it claims."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = {name.removesuffix(".npy"): name for name in archive.namelist()}
            missing = [key for key in ("X", "y") if key not in members]
            if missing:
                found = ", ".join(repr(name) for name in members) or "none"
                raise ArchsearchError(f"{file}: no array {missing[0]!r} (found: {found})")
            x = _read_array(file, archive, members["X"], "X")
            y = _read_array(file, archive, members["y"], "y")
    except ArchsearchError:
        raise
    except Exception as exc:  # noqa: BLE001 -- zipfile and zlib raise many kinds of error on a damaged archive
        raise ArchsearchError(f"{file}: not a readable .npz file ({type(exc).__name__}: {exc})") from None
    if len(x) != len(y):
        raise ArchsearchError(f"{file}: X has {len(x)} rows but y has {len(y)}")
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise ArchsearchError(f"{file}: X has shape {x.shape}; it needs rows and at least one feature column")
    x = x.astype(np.float64)
    bad = ~np.isfinite(x)
    if bad.any():
        column = int(np.flatnonzero(bad.any(axis=0))[0])
        rows = int(bad.any(axis=1).sum())
        raise ArchsearchError(f"{file}: X holds NaN or infinite values in {rows} rows (first in column {column})")
    _check_float32_range(file, "X", x)
    if y.dtype.kind == "S":
        try:
            y = np.char.decode(y, "utf-8")
        except UnicodeDecodeError:
            raise ArchsearchError(f"{file}: array 'y' holds bytes that are not UTF-8 text") from None
    if y.dtype.kind == "f" and not np.isfinite(y).all():
        raise ArchsearchError(f"{file}: y holds NaN or infinite values in {int((~np.isfinite(y)).sum())} rows")
    if y.dtype.kind in "iuf":
        _check_float32_range(file, "y", y.astype(np.float64))
    return x, y


#: dtype kinds accepted for each array: booleans, integers and floats; labels may also be text
_KINDS = {"X": "biuf", "y": "biufUS"}
_EXPECTED = {"X": "numbers", "y": "numbers or text labels"}


def _read_array(file: Path, archive: zipfile.ZipFile, member: str, name: str) -> np.ndarray:
    """One array of an ``.npz`` file: its header checked (dtype, dimensions, size against the bytes
    the archive holds and against this machine's memory) before its values are read; never unpickled."""
    info = archive.getinfo(member)
    with archive.open(info) as stream:
        version = np.lib.format.read_magic(stream)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read_header(stream)
        if dtype.kind not in _KINDS[name] or dtype.fields is not None or dtype.subdtype is not None:
            raise ArchsearchError(f"{file}: array {name!r} has dtype {_dtype_name(dtype)}; expected {_EXPECTED[name]}")
        ndim = 2 if name == "X" else 1
        if len(shape) != ndim:
            what = "a 2-D array (rows x features)" if name == "X" else "a 1-D array of labels"
            raise ArchsearchError(f"{file}: {name} must be {what}, got shape {shape}")
        count = math.prod(shape)
        size = count * dtype.itemsize
        if size != info.file_size - stream.tell():
            raise ArchsearchError(
                f"{file}: array {name!r} declares shape {shape} of {dtype} ({size:,d} bytes) but holds "
                f"{info.file_size - stream.tell():,d} bytes"
            )
        if max(size, count * 8) > _memory_bytes() // 4:  # read, then converted to float64
            raise ArchsearchError(
                f"{file}: array {name!r} of shape {shape} needs {_size(max(size, count * 8))}, more than a quarter "
                "of this machine's memory"
            )
        raw = stream.read(size)
    if len(raw) != size:
        raise ArchsearchError(f"{file}: array {name!r} is truncated")
    values = np.frombuffer(raw, dtype=dtype, count=count)
    return values.reshape(shape, order="F" if fortran else "C").copy()


def _dtype_name(dtype: np.dtype) -> str:
    """A dtype as NumPy writes it (``datetime64[s]``, ``<U3``, ``object``), cut short if it is a long record."""
    text = str(dtype)
    return text if len(text) <= 60 else text[:57] + "..."


_FLOAT32_MAX = float(np.finfo(np.float32).max)


def _check_float32_range(file: Path, name: str, values: np.ndarray) -> None:
    """Refuse finite numbers that become infinite as the 32-bit floats children train on."""
    beyond = np.abs(values) > _FLOAT32_MAX
    if beyond.any():
        where = tuple(int(i) for i in np.argwhere(beyond)[0])
        raise ArchsearchError(
            f"{file}: array {name!r} holds {int(beyond.sum())} values beyond the range of 32-bit floats "
            f"(±{_FLOAT32_MAX:.1e}), the first {name}[{', '.join(map(str, where))}] = {values[where]:g}"
        )


def _read_csv(file: Path, data: bytes, target: str) -> tuple[np.ndarray, np.ndarray, list[str], bool]:
    """Features, target values (numbers where every cell is one, else text), feature names, and whether
    every target cell is written as a decimal: with a point or an exponent, as pandas writes floats."""
    rows: list[list[str]] = []
    lines: list[int] = []  # the line each row ends on (a quoted cell may hold line breaks)
    try:
        reader = csv.reader(io.StringIO(data.decode("utf-8-sig"), newline=""))
        for row in reader:
            if any(cell.strip() for cell in row):
                rows.append(row)
                lines.append(reader.line_num)
    except (UnicodeDecodeError, csv.Error) as exc:
        raise ArchsearchError(f"{file}: not a readable CSV file ({exc})") from None
    if not rows:
        raise ArchsearchError(f"{file}: the file is empty")
    header, body, lines = [name.strip() for name in rows[0]], rows[1:], lines[1:]
    if not body:
        raise ArchsearchError(f"{file}: a header row but no data rows")
    if target not in header:
        raise ArchsearchError(f"--target: no column {target!r} in {file} (columns: {', '.join(header)})")
    if len(set(header)) != len(header):
        duplicate = next(name for name in header if header.count(name) > 1)
        raise ArchsearchError(f"{file}: the column name {duplicate!r} appears twice")
    for number, row in zip(lines, body, strict=True):
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
        _check_cells(file, f"target {target!r}", labels, numeric_labels, lines)
    if not columns:
        raise ArchsearchError(f"{file}: no feature columns besides the target {target!r}")
    parsed = {name: _as_numbers(cells) for name, cells in columns.items()}
    widths = {name: 1 if numbers is not None else len(set(columns[name])) for name, numbers in parsed.items()}
    # the features as float64, standardised, then as float32 tensors: about 20 bytes a cell
    if len(body) * sum(widths.values()) * 20 > _memory_bytes() // 2:
        widest = max(widths, key=widths.__getitem__)
        raise ArchsearchError(
            f"{file}: {len(body):,d} rows x {sum(widths.values()):,d} feature columns need more memory than this "
            f"machine has (column {widest!r} alone becomes {widths[widest]:,d} one-hot columns)"
        )
    features: list[np.ndarray] = []
    names: list[str] = []
    for name, cells in columns.items():
        numbers = parsed[name]
        if numbers is None:
            values = sorted(set(cells))
            features.extend((np.array(cells) == value).astype(np.float64) for value in values)
            names.extend(f"{name}={value}" for value in values)
            continue
        _check_cells(file, f"column {name!r}", cells, numbers, lines)
        features.append(numbers)
        names.append(name)
    y = numeric_labels if numeric_labels is not None else np.array(labels)
    decimals = numeric_labels is not None and all("." in cell or "e" in cell.lower() for cell in labels)
    return np.stack(features, axis=1), y, names, decimals


def _check_cells(file: Path, what: str, cells: list[str], numbers: np.ndarray, lines: list[int]) -> None:
    """Refuse NaN and infinity, and numbers beyond the range of 32-bit floats (``1e400`` reads as infinity,
    ``1e300`` becomes it in training), naming the first such cell and its line."""
    spelled = np.array([cell.lstrip("+-").lower() in ("nan", "inf", "infinity") for cell in cells])
    finite = np.isfinite(numbers)
    named = ~finite & spelled
    if named.any():
        first = int(np.argmax(named))
        raise ArchsearchError(
            f"{file}: {what} holds NaN or infinite values in {int(named.sum())} rows "
            f"(the first on line {lines[first]}: {cells[first]!r})"
        )
    beyond = ~finite | (np.abs(np.where(finite, numbers, 0.0)) > _FLOAT32_MAX)
    if beyond.any():
        first = int(np.argmax(beyond))
        raise ArchsearchError(
            f"{file}: {what} holds {int(beyond.sum())} numbers beyond the range of 32-bit floats "
            f"(±{_FLOAT32_MAX:.1e}), the first on line {lines[first]}: {cells[first]!r}"
        )


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

"""Data kept in the study file itself: the task of a search that started from arrays in Python.

A search run by ``NASClassifier`` / ``NASRegressor``, or by ``Study.create`` with a ``Task`` built in
memory, has no file or name from which its data could be read again. Such a study stores the task's
tensors, split and preprocessed exactly as the search used them, in its own file; its task config
(kind ``"arrays"``) holds the task's name, problem, class count, preprocessing and the SHA-256 of the
stored bytes. :func:`pack` makes both, :func:`from_arrays` rebuilds the task from them. The bytes come
from a study file, which is input: the digest, every array's dtype, shape and values and the
preprocessing are checked before the task is built.
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any

import torch

from archsearch.errors import ArchsearchError
from archsearch.tasks._task import Task

KIND = "arrays"
SPLITS = ("train", "val", "test")
_NAMES = tuple(f"{axis}_{split}" for split in SPLITS for axis in ("x", "y"))
_PROBLEMS = ("classification", "regression")


def pack(task: Task) -> tuple[dict[str, Any], bytes]:
    """The config and the bytes that store ``task`` in a study; refuses, with one line, a task that
    breaks the :class:`Task` contract (the same checks as on reading, so a stored task always reads back)."""
    from safetensors.torch import save

    tensors = {name: getattr(task, name) for name in _NAMES}
    for name, value in tensors.items():
        if not isinstance(value, torch.Tensor):
            raise ArchsearchError(f"task: {name} must be a torch.Tensor, got {type(value).__name__}")
    try:
        preprocessing = json.loads(json.dumps(task.preprocessing, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise ArchsearchError(f"task: preprocessing must be JSON data with finite numbers ({exc})") from None
    if not isinstance(preprocessing, dict):
        raise ArchsearchError(f"task: preprocessing must be a dict, got {type(task.preprocessing).__name__}")
    # what export and report need, where the task leaves it out: its outputs are the labels themselves
    if task.x_train.dim() == 2:
        preprocessing.setdefault("features", [f"x{i}" for i in range(task.x_train.shape[1])])
    if task.regression:
        preprocessing.setdefault("target_mean", 0.0)
        preprocessing.setdefault("target_std", 1.0)
    else:
        preprocessing.setdefault("classes", list(range(task.n_classes)))
    config = {
        "name": KIND,
        "task": task.name,
        "problem": task.problem,
        "n_classes": task.n_classes,
        "preprocessing": preprocessing,
    }
    _check(f"task {task.name!r}", tensors, task.name, task.problem, task.n_classes, preprocessing)
    data = save({name: value.detach().cpu().contiguous() for name, value in tensors.items()})
    return {**config, "sha256": hashlib.sha256(data).hexdigest()}, data


def from_arrays(
    data: bytes | None = None,
    task: str = KIND,
    problem: str = "classification",
    n_classes: int = 0,
    preprocessing: dict[str, Any] | None = None,
    sha256: str | None = None,
) -> Task:
    """The task stored by :func:`pack`: ``data`` are its bytes (read from the study file), the other
    arguments its config. Anything that does not match is one line naming the array or field."""
    if data is None:
        raise ArchsearchError(f"task {KIND!r}: its arrays are stored in a study file; open the study to use it")
    if not isinstance(data, bytes):
        raise ArchsearchError(f"task {KIND!r}: the stored data is {type(data).__name__}, not bytes")
    if not isinstance(sha256, str) or hashlib.sha256(data).hexdigest() != sha256:
        raise ArchsearchError(f"task {KIND!r}: the stored arrays do not match their SHA-256 (the file is damaged)")
    from safetensors import SafetensorError
    from safetensors.torch import load

    try:
        tensors = load(data)
    except (SafetensorError, ValueError, TypeError, RuntimeError) as exc:
        raise ArchsearchError(f"task {KIND!r}: the stored arrays are unreadable ({exc})") from None
    preprocessing = {} if preprocessing is None else preprocessing
    _check(f"task {KIND!r}", tensors, task, problem, n_classes, preprocessing)
    return Task(
        task,
        *(tensors[name] for name in _NAMES),
        n_classes,
        config={
            "name": KIND,
            "task": task,
            "problem": problem,
            "n_classes": n_classes,
            "preprocessing": preprocessing,
            "sha256": sha256,
        },
        preprocessing=preprocessing,
        problem=problem,
    )


def _check(where: str, tensors: dict[str, Any], task: Any, problem: Any, n_classes: Any, preprocessing: Any) -> None:
    """The Task contract, for tensors and config that may come from a damaged or crafted study file;
    errors start with ``where``."""
    if not isinstance(task, str) or not task:
        raise ArchsearchError(f"{where}: its name must be a non-empty string, got {task!r}")
    if problem not in _PROBLEMS:
        raise ArchsearchError(f"{where}: problem must be one of {', '.join(_PROBLEMS)}, got {problem!r}")
    regression = problem == "regression"
    counted = isinstance(n_classes, int) and not isinstance(n_classes, bool)
    if not counted or (n_classes != 0 if regression else n_classes < 2):
        expected = "0 for regression" if regression else "at least 2 for classification"
        raise ArchsearchError(f"{where}: n_classes must be {expected}, got {n_classes!r}")
    if set(tensors) != set(_NAMES):
        odd = sorted(set(tensors) ^ set(_NAMES))[0]
        raise ArchsearchError(f"{where}: the stored arrays {'lack' if odd in _NAMES else 'have an unknown'} {odd!r}")
    shape = tuple(tensors["x_train"].shape[1:])
    if len(shape) not in (1, 3) or 0 in shape:
        raise ArchsearchError(
            f"{where}: x_train must be (rows, features) or (rows, channels, height, width), got {(None, *shape)}"
        )
    y_dtype = torch.float32 if regression else torch.int64
    for split in SPLITS:
        x, y = tensors[f"x_{split}"], tensors[f"y_{split}"]
        if x.dtype != torch.float32:
            raise ArchsearchError(f"{where}: x_{split} must be float32, got {x.dtype}")
        if tuple(x.shape[1:]) != shape:
            raise ArchsearchError(f"{where}: x_{split} has shape {tuple(x.shape)}, x_train rows are {shape}")
        if y.dtype != y_dtype:
            raise ArchsearchError(f"{where}: y_{split} must be {y_dtype} for {problem}, got {y.dtype}")
        if y.dim() != 1 or len(y) != len(x):
            raise ArchsearchError(f"{where}: y_{split} has shape {tuple(y.shape)} for {len(x)} rows of x_{split}")
        if split != "test" and len(y) == 0:
            raise ArchsearchError(f"{where}: the {split} split has no rows")
        if not bool(torch.isfinite(x).all()):
            raise ArchsearchError(f"{where}: x_{split} holds NaN or infinite values")
        if regression and not bool(torch.isfinite(y).all()):
            raise ArchsearchError(f"{where}: y_{split} holds NaN or infinite values")
        if not regression and len(y) and not (0 <= int(y.min()) and int(y.max()) < n_classes):
            raise ArchsearchError(f"{where}: y_{split} holds class indices outside 0..{n_classes - 1}")
    _check_preprocessing(where, preprocessing, shape, regression, n_classes)


def _check_preprocessing(where: str, pre: Any, shape: tuple, regression: bool, n_classes: int) -> None:
    """What export and report read from ``preprocessing``, checked for kind and size: the feature names and
    their scaling (rows of features), the class labels (classification), the target's scaling (regression).
    Other entries are JSON data that is only passed on."""
    if not isinstance(pre, dict):
        raise ArchsearchError(f"{where}: preprocessing must be a JSON object, got {type(pre).__name__}")
    width = shape[0] if len(shape) == 1 else None
    features = pre.get("features")
    if (width is not None or features is not None) and (
        not isinstance(features, list)
        or (width is not None and len(features) != width)
        or not all(isinstance(name, str) for name in features)
    ):
        raise ArchsearchError(f"{where}: preprocessing 'features' must be a list of {width or ''} column names")
    if width is not None:
        if ("mean" in pre) != ("std" in pre):
            raise ArchsearchError(f"{where}: preprocessing needs both 'mean' and 'std', or neither")
        for key, positive in (("mean", False), ("std", True)):
            values = pre.get(key, [1.0] * width)
            if not isinstance(values, list) or len(values) != width or not all(_finite(v, positive) for v in values):
                kind = "positive" if positive else "finite"
                raise ArchsearchError(f"{where}: preprocessing {key!r} must be {width} {kind} numbers, one per feature")
    classes = pre.get("classes")
    if regression and "classes" in pre:
        raise ArchsearchError(f"{where}: preprocessing 'classes' is for classification, the task is regression")
    if not regression and (
        not isinstance(classes, list)
        or len(classes) != n_classes
        or not all(isinstance(c, str | bool) or _finite(c) for c in classes)
    ):
        raise ArchsearchError(f"{where}: preprocessing 'classes' must be {n_classes} labels (strings or numbers)")
    for key, positive in (("target_mean", False), ("target_std", True)):
        if regression and not _finite(pre.get(key), positive):
            kind = "a positive" if positive else "a finite"
            raise ArchsearchError(f"{where}: preprocessing {key!r} must be {kind} number for regression")
        if not regression and key in pre:
            raise ArchsearchError(f"{where}: preprocessing {key!r} is for regression, the task is classification")


def _finite(value: Any, positive: bool = False) -> bool:
    """A real number that a float holds (bool is not one; an integer beyond float's range is not finite)."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return False
    try:
        number = float(value)
    except OverflowError:
        return False
    return math.isfinite(number) and (number > 0 or not positive)

"""What is read from a study file, checked before use: a study file is input, and anyone may have edited it.

Every check turns a bad value into one :class:`ArchsearchError` line that names the study and what is
wrong. Nothing read may lead to an unbounded allocation: architectures are checked against the study's
space before anything is built from them, and every other size is bounded by the file itself.

Opening read-only: SQLite in WAL mode needs a writable ``-shm`` file beside the study even to read
it. Where it cannot have one (a read-only file or directory), a study without uncheckpointed commits
is opened ``immutable``; one whose ``-wal`` file still holds commits (a search killed, then the folder
made read-only) is copied with that file to a private folder and read there, so no commit is missed.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import shutil
import sqlite3
import tempfile
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from archsearch._limits import MAX_CHILDREN_PER_STEP, MAX_ENSEMBLE, MAX_SEED, MAX_STEPS, integer
from archsearch.errors import ArchsearchError, short
from archsearch.space import Architecture, SearchSpace
from archsearch.strategies import STATUSES


class UnusableWeights(ArchsearchError):
    """Stored weights that cannot be read, or that do not fit their trial's architecture."""


#: (table, columns) every study of schema 7 has; see :func:`required` for older ones
REQUIRED = {
    "meta": ("key", "value"),
    "trials": (
        *("number", "step", "slot", "architecture", "arch_hash", "status", "reward", "val_score", "error"),
        *("params", "epochs", "kept_epoch", "seconds", "seed", "val_curve", "train_loss", "cached_from"),
        *("phase", "kind", "flops", "latency_ms", "latency_spread", "parent"),
    ),
    "steps": ("step", "metrics"),
    "checkpoints": ("step", "state"),
    "models": ("number", "weights", "test_score", "refit_epochs", "refit_rows", "refit_weights", "refit_test_score"),
    "evaluator_state": ("step", "state"),
}
#: what schema 7 added: the trial whose weights a trial continued from (population strategies)
_SINCE_7 = {"trials": ("parent",)}
#: what schema 6 added: a trial's FLOPs and measured latency
_SINCE_6 = {"trials": ("flops", "latency_ms", "latency_spread")}
#: what schema 5 added: a trial's phase and kind, and the evaluator_state table
_SINCE_5 = {"trials": ("phase", "kind"), "evaluator_state": ("step", "state")}
#: a trial's phase: ``search`` (every trial of a study without weight sharing), ``derive`` (architectures
#: sampled once a weight-sharing search is done, scored with the shared weights), ``retrain`` (the best of
#: those trained from scratch); its kind: ``proxy`` (scored with shared weights) or ``final`` (trained)
PHASES = ("search", "derive", "retrain")
KINDS = ("proxy", "final")
#: what schema 4 renamed: the name that schemas 1 to 3 have
_BEFORE_4 = {"val_score": "val_accuracy", "test_score": "test_accuracy"}


def required(version: int) -> dict[str, tuple[str, ...]]:
    """The tables and columns every study of schema ``version`` has: before schema 5, trials had no phase
    or kind; before schema 4, the scores had their old names and the models table no refit (a separate,
    optional refits table held it); before schema 6, trials had no FLOPs or latency; before 7, no parent."""
    if version >= 7:
        return REQUIRED
    before_7 = {table: tuple(c for c in columns if c not in _SINCE_7.get(table, ())) for table, columns in
                REQUIRED.items()}  # fmt: skip
    if version == 6:
        return before_7
    before_6 = {table: tuple(c for c in columns if c not in _SINCE_6.get(table, ())) for table, columns in
                before_7.items()}  # fmt: skip
    if version == 5:
        return before_6
    before_5 = {
        table: tuple(c for c in columns if c not in _SINCE_5.get(table, ()))
        for table, columns in before_6.items()
        if table != "evaluator_state"
    }
    if version == 4:
        return before_5
    models = ("number", "weights", "test_accuracy")
    return {
        table: models if table == "models" else tuple(_BEFORE_4.get(c, c) for c in columns)
        for table, columns in before_5.items()
    }
#: what reading a study may raise besides its own checks: SQLite's errors, and a message of SQLite's that
#: quotes bytes that are not UTF-8 (a damaged schema)
READ_ERRORS = (sqlite3.Error, UnicodeDecodeError)


def damaged(exc: Exception) -> bool:
    """Whether an error in ``READ_ERRORS`` means a damaged file (rather than, say, a locked one)."""
    message = str(exc)
    return isinstance(exc, UnicodeDecodeError) or any(
        sign in message for sign in ("malformed", "not a database", "Could not decode")
    )


def read_error(where: str, exc: Exception) -> ArchsearchError:
    """One line for an error in ``READ_ERRORS`` raised while reading a study."""
    message = str(exc) if isinstance(exc, sqlite3.Error) else "malformed: text that is not UTF-8"
    if damaged(exc):
        return ArchsearchError(f"{where}: the study file is damaged ({short(message)})")
    return ArchsearchError(f"{where}: cannot read the study file ({short(message)})")


# -- opening ---------------------------------------------------------------------------------------


def unwritable(path: Path) -> str | None:
    """Why a search must not write ``path``, or ``None``.

    Permission bits count even for root, whom the system lets write anyway: a study that its owner
    made read-only stays read-only. The directory must be writable too, for SQLite's ``-wal`` and
    ``-shm`` files and the folder of saved children.
    """
    path = path.resolve()
    if not os.access(path, os.W_OK) or not path.stat().st_mode & 0o222:
        return "the file is read-only"
    parent = path.parent
    if not os.access(parent, os.W_OK | os.X_OK) or not parent.stat().st_mode & 0o222:
        return f"its directory {parent} is read-only"
    return None


def connect(path: Path, readonly: bool) -> tuple[sqlite3.Connection, Path | None]:
    """A connection to the study at ``path`` and, when it reads a private copy, that copy's folder.

    Read-only, it tries ``mode=ro`` first: that reads commits still in the ``-wal`` file and sees a
    search that is running. Only when SQLite cannot open the file that way (no writable ``-shm``) does
    it fall back, as the module docstring says.
    """
    uri = path.resolve().as_uri()
    if not readonly:
        return sqlite3.connect(f"{uri}?mode=rw", uri=True, isolation_level=None), None
    db = sqlite3.connect(f"{uri}?mode=ro", uri=True, isolation_level=None)
    try:
        db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
        return db, None
    except sqlite3.OperationalError as exc:
        db.close()
        if "readonly" not in str(exc) and "unable to open" not in str(exc):
            raise
    wal = Path(f"{path}-wal")
    if not wal.exists() or wal.stat().st_size == 0:  # everything committed is in the file itself
        return sqlite3.connect(f"{uri}?mode=ro&immutable=1", uri=True, isolation_level=None), None
    folder = Path(tempfile.mkdtemp(prefix="archsearch-readonly-"))
    try:
        shutil.copyfile(path, folder / "study.db")
        shutil.copyfile(wal, folder / "study.db-wal")
        db = sqlite3.connect(folder / "study.db", isolation_level=None)
        db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
    except (OSError, sqlite3.Error) as exc:
        shutil.rmtree(folder, ignore_errors=True)
        raise ArchsearchError(
            f"{path}: read-only, and its -wal file holds commits; copying both to read them failed ({short(str(exc))})"
        ) from None
    return db, folder


def schema_version(where: str, meta: dict[Any, Any], newest: int) -> int:
    """The file's schema version from its ``meta`` rows, checked."""
    text = meta.get("schema_version", "0")
    if not isinstance(text, str) or not re.fullmatch(r"[0-9]{1,9}", text):
        raise ArchsearchError(f"{where}: the study's schema version {short(text)} is not a number")
    version = int(text)
    if not 1 <= version <= newest:
        raise ArchsearchError(f"{where}: study schema version {version}, this archsearch reads 1 to {newest}")
    return version


def check_tables(where: str, db: sqlite3.Connection, version: int) -> None:
    """Refuse a study that lacks a table or a column every study of its schema has."""
    for table, columns in required(version).items():
        present = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
        if not present:
            raise ArchsearchError(f"{where}: the study file has no {table!r} table")
        missing = [c for c in columns if c not in present]
        if missing:
            raise ArchsearchError(f"{where}: the study's {table!r} table has no {missing[0]!r} column")


# -- config ----------------------------------------------------------------------------------------

_PARTS = {"space": "kind", "strategy": "name", "trainer": "name"}
_FLAGS = ("reuse_evaluations", "save_children", "refit", "asynchronous")


MAX_CONFIG_DEPTH = 32


def _depth(value: Any) -> int:
    """How deeply JSON lists and objects nest in ``value``, counted without recursion."""
    deepest, pending = 0, [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, depth)
            pending.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def config(where: str, text: Any) -> dict[str, Any]:
    """The study's config from its JSON text, with every setting the study itself reads checked.

    The settings of its parts (space, strategy, trainer, task, executor) are checked by their
    constructors when they are built.
    """
    try:
        data = json.loads(text) if isinstance(text, str) else None
    except (ValueError, RecursionError):
        raise ArchsearchError(f"{where}: the study's config is not valid JSON") from None
    if not isinstance(data, dict):
        raise ArchsearchError(f"{where}: the study's config is not a JSON object")
    if _depth(data) > MAX_CONFIG_DEPTH:  # archsearch writes a few levels; copying a deep one would recurse
        raise ArchsearchError(f"{where}: the study's config is nested deeper than {MAX_CONFIG_DEPTH} levels")
    try:
        integer("config.steps", data.get("steps"), 1, MAX_STEPS)
        integer("config.children_per_step", data.get("children_per_step"), 1, MAX_CHILDREN_PER_STEP)
        integer("config.seed", data.get("seed"), 0, MAX_SEED)
    except ArchsearchError as exc:
        raise ArchsearchError(f"{where}: {exc}") from None
    for part, key in _PARTS.items():
        value = data.get(part)
        if not isinstance(value, dict) or not isinstance(value.get(key), str):
            raise ArchsearchError(f"{where}: config.{part} is not an object with a {key!r} name")
    if data.get("task") is None and data["trainer"]["name"] != "lookup":  # only a table's lookups need no data
        raise ArchsearchError(f"{where}: config.task is missing; the {data['trainer']['name']!r} trainer trains on one")
    for part in ("task", "executor"):
        value = data.get(part)
        if value is not None and (not isinstance(value, dict) or not isinstance(value.get("name"), str)):
            raise ArchsearchError(f"{where}: config.{part} is not an object with a 'name'")
    for flag in _FLAGS:
        if not isinstance(data.get(flag, False), bool):
            raise ArchsearchError(f"{where}: config.{flag} is not true or false")
    try:
        integer("config.ensemble", data.get("ensemble", 1), 1, MAX_ENSEMBLE)
    except ArchsearchError as exc:
        raise ArchsearchError(f"{where}: {exc}") from None
    return data


def space(where: str, settings: dict[str, Any]) -> SearchSpace:
    """The study's search space, built from its stored settings."""
    try:
        return SearchSpace.from_config(settings)
    except ArchsearchError as exc:
        raise ArchsearchError(f"{where}: {exc}") from None
    except (TypeError, ValueError, OverflowError, AttributeError, KeyError) as exc:
        raise ArchsearchError(f"{where}: config.space cannot be built ({short(str(exc))})") from None


# -- trials ----------------------------------------------------------------------------------------


class Architectures:
    """The architectures of a study's trials: each JSON text parsed, checked against the study's space
    and hashed once (thousands of trials share a few hundred architectures)."""

    def __init__(self, space: Callable[[], SearchSpace]) -> None:
        self._space = space
        self._known: dict[str, tuple[Architecture, str] | str] = {}

    def read(self, text: Any) -> tuple[Architecture, str] | str:
        """``(architecture, hash)``, or why ``text`` is not a member of the space."""
        if not isinstance(text, str):
            return f"architecture is {type(text).__name__}, not JSON text"
        known = self._known.get(text)
        if known is None:
            known = self._known[text] = self._parse(text)
        return known

    def _parse(self, text: str) -> tuple[Architecture, str] | str:
        space = self._space()  # a space that cannot be built is the config's fault, said as such
        try:
            arch = Architecture.from_json(text)
        except ArchsearchError as exc:
            return short(str(exc))
        except (TypeError, ValueError, KeyError, AttributeError, OverflowError, RecursionError) as exc:
            return f"architecture: malformed ({short(str(exc))})"
        try:
            arch = space.validate(arch)
        except ArchsearchError as exc:
            return f"architecture is not in the study's space ({short(str(exc))})"
        return arch, arch.hash


def _count(value: Any) -> bool:
    return type(value) is int and value >= 0


def _finite(value: Any) -> bool:
    return (type(value) is float and math.isfinite(value)) or (type(value) is int and abs(value) < 2**53)


def curve(text: Any) -> list[float] | None:
    """A JSON list of finite numbers, or ``None``."""
    try:
        values = json.loads(text) if isinstance(text, str) else None
        if type(values) is not list or not all(type(v) is float or type(v) is int for v in values):
            return None
        return values if math.isfinite(sum(values)) else None  # inf and nan survive a sum
    except (ValueError, RecursionError, OverflowError):
        return None


def _numbered(number: int, step: int, slot: int, per_step: int, phase: str) -> bool:
    """Whether a trial's number fits its step and slot: ``step * per_step + slot`` in the search; a
    weight-sharing study's derived trials (step: the budget) number on from the search's last, any count
    of them, and its retrained ones (the step after) from the last derived."""
    if phase == "search":
        return slot < per_step and step * per_step + slot == number
    if phase == "derive":
        return step * per_step + slot == number
    return (step - 1) * per_step + slot <= number


def trial_fields(row: sqlite3.Row, per_step: int, architectures: Architectures) -> dict[str, Any]:
    """The fields of :class:`~archsearch.study._storage.Trial` from a row of ``trials``, every one
    checked; raises ``ValueError`` with what is wrong (the caller names the study and the trial)."""
    names = row.keys()

    def get(name: str) -> Any:
        return row[name] if name in names else None

    number, step, slot = row["number"], row["step"], row["slot"]
    phase, kind = get("phase") or "search", get("kind") or "final"
    if phase not in PHASES or kind not in KINDS:
        raise ValueError(f"phase {short(phase)} or kind {short(kind)} is not one of {PHASES} and {KINDS}")
    if not (_count(step) and _count(slot) and _numbered(number, step, slot, per_step, phase)):
        raise ValueError(f"step {short(step)} and slot {short(slot)} do not match its number ({per_step} per step)")
    parsed = architectures.read(row["architecture"])
    if isinstance(parsed, str):
        raise ValueError(parsed)
    architecture, arch_hash = parsed
    if row["arch_hash"] != arch_hash:
        raise ValueError(f"arch_hash {short(row['arch_hash'])} is not its architecture's hash ({arch_hash})")
    status = row["status"]
    if status not in STATUSES:
        raise ValueError(f"status {short(status)} is not one of {', '.join(STATUSES)}")
    score = row["val_score"] if "val_score" in names else row["val_accuracy"]  # its name before schema 4
    for name, value in (("reward", row["reward"]), ("val_score", score)):
        if not _finite(value):
            raise ValueError(f"{name} is not a finite number ({short(value)})")
    for name in ("params", "epochs", "kept_epoch", "seed"):
        if not _count(row[name]) or row[name] > MAX_SEED:
            raise ValueError(f"{name} is not a non-negative integer ({short(row[name])})")
    seconds = row["seconds"]
    if not _finite(seconds) or seconds < 0:
        raise ValueError(f"seconds is not a non-negative number ({short(seconds)})")
    val_curve, train_loss = curve(row["val_curve"]), curve(row["train_loss"])
    if val_curve is None or train_loss is None:
        name = "val_curve" if val_curve is None else "train_loss"
        raise ValueError(f"{name} is not a JSON list of finite numbers")
    if row["epochs"] != len(train_loss) or row["kept_epoch"] > len(val_curve):
        raise ValueError(f"epochs {row['epochs']} and kept_epoch {row['kept_epoch']} do not match its curves")
    error = row["error"]
    if error is not None and not isinstance(error, str):
        raise ValueError(f"error is {type(error).__name__}, not text")
    cached_from, parent = (_earlier(name, value, number) for name, value in
                           (("cached_from", row["cached_from"]), ("parent", get("parent"))))  # fmt: skip
    val_loss = get("val_loss")
    if val_loss is not None and not (type(val_loss) in (float, int) and val_loss >= 0):  # nan fails too
        raise ValueError(f"val_loss is not a non-negative number ({short(val_loss)})")
    executor, workers, attempts = get("executor"), get("workers"), get("attempts")
    if executor is not None and not isinstance(executor, str):
        raise ValueError(f"executor is {type(executor).__name__}, not text")
    for name, value in (("workers", workers), ("attempts", attempts)):
        if value is not None and not (_count(value) and value >= 1):
            raise ValueError(f"{name} is not a positive integer ({short(value)})")
    return {
        "number": number,
        "step": step,
        "slot": slot,
        "architecture": architecture,
        "arch_hash": arch_hash,
        "status": status,
        "reward": float(row["reward"]),
        "val_score": float(score),
        "error": error,
        "params": row["params"],
        "epochs": row["epochs"],
        "kept_epoch": row["kept_epoch"],
        "seconds": float(seconds),
        "seed": row["seed"],
        "val_curve": val_curve,
        "train_loss": train_loss,
        "cached_from": cached_from,
        "parent": parent,
        "val_loss": None if val_loss is None else float(val_loss),
        "executor": executor,
        "workers": workers,
        "attempts": attempts,
        "phase": phase,
        "kind": kind,
        **_costs(get("flops"), get("latency_ms"), get("latency_spread")),
    }


def _earlier(name: str, value: Any, number: int) -> int | None:
    """A column that names an earlier trial (or holds NULL)."""
    if value is not None and not (_count(value) and value < number):
        raise ValueError(f"{name} {short(value)} is not an earlier trial")
    return value


def _costs(flops: Any, latency: Any, spread: Any) -> dict[str, Any]:
    """A trial's FLOPs and latency columns, checked (each may be NULL: not known, not measured)."""
    if flops is not None and not (_count(flops) and flops <= MAX_SEED):
        raise ValueError(f"flops is not a non-negative integer ({short(flops)})")
    for name, value in (("latency_ms", latency), ("latency_spread", spread)):
        if value is not None and not (_finite(value) and value >= 0):
            raise ValueError(f"{name} is not a non-negative number ({short(value)})")
    return {"flops": flops, "latency_ms": None if latency is None else float(latency),
            "latency_spread": None if spread is None else float(spread)}  # fmt: skip


def metrics(text: Any) -> dict[str, float] | None:
    """A step's metrics: a JSON object of numbers, or ``None``."""
    try:
        data = json.loads(text) if isinstance(text, str) else None
    except (ValueError, RecursionError):
        return None
    if not isinstance(data, dict) or not all(type(v) is float or type(v) is int for v in data.values()):
        return None
    return data


# -- blobs -----------------------------------------------------------------------------------------


def blob(value: Any) -> Any:
    """``torch.load(weights_only=True)`` of stored bytes; raises ``ValueError`` saying why they cannot be read.

    ``weights_only`` never runs code from the file, but bytes that are not what ``torch.save`` wrote
    make it raise many kinds of exception (unpickling, zip, struct, runtime errors): all of them mean
    the same thing here.
    """
    if not isinstance(value, bytes):
        raise ValueError(f"it is {type(value).__name__}, not bytes")
    try:
        with warnings.catch_warnings():  # torch warns about what it finds in odd bytes: the error says enough
            warnings.simplefilter("ignore")
            return torch.load(io.BytesIO(value), weights_only=True, map_location="cpu")
    except Exception as exc:  # noqa: BLE001 -- see the docstring
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise ValueError(f"{type(exc).__name__}: {first[:60]}{'...' if len(first) > 60 else ''}") from None


def state_dict(value: Any) -> dict[str, torch.Tensor]:
    """``value`` if it is a dict of named tensors, as a network's weights are; else ``ValueError``."""
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in value.items()
    ):
        raise ValueError("it is not a dict of named tensors")
    return value


def json_number(text: Any) -> Any:
    """The value of a stored JSON number (a meta row); ``ValueError`` for text that is not one."""
    try:
        value = json.loads(text) if isinstance(text, str) and len(text) <= 40 else None
    except ValueError:
        value = None
    if not _finite(value):
        raise ValueError(f"test_score {short(text)} is not a finite number")
    return value


def optional_number(value: Any) -> float | None:
    """A stored test score: ``None`` or a finite number; else ``ValueError``."""
    if value is not None and not _finite(value):
        raise ValueError(f"test_score is not a finite number ({short(value)})")
    return None if value is None else float(value)


#: what loading a stored state that does not fit (a strategy's checkpoint, a supernet's state) may raise
STATE_ERRORS = (KeyError, TypeError, ValueError, RuntimeError, IndexError, AttributeError, OverflowError)


@contextmanager
def fitting(what: str) -> Iterator[None]:
    """Load a state read from a study: whatever it raises because the state does not fit is one line,
    ``what`` and the reason, saying that resume cannot go on and the rest still works."""
    try:
        yield
    except STATE_ERRORS as exc:
        message = " ".join(str(exc).split())
        raise ArchsearchError(
            f"{what} ({type(exc).__name__}: {message[:120]}); trials and best still work, resume does not"
        ) from None

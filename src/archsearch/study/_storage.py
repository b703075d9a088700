"""The study file: one SQLite database in WAL mode.

Tables:

- ``meta``: the file format marker, schema version and the study's config.
- ``trials``: one row per finished child, append-only, committed as soon as it
  finishes, with the executor and number of workers that ran it and the attempts it took.
  ``number = step * children_per_step + slot``, so a trial's identity does not depend on
  the order in which children finished.
- ``steps``: the strategy's metrics (loss, entropy, baseline, ...) per update.
- ``checkpoints``: the strategy's ``state_dict`` after its latest update; it is
  written in the same transaction as that step's metrics.
- ``evaluator_state``: at most one row, the state of a stateful evaluator (a weight-sharing study's
  supernet and its optimizer) as of the step it names, written in the same transaction as that step
  whenever it changed since the row before.
- ``models``: one row, the study's model: the weights of the best child so far (and their
  test score once measured), written in the same transaction as the trial that became best,
  and, once the search is refit, that child retrained on train + validation (``refit_*``: its
  epochs, rows, weights and test score). The refit lives in the row of the weights it
  replaces: a new best replaces both, so a refit of a former best is never read as the model.

Commits use ``synchronous=NORMAL``: in WAL mode a committed transaction survives
the process being killed at any instant (a power cut may lose the last few).
Blobs are written with ``torch.save`` and read with ``torch.load(weights_only=True)``,
which never unpickles arbitrary objects.

A study file is input: everything read back is checked first (:mod:`._untrusted`), and a
study is read, read-only, from a read-only file or folder.
"""

from __future__ import annotations

import copy
import io
import json
import os
import shutil
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from archsearch._outputs import SQLITE_COMPANIONS
from archsearch.errors import ArchsearchError
from archsearch.evaluation import Result
from archsearch.space import Architecture, SearchSpace
from archsearch.study import _untrusted

FORMAT = "archsearch-study"
# 2: trials.val_loss, the tie-break between equal rewards; 3: executor, workers, attempts; 4: val_score and
# test_score (named for what they hold: accuracy or R^2), and the refits table folded into models; 5: phase
# and kind of each trial (a weight-sharing study's search, derivation and retraining), the evaluator_state table;
# 6: each trial's FLOPs and measured latency (NULL where not known or not measured); 7: each trial's parent,
# the trial whose weights it continued from (NULL: trained from fresh weights)
SCHEMA_VERSION = 7
# Columns added to trials by schema versions 2 and 3, in table order; upgrade() adds them to an older file.
_ADDED = {2: ["val_loss REAL"], 3: ["executor TEXT", "workers INTEGER", "attempts INTEGER"]}
_PHASE_COLUMNS = ("phase TEXT NOT NULL DEFAULT 'search'", "kind TEXT NOT NULL DEFAULT 'final'")
_COST_COLUMNS = ("flops INTEGER", "latency_ms REAL", "latency_spread REAL")
_EVALUATOR_STATE = "CREATE TABLE evaluator_state (step INTEGER PRIMARY KEY, state BLOB NOT NULL)"
PHASES, KINDS = _untrusted.PHASES, _untrusted.KINDS
_REFIT_COLUMNS = ("refit_epochs INTEGER", "refit_rows INTEGER", "refit_weights BLOB", "refit_test_score REAL")

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE trials (
    number INTEGER PRIMARY KEY,
    step INTEGER NOT NULL,
    slot INTEGER NOT NULL,
    architecture TEXT NOT NULL,
    arch_hash TEXT NOT NULL,
    arch_str TEXT NOT NULL,
    status TEXT NOT NULL,
    reward REAL NOT NULL,
    val_score REAL NOT NULL,
    error TEXT,
    params INTEGER NOT NULL,
    epochs INTEGER NOT NULL,
    kept_epoch INTEGER NOT NULL,
    seconds REAL NOT NULL,
    seed INTEGER NOT NULL,
    val_curve TEXT NOT NULL,
    train_loss TEXT NOT NULL,
    created REAL NOT NULL,
    cached_from INTEGER,
    val_loss REAL,
    executor TEXT,
    workers INTEGER,
    attempts INTEGER,
    phase TEXT NOT NULL DEFAULT 'search',
    kind TEXT NOT NULL DEFAULT 'final',
    flops INTEGER,
    latency_ms REAL,
    latency_spread REAL,
    parent INTEGER,
    UNIQUE (step, slot)
);
CREATE INDEX trials_by_hash ON trials (arch_hash, number);
CREATE TABLE steps (step INTEGER PRIMARY KEY, metrics TEXT NOT NULL, created REAL NOT NULL);
CREATE TABLE checkpoints (step INTEGER PRIMARY KEY, state BLOB NOT NULL);
CREATE TABLE evaluator_state (step INTEGER PRIMARY KEY, state BLOB NOT NULL);
CREATE TABLE models (
    number INTEGER PRIMARY KEY, weights BLOB NOT NULL, test_score REAL,
    refit_epochs INTEGER, refit_rows INTEGER, refit_weights BLOB, refit_test_score REAL
);
"""
# Only in a study that has built an ensemble (config "ensemble" above 1): its members, best first, with
# their weights; the ensemble's test score is the meta row "ensemble_test_score" once measured. A file
# without the table is of any schema: an archsearch that does not know it reads the rest as before.
_ENSEMBLE = (
    "CREATE TABLE IF NOT EXISTS ensemble (member INTEGER PRIMARY KEY, number INTEGER NOT NULL, weights BLOB NOT NULL)"
)
# Only in a study whose task is kept in the file (kind "arrays"): one row, the task's arrays.
_TASK_DATA = "CREATE TABLE task_data (id INTEGER PRIMARY KEY CHECK (id = 0), data BLOB NOT NULL)"
# The stored model's row as schema 4 has it, read from a file of any schema: before 4 the scores were
# test_accuracy, and a refit was a row of the refits table (which schema 2 files may lack).
_MODEL_ROW = {
    4: "SELECT number, test_score, refit_epochs, refit_rows, refit_test_score FROM models",
    3: "SELECT m.number, m.test_accuracy, r.epochs, r.rows, r.test_accuracy FROM models m "
    "LEFT JOIN refits r ON r.number = m.number",
    0: "SELECT number, test_accuracy, NULL, NULL, NULL FROM models",
}


@dataclass(frozen=True)
class Trial:
    """One recorded child, as stored in the study."""

    number: int
    step: int
    slot: int
    architecture: Architecture
    arch_hash: str
    status: str
    reward: float
    val_score: float
    error: str | None
    params: int
    epochs: int
    kept_epoch: int
    seconds: float
    seed: int
    val_curve: list[float] = field(repr=False)
    train_loss: list[float] = field(repr=False)
    cached_from: int | None = None
    val_loss: float | None = None
    executor: str | None = None
    workers: int | None = None
    attempts: int | None = None
    phase: str = "search"
    kind: str = "final"
    flops: int | None = None
    latency_ms: float | None = None
    latency_spread: float | None = None
    parent: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (curves left out)."""
        return {
            "number": self.number,
            "step": self.step,
            "slot": self.slot,
            "architecture": str(self.architecture),
            "hash": self.arch_hash,
            "status": self.status,
            "reward": self.reward,
            "val_score": self.val_score,
            "params": self.params,
            "epochs": self.epochs,
            "seconds": self.seconds,
            "error": self.error,
            "cached_from": self.cached_from,
            "val_loss": self.val_loss,
            "executor": self.executor,
            "workers": self.workers,
            "attempts": self.attempts,
            "phase": self.phase,
            "kind": self.kind,
            "flops": self.flops,
            "latency_ms": self.latency_ms,
            "latency_spread": self.latency_spread,
            "parent": self.parent,
        }


#: SQL of :func:`rank`; ``_BEFORE_5``: the same for a file without kinds (every trial trained)
RANK_ORDER = "kind = 'proxy', reward DESC, val_loss IS NULL, val_loss, params, number"
_BEFORE_5 = "reward DESC, val_loss IS NULL, val_loss, params, number"


def rank(trial: Trial | Any) -> tuple[bool, float, bool, float, int, int]:
    """Sort key of the best trial first: a trained network before one scored with shared weights (a
    weight-sharing study's pick is its best retrained architecture), then highest reward, then lowest
    validation loss, then fewest parameters, then earliest.

    Rewards tie often: validation accuracy moves in steps of one validation point, and on a small
    or easy validation split many networks reach 100 %. The validation loss of the kept weights
    (cross-entropy, which also counts how confidently each point is right) separates them on the
    same held-out data; a trial without one (a lookup, a study from an older archsearch) comes after
    those with one. Equal losses go to the smallest network, then the earliest.
    """
    loss = trial.val_loss
    proxy = getattr(trial, "kind", "final") == "proxy"  # a trial from before kinds: trained
    return (proxy, -trial.reward, loss is None, 0.0 if loss is None else loss, trial.params, trial.number)


def to_blob(obj: Any) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


class Storage:
    """Reads and appends to one study file."""

    def __init__(self, path: Path | None, connection: sqlite3.Connection, readonly: bool = False) -> None:
        self.path = path
        self.readonly = readonly
        self._db = connection
        self._db.row_factory = sqlite3.Row
        self._rank_order = RANK_ORDER
        self._version = SCHEMA_VERSION
        self._where = str(path) if path is not None else "(study in memory)"
        self._config: dict[str, Any] | None = None  # checked once, see the config property
        self._space: SearchSpace | None = None
        self._architectures = _untrusted.Architectures(lambda: self.space)
        self._copy: Path | None = None  # the private copy read instead of a read-only study, see open()
        self._reading_only = False  # opened for writing, and still on the read-only connection: see _writer()

    # -- opening ---------------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        path: str | os.PathLike | None,
        config: dict[str, Any],
        task_data: bytes | None = None,
        overwrite: bool = False,
    ) -> Storage:
        """A new study file holding ``config``; refuses to replace an existing file unless ``overwrite``.

        ``path=None`` keeps the study in memory, for throw-away searches such as comparisons
        on a tabular benchmark. ``task_data`` are the arrays of a task that its config cannot
        rebuild (see :meth:`task_data`), written in the same transaction as the config. With
        ``overwrite`` an existing *study* at ``path`` is replaced (see :func:`replace_study`).
        """
        if path is not None and overwrite and Path(path).exists():
            return replace_study(Path(path), lambda temp: cls.create(temp, config, task_data))
        if path is not None:
            path = Path(path)
            check_new_study_path(path)
            try:  # claimed at once (O_EXCL): of two searches started on one new path, the second is refused
                os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
            except FileExistsError:
                check_new_study_path(path)
                raise
            except OSError as exc:
                raise ArchsearchError(f"{path}: cannot create the study file ({exc.strerror or exc})") from None
        db = None
        try:
            db = sqlite3.connect(":memory:" if path is None else path, isolation_level=None)
            _configure(db)
            with _transaction(db):
                for statement in _SCHEMA.strip().split(";"):
                    if statement.strip():
                        db.execute(statement)
                db.executemany(
                    "INSERT INTO meta (key, value) VALUES (?, ?)",
                    [
                        ("format", FORMAT),
                        ("schema_version", str(SCHEMA_VERSION)),
                        ("config", json.dumps(config, sort_keys=True)),
                        ("created", str(time.time())),
                    ],
                )
                if task_data is not None:
                    db.execute(_TASK_DATA)
                    db.execute("INSERT INTO task_data (id, data) VALUES (0, ?)", (task_data,))
        except BaseException as exc:  # a half-made file is no study: nothing is left behind, even on Ctrl-C
            if db is not None:
                db.close()
            if path is not None:
                _remove_study_files(path)
            if isinstance(exc, sqlite3.Error | OSError | StudyWriteError):
                raise ArchsearchError(
                    f"{path}: cannot create the study file ({getattr(exc, 'reason', exc)})"
                ) from None
            raise
        return cls(path, db)

    @classmethod
    def open(cls, path: str | os.PathLike, readonly: bool = False) -> Storage:
        """An existing study file; one clear error if it is missing or not a study."""
        path = Path(path)
        if not path.exists():
            raise ArchsearchError(f"{path}: no such study file")
        if not path.is_file():
            raise ArchsearchError(f"{path}: is not a file")
        if not readonly:
            why = _untrusted.unwritable(path)
            if why is not None:
                raise ArchsearchError(f"{path}: read-only ({why}); resume needs to write")
        copy = None
        try:
            db, copy = _untrusted.connect(path, readonly=True)  # writing starts at the first write: upgrade()
            rows = dict(db.execute("SELECT key, value FROM meta").fetchall())
            if rows.get("format") != FORMAT:
                raise ArchsearchError(f"{path}: not an archsearch study (no study marker)")
            version = _untrusted.schema_version(str(path), rows, SCHEMA_VERSION)
            _untrusted.check_tables(str(path), db, version)
            if not readonly and db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":  # switching is a write
                raise ArchsearchError(
                    f"{path}: the study file is not in WAL mode, as archsearch writes every study (damaged, or "
                    "converted by another tool); trials and best still work, resume does not"
                )
        except (*_untrusted.READ_ERRORS, ArchsearchError) as exc:
            if copy is not None:
                shutil.rmtree(copy, ignore_errors=True)
            if isinstance(exc, ArchsearchError):
                raise
            if _untrusted.damaged(exc) and "not a database" not in str(exc):  # that: some other file
                raise _untrusted.read_error(str(path), exc) from None
            raise ArchsearchError(f"{path}: not an archsearch study ({_untrusted.short(str(exc))})") from None
        db.execute("PRAGMA busy_timeout=10000")
        storage = cls(path, db, readonly)
        storage._reading_only = not readonly
        storage._version = version
        storage._copy = copy
        if version == 1:  # read as it is: no validation losses, so ties go by parameters
            storage._rank_order = "reward DESC, params, number"
        elif version < 5:
            storage._rank_order = _BEFORE_5
        return storage

    def _writer(self) -> None:
        """Trade the read-only connection that :meth:`open` reads with for one that writes.

        Opening, checking and reading a study go through a ``mode=ro`` connection, which never changes
        the file: a read-write connection would, when it closes, copy a killed run's ``-wal`` into the
        file, so even a refused ``resume`` would change its bytes.
        """
        if not self._reading_only:
            return
        try:
            db = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=rw", uri=True, isolation_level=None)
            _configure(db)
        except sqlite3.Error as exc:
            why = _untrusted.short(str(exc))
            raise ArchsearchError(f"{self.path}: cannot open the study for writing ({why})") from None
        db.row_factory = sqlite3.Row
        self._db.close()
        self._db, self._reading_only = db, False

    def upgrade(self, config: dict[str, Any] | None = None) -> None:
        """Bring a file written by an older archsearch to this schema, and store ``config`` if given, in
        one transaction.

        Opening a file never writes to it: a command that is then refused (another process runs the
        study, its data file changed, a bad flag) leaves every byte as it was. A run calls this once
        every check has passed, as its first write.
        """
        self._writer()
        if self._version == SCHEMA_VERSION and config is None:
            return
        try:
            with _transaction(self._db):
                if self._version < SCHEMA_VERSION:
                    self._upgrade_tables()
                    self._db.execute(
                        "UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION),)
                    )
                if config is not None:
                    self._db.execute(
                        "UPDATE meta SET value = ? WHERE key = 'config'", (json.dumps(config, sort_keys=True),)
                    )
        except sqlite3.Error as exc:
            raise ArchsearchError(f"{self.path}: cannot write to the study ({exc})") from None
        self._version, self._rank_order = SCHEMA_VERSION, RANK_ORDER
        self._config = None

    def _upgrade_tables(self) -> None:
        """Schema 1 to 4 to 5 to 6 to 7, inside :meth:`upgrade`'s transaction. Trials of older schemas hold NULL
        in the columns added since (not recorded), and are of phase ``search`` and kind ``final`` (every
        one was trained); a refit moves into the row of the model it retrained."""
        if self._version < 5:
            if self._version < 4:
                self._upgrade_to_4()
            for column in _PHASE_COLUMNS:
                self._db.execute(f"ALTER TABLE trials ADD COLUMN {column}")
            self._db.execute(_EVALUATOR_STATE)
        if self._version < 6:
            for column in _COST_COLUMNS:
                self._db.execute(f"ALTER TABLE trials ADD COLUMN {column}")
        self._db.execute("ALTER TABLE trials ADD COLUMN parent INTEGER")

    def _upgrade_to_4(self) -> None:
        present = {row[1] for row in self._db.execute("PRAGMA table_info(trials)")}
        for added in range(self._version + 1, 4):
            for column in _ADDED[added]:
                if column.split()[0] not in present:
                    self._db.execute(f"ALTER TABLE trials ADD COLUMN {column}")
        self._db.execute("ALTER TABLE trials RENAME COLUMN val_accuracy TO val_score")
        self._db.execute("ALTER TABLE models RENAME COLUMN test_accuracy TO test_score")
        for column in _REFIT_COLUMNS:
            self._db.execute(f"ALTER TABLE models ADD COLUMN {column}")
        if self._has_refits():
            self._db.execute(
                "UPDATE models SET (refit_epochs, refit_rows, refit_weights, refit_test_score) = "
                "(SELECT epochs, rows, weights, test_accuracy FROM refits WHERE refits.number = models.number)"
            )
            self._db.execute("DROP TABLE refits")

    def _has_refits(self) -> bool:
        """Whether a file of schema 2 or 3 has the refits table (schema 2 files may not)."""
        return self._one("SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'refits'") is not None

    def close(self) -> None:
        """Close the file. SQLite's last connection to close checkpoints the WAL into the file and removes
        it, so a cleanly closed study is one self-contained file that a reader can open read-only."""
        self._db.close()
        if self._copy is not None:
            shutil.rmtree(self._copy, ignore_errors=True)
            self._copy = None

    # -- meta ------------------------------------------------------------------------------

    @property
    def config(self) -> dict[str, Any]:
        """The study's settings (a fresh copy), checked when first read: see :func:`_untrusted.config`."""
        if self._config is None:
            self._config = _untrusted.config(self._where, self._meta("config"))
        return copy.deepcopy(self._config)

    def _setting(self, key: str) -> Any:
        """One checked setting of the config, without copying the whole of it (read for every trial)."""
        if self._config is None:
            self._config = _untrusted.config(self._where, self._meta("config"))
        return self._config[key]

    @property
    def space(self) -> SearchSpace:
        """The study's search space, built from its config once; every stored architecture must be a member."""
        if self._space is None:
            self._space = _untrusted.space(self._where, self.config["space"])
        return self._space

    def task_data(self) -> bytes:
        """The stored arrays of the study's task (kind ``"arrays"``), as written by :meth:`create`."""
        try:
            row = self._db.execute("SELECT data FROM task_data WHERE id = 0").fetchone()
        except sqlite3.Error as exc:
            raise ArchsearchError(f"{self.path}: the study's data cannot be read ({exc})") from None
        if row is None:
            raise ArchsearchError(f"{self.path}: the study's data is missing (no row in task_data)")
        if not isinstance(row[0], bytes):
            raise ArchsearchError(f"{self.path}: the study's data is {type(row[0]).__name__}, not bytes")
        return row[0]

    def _meta(self, key: str) -> str:
        row = self._one("SELECT value FROM meta WHERE key = ?", (key,))
        if row is None:
            raise ArchsearchError(f"{self._where}: study has no {key!r} entry")
        return row[0]

    def _all(self, query: str, args: tuple = ()) -> list[sqlite3.Row]:
        """Rows of a read; any SQLite error (a damaged page, a missing table) is one line naming the study."""
        try:
            return self._db.execute(query, args).fetchall()
        except _untrusted.READ_ERRORS as exc:
            raise _untrusted.read_error(self._where, exc) from None

    def _one(self, query: str, args: tuple = ()) -> sqlite3.Row | None:
        try:
            return self._db.execute(query, args).fetchone()
        except _untrusted.READ_ERRORS as exc:
            raise _untrusted.read_error(self._where, exc) from None

    # -- trials ----------------------------------------------------------------------------

    def add_trial(
        self,
        number: int,
        step: int,
        slot: int,
        arch: Architecture,
        seed: int,
        result: Result,
        keep_weights: bool = False,
        cached_from: int | None = None,
        executor: str | None = None,
        workers: int | None = None,
        phase: str = "search",
        kind: str = "final",
        parent: int | None = None,
    ) -> Trial:
        """Commit one finished trial; with ``keep_weights`` it replaces the stored best model.

        ``executor`` and ``workers`` say where it ran (``None`` for a result reused from an
        earlier trial, which ran nowhere); ``phase`` and ``kind``: see :data:`PHASES` and :data:`KINDS`.
        """
        row = (
            number,
            step,
            slot,
            arch.to_json(),
            arch.hash,
            str(arch),
            result.status,
            float(result.reward),
            float(result.val_score),
            result.error,
            int(result.params),
            int(result.epochs),
            int(result.kept_epoch),
            float(result.seconds),
            int(seed),
            json.dumps(result.val_curve),
            json.dumps(result.train_loss),
            time.time(),
            cached_from,
            result.val_loss,
            executor,
            workers,
            None if executor is None else int(result.attempts),
            phase,
            kind,
            result.flops,
            result.latency_ms,
            result.latency_spread,
            parent,
        )
        self._writer()
        with _transaction(self._db):
            self._db.execute(f"INSERT INTO trials ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(row))})", row)
            if keep_weights and result.weights is not None:
                self._db.execute("DELETE FROM models")
                self._db.execute(
                    "INSERT INTO models (number, weights) VALUES (?, ?)", (number, to_blob(result.weights))
                )
        # built from what is at hand rather than parsed back from the row's JSON: a search records
        # thousands of trials, each while worker processes want the same cores
        return _trial(
            dict(zip(_COLUMNS, row, strict=True)),
            architecture=arch,
            val_curve=list(result.val_curve),
            train_loss=list(result.train_loss),
        )

    def trials(self, step: int | None = None, order: str = "number") -> list[Trial]:
        """The trials (of one step), each checked; reading all of them also checks that none of the
        completed steps' trials is missing."""
        orders = {"number": "number", "reward": self._rank_order}
        query = "SELECT * FROM trials"
        args: tuple = ()
        if step is not None:
            query += " WHERE step = ?"
            args = (step,)
        trials = [self._trial(r) for r in self._all(f"{query} ORDER BY {orders[order]}", args)]
        if step is None:
            numbers = [t.number for t in trials]
            self._check_none_missing(numbers if order == "number" else sorted(numbers))
        return trials

    def ranked_successes(self, page: int = 64) -> Iterator[Trial]:
        """The successful trials, best first (see :func:`rank`), read a page at a time: a caller that
        wants the first few does not read and check the whole table."""
        query = f"SELECT * FROM trials WHERE status = 'ok' ORDER BY {self._rank_order} LIMIT ? OFFSET ?"
        offset = 0
        while rows := self._all(query, (page, offset)):
            yield from (self._trial(row) for row in rows)
            offset += page

    def count_trials(self) -> int:
        return self._one("SELECT COUNT(*) FROM trials")[0]

    def trial(self, number: int) -> Trial | None:
        """Trial ``number``, checked, or ``None`` where there is none."""
        if type(number) is not int or not 0 <= number < 2**63:  # beyond SQLite's integers: none stored
            return None
        row = self._one("SELECT * FROM trials WHERE number = ?", (number,))
        return None if row is None else self._trial(row)

    def best_trial(self) -> Trial | None:
        """Highest reward among trials with status ``ok``; see :func:`rank` for ties."""
        row = self._one(f"SELECT * FROM trials WHERE status = 'ok' ORDER BY {self._rank_order} LIMIT 1")
        if row is None:  # none yet, or none left: trials of complete steps deleted from the file
            self._check_none_missing([r[0] for r in self._all("SELECT number FROM trials ORDER BY number")])
            return None
        return self._trial(row)

    def _trial(self, row: sqlite3.Row) -> Trial:
        """A stored trial, every column checked (see :func:`_untrusted.trial_fields`)."""
        number = row["number"]
        if type(number) is not int or number < 0:
            raise ArchsearchError(f"{self._where}: a trial's number {_untrusted.short(number)} is not a trial number")
        try:
            return Trial(**_untrusted.trial_fields(row, self._setting("children_per_step"), self._architectures))
        except ArchsearchError:  # the study's config or space, already said in full
            raise
        except ValueError as exc:
            raise ArchsearchError(f"{self._where}: trial {number}: {exc}") from None

    def _check_none_missing(self, numbers: list[int]) -> None:
        """Every trial of a completed step is there, once (``numbers`` sorted); trials of the step in
        progress finish in any order."""
        last = self._last_metrics_step()
        complete = max(self.completed_steps(), -1 if last is None else last + 1) * self._setting("children_per_step")
        for expected, number in enumerate(numbers):
            if number < expected:
                raise ArchsearchError(f"{self._where}: trial {number} is stored twice")
            if number > expected and expected < complete:
                raise ArchsearchError(
                    f"{self._where}: trial {expected} is missing, though its step is complete (deleted from the file?)"
                )
        if len(numbers) < complete:
            raise ArchsearchError(
                f"{self._where}: trial {len(numbers)} is missing, though its step is complete (deleted from the file?)"
            )

    def check(self) -> None:
        """Read and check what a run builds on, so that a run refuses a damaged study before its first
        write: SQLite's integrity check of every page and index, every trial (none of a complete step
        missing), each step's metrics and the stored model's row."""
        problem = self._one("PRAGMA integrity_check(1)")[0]
        if problem != "ok":
            raise ArchsearchError(
                f"{self._where}: the study file is damaged ({_untrusted.short(problem)}); resume needs it whole"
            )
        self.trials()
        self.steps()
        self.stored_model()

    # -- steps and checkpoints --------------------------------------------------------------

    def add_step(
        self, step: int, metrics: dict[str, float], state: dict[str, Any], evaluator: dict[str, Any] | None = None
    ) -> None:
        """Commit a strategy update: its metrics and its new state, replacing the previous state; and, given
        ``evaluator``, a stateful evaluator's new state, replacing its previous one."""
        self._writer()
        with _transaction(self._db):
            self._db.execute("INSERT INTO steps VALUES (?, ?, ?)", (step, json.dumps(metrics), time.time()))
            self._db.execute("DELETE FROM checkpoints")
            self._db.execute("INSERT INTO checkpoints VALUES (?, ?)", (step, to_blob(state)))
            if evaluator is not None:
                self._db.execute("DELETE FROM evaluator_state")
                self._db.execute("INSERT INTO evaluator_state VALUES (?, ?)", (step, to_blob(evaluator)))

    def evaluator_state(self) -> tuple[int, dict[str, Any]] | None:
        """``(step, state)`` of the stateful evaluator as last committed, or ``None``; the state is
        checked by the evaluator that loads it."""
        if self._version < 5:
            return None
        works = "trials and best still work, resume does not"
        row = self._one("SELECT step, state FROM evaluator_state ORDER BY step DESC LIMIT 1")
        if row is None:
            return None
        step = self._step_number(row[0], "the evaluator's state")
        checkpoint = self.checkpoint_step()
        if checkpoint is None or step > checkpoint:
            raise ArchsearchError(
                f"{self._where}: the evaluator's state is of step {step}, after the last checkpoint; {works}"
            )
        try:
            state = _untrusted.blob(row[1])
            if not isinstance(state, dict):
                raise TypeError("it is not a dict")
        except (ValueError, TypeError) as exc:
            raise ArchsearchError(f"{self._where}: the evaluator's state cannot be read ({exc}); {works}") from None
        return step, state

    def set_checkpoint(self, step: int, state: dict[str, Any]) -> None:
        """Replace the strategy's state without completing a step (an asynchronous study's tells)."""
        self._writer()
        with _transaction(self._db):
            self._db.execute("DELETE FROM checkpoints")
            self._db.execute("INSERT INTO checkpoints VALUES (?, ?)", (step, to_blob(state)))

    def latest_checkpoint(self) -> tuple[int, dict[str, Any]] | None:
        """``(step, state)`` of the strategy after its latest update, checked against the steps recorded."""
        works = "trials and best still work, resume does not"
        step, last = self.checkpoint_step(), self._last_metrics_step()
        if step is None:
            if last is not None:
                raise ArchsearchError(f"{self._where}: the checkpoint of step {last} is missing; {works}")
            return None
        if last is not None and last > step:
            raise ArchsearchError(
                f"{self._where}: the checkpoint of step {last} is missing (the one stored is of step {step}); {works}"
            )
        if step >= 0 and last != step:
            raise ArchsearchError(f"{self._where}: the metrics of step {step} are missing; {works}")
        row = self._one("SELECT state FROM checkpoints WHERE step = ?", (step,))
        try:
            state = _untrusted.blob(row[0])
            if not isinstance(state, dict):
                raise TypeError("it is not a dict")
        except (ValueError, TypeError) as exc:
            raise ArchsearchError(
                f"{self._where}: the checkpoint of step {step} cannot be read ({exc}); {works}"
            ) from None
        return step, state

    def checkpoint_step(self) -> int | None:
        """The step of the stored strategy state, without reading the state; ``-1`` while an asynchronous
        study's first step is in progress."""
        row = self._one("SELECT step FROM checkpoints ORDER BY step DESC LIMIT 1")
        return None if row is None else self._step_number(row[0], "the checkpoint")

    def completed_steps(self) -> int:
        """Strategy updates committed so far."""
        step = self.checkpoint_step()
        return 0 if step is None else step + 1

    def _last_metrics_step(self) -> int | None:
        row = self._one("SELECT MAX(step) FROM steps")
        return None if row[0] is None else self._step_number(row[0], "the last metrics")

    def _step_number(self, step: Any, what: str) -> int:
        steps = self._setting("steps")
        if type(step) is not int or not -1 <= step < steps:
            raise ArchsearchError(
                f"{self._where}: {what} is of step {_untrusted.short(step)}, which this study of "
                f"{steps} steps does not have"
            )
        return step

    def steps(self) -> list[tuple[int, dict[str, float]]]:
        """Each completed step's strategy metrics, checked."""
        steps = []
        for step, text in self._all("SELECT step, metrics FROM steps ORDER BY step"):
            metrics = _untrusted.metrics(text)
            if metrics is None:
                raise ArchsearchError(
                    f"{self._where}: the metrics of step {_untrusted.short(step)} are not a JSON object of numbers"
                )
            steps.append((self._step_number(step, "a metrics row"), metrics))
        return steps

    # -- models ----------------------------------------------------------------------------

    def _model_row(self) -> tuple[int, float | None, tuple[int, int, float | None] | None] | None:
        """``(trial number, test score, refit)`` of the stored model, without reading weights; ``refit`` is
        ``(epochs, rows, test score)`` or ``None``. Each value is checked."""
        query = _MODEL_ROW[4 if self._version >= 4 else 3 if self._has_refits() else 0]
        row = self._one(query)
        if row is None:
            return None
        number, score, epochs, rows, refit_score = row
        if type(number) is not int or number < 0:
            raise ArchsearchError(
                f"{self._where}: the stored model is of trial {_untrusted.short(number)}, not a trial number"
            )
        try:
            score, refit_score = _untrusted.optional_number(score), _untrusted.optional_number(refit_score)
        except ValueError as exc:
            raise ArchsearchError(f"{self._where}: the stored model of trial {number}: {exc}") from None
        if epochs is None and rows is None:
            return number, score, None
        if type(epochs) is not int or type(rows) is not int or epochs < 0 or rows < 1:
            raise ArchsearchError(
                f"{self._where}: the refit of trial {number} holds epochs {_untrusted.short(epochs)} and rows "
                f"{_untrusted.short(rows)}, not counts"
            )
        return number, score, (epochs, rows, refit_score)

    def stored_model(self) -> tuple[int, float | None] | None:
        """``(trial number, test score or None)`` of the stored best model, without reading its weights."""
        row = self._model_row()
        return None if row is None else row[:2]

    def best_model(self) -> tuple[int, dict[str, torch.Tensor], float | None] | None:
        """``(trial number, weights, test score or None)`` of the stored best model."""
        row = self._model_row()
        if row is None:
            return None
        blob = self._one("SELECT weights FROM models")[0]
        return row[0], self._weights(blob, row[0], "weights"), row[1]

    def _weights(self, blob: Any, number: int, what: str) -> dict[str, torch.Tensor]:
        try:
            return _untrusted.state_dict(_untrusted.blob(blob))
        except ValueError as exc:
            raise _untrusted.UnusableWeights(
                f"{self._where}: the {what} of trial {number} cannot be read ({exc}); trials and best still work, "
                "export and report's model figures do not"
            ) from None

    def set_test_score(self, number: int, score: float, refit: bool = False) -> None:
        """Store the test score of the model's weights (``refit``: of its refit weights)."""
        self.upgrade()
        column = "refit_test_score" if refit else "test_score"
        with _transaction(self._db):
            self._db.execute(f"UPDATE models SET {column} = ? WHERE number = ?", (score, number))

    def refit_info(self, number: int) -> tuple[int, int, float | None] | None:
        """``(epochs, rows, test score)`` of trial ``number`` retrained on train + validation, without
        reading its weights; ``None`` unless it is the stored model and has been refit."""
        row = self._model_row()
        return None if row is None or row[0] != number else row[2]

    def refit_model(self, number: int) -> tuple[int, int, dict[str, torch.Tensor], float | None] | None:
        """``(epochs, rows, weights, test score)`` of trial ``number`` retrained on train + validation."""
        info = self.refit_info(number)
        if info is None:
            return None
        if self._version >= 4:
            blob = self._one("SELECT refit_weights FROM models")[0]
        else:
            blob = self._one("SELECT weights FROM refits WHERE number = ?", (number,))[0]
        return info[0], info[1], self._weights(blob, number, "refit weights"), info[2]

    def add_refit(self, number: int, epochs: int, rows: int, weights: dict[str, torch.Tensor]) -> None:
        """Store the refit of the stored model, trial ``number``."""
        self.upgrade()
        with _transaction(self._db):
            changed = self._db.execute(
                "UPDATE models SET refit_epochs = ?, refit_rows = ?, refit_weights = ?, refit_test_score = NULL "
                "WHERE number = ?",
                (epochs, rows, to_blob(weights), number),
            ).rowcount
            if changed != 1:
                raise ArchsearchError(f"{self._where}: trial {number} is not the stored model; it cannot be refit")

    # -- ensemble ------------------------------------------------------------------------------

    def ensemble_members(self) -> list[int] | None:
        """Trial numbers of the stored ensemble's members, best first, without reading weights; ``None``
        when none is stored. Each row is checked."""
        if self._one("SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'ensemble'") is None:
            return None
        rows = self._all("SELECT member, number FROM ensemble ORDER BY member")
        for position, (member, number) in enumerate(rows):
            if member != position or type(number) is not int or number < 0:
                raise ArchsearchError(
                    f"{self._where}: the ensemble's member {_untrusted.short(member)} is of trial "
                    f"{_untrusted.short(number)}: members are numbered from 0, each of a trial"
                )
        return [row[1] for row in rows] or None

    def ensemble_weights(self) -> list[dict[str, torch.Tensor]]:
        """The weights of the stored ensemble's members, best first."""
        rows = self._all("SELECT number, weights FROM ensemble ORDER BY member")
        return [self._weights(blob, number, "ensemble weights") for number, blob in rows]

    def set_ensemble(self, members: list[tuple[int, dict[str, torch.Tensor]]]) -> None:
        """Store ``(trial number, weights)`` of each member, best first, replacing any earlier ensemble."""
        self.upgrade()
        with _transaction(self._db):
            self._db.execute(_ENSEMBLE)
            self._db.execute("DELETE FROM ensemble")
            self._db.execute("DELETE FROM meta WHERE key = 'ensemble_test_score'")
            self._db.executemany(
                "INSERT INTO ensemble (member, number, weights) VALUES (?, ?, ?)",
                [(position, number, to_blob(weights)) for position, (number, weights) in enumerate(members)],
            )

    def ensemble_test_score(self) -> float | None:
        """The stored ensemble's test score, or ``None`` until it is measured."""
        row = self._one("SELECT value FROM meta WHERE key = 'ensemble_test_score'")
        try:
            return None if row is None else _untrusted.optional_number(_untrusted.json_number(row[0]))
        except ValueError as exc:
            raise ArchsearchError(f"{self._where}: the ensemble's {exc}") from None

    def set_ensemble_test_score(self, score: float) -> None:
        self.upgrade()
        with _transaction(self._db):
            self._db.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('ensemble_test_score', ?)", (json.dumps(score),)
            )


def write_tensors(final: Path, tensors: dict[str, torch.Tensor]) -> None:
    """Write ``tensors`` to ``final`` (a file beside a study: a saved child's weights, its optimizer's state)
    with safetensors, through a partial file that then replaces it whole, so that a file left by a run killed
    in between is replaced. A failed write (a full disk) leaves nothing and is a :class:`StudyWriteError`: the
    trial is not committed, and a resume redoes it."""
    from safetensors import SafetensorError
    from safetensors.torch import save_file

    partial = final.with_name(final.name + ".partial")
    try:
        final.parent.mkdir(exist_ok=True)
        save_file({k: v.detach().contiguous() for k, v in tensors.items()}, str(partial))
        os.replace(partial, final)
    except (OSError, SafetensorError) as exc:
        partial.unlink(missing_ok=True)
        raise StudyWriteError(str(final), getattr(exc, "strerror", None) or str(exc)) from None


def read_tensors(file: Path, what: str) -> dict[str, torch.Tensor]:
    """The tensors of a file beside a study; one line naming it and ``what`` they are when it cannot be read."""
    from safetensors.torch import load_file

    try:
        return load_file(str(file))
    except Exception as exc:  # noqa: BLE001 -- safetensors raises its own error, OSError, ...: all mean unreadable
        raise ArchsearchError(f"{file}: {what} cannot be read ({_untrusted.short(str(exc))})") from None


def check_new_study_path(path: str | os.PathLike, overwrite: bool = False) -> None:
    """Refuse, with one line, a path that exists or whose directory is missing or not writable. With
    ``overwrite`` an existing path must instead be a study that no process is running."""
    path = Path(path)
    if path.exists() and overwrite:
        with _replaceable(path):
            pass
    elif path.exists():
        raise ArchsearchError(
            f"{path}: already exists; use 'archsearch resume {path}', choose another path, or replace it with "
            "--overwrite"
        )
    _check_parent(path)


def _check_parent(path: Path) -> None:
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.exists():
        raise ArchsearchError(f"{path}: directory {parent} does not exist")
    if not parent.is_dir():
        raise ArchsearchError(f"{path}: {parent} is not a directory")
    if not os.access(parent, os.W_OK):
        raise ArchsearchError(f"{path}: directory {parent} is not writable")


class RunLock:
    """One running process per study: a second ``run`` on the same file is refused."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file = None

    def __enter__(self) -> RunLock:
        try:
            import fcntl
        except ImportError:  # pragma: no cover -- not POSIX: no lock
            return self
        if self.path is None:  # in memory: no other process can see it
            return self
        self._file = open(self.path, "rb")  # noqa: SIM115
        try:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._file.close()
            self._file = None
            raise ArchsearchError(f"{self.path}: another process is running this study") from None
        return self

    def __exit__(self, *exc: object) -> None:
        if self._file is not None:
            self._file.close()


@contextmanager
def _replaceable(path: Path) -> Iterator[None]:
    """Hold ``path`` while it is replaced: refuse, with one line, anything but a study, and a study that
    another process runs (takes the lock a run holds, and keeps it)."""
    if path.is_symlink() or not path.is_file():
        raise ArchsearchError(f"{path}: is not a study file; --overwrite replaces only a study")
    try:
        Storage.open(path, readonly=True).close()
    except ArchsearchError as exc:
        raise ArchsearchError(f"{exc}; --overwrite replaces only a study") from None
    with ExitStack() as held:
        try:
            held.enter_context(RunLock(path))
        except ArchsearchError as exc:
            raise ArchsearchError(f"{exc}; it cannot be replaced") from None
        yield


def replace_study(path: Path, create: Callable[[Path], Storage]) -> Storage:
    """Replace the study at ``path`` by the one ``create(temporary path)`` makes, and open it at ``path``.

    The new study is written whole beside the old one first, so a refused or interrupted creation leaves
    the old study as it was. Then the old study's SQLite companions go (a ``-wal`` left beside the new
    file would be read as the new file's), the new file takes the old one's name in one rename, and the
    old study's folder of saved children is removed.
    """
    _check_parent(path)
    with _replaceable(path):
        temp = path.with_name(f".{path.name}.{os.getpid()}.new")
        _remove_study_files(temp)
        try:
            create(temp).close()  # closed: the WAL is checkpointed into the one file
            _remove_study_files(path, keep_main=True)
            os.replace(temp, path)
        except BaseException:
            _remove_study_files(temp)
            raise
    shutil.rmtree(f"{path}.children", ignore_errors=True)
    db = sqlite3.connect(path, isolation_level=None)
    _configure(db)
    return Storage(path, db)


def _configure(db: sqlite3.Connection) -> None:
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("PRAGMA busy_timeout=10000")


class StudyWriteError(ArchsearchError):
    """The study file could not be written (the disk is full, an I/O error, a lock held too long). The
    transaction was rolled back, so the file holds everything committed before it and a run can be resumed
    once it can be written again."""

    def __init__(self, file: str, reason: str) -> None:
        super().__init__(f"{file}: cannot write to the study ({reason})")
        self.reason = reason


#: SQLite's answers when the file cannot take a write now: full, failing, locked for longer than the busy
#: timeout, made read-only or damaged under a running study
_UNWRITABLE = (
    sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_READONLY,
    sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_CANTOPEN,
)  # fmt: skip


@contextmanager
def _transaction(db: sqlite3.Connection) -> Iterator[None]:
    try:
        db.execute("BEGIN IMMEDIATE")
        try:
            yield
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:  # SQLite may have rolled back already (a full disk can do that)
                with suppress(sqlite3.Error):
                    db.execute("ROLLBACK")
            raise
    except sqlite3.Error as exc:
        if (getattr(exc, "sqlite_errorcode", 0) & 0xFF) in _UNWRITABLE:
            raise StudyWriteError(_file_of(db), str(exc)) from None
        raise


def _file_of(db: sqlite3.Connection) -> str:
    """The file behind a connection, for messages."""
    with suppress(sqlite3.Error):
        for row in db.execute("PRAGMA database_list"):
            if row[1] == "main":
                return row[2] or ":memory:"
    return "the study file"


def discard_if_empty(path: str | os.PathLike) -> bool:
    """Remove a study file that holds no trial (a search refused before its first child); True if removed."""
    try:
        db = sqlite3.connect(f"{Path(path).resolve().as_uri()}?mode=ro", uri=True)
        try:
            empty = db.execute("SELECT COUNT(*) FROM trials").fetchone()[0] == 0
        finally:
            db.close()
    except sqlite3.Error:
        return False
    if empty:
        _remove_study_files(Path(path))
    return empty


def _remove_study_files(path: Path, keep_main: bool = False) -> None:
    for suffix in SQLITE_COMPANIONS if keep_main else ("", *SQLITE_COMPANIONS):
        try:
            Path(f"{path}{suffix}").unlink()
        except OSError:
            pass


_COLUMNS = [  # the trials table's columns, in _SCHEMA's order
    *("number", "step", "slot", "architecture", "arch_hash", "arch_str", "status", "reward", "val_score"),
    *("error", "params", "epochs", "kept_epoch", "seconds", "seed", "val_curve", "train_loss", "created"),
    *("cached_from", "val_loss", "executor", "workers", "attempts", "phase", "kind"),
    *("flops", "latency_ms", "latency_spread", "parent"),
]


def _trial(
    row: sqlite3.Row | dict,
    architecture: Architecture | None = None,
    val_curve: list[float] | None = None,
    train_loss: list[float] | None = None,
) -> Trial:
    """A trial from its row; columns an older schema lacks read as ``None``. The row's JSON columns
    are parsed unless given already parsed."""
    names = row.keys()

    def get(name: str) -> Any:
        return row[name] if name in names else None

    return Trial(
        number=row["number"],
        step=row["step"],
        slot=row["slot"],
        architecture=Architecture.from_json(row["architecture"]) if architecture is None else architecture,
        arch_hash=row["arch_hash"],
        status=row["status"],
        reward=row["reward"],
        val_score=row["val_score"],
        error=row["error"],
        params=row["params"],
        epochs=row["epochs"],
        kept_epoch=row["kept_epoch"],
        seconds=row["seconds"],
        seed=row["seed"],
        val_curve=json.loads(row["val_curve"]) if val_curve is None else val_curve,
        train_loss=json.loads(row["train_loss"]) if train_loss is None else train_loss,
        cached_from=row["cached_from"],
        val_loss=get("val_loss"),
        executor=get("executor"),
        workers=get("workers"),
        attempts=get("attempts"),
        phase=get("phase") or "search",
        kind=get("kind") or "final",
        flops=get("flops"),
        latency_ms=get("latency_ms"),
        latency_spread=get("latency_spread"),
        parent=get("parent"),
    )

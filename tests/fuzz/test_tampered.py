"""Generated damage to real study files, then a command that reads them.

Damage: rows deleted, trial columns garbled (NULL, text, huge numbers, NaN, infinities, blobs),
stored architectures outside the space, meta and config garbled, blobs truncated or replaced, pages
of the file overwritten with random bytes at random offsets, header sizes inflated, the file
truncated, a garbage ``-wal`` beside it, saved children damaged. Each case: exit 0 or 2, one line
when refused, no traceback; nothing but ``resume`` may change the study, and a refused ``resume``
changes nothing.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sqlite3
from pathlib import Path

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from ._harness import Folder, Ref, check_case, materialise
from .test_arguments import fuzz_settings

pytestmark = pytest.mark.fuzz

#: generated cases; docs/hostile-input.md reports it
EXAMPLES = 60

TRIAL_COLUMNS = ("step", "slot", "architecture", "arch_hash", "arch_str", "status", "reward", "val_score", "error",
                 "params", "epochs", "kept_epoch", "seconds", "seed", "val_curve", "train_loss", "created",
                 "cached_from", "val_loss", "executor", "workers", "attempts", "number", "flops", "latency_ms",
                 "latency_spread", "parent")
HOSTILE_VALUES = (None, "", "text", "{", "[]", "{}", "null", 2**63 - 1, -(2**63), -1, 0, 1e308, float("inf"),
                  float("-inf"), 1.5, b"\x00\xff", "ok", "failed", "nan", "[1e999]", '["a"]', "[" + "1," * 50 + "1]")
META_VALUES = ("", "garbage", "{", "[]", "null", "999", "-1", "2", "4", "archsearch-study", "sqlite", "1e308", "{}")
CONFIG_KEYS = (("steps",), ("children_per_step",), ("seed",), ("space", "max_layers"), ("space", "units"),
               ("space", "activations"), ("space", "kind"), ("space",), ("strategy", "name"), ("strategy", "lr"),
               ("strategy", "hidden_size"), ("strategy",), ("task", "name"), ("task", "path"), ("task", "n_samples"),
               ("task", "sha256"), ("task",), ("trainer", "max_epochs"), ("trainer", "name"), ("trainer", "batch_size"),
               ("trainer", "threads"), ("executor", "workers"), ("executor", "name"), ("save_children",), ("ensemble",), ("goals",),
               ("goals", "limits"), ("goals", "objectives"), ("goals", "target"), ("goals", "latency"), ())
# no moderately large sizes here (say 10**6 units): a study that asks for one is valid, just expensive
CONFIG_VALUES = (None, -1, 0, 10**30, 1e308, "x", [], {}, True, 2.5, ["x"], [10**30], "NaN", [0], [-4], "")
UNITS = (0, -1, 3, 7, 64, 10**30, "8", None, 1.5, True)
ACTIVATIONS = ("relu", "tanh", "sigmoid", "", None, "os.system", 3)
COMMANDS = (
    ["trials", Ref("study")],
    ["trials", Ref("study"), "--json"],
    ["best", Ref("study")],
    ["best", Ref("study"), "--json"],
    ["report", Ref("study"), "-o", "out.html"],
    ["export", Ref("study"), "--out", "exported", "--no-onnx"],
    ["resume", Ref("study"), "--quiet"],
    ["resume", Ref("study"), "--steps", "3", "--quiet"],
    ["report", Ref("sample"), "-o", "out.html", "--sample", Ref("study")],  # the damaged study as the histogram's
    ["sample", "--n", "2", "--study", Ref("study"), "--plot", "plot.png", "--quiet"],
)


def _architecture(draw: st.DrawFn) -> str:
    layers = [
        {"units": draw(st.sampled_from(UNITS)), "activation": draw(st.sampled_from(ACTIVATIONS))}
        for _ in range(draw(st.integers(0, 8)))
    ]
    shape = draw(st.sampled_from(["mlp", "mlp", "mlp", "cnn", "other kind", "no kind", "list", "not json", "formula"]))
    if shape == "formula":  # a component architecture: of another space, deep, or with a name that is no operation
        formula = draw(st.sampled_from(["x * sigmoid(beta * x)", "sin(" * 60 + "x" + ")" * 60, "__import__(x)",
                                        "exp(sign(g) * sign(m)) * g", "x" * 5000]))  # fmt: skip
        return json.dumps({"kind": draw(st.sampled_from(["activation", "update-rule"])), "formula": formula,
                           "child": "mlp", "widths": [4]})  # fmt: skip
    if shape == "list":
        return json.dumps(layers)
    if shape == "not json":
        return "{'layers': []"
    value = {"layers": layers} if shape == "no kind" else {"kind": "x" if shape == "other kind" else shape,
                                                           "layers": layers}
    return json.dumps(value)


def _blob(draw: st.DrawFn) -> bytes | None:
    """A replacement for a stored ``torch.save`` blob; None: cut the existing one short."""
    kind = draw(st.sampled_from(["truncate", "random", "empty", "other tensors", "pickle", "zip garbage"]))
    if kind == "truncate":
        return None
    if kind == "random":
        return draw(st.binary(min_size=1, max_size=200))
    if kind == "empty":
        return b""
    if kind == "other tensors":
        buffer = io.BytesIO()
        torch.save({"weight": torch.zeros(draw(st.integers(0, 3)), 2), "x": torch.ones(1)}, buffer)
        return buffer.getvalue()
    if kind == "pickle":
        import pickle

        return pickle.dumps({"os": "system"})
    return b"PK\x03\x04" + bytes(draw(st.binary(min_size=0, max_size=40)))


@st.composite
def damage(draw: st.DrawFn) -> tuple:
    """One or two damages, as plain tuples (shown in a failure's report)."""
    found = []
    for _ in range(draw(st.integers(1, 2))):
        kind = draw(st.sampled_from(["delete", "column", "meta", "config", "architecture", "blob", "bytes", "header",
                                     "truncate", "wal", "children", "data file"]))
        if kind == "delete":
            table = draw(st.sampled_from(["trials", "steps", "checkpoints", "models", "meta", "ensemble"]))
            where = draw(st.sampled_from(["all", "first", "last", "odd"]))
            if table == "meta":
                where = draw(st.sampled_from(["format", "schema_version", "config", "created"]))
            found.append(("delete", table, where))
        elif kind == "column":
            found.append(("column", draw(st.sampled_from(TRIAL_COLUMNS)), draw(st.sampled_from(HOSTILE_VALUES)),
                          draw(st.sampled_from(["all", "first", "last"]))))
        elif kind == "meta":
            found.append(("meta", draw(st.sampled_from(["format", "schema_version", "config", "created"])),
                          draw(st.sampled_from(META_VALUES))))
        elif kind == "config":
            found.append(("config", draw(st.sampled_from(CONFIG_KEYS)), draw(st.sampled_from(CONFIG_VALUES))))
        elif kind == "architecture":
            found.append(("architecture", _architecture(draw), draw(st.sampled_from(["all", "best"]))))
        elif kind == "blob":
            table = draw(st.sampled_from([("checkpoints", "state"), ("models", "weights"), ("ensemble", "weights")]))
            found.append(("blob", *table, _blob(draw), draw(st.integers(0, 400))))
        elif kind == "bytes":
            found.append(("bytes", draw(st.integers(0, 2**20)), draw(st.binary(min_size=1, max_size=64)),
                          draw(st.booleans())))
        elif kind == "header":
            offset = draw(st.sampled_from([16, 18, 19, 20, 21, 24, 28, 32, 40, 44, 48, 52, 56, 60, 92, 96]))
            found.append(("header", offset, draw(st.binary(min_size=1, max_size=4))))
        elif kind == "truncate":
            found.append(("truncate", draw(st.integers(0, 100)) / 100))
        elif kind == "wal":
            found.append(("wal", draw(st.binary(min_size=0, max_size=5000))))
        elif kind == "children":
            found.append(("children", draw(st.sampled_from(["truncate", "garbage", "inflate", "delete", "empty"]))))
        else:  # the data file of a study searched on one (the others have none)
            hows = ["delete", "append a row", "truncate", "garbage", "folder"]
            found.append(("data file", draw(st.sampled_from(hows))))
    return tuple(found)


def _writable(db: sqlite3.Connection) -> None:
    """Drop the NOT NULL constraints (as a hand-edited or foreign file may lack them)."""
    db.execute("PRAGMA writable_schema = ON")
    db.execute("UPDATE sqlite_master SET sql = replace(sql, 'NOT NULL', '') WHERE type = 'table'")
    db.execute("PRAGMA writable_schema = OFF")


def _has(db: sqlite3.Connection, table: str) -> bool:
    return db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)).fetchone() is not None


def _rows(where: str) -> str:
    return {
        "all": "1",
        "first": "rowid = (SELECT min(rowid) FROM {t})",
        "last": "rowid = (SELECT max(rowid) FROM {t})",
        "odd": "rowid % 2 = 1",
        "best": "number = (SELECT number FROM trials ORDER BY reward DESC LIMIT 1)",
    }[where]


def _set(config: dict, keys: tuple, value: object) -> object:
    if not keys:
        return value
    node = config
    for key in keys[:-1]:
        if not isinstance(node.get(key), dict):
            node[key] = {}
        node = node[key]
    node[keys[-1]] = value
    return config


def apply(study: Path, damages: tuple) -> None:
    """Damage the study file (and its companions) at ``study`` as ``damages`` say."""
    sql = [d for d in damages if d[0] in ("delete", "column", "meta", "config", "architecture", "blob")]
    if sql:
        with contextlib.closing(sqlite3.connect(study, isolation_level=None)) as db:
            _writable(db)
        with contextlib.closing(sqlite3.connect(study)) as db, db:
            for kind, *args in sql:
                if kind == "delete":
                    table, where = args
                    if table == "meta":
                        db.execute("DELETE FROM meta WHERE key = ?", (where,))
                    elif _has(db, table):  # the ensemble table: only in a study that built an ensemble
                        db.execute(f"DELETE FROM {table} WHERE " + _rows(where).format(t=table))
                elif kind == "column":
                    column, value, where = args
                    with contextlib.suppress(sqlite3.IntegrityError):  # e.g. two trials given one number
                        db.execute(f"UPDATE trials SET {column} = ? WHERE " + _rows(where).format(t="trials"), (value,))
                elif kind == "meta":
                    db.execute("UPDATE meta SET value = ? WHERE key = ?", (args[1], args[0]))
                elif kind == "config":
                    row = db.execute("SELECT value FROM meta WHERE key = 'config'").fetchone()
                    with contextlib.suppress(TypeError, ValueError, AttributeError):
                        config = json.loads(row[0])
                        db.execute("UPDATE meta SET value = ? WHERE key = 'config'",
                                   (json.dumps(_set(config, *args)),))
                elif kind == "architecture":
                    text, where = args
                    db.execute("UPDATE trials SET architecture = ? WHERE " + _rows(where), (text,))
                elif _has(db, args[0]):
                    table, column, blob, cut = args
                    if blob is None:
                        db.execute(f"UPDATE {table} SET {column} = substr({column}, 1, ?)", (cut,))
                    else:
                        db.execute(f"UPDATE {table} SET {column} = ?", (blob,))
    for kind, *args in damages:
        size = study.stat().st_size
        if kind == "bytes":
            offset, data, page_aligned = args
            offset = offset % size if size else 0  # a file truncated to nothing is written from its start
            if page_aligned:  # a whole page of random-looking bytes
                offset -= offset % 4096
                data = (data * (4096 // len(data) + 1))[:4096]
            with open(study, "r+b") as file:
                file.seek(offset)
                file.write(data)
        elif kind == "header":
            with open(study, "r+b") as file:
                file.seek(args[0])
                file.write(args[1])
        elif kind == "truncate":
            os.truncate(study, int(size * args[0]))
        elif kind == "wal":
            Path(f"{study}-wal").write_bytes(args[0])
        elif kind == "children":
            _damage_children(Path(f"{study}.children"), args[0])
        elif kind == "data file":
            _damage_data(study, args[0])


def _damage_data(study: Path, how: str) -> None:
    """Change the data file the study at ``study`` was searched on, if it has one."""
    try:  # the file may be damaged already, or its config
        with contextlib.closing(sqlite3.connect(f"file:{study}?mode=ro", uri=True)) as db:
            config = json.loads(db.execute("SELECT value FROM meta WHERE key = 'config'").fetchone()[0])
        data = Path(config["task"]["path"])
    except (sqlite3.Error, TypeError, ValueError, LookupError):
        return
    if not data.is_file():
        return
        if how == "delete":
            data.unlink()
        elif how == "append a row":
            data.write_text(data.read_text() + "0.5,0.5,0.5,yes\n")
        elif how == "truncate":
            data.write_bytes(data.read_bytes()[:40])
        elif how == "garbage":
            data.write_bytes(b"\xff\xfe" * 64)
        else:
            data.unlink()
            data.mkdir()


def _damage_children(folder: Path, how: str) -> None:
    files = sorted(folder.glob("*")) if folder.is_dir() else []
    if how == "delete":
        for file in files:
            file.unlink()
        return
    for file in files[:2]:
        data = file.read_bytes()
        if how == "truncate":
            file.write_bytes(data[: len(data) // 2])
        elif how == "garbage":
            file.write_bytes(b"\xff" * len(data))
        elif how == "inflate":  # safetensors: the header's length, an 8-byte little-endian integer, made huge
            file.write_bytes((2**62).to_bytes(8, "little") + data[8:])
        else:
            file.write_bytes(b"")


@fuzz_settings(EXAMPLES)
@given(
    kind=st.sampled_from(["mlp", "reinforce", "data"]),
    damages=damage(),
    command=st.sampled_from(COMMANDS),
)
def test_tampered_studies(
    kind: str, damages: tuple, command: list, library: dict[str, Path], case_folder: Folder
) -> None:
    """A damaged study is read, reported on, exported or resumed, or refused in one line, never crashing."""
    with case_folder() as folder:
        refs = materialise(library, kind, "study.db", folder)
        apply(folder / "study.db", damages)
        check_case(command, folder, refs, may_change=lambda rel: command[0] in ("resume", "sample") and _resumed(rel))


def _resumed(rel: str) -> bool:
    """What a resume of study.db (or a sample into it) writes: the study (hard.db is the same file) and its
    saved children; a plot and its numbers are new files."""
    return rel in ("study.db", "hard.db", "study.db.children") or rel.startswith("study.db.children/")

"""Where a command may write: never over a study, its companion files or its data.

A report, a plot, an export folder or a comparison's results are written to
paths the user names or that are derived from a study's name. Each such path is
checked here before anything is written: it must not be, or resolve to (through
a symlink or a hard link), any file the command reads (the study file, its
``-wal``/``-shm``/``-journal``, its ``.children`` folder, its data file), nor
any other study file. The check is cheap and runs before any slow work.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from archsearch.errors import ArchsearchError

#: the files SQLite keeps beside a study
SQLITE_COMPANIONS = ("-wal", "-shm", "-journal")
#: those, and the folder of saved children
COMPANIONS = (*SQLITE_COMPANIONS, ".children")
_SQLITE_HEADER = b"SQLite format 3\x00"


def study_paths(study: str | os.PathLike) -> list[Path]:
    """A study file and the companions that belong to it (present or not)."""
    path = Path(study)
    return [path, *(Path(f"{path}{suffix}") for suffix in COMPANIONS)]


def default_output(study: str | os.PathLike, suffix: str) -> Path:
    """``STUDY`` with ``suffix`` instead of its own; ``STUDY + suffix`` when that would be the study itself
    (a study named ``x.html`` gets the report ``x.html.html``)."""
    path = Path(study)
    candidate = path.with_suffix(suffix) if path.suffix else path.with_name(path.name + suffix)
    return path.with_name(path.name + suffix) if candidate == path else candidate


def check_output_file(out: Path, protected: Iterable[Path], what: str) -> None:
    """Refuse, with one line naming ``what`` (a flag), a file path that would overwrite something read.

    ``protected`` are the paths the command reads; ``out`` may not be one of them, a link to one, a path
    inside a protected folder, an existing directory, or any other study file.
    """
    if not out.name or out.name in (".", ".."):
        raise ArchsearchError(f"{what}: {str(out)!r} names a folder, not a file")
    _check_not_protected(out, protected, what)
    if out.is_dir():
        raise ArchsearchError(f"{what}: {out} is a directory; name a file")
    if out.exists() and not out.is_file():  # a FIFO or a device: reading or writing it may never end
        raise ArchsearchError(f"{what}: {out} is not a regular file")
    if out.exists() and _is_sqlite(out):
        raise ArchsearchError(f"{what}: {out} is a SQLite database (a study?); archsearch never writes over one")
    parent = out.parent if str(out.parent) else Path(".")
    if parent.exists() and not parent.is_dir():
        raise ArchsearchError(f"{what}: {parent} is not a directory")


def check_output_dir(out: Path, names: Iterable[str], protected: Iterable[Path], what: str) -> None:
    """Refuse a folder that is, or holds files named ``names`` that are, something the command reads."""
    protected = list(protected)
    _check_not_protected(out, protected, what)
    if out.exists() and not out.is_dir():
        raise ArchsearchError(f"{what}: {out} is a file, not a folder")
    for name in names:
        check_output_file(out / name, protected, what)


def _check_not_protected(out: Path, protected: Iterable[Path], what: str) -> None:
    target = out.resolve()
    for path in protected:
        if not path.exists() and not path.is_symlink():
            if target == path.resolve():
                raise ArchsearchError(f"{what}: {out} is {path}, a file of this study; choose another path")
            continue
        same = target == path.resolve() or (out.exists() and os.path.samefile(out, path))
        if same:
            link = "" if os.path.abspath(out) == os.path.abspath(path) else f" (through a link to {path})"
            raise ArchsearchError(f"{what}: {out} is read by this command{link}; archsearch never writes over it")
        if path.is_dir() and path.resolve() in target.parents:
            raise ArchsearchError(f"{what}: {out} is inside {path}, which this command reads; choose another path")


def _is_sqlite(path: Path) -> bool:
    try:
        with open(path, "rb") as file:
            return file.read(len(_SQLITE_HEADER)) == _SQLITE_HEADER
    except OSError:
        return False

"""Run ``archsearch.cli.main`` in-process on one generated case and check the house rules.

A case runs in its own folder (the working directory while it runs) holding copies of the studies
and data files it names. :func:`check_case` runs it and asserts what every command promises: exit
code 0 or 2, one line on stderr when it is 2, no traceback and no exception out of ``main``, nothing
changed by a refused command, and no file it reads written over. Guards turn a case that would start
an unbounded number of worker processes or threads, or run far too long, into a failure instead of
a hung test run.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import shutil
import signal
import sqlite3
import sys
import traceback
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from archsearch.cli import main

#: a generous wall-clock limit per case; a case that reaches it hangs, it is not merely slow
CASE_SECONDS = float(os.environ.get("ARCHSEARCH_FUZZ_CASE_SECONDS", "120"))
#: worker processes and threads a case may start: well above what any valid case asks for, far below
#: what an unchecked size would start
MAX_WORKERS = 16
MAX_THREADS = 256
#: SQLite's own files beside a study come and go with connections; they are not the study's content
TRANSIENT = ("-wal", "-shm", "-journal")
_WARNING = re.compile(r"^archsearch [\w-]+: warning:")
#: a progress line, as a command writes one when stderr is not a terminal (study/_progress.py)
_PROGRESS = re.compile(r"^(step|runs) \d+/\d+ .*elapsed \d+:\d\d:\d\d  eta ")


class Guarded(BaseException):
    """Raised by a guard inside a case: not an ``Exception``, so the code under test cannot swallow it."""


@dataclass(frozen=True)
class Ref:
    """A path in a generated argument vector, resolved in the case's folder (see :func:`materialise`)."""

    key: str


@dataclass
class Outcome:
    """What one run of ``main`` did."""

    argv: list[str]
    code: object = None
    out: str = ""
    err: str = ""
    escaped: str | None = None  # the traceback of an exception that left ``main``
    guards: list[str] = field(default_factory=list)

    def error_lines(self) -> list[str]:
        """stderr without empty lines, archsearch's one-line warnings and progress lines."""
        skipped = (_WARNING, _PROGRESS)
        return [line for line in self.err.splitlines() if line.strip() and not any(p.match(line) for p in skipped)]

    def last_line(self) -> str:
        """The line to quote about a failure: the escaped exception's, or stderr's last."""
        text = self.escaped or self.err
        lines = [line for line in text.splitlines() if line.strip()]
        return lines[-1] if lines else ""


@contextlib.contextmanager
def _guards(tripped: list[str]) -> Iterator[None]:
    from archsearch.evaluation._workers import WorkerPool

    pool_init = WorkerPool.__init__
    set_threads = torch.set_num_threads

    def bounded_pool(self, evaluator, size: int) -> None:  # noqa: ANN001
        if size > MAX_WORKERS:
            tripped.append(f"would start {size} worker processes")
            raise Guarded(tripped[-1])
        pool_init(self, evaluator, size)

    def bounded_threads(count: int) -> None:
        if count > MAX_THREADS:
            tripped.append(f"would run PyTorch on {count} threads")
            raise Guarded(tripped[-1])
        set_threads(count)

    def too_long(signum: int, frame: object) -> None:
        tripped.append(f"still running after {CASE_SECONDS:g} s")
        raise Guarded(tripped[-1])

    WorkerPool.__init__ = bounded_pool
    torch.set_num_threads = bounded_threads
    previous = signal.signal(signal.SIGALRM, too_long)
    signal.setitimer(signal.ITIMER_REAL, CASE_SECONDS)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        WorkerPool.__init__ = pool_init
        torch.set_num_threads = set_threads


#: the warning filters a fresh Python process starts with (see the warnings module's documentation)
_PYTHON_FILTERS = (
    ("default", DeprecationWarning, "__main__"),
    ("ignore", DeprecationWarning, ""),
    ("ignore", PendingDeprecationWarning, ""),
    ("ignore", ImportWarning, ""),
    ("ignore", ResourceWarning, ""),
)


@contextlib.contextmanager
def _fresh_warnings() -> Iterator[None]:
    """Warnings as a fresh ``archsearch`` process shows them: Python's default filters, each warning once,
    printed to stderr (pytest would otherwise record them out of sight); restored afterwards, with the
    ``showwarning`` that ``main`` installs."""

    def show(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
        (file or sys.stderr).write(warnings.formatwarning(message, category, filename, lineno, line))

    with warnings.catch_warnings():
        warnings.resetwarnings()
        for action, category, module in reversed(_PYTHON_FILTERS):
            warnings.filterwarnings(action, category=category, module=module)
        warnings.showwarning = show
        yield


#: a context manager factory wrapped around one run of ``main`` (an interrupt, say)
Around = Callable[[], contextlib.AbstractContextManager]
#: the ``case_folder`` fixture: a fresh folder per generated case
Folder = Callable[[], contextlib.AbstractContextManager[Path]]


def run_cli(argv: Sequence[str], cwd: Path, around: Around | None = None) -> Outcome:
    """``main(argv)`` in ``cwd`` with stdout and stderr captured as a UTF-8 terminal would encode them
    (strictly, as Python does outside the C locale); ``around`` wraps the call (an interrupt, say)."""
    outcome = Outcome([str(arg) for arg in argv])
    out = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="strict", write_through=True)
    err = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="backslashreplace", write_through=True)
    here = os.getcwd()
    threads = torch.get_num_threads()
    os.chdir(cwd)
    try:
        with (
            contextlib.redirect_stdout(out),
            contextlib.redirect_stderr(err),
            _guards(outcome.guards),
            _fresh_warnings(),
        ):
            try:
                with around() if around else contextlib.nullcontext():
                    outcome.code = main(outcome.argv)
            except SystemExit as exc:  # argparse: --help, usage errors
                outcome.code = exc.code
    except BaseException:  # noqa: BLE001 -- anything that leaves main is the finding
        outcome.escaped = traceback.format_exc()
    finally:
        os.chdir(here)
        torch.set_num_threads(threads)
    outcome.out = out.buffer.getvalue().decode("utf-8", "replace")
    outcome.err = err.buffer.getvalue().decode("utf-8", "replace")
    return outcome


# -- fingerprints ----------------------------------------------------------------------------------


def tree(root: Path) -> dict[str, str]:
    """Every file, folder and link under ``root`` (links not followed) with its fingerprint; SQLite's
    transient companions left out."""
    found: dict[str, str] = {}
    for folder, dirs, files in os.walk(root):
        for name in sorted(dirs + files):
            path = Path(folder) / name
            if name.endswith(TRANSIENT):
                continue
            rel = str(path.relative_to(root))
            if path.is_symlink():
                found[rel] = "link:" + os.readlink(path)
            elif path.is_dir():
                found[rel] = "dir"
            else:
                found[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def _changes(before: dict[str, str], after: dict[str, str], keep: Callable[[str], bool]) -> list[str]:
    changed = []
    for rel in sorted(set(before) | set(after)):
        if not keep(rel) or before.get(rel) == after.get(rel):
            continue
        what = "removed" if rel not in after else "created" if rel not in before else "changed"
        changed.append(f"{rel} {what}")
    return changed


# -- the case --------------------------------------------------------------------------------------


def resolve(argv: Sequence[object], refs: dict[str, Path | str]) -> list[str]:
    """The argument vector with each :class:`Ref` replaced by its path in the case's folder."""
    return [str(refs[arg.key]) if isinstance(arg, Ref) else str(arg) for arg in argv]


def check_case(
    argv: Sequence[object],
    folder: Path,
    refs: dict[str, Path | str],
    may_change: Callable[[str], bool] = lambda rel: False,
    allowed: tuple[int, ...] = (0, 2),
    around: Around | None = None,
) -> Outcome:
    """Run one case and assert the house rules; raise AssertionError naming the case and what broke.

    ``may_change(rel)`` says which existing paths (relative to ``folder``) a successful command may
    change: the study that ``search``/``resume``/``sample`` write. A refused command (exit 2) changes
    nothing at all in ``folder``; a successful one only what ``may_change`` allows, plus new files.
    """
    args = resolve(argv, refs)
    before = tree(folder)
    outcome = run_cli(args, folder, around)
    after = tree(folder)
    problems = []
    if outcome.escaped:
        problems.append("an exception left main: " + outcome.last_line())
    if outcome.guards:
        problems.append("; ".join(outcome.guards))
    if outcome.code not in allowed:
        problems.append(f"exit code {outcome.code!r}, expected one of {allowed}")
    if "Traceback" in outcome.out + outcome.err:
        problems.append("a traceback in the output: " + outcome.last_line())
    if outcome.code in (2, 130) and len(outcome.error_lines()) != 1:
        problems.append(f"{len(outcome.error_lines())} lines on stderr, expected one")
    if outcome.code in (0, 130):  # an interrupted search or resume keeps what it finished
        changed = _changes(before, after, lambda rel: rel in before and not may_change(rel))
    else:
        changed = _changes(before, after, lambda rel: True)
    if changed:
        verb = "a refused command changed" if outcome.code != 0 else "changed"
        problems.append(f"{verb}: {', '.join(changed[:6])}")
    if problems:
        shown = " ".join(_quote(arg) for arg in args)
        raise AssertionError(
            f"archsearch {shown}\n  -> " + "\n  -> ".join(problems) + f"\n  stderr: {outcome.err.strip()[-1500:]}"
            + (f"\n{outcome.escaped}" if outcome.escaped else "")
        )
    return outcome


def _quote(arg: str) -> str:
    return arg if arg and re.fullmatch(r"[\w@%+=:,./-]+", arg) else repr(arg)


# -- studies ---------------------------------------------------------------------------------------

#: the studies every test module copies from: built once per session by ``build_library``
LIBRARY_COMMANDS = {
    "mlp": ["search", "--task", "moons", "--strategy", "random", "--steps", "2", "--children-per-step", "3"],
    "reinforce": ["search", "--task", "moons", "--strategy", "reinforce", "--steps", "2", "--children-per-step", "2",
                  "--save-children"],
    "data": ["search", "--data", "data.csv", "--target", "label", "--strategy", "evolution", "--steps", "2",
             "--children-per-step", "2"],
    "sample": ["sample", "--n", "2", "--plot", "sample.png"],
}


def write_moons_csv(path: Path, rows: int = 60) -> Path:
    """A small two-class CSV with a text label column, like a user's own table."""
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.normal(size=(rows, 3))
    lines = ["a,b,c,label"]
    for values in x:
        lines.append(",".join(f"{v:.4f}" for v in values) + ("," + ("yes" if values[0] > 0 else "no")))
    path.write_text("\n".join(lines) + "\n")
    return path


def build_library(root: Path) -> dict[str, Path]:
    """The studies the fuzz tests copy from (each a real, finished study) and the data file of one."""
    write_moons_csv(root / "data.csv")
    studies = {}
    for kind, argv in LIBRARY_COMMANDS.items():
        path = root / f"{kind}.db"
        outcome = run_cli([*argv, "--study", str(path), "--max-epochs", "2", "--quiet"]
                          if kind != "sample" else [*argv, "--study", str(path), "--quiet"], root)
        assert outcome.code == 0 and not outcome.escaped, (kind, outcome.err, outcome.escaped)
        studies[kind] = path
    return studies


def copy_study(source: Path, target: Path) -> None:
    """A copy of a study (and its saved children) at ``target``; a data file it names is copied beside it
    and the copy's config points there, so a case never touches the library's files."""
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    children = Path(f"{source}.children")
    if children.is_dir():
        shutil.copytree(children, Path(f"{target}.children"))
    with contextlib.closing(sqlite3.connect(target)) as db:
        config = json.loads(db.execute("SELECT value FROM meta WHERE key = 'config'").fetchone()[0])
        data = config.get("task", {}).get("path")
        if data:
            copy = target.parent / Path(data).name
            shutil.copyfile(data, copy)
            config["task"]["path"] = str(copy.resolve())
            with db:
                db.execute("UPDATE meta SET value = ? WHERE key = 'config'", (json.dumps(config, sort_keys=True),))


#: names a study may have in a case: a study called like a report or a plot must not be overwritten by one
STUDY_NAMES = ("study.db", "study.html", "study.png", "study", "sub dir/ré sumé.db", "study.db.html")


def materialise(library: dict[str, Path], kind: str, name: str, folder: Path) -> dict[str, Path | str]:
    """Copy study ``kind`` into ``folder`` as ``name`` and lay out the hostile paths around it.

    Returns the :class:`Ref` keys: the study, links to it, its companions, its data file, a sample
    study, a folder, missing and dangling paths, special files.
    """
    study = folder / name
    copy_study(library[kind], study)
    sample = folder / "other-sample.db"
    copy_study(library["sample"], sample)
    (folder / "adir").mkdir()
    os.symlink(study.name if study.parent == folder else study, folder / "link.db")
    os.link(study, folder / "hard.db")
    os.symlink("nowhere/x.out", folder / "dangling.out")
    os.symlink("loop.out", folder / "loop.out")
    data = folder / "data.csv"
    if not data.exists():
        write_moons_csv(data)
    refs: dict[str, Path | str] = {
        "study": study.relative_to(folder),
        "abs_study": study,
        "link": Path("link.db"),
        "hard": Path("hard.db"),
        "wal": Path(f"{study.relative_to(folder)}-wal"),
        "shm": Path(f"{study.relative_to(folder)}-shm"),
        "children": Path(f"{study.relative_to(folder)}.children"),
        "in_children": Path(f"{study.relative_to(folder)}.children") / "x.out",
        "data": Path("data.csv"),
        "sample": Path("other-sample.db"),
        "dir": Path("adir"),
        "in_dir": Path("adir") / "out.out",
        "missing": Path("missing") / "deeper" / "out.out",
        "missing_study": Path("missing.db"),
        "dangling": Path("dangling.out"),
        "loop": Path("loop.out"),
        "fresh": Path("fresh.out"),
        "fresh_db": Path("fresh.db"),
        "fresh_html": Path("fresh.html"),
        "fresh_png": Path("fresh.png"),
        "unicode_db": Path("résumé ☃.db"),
        "in_dir_db": Path("adir") / "new.db",
        "in_dir_png": Path("adir") / "plot.png",
        "unicode": Path("résumé ☃.out"),
        "undecodable": Path("\udcff.out"),
        "newline": Path("new\nline.out"),
        "dot": Path("."),
        "empty": "",
        "dev_null": Path("/dev/null"),
        "dev_full": Path("/dev/full"),
    }
    return refs

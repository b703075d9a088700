"""Ctrl-C at a generated point of a search or a resume: at the Nth call into archsearch's own code.

Each case: exit 130 (or 0 if the command finished first), one line, no traceback; nothing it had
not written is changed; then ``resume`` finishes the study, and it holds every trial of its budget.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import archsearch

from ._harness import Folder, Ref, check_case, run_cli, write_moons_csv
from .test_arguments import fuzz_settings

pytestmark = pytest.mark.fuzz

#: generated cases; docs/hostile-input.md reports it
EXAMPLES = 12
_PACKAGE = str(Path(archsearch.__file__).parent)
_COMMANDS = ("_search", "_resume")  # the command line's handlers: counting starts in one


def interrupt_at(call: int) -> Callable[[], contextlib.AbstractContextManager]:
    """A wrapper that raises KeyboardInterrupt (as Ctrl-C would) at the ``call``-th call of a function of
    archsearch once the command has started (argument parsing excepted: any Python program dies with a
    traceback there); counted, so a case is the same on every run."""

    @contextlib.contextmanager
    def wrapper() -> Iterator[None]:
        count = 0
        started = False

        def trace(frame, event: str, arg: object) -> None:  # noqa: ANN001
            nonlocal count, started
            # not in a generator: resuming one to close it is a call too, and Python only prints an interrupt
            # raised there ("Exception ignored in"), in any program
            if event != "call" or frame.f_code.co_flags & inspect.CO_GENERATOR:
                return None
            if not frame.f_code.co_filename.startswith(_PACKAGE):
                return None
            started = started or frame.f_code.co_name in _COMMANDS
            if started:
                count += 1
                if count == call:
                    sys.settrace(None)
                    raise KeyboardInterrupt
            return None

        previous = sys.gettrace()
        sys.settrace(trace)
        try:
            yield
        finally:
            sys.settrace(previous)

    return wrapper


SEARCHES = (
    ["search", "--strategy", "random", "--steps", "2", "--children-per-step", "2"],
    ["search", "--strategy", "reinforce", "--steps", "2", "--children-per-step", "2", "--save-children"],
    ["search", "--strategy", "evolution", "--steps", "2", "--children-per-step", "2", "--asynchronous"],
    ["search", "--data", Ref("data"), "--target", "label", "--strategy", "tpe", "--steps", "2",
     "--children-per-step", "2"],
    ["search", "--space", "settings", "--max-layers", "2", "--strategy", "pbt", "--strategy-settings",
     "population_size=2,interval=1,rounds=2"],
    ["search", "--space", "settings", "--max-layers", "2", "--strategy", "miha", "--strategy-settings",
     "m=1,pop_size=1,n=1,k=1,c=1"],
)


@fuzz_settings(EXAMPLES)
@given(search=st.sampled_from(SEARCHES), call=st.integers(1, 4000), again=st.integers(0, 3000))
def test_interrupted_search_resumes_whole(search: list, call: int, again: int, case_folder: Folder) -> None:
    """Ctrl-C anywhere in a search (and, with ``again``, in its first resume) loses nothing finished."""
    with case_folder() as folder:
        write_moons_csv(folder / "data.csv")
        refs = {"data": Path("data.csv"), "study": Path("s.db")}
        argv = [*search, "--max-epochs", "1", "--quiet", "--study", Ref("study")]
        first = check_case(argv, folder, refs, allowed=(0, 130), around=interrupt_at(call))
        if not (folder / "s.db").exists():
            assert first.code == 130
            return
        if again:
            check_case(["resume", Ref("study"), "--quiet"], folder, refs, may_change=lambda rel: True,
                       allowed=(0, 130), around=interrupt_at(again))
        check_case(["resume", Ref("study"), "--quiet"], folder, refs, may_change=lambda rel: True, allowed=(0,))
        listed = run_cli(["trials", "s.db", "--json"], folder)
        assert listed.code == 0, listed.err
        assert len(json.loads(listed.out)) == 4, listed.out

"""Progress on stderr: a rich bar on a terminal, plain lines at a bounded rate anywhere else (issue 23).

The lines' clock is a fake one that the tests move by hand: no test sleeps or reads the wall clock.
"""

import contextlib
import io
import re

import pytest

from archsearch import Study
from archsearch.study._progress import LINE_INTERVAL, ProgressBar, ProgressLines, progress_for

from ..conftest import FakeEvaluator, fraction_of_wide_layers


class Clock:
    """A clock that stands still until a test moves it."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Terminal(io.StringIO):
    """A stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def counts(text: str, label: str = "step") -> list[int]:
    """The count on each line of ``text``, each line checked to be a progress line."""
    found = [re.fullmatch(rf"{label} (\d+)/\d+  .*elapsed \d+:\d\d:\d\d  eta (\d+:\d\d:\d\d|-)", line)
             for line in text.splitlines()]  # fmt: skip
    assert all(found), text
    return [int(match.group(1)) for match in found]


def test_a_line_shows_the_step_the_rewards_the_time_taken_and_the_time_left():
    clock, stream = Clock(), io.StringIO()
    with ProgressLines(500, stream=stream, clock=clock) as progress:
        clock.now = 31.0
        progress.update(12, 0.90123, 0.96)
    # 31 s for 12 steps: 488 more take 1260.7 s
    assert stream.getvalue() == "step 12/500  mean reward 0.9012  best 0.9600  elapsed 0:00:31  eta 0:21:01\n"


def test_a_resumed_run_counts_its_eta_from_the_steps_it_did_itself():
    clock, stream = Clock(), io.StringIO()
    with ProgressLines(10, completed=4, stream=stream, clock=clock) as progress:
        clock.now = 4000.0
        progress.update(5, 0.5, None)
    assert stream.getvalue() == "step 5/10  mean reward 0.5000  best -  elapsed 1:06:40  eta 5:33:20\n"


def test_lines_come_at_most_once_an_interval():
    clock, stream = Clock(), io.StringIO()
    with ProgressLines(20, stream=stream, clock=clock, interval=5.0) as progress:
        for step in range(1, 21):  # a step a second
            clock.now = float(step)
            progress.update(step, 0.5, 0.5)
    assert counts(stream.getvalue()) == [1, 6, 11, 16, 20]


def test_the_first_and_the_last_step_always_print():
    clock, stream = Clock(), io.StringIO()
    with ProgressLines(3, stream=stream, clock=clock, interval=5.0) as progress:
        for step in (1, 2, 3):  # all within one interval
            progress.update(step, 0.5, 0.5)
    assert counts(stream.getvalue()) == [1, 3]


def test_a_run_that_stops_early_ends_its_lines_with_the_last_step_done():
    clock, stream = Clock(), io.StringIO()
    with pytest.raises(KeyboardInterrupt), ProgressLines(10, stream=stream, clock=clock) as progress:
        for step in (1, 2, 3):
            progress.update(step, 0.5, 0.5)
        raise KeyboardInterrupt
    assert counts(stream.getvalue()) == [1, 3]


def test_runs_of_a_comparison_are_counted_without_rewards():
    clock, stream = Clock(), io.StringIO()
    with ProgressLines(4, stream=stream, clock=clock, label="runs", rewards=False) as progress:
        clock.now = 2.0
        progress.update(1)
    assert stream.getvalue() == "runs 1/4  elapsed 0:00:02  eta 0:00:06\n"


def test_the_interval_is_a_few_seconds():
    assert 1.0 <= LINE_INTERVAL <= 30.0


def test_a_terminal_gets_the_bar_and_anything_else_the_lines():
    assert isinstance(progress_for(3, stream=io.StringIO()), ProgressLines)
    terminal = Terminal()
    bar = progress_for(3, stream=terminal)
    assert isinstance(bar, ProgressBar)
    with bar:
        bar.update(3, 0.5, 0.75)
    assert "3/3" in terminal.getvalue() and "best 0.7500" in terminal.getvalue()
    assert "elapsed" not in terminal.getvalue()  # the bar's own columns, not a line


def test_a_bar_refused_before_its_first_update_erases_itself():
    terminal = Terminal()
    with pytest.raises(ValueError), progress_for(2, stream=terminal, label="runs", rewards=False):
        raise ValueError("refused")  # as compare() refuses its arguments inside the command's bar
    assert terminal.getvalue().endswith("\x1b[1A\x1b[2K")  # back up a line and erase it: only the error stays
    finished = Terminal()
    with pytest.raises(ValueError), progress_for(2, stream=finished, label="runs", rewards=False) as bar:
        bar.update(1)
        raise ValueError("a run failed")
    assert not finished.getvalue().endswith("\x1b[2K")  # the bar stays: it shows how far the runs came


def test_progress_for_writes_to_stderr_by_default():
    err = io.StringIO()
    with contextlib.redirect_stderr(err), progress_for(2, label="runs", rewards=False) as progress:
        progress.update(1)
    assert counts(err.getvalue(), "runs") == [1]


def _run(moons, progress, stderr):
    evaluator = FakeEvaluator(moons, fraction_of_wide_layers)
    study = Study.create(None, moons, steps=3, children_per_step=2, seed=0, evaluator=evaluator)
    with study, contextlib.redirect_stderr(stderr):
        study.run(progress=progress)
    return stderr.getvalue()


def test_run_with_progress_writes_lines_when_stderr_is_not_a_terminal(moons):
    shown = counts(_run(moons, True, io.StringIO()))
    # a fake step takes milliseconds: the steps between the first and the last fall within one interval,
    # unless the machine stalls for seconds
    assert shown[0] == 1 and shown[-1] == 3 and shown == sorted(set(shown))


@pytest.mark.parametrize("progress", [None, False])
def test_run_by_default_or_without_progress_writes_nothing_when_stderr_is_not_a_terminal(moons, progress):
    assert _run(moons, progress, io.StringIO()) == ""


@pytest.mark.parametrize("progress", [None, True])
def test_run_shows_the_bar_on_a_terminal(moons, progress):
    shown = _run(moons, progress, Terminal())
    assert "3/3" in shown and "elapsed" not in shown

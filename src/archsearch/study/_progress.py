"""Progress of a running search on stderr: a rich bar on a terminal, plain lines anywhere else.

A log file, ``nohup``, a CI job or ``2>log`` gets one line per update, at most one every
:data:`LINE_INTERVAL` seconds (the first and the last always), so that it shows how far a search has
come without filling the log with a redrawn bar. Both kinds have the same interface: enter, ``update``
after each step, exit. Progress never goes to stdout, which commands keep for their results.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from types import TracebackType
from typing import TextIO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

#: Seconds between two progress lines on a stream that is not a terminal. A step of a real search
#: takes seconds to minutes, so most steps still get their line, while a fast one (a table lookup, a
#: tiny task) writes a dozen lines a minute rather than hundreds a second.
LINE_INTERVAL = 5.0


def progress_for(
    total: int, completed: int = 0, stream: TextIO | None = None, *, label: str = "step", rewards: bool = True
) -> ProgressBar | ProgressLines:
    """The progress for ``stream`` (default: stderr): a bar on a terminal or in a notebook, lines otherwise.

    ``label`` names what is counted (steps of a study, runs of a comparison); ``rewards`` shows the
    mean reward of the last update and the best so far.
    """
    stream = sys.stderr if stream is None else stream
    live = stream.isatty() or Console(file=stream).is_jupyter  # a notebook shows rich's bar as a widget
    kind = ProgressBar if live else ProgressLines
    return kind(total, completed, stream, label=label, rewards=rewards)


class ProgressBar:
    """A bar that redraws itself in place: count, mean reward of the last step, best so far, times."""

    def __init__(
        self, total: int, completed: int = 0, stream: TextIO | None = None, *, label: str = "step",
        rewards: bool = True,
    ) -> None:  # fmt: skip
        shown = [TextColumn("mean reward {task.fields[mean]}"), TextColumn("best {task.fields[best]}")]
        self._progress = Progress(
            TextColumn(label),
            MofNCompleteColumn(),
            BarColumn(),
            *(shown if rewards else []),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=Console(file=sys.stderr if stream is None else stream),
            refresh_per_second=4,  # a redraw holds the interpreter lock for a millisecond or so
        )
        self._task = self._progress.add_task("search", total=total, completed=completed, mean="-", best="-")
        self._updated = False

    def update(self, completed: int, mean_reward: float | None = None, best_reward: float | None = None) -> None:
        self._progress.update(self._task, completed=completed, mean=_reward(mean_reward), best=_reward(best_reward))
        self._updated = True

    def __enter__(self) -> ProgressBar:
        self._progress.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is not None and not self._updated:  # refused or failed at once: its one line, no empty bar
            self._progress.live.transient = True
        self._progress.stop()


class ProgressLines:
    """One line per update, at most one every ``interval`` seconds of ``clock``, written to ``stream`` and
    flushed: ``step 12/500  mean reward 0.9012  best 0.9600  elapsed 0:00:31  eta 0:04:10``.

    The first update and the one that reaches ``total`` always print; an update held back by the rate
    limit prints on exit if no later one did, so the log ends where the run stopped.
    """

    def __init__(
        self, total: int, completed: int = 0, stream: TextIO | None = None, *, label: str = "step",
        rewards: bool = True, clock: Callable[[], float] = time.monotonic, interval: float = LINE_INTERVAL,
    ) -> None:  # fmt: skip
        self._total, self._first, self._stream = total, completed, stream
        self._label, self._rewards, self._clock, self._interval = label, rewards, clock, interval
        self._started = clock()
        self._printed: float | None = None  # when the last line was written
        self._held: str | None = None  # the latest line the rate limit kept back

    def update(self, completed: int, mean_reward: float | None = None, best_reward: float | None = None) -> None:
        now = self._clock()
        self._held = self._line(completed, mean_reward, best_reward, now)
        if self._printed is None or completed >= self._total or now - self._printed >= self._interval:
            self._write(now)

    def _line(self, completed: int, mean_reward: float | None, best_reward: float | None, now: float) -> str:
        elapsed = now - self._started
        done = completed - self._first
        eta = _duration(elapsed / done * (self._total - completed)) if done > 0 else "-"
        rewards = f"  mean reward {_reward(mean_reward)}  best {_reward(best_reward)}" if self._rewards else ""
        return f"{self._label} {completed}/{self._total}{rewards}  elapsed {_duration(elapsed)}  eta {eta}"

    def _write(self, now: float) -> None:
        stream = sys.stderr if self._stream is None else self._stream
        print(self._held, file=stream, flush=True)
        self._printed, self._held = now, None

    def __enter__(self) -> ProgressLines:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._held is not None:
            self._write(self._clock())


def _reward(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _duration(seconds: float) -> str:
    """``h:mm:ss``, as rich's bar shows times."""
    minutes, secs = divmod(max(0, round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"

"""A terminal progress bar for a running study (rich)."""

from __future__ import annotations

import sys
from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


class ProgressBar:
    """Shows step, mean reward of the last step and best reward so far, on stderr."""

    def __init__(self, total: int, completed: int = 0, console: Console | None = None) -> None:
        self._progress = Progress(
            TextColumn("step"),
            MofNCompleteColumn(),
            BarColumn(),
            TextColumn("mean reward {task.fields[mean]}"),
            TextColumn("best {task.fields[best]}"),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=console or Console(file=sys.stderr),
            refresh_per_second=4,  # a redraw holds the interpreter lock for a millisecond or so
        )
        self._task = self._progress.add_task("search", total=total, completed=completed, mean="-", best="-")

    def update(self, completed: int, mean_reward: float, best_reward: float | None) -> None:
        best = "-" if best_reward is None else f"{best_reward:.4f}"
        self._progress.update(self._task, completed=completed, mean=f"{mean_reward:.4f}", best=best)

    def __enter__(self) -> ProgressBar:
        self._progress.start()
        return self

    def __exit__(self, exc_type: type | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._progress.stop()

"""The accuracy distribution of random architectures (the seed paper's Fig. 7).

``n`` architectures drawn uniformly from the space are trained and the
histogram of their validation accuracies is drawn with a Gaussian KDE. The
trials are an ordinary random-search study, so asking again (or for more)
reuses what is already trained.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from archsearch.errors import ArchsearchError

SAMPLE_CHILDREN_PER_STEP = 100  # large steps keep the batched trainer's groups full


@dataclass
class Sample:
    """Validation accuracies of ``n`` random architectures, and the modes of their density."""

    task: str
    accuracies: list[float]
    failed: int
    peaks: list[float]
    trained: int
    seconds: float
    study: Path

    def to_dict(self) -> dict[str, Any]:
        values = np.asarray(self.accuracies)
        return {
            "task": self.task,
            "n": len(self.accuracies) + self.failed,
            "failed": self.failed,
            "trained_now": self.trained,
            "seconds": self.seconds,
            "mean": float(values.mean()) if len(values) else None,
            "quantiles": {str(q): float(np.quantile(values, q)) for q in (0.1, 0.25, 0.5, 0.75, 0.9)}
            if len(values)
            else {},
            "peaks": self.peaks,
            "study": str(self.study),
        }


def density_peaks(values: np.ndarray, min_prominence: float = 0.05) -> list[float]:
    """Modes of the KDE whose prominence is at least ``min_prominence`` of its highest point."""
    from scipy.signal import find_peaks

    from archsearch.experiments._plots import gaussian_kde

    if len(values) < 2 or np.ptp(values) == 0:
        return [float(values[0])] if len(values) else []
    grid = np.linspace(values.min(), values.max(), 1000)
    density = gaussian_kde(values, grid)
    # pad with zeros so that a mode at either end of the range counts as a peak
    padded = np.concatenate([[0.0], density, [0.0]])
    indices, _ = find_peaks(padded, prominence=min_prominence * density.max())
    return [float(grid[i - 1]) for i in indices]


def sample(
    task: str,
    n: int,
    study_path: Path,
    *,
    seed: int = 0,
    trainer: dict[str, Any] | None = None,
    progress: bool | None = None,
    on_step: Callable[[Any], None] | None = None,
) -> Sample:
    """Train ``n`` uniformly random architectures on ``task`` (or reuse those already in the study)."""
    from archsearch.config import SearchConfig
    from archsearch.study import Study

    if n < 1:
        raise ArchsearchError(f"n: must be a positive integer, got {n}")
    per_step = min(n, SAMPLE_CHILDREN_PER_STEP)
    steps = math.ceil(n / per_step)
    started = time.perf_counter()
    if study_path.exists():
        study = Study.open(study_path)
        config = study.config
        if config["strategy"].get("name") != "random" or (config["task"] or {}).get("name") != task:
            study.close()
            raise ArchsearchError(f"{study_path}: not a random sample of task {task!r}; choose another --study")
    else:
        config = SearchConfig(
            task=task,
            strategy={"name": "random", "unique": False},
            evaluator="batched",
            training=dict(trainer or {}),
            steps=steps,
            children_per_step=per_step,
            seed=seed,
        )
        study = Study.create(study_path, config)
    with study:
        before = len(study.trials())
        study.run(steps=max(math.ceil(n / study.children_per_step), study.steps), progress=progress, callback=on_step)
        trials = study.trials()[:n]
        trained = max(0, len(study.trials()) - before)
    accuracies = [t.val_score for t in trials if t.status == "ok"]
    return Sample(
        task=task,
        accuracies=accuracies,
        failed=len(trials) - len(accuracies),
        peaks=density_peaks(np.asarray(accuracies)),
        trained=trained,
        seconds=time.perf_counter() - started,
        study=study_path,
    )


def numbers_path(plot: Path) -> Path:
    """Where :func:`write_sample` puts the numbers of the histogram at ``plot``."""
    return plot.with_suffix(".json") if plot.suffix != ".json" else plot.with_name(plot.name + ".json")


def write_sample(result: Sample, plot: Path) -> Path:
    """The histogram PNG at ``plot`` and its numbers beside it (same name, ``.json``)."""
    from archsearch.experiments._plots import plot_histogram

    plot.parent.mkdir(parents=True, exist_ok=True)
    peaks = ", ".join(f"{p:.3f}" for p in result.peaks)
    title = f"{result.task}: {len(result.accuracies)} random architectures (modes at {peaks})"
    plot_histogram(result.accuracies, plot, title, result.peaks)
    numbers = numbers_path(plot)
    numbers.write_text(json.dumps(result.to_dict(), indent=2) + "\n")
    return numbers

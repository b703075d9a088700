"""PNG figures with matplotlib (drawn off-screen, no display needed)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from archsearch.errors import ArchsearchError

if TYPE_CHECKING:
    from archsearch.experiments._compare import Comparison


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def check_image_path(path: Path, what: str) -> None:
    """Refuse, before any work, a figure path whose suffix names no format matplotlib writes."""
    from matplotlib.backend_bases import FigureCanvasBase

    formats = FigureCanvasBase.get_supported_filetypes()
    if path.suffix.lower().lstrip(".") not in formats:
        raise ArchsearchError(
            f"{what}: {path} is not an image file name matplotlib writes (use .png; also {', '.join(sorted(formats))})"
        )


def _bands(ax: Any, comparison: Comparison, runs_of: Callable[[str], np.ndarray]) -> None:
    """Per strategy, the mean over its runs (``runs_of(name)``: one row per run, one column per query)
    against queries, with the 95 % interval as a band."""
    from archsearch.experiments._compare import _interval

    queries = np.arange(1, comparison.budget + 1)
    for name in comparison.strategies:
        runs = runs_of(name)
        bands = np.array([_interval(runs[:, q]) for q in range(runs.shape[1])])
        (line,) = ax.plot(queries, bands[:, 0], label=f"{name} ({runs.shape[0]} seeds)", linewidth=1.6)
        ax.fill_between(queries, bands[:, 1], bands[:, 2], color=line.get_color(), alpha=0.2, linewidth=0)


def plot_comparison(comparison: Comparison, path: Path) -> None:
    """Mean incumbent score against queries, one line per strategy, with its 95 % band."""

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    _bands(ax, comparison, comparison.curves)
    if comparison.best_value is not None:
        ax.axhline(comparison.best_value, color="black", linestyle=":", linewidth=1, label="benchmark best")
    ax.set_xscale("log")
    ax.set_xlabel("queries (trials)")
    ax.set_ylabel(
        "benchmark metric of the incumbent" if comparison.benchmark else "validation accuracy of the incumbent"
    )
    ax.set_title(f"{comparison.benchmark or comparison.task}: best so far, mean and 95 % interval")
    low = min(
        float(np.nanpercentile(comparison.curves(n)[:, min(9, comparison.budget - 1)], 10))
        for n in comparison.strategies
    )
    high = (
        comparison.best_value
        if comparison.best_value is not None
        else max(float(np.nanmax(comparison.curves(n))) for n in comparison.strategies)
    )
    ax.set_ylim(low, high + 0.05 * (high - low) + 1e-9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_hypervolumes(comparison: Comparison, path: Path) -> None:
    """Mean hypervolume of the front found against queries (a share of the exact front's where known), one
    line per strategy, with its 95 % band."""

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    _bands(ax, comparison, comparison.hypervolumes)
    share = comparison.exact_hypervolume is not None
    if share:
        ax.axhline(1.0, color="black", linestyle=":", linewidth=1, label="exact front")
    ax.set_xscale("log")
    ax.set_xlabel("queries (trials)")
    ax.set_ylabel("share of the exact front's hypervolume" if share else "hypervolume of the front found")
    objectives = ", ".join(map(str, comparison.objectives or ()))
    ax.set_title(f"{comparison.benchmark or comparison.task}: {objectives}, mean and 95 % interval")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


KDE_BANDWIDTH = 0.5  # times Scott's rule


def gaussian_kde(values: Sequence[float], grid: np.ndarray) -> np.ndarray:
    """Density of ``values`` on ``grid``: Gaussian kernels with half of Scott's bandwidth.

    Scott's rule is optimal for one Gaussian and over-smooths a sample with several
    modes: on random moons architectures it merges the small cluster of good networks into
    the shoulder of a larger one (docs/results/2026-11-23-random-architectures.md).
    """
    from scipy import stats

    values = np.asarray(values, dtype=float)
    if len(values) < 2 or np.ptp(values) == 0:
        return np.zeros_like(grid)
    return stats.gaussian_kde(values, bw_method=lambda kde: kde.scotts_factor() * KDE_BANDWIDTH)(grid)


def plot_histogram(values: Sequence[float], path: Path, title: str, peaks: Sequence[float] = ()) -> None:
    """Histogram of validation accuracies with a Gaussian KDE over it (the seed paper's Fig. 7)."""
    plt = _pyplot()
    values = np.asarray(values, dtype=float)
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    ax.hist(values, bins=50, density=True, color="#8fb3d9", edgecolor="white", label=f"{len(values)} architectures")
    grid = np.linspace(values.min(), values.max(), 400)
    ax.plot(grid, gaussian_kde(values, grid), color="#1f4e79", linewidth=2, label="Gaussian KDE (0.5 x Scott)")
    for peak in peaks:
        ax.axvline(peak, color="#c0504d", linestyle="--", linewidth=1)
    ax.set_xlabel("validation accuracy")
    ax.set_ylabel("density")
    ax.set_title(title)
    ax.legend(loc="upper center")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)

"""Strategies side by side: every strategy x seed on the same budget, then statistics.

Each run is an ordinary study, so strategies are compared through exactly the
loop a user runs. On a tabular benchmark the studies live in memory (a run
takes a second and is simply recomputed); on a real task each one is a file
under ``OUT/studies/`` and an interrupted comparison resumes from them.

What is measured after q queries (trials, in order, repeats included) is the
*incumbent*: the trial a user would pick at that point, the one with the best
reward so far. Its score is the benchmark's metric of that architecture (its
mean over runs, even when the rewards were ``noisy`` single runs) or, on a
task, its validation accuracy. A run reaches the benchmark's best at the first
query where the incumbent is one of the best architectures, or, with a
``tolerance``, one whose metric is within ``tolerance`` of the best (near-ties in a
table of noisy means are as good as the best).
"""

from __future__ import annotations

import math
import multiprocessing
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from archsearch.errors import ArchsearchError

CHECKPOINTS = (50, 100, 200, 500, 1000, 2000, 5000, 10000)
#: what :meth:`Comparison.write` writes into its folder
COMPARISON_FILES = ("results.json", "table.txt", "comparison.png")
#: the largest space whose analytical random-search median is computed
_COUNTABLE = 10**6


@dataclass(frozen=True)
class RunSpec:
    """One strategy x seed: everything a worker process needs to run it."""

    strategy: str
    seed: int
    budget: int
    children_per_step: int
    options: dict[str, Any] = field(default_factory=dict)
    benchmark: str | None = None
    noisy: bool = False
    task: str | None = None
    trainer: dict[str, Any] = field(default_factory=dict)
    study_path: str | None = None
    tolerance: float = 0.0
    weight_sharing: bool = False


@dataclass
class RunResult:
    """The incumbent's score after every query of one run."""

    strategy: str
    seed: int
    scores: list[float]
    queries_to_best: int | None
    seconds: float
    test_score: float | None = None


def run_one(spec: RunSpec) -> RunResult:
    """Run (or resume) one study and read its incumbent curve."""
    import torch

    from archsearch.config import SearchConfig
    from archsearch.evaluation import get_benchmark
    from archsearch.study import Study

    torch.set_num_threads(1)
    started = time.perf_counter()
    steps = math.ceil(spec.budget / spec.children_per_step)
    bench = get_benchmark(spec.benchmark) if spec.benchmark else None
    if spec.study_path and Path(spec.study_path).exists():
        study = Study.open(spec.study_path)
        wanted = {"strategy": spec.strategy, "children_per_step": spec.children_per_step, "seed": spec.seed}
        found = {"strategy": study.config["strategy"]["name"], "children_per_step": study.children_per_step,
                 "seed": study.seed}  # fmt: skip
        trainer = {k: v for k, v in _trained_by(study.config["trainer"]).items() if k in spec.trainer}
        if (
            study.shares_weights != spec.weight_sharing
            or
            found != wanted
            or trainer != spec.trainer
            or any(study.config["strategy"].get(k) != v for k, v in spec.options.items())
        ):
            study.close()
            raise ArchsearchError(
                f"{spec.study_path}: kept from a comparison with other settings; choose another --out or delete it"
            )
    else:
        config = SearchConfig(
            task=spec.task,
            benchmark=spec.benchmark,
            noisy=spec.noisy,
            strategy={**spec.options, "name": spec.strategy, "seed": spec.seed},
            evaluator=None if bench or spec.weight_sharing else "batched",
            training=spec.trainer,
            weight_sharing=spec.weight_sharing,
            steps=steps,
            children_per_step=spec.children_per_step,
            seed=spec.seed,
        )
        study = Study.create(spec.study_path, config)
    with study:
        study.run(steps=max(steps, study.steps), progress=False)
        trials = [t for t in study.trials() if t.phase == "search"][: spec.budget]
        test = None if bench else study.test_score()
    scores, hit = incumbent_curve(trials, bench, spec.tolerance)
    return RunResult(spec.strategy, spec.seed, scores, hit, time.perf_counter() - started, test)


def _trained_by(trainer: dict[str, Any]) -> dict[str, Any]:
    """The settings that train a study's children: a weight-sharing study's are its reference trainer's."""
    return trainer.get("reference", trainer) if trainer.get("name") == "shared" else trainer


def incumbent_curve(trials: Sequence[Any], bench: Any = None, tolerance: float = 0.0) -> tuple[list[float], int | None]:
    """The incumbent's score after each trial, and the first query where it is a best architecture
    (its score within ``tolerance`` of the benchmark's best)."""
    from archsearch.study._storage import rank

    best_key, score, hit = None, float("nan"), None
    scores = []
    for query, trial in enumerate(trials, start=1):
        if trial.status == "ok":
            key = rank(trial)
            if best_key is None or key < best_key:
                best_key = key
                if bench is None:
                    score = trial.val_score
                else:
                    score = bench.value(trial.architecture)
                    if hit is None and score >= bench.best_value - tolerance:
                        hit = query
        scores.append(score)
    return scores, hit


def random_median(size: int, optima: int) -> int:
    """Median queries for sampling without replacement to first draw one of ``optima`` among ``size``."""
    missed = 1.0
    for k in range(1, size + 1):
        # missed = P(no optimum among the first k draws) = C(size - optima, k) / C(size, k)
        missed *= (size - optima - (k - 1)) / (size - (k - 1))
        if missed <= 0.5:
            return k
    return size


def _random_median(bench: Any, tolerance: float) -> int | None:
    """:func:`random_median` over every code of the benchmark's space (random search also draws those the
    table lacks); ``None`` for a space too large to count through."""
    size = bench.space.size()
    return random_median(size, len(bench.codes_within(tolerance))) if size <= _COUNTABLE else None


def _interval(values: np.ndarray) -> tuple[float, float, float]:
    """Mean and its 95 % Student-t interval."""
    from scipy import stats

    mean = float(values.mean())
    if len(values) < 2:
        return mean, mean, mean
    half = float(stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / math.sqrt(len(values)))
    return mean, mean - half, mean + half


@dataclass
class Comparison:
    """The runs of a comparison and their statistics."""

    runs: list[RunResult]
    budget: int
    benchmark: str | None
    task: str | None
    best_value: float | None
    random_median: int | None
    wall_seconds: float
    settings: dict[str, Any]

    @property
    def strategies(self) -> list[str]:
        return list(dict.fromkeys(r.strategy for r in self.runs))

    def checkpoints(self) -> list[int]:
        points = [c for c in CHECKPOINTS if c < self.budget]
        return [*points, self.budget]

    def curves(self, strategy: str) -> np.ndarray:
        """Incumbent scores, one row per seed, one column per query."""
        rows = [r.scores for r in self.runs if r.strategy == strategy]
        return np.array([row + [row[-1]] * (self.budget - len(row)) for row in rows], dtype=float)

    def summary(self) -> dict[str, Any]:
        strategies: dict[str, Any] = {}
        for name in self.strategies:
            runs = [r for r in self.runs if r.strategy == name]
            curves = self.curves(name)
            entry: dict[str, Any] = {"seeds": len(runs)}
            if self.best_value is not None:
                hits = [r.queries_to_best for r in runs]
                reached = sorted(h for h in hits if h is not None)
                # failures count as "later than the budget", so the median exists while most runs succeed
                ordered = reached + [math.inf] * (len(hits) - len(reached))
                median = float(np.median(ordered))
                entry["median_queries_to_best"] = int(round(median)) if math.isfinite(median) else None
                entry["mean_queries_to_best"] = float(np.mean(reached)) if reached else None
                entry["success_rate"] = len(reached) / len(hits)
            entry["mean_best_at"], entry["ci95_best_at"] = {}, {}
            for point in self.checkpoints():
                mean, low, high = _interval(curves[:, point - 1])
                entry["mean_best_at"][str(point)] = mean
                entry["ci95_best_at"][str(point)] = [low, high]
            tests = [r.test_score for r in runs if r.test_score is not None]
            if tests:
                entry["mean_test_score"] = float(np.mean(tests))
            entry["seconds"] = float(sum(r.seconds for r in runs))
            strategies[name] = entry
        return {
            "benchmark": self.benchmark,
            "task": self.task,
            "budget": self.budget,
            "score": "benchmark metric of the incumbent" if self.benchmark else "validation accuracy of the incumbent"
            + (", scored with shared weights; the test score is the retrained pick's" if self._sharing else ""),
            "best_value": self.best_value,
            "analytical_random_median": self.random_median,
            "settings": self.settings,
            "wall_seconds": self.wall_seconds,
            "strategies": strategies,
            "runs": [
                {"strategy": r.strategy, "seed": r.seed, "queries_to_best": r.queries_to_best, "seconds": r.seconds}
                for r in self.runs
            ],
        }

    def write(self, out: Path) -> dict[str, Path]:
        """``results.json``, ``table.txt`` and ``comparison.png`` in ``out``."""
        import json

        from archsearch.experiments._plots import plot_comparison

        out.mkdir(parents=True, exist_ok=True)
        paths = {key: out / name for key, name in zip(("json", "table", "plot"), COMPARISON_FILES, strict=True)}
        paths["json"].write_text(json.dumps(self.summary(), indent=2) + "\n")
        paths["table"].write_text(self.table() + "\n")
        plot_comparison(self, paths["plot"])
        return paths

    @property
    def _sharing(self) -> bool:
        return bool(self.settings.get("weight_sharing"))

    def table(self) -> str:
        """A plain-text table (Markdown) of the summary."""
        summary = self.summary()["strategies"]
        points = self.checkpoints()
        head = ["strategy"]
        if self.best_value is not None:
            head += ["median q. to best", "mean q. to best (runs that found it)", "found"]
        head += [f"best@{p}" for p in points] + (["mean test of the retrained pick"] if self._sharing else [])
        head += ["seconds"]
        lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
        for name, entry in summary.items():
            row = [name]
            if self.best_value is not None:
                median, mean = entry["median_queries_to_best"], entry["mean_queries_to_best"]
                row += [
                    "-" if median is None else str(median),
                    "-" if mean is None else f"{mean:.0f}",
                    f"{entry['success_rate']:.0%}",
                ]
            digits = 3 if self.best_value is not None else 4
            for p in points:
                low, high = entry["ci95_best_at"][str(p)]
                row.append(f"{entry['mean_best_at'][str(p)]:.{digits}f} ±{(high - low) / 2:.{digits}f}")
            if self._sharing:
                row.append(f"{entry['mean_test_score']:.4f}" if "mean_test_score" in entry else "-")
            row.append(f"{entry['seconds']:.1f}")
            lines.append("| " + " | ".join(row) + " |")
        return "\n".join(lines)


def _run_all(specs: list[RunSpec], jobs: int, on_run: Callable[[RunResult], None] | None) -> list[RunResult]:
    """The result of every run, in the order of ``specs``, on ``jobs`` worker processes."""
    results: dict[int, RunResult] = {}
    if jobs == 1:
        for index, spec in enumerate(specs):
            results[index] = run_one(spec)
            if on_run:
                on_run(results[index])
    else:
        # spawn, not fork: a forked copy of a process that has used OpenMP threads can hang
        with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = {pool.submit(run_one, spec): index for index, spec in enumerate(specs)}
            for future in as_completed(futures):
                results[futures[future]] = future.result()
                if on_run:
                    on_run(results[futures[future]])
    return [results[i] for i in range(len(specs))]


def _check_arguments(
    strategies: Sequence[str], seeds: int, budget: int, per_step: int, benchmark: str | None, task: str | None,
    tolerance: Any, weight_sharing: bool = False,
) -> None:
    from archsearch.strategies import STRATEGIES

    if (benchmark is None) == (task is None):
        raise ArchsearchError("compare: give exactly one of a benchmark and a task")
    unknown = [s for s in strategies if s not in STRATEGIES]
    if unknown or not strategies:
        known = ", ".join(STRATEGIES)
        raise ArchsearchError(f"strategies: unknown strategy {unknown[0] if unknown else '(none)'!r} (known: {known})")
    if seeds < 1 or budget < 1 or per_step < 1:
        raise ArchsearchError("compare: seeds, budget and children per step must be positive")
    if isinstance(tolerance, bool) or not isinstance(tolerance, int | float) or not 0 <= tolerance < math.inf:
        raise ArchsearchError(f"tolerance: must be a non-negative number, got {tolerance!r:.40}")
    if weight_sharing and benchmark is not None:
        raise ArchsearchError("weight_sharing: a tabular benchmark looks rewards up; it has no weights to share")
    if tolerance and benchmark is None:
        raise ArchsearchError("tolerance: only a comparison on a benchmark has a best to come near")
    if "tpe" in strategies:
        from archsearch.strategies._tpe import _optuna

        _optuna()  # a missing extra is reported before any work


def compare(
    strategies: Sequence[str],
    seeds: int,
    budget: int,
    *,
    benchmark: str | None = None,
    noisy: bool = False,
    task: str | None = None,
    children_per_step: int = 5,
    trainer: dict[str, Any] | None = None,
    out: Path | None = None,
    jobs: int | None = None,
    strategy_options: dict[str, dict[str, Any]] | None = None,
    on_run: Callable[[RunResult], None] | None = None,
    tolerance: float = 0.0,
    weight_sharing: bool = False,
) -> Comparison:
    """Run every strategy with seeds ``0..seeds-1`` for ``budget`` queries each.

    On a benchmark, a run has found the best once its incumbent's metric is within
    ``tolerance`` of the table's best (in the table's units; 0: the best itself).

    ``strategy_options`` maps a strategy's name to constructor arguments other than
    its defaults (for example ``{"reinforce": {"lr": 0.01}}``).

    ``jobs`` worker processes run the studies (default: one per core); the
    results do not depend on it. On a task, studies are kept under
    ``out/studies`` and reused or resumed by a later call with the same settings.

    With ``weight_sharing`` (on a task) every run is a weight-sharing study: ``budget`` counts children
    scored with shared weights, and each run's test score is its pick's, retrained from scratch.
    """
    from archsearch.evaluation import get_benchmark

    _check_arguments(strategies, seeds, budget, children_per_step, benchmark, task, tolerance, weight_sharing)
    bench = get_benchmark(benchmark) if benchmark else None
    studies = None
    if task is not None:
        from archsearch.tasks import get_task

        get_task(task)
        if out is None:
            raise ArchsearchError("compare: a comparison on a task keeps its studies and needs an output folder")
        studies = out / "studies"
        studies.mkdir(parents=True, exist_ok=True)
    specs = [
        RunSpec(
            strategy=name,
            seed=seed,
            budget=budget,
            options=dict((strategy_options or {}).get(name, {})),
            children_per_step=children_per_step,
            benchmark=benchmark,
            noisy=noisy,
            task=task,
            trainer=dict(trainer or {}),
            study_path=str(studies / f"{name}-s{seed}.db") if studies else None,
            tolerance=float(tolerance),
            weight_sharing=weight_sharing,
        )
        for name in strategies
        for seed in range(seeds)
    ]
    jobs = max(1, min(jobs or os.cpu_count() or 1, len(specs)))
    started = time.perf_counter()
    runs = _run_all(specs, jobs, on_run)
    settings = {"seeds": seeds, "children_per_step": children_per_step, "noisy": noisy, "jobs": jobs,
                **({"strategy_options": {k: dict(v) for k, v in strategy_options.items()}} if strategy_options else {}),
                **({"trainer": dict(trainer)} if trainer else {}), **({"tolerance": float(tolerance)} if bench else {}),
                **({"weight_sharing": True} if weight_sharing else {})}  # fmt: skip
    return Comparison(
        runs=runs,
        budget=budget,
        benchmark=benchmark,
        task=task,
        best_value=bench.best_value if bench else None,
        random_median=_random_median(bench, tolerance) if bench else None,
        wall_seconds=time.perf_counter() - started,
        settings=settings,
    )

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

With ``objectives`` (``val_score:max,params:min``) a comparison also measures fronts: after q queries, the
hypervolume (Zitzler & Thiele 1998) of the successful trials' non-dominated set, against a reference point
(``reference``; by default the *nadir* of the best front known, each objective's worst value on it moved out by
a tenth of its range on the front, so that the front's extreme points count too: on a benchmark the exact front
of the whole table, on a task the front of every run's trials together). On a benchmark a trial's values are
the table's (its mean metric, even when rewards were ``noisy``), and the exact front of the whole table gives
each run's *share* of the best hypervolume that any search could reach.
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

from archsearch._objectives import (
    Objective,
    hypervolume,
    hypervolume_curve,
    minimised,
    nadir,
    pareto_front,
    parse_objectives,
    trial_points,
)  # fmt: skip
from archsearch.errors import ArchsearchError

CHECKPOINTS = (50, 100, 200, 500, 1000, 2000, 5000, 10000)
#: what :meth:`Comparison.write` writes into its folder (``hypervolume.png`` only for several objectives)
COMPARISON_FILES = ("results.json", "table.txt", "comparison.png", "hypervolume.png")
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
    objectives: str | None = None
    cost_target: str | None = None
    space: str | None = None


@dataclass
class RunResult:
    """The incumbent's score after every query of one run; with objectives, every query's values of them
    (``None`` for a trial that did not succeed)."""

    strategy: str
    seed: int
    scores: list[float]
    queries_to_best: int | None
    seconds: float
    test_score: float | None = None
    points: list[tuple[float, ...] | None] | None = None


def run_one(spec: RunSpec) -> RunResult:
    """Run (or resume) one study and read its incumbent curve."""
    import torch

    from archsearch.config import OWN_TRAINING_SPACES, SearchConfig
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
            or study.goals != SearchConfig(objectives=spec.objectives, cost_target=spec.cost_target).goals()
            or (spec.space is not None and study.config["space"].get("kind") != spec.space)
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
            space=spec.space,
            evaluator=None if bench or spec.weight_sharing or spec.space in OWN_TRAINING_SPACES else "batched",
            training=spec.trainer,
            weight_sharing=spec.weight_sharing,
            steps=steps,
            children_per_step=spec.children_per_step,
            seed=spec.seed,
            objectives=spec.objectives,
            cost_target=spec.cost_target,
        )
        study = Study.create(spec.study_path, config)
    with study:
        study.run(steps=max(steps, study.steps), progress=False)
        trials = [t for t in study.trials() if t.phase == "search"][: spec.budget]
        test = None if bench else study.test_score()
    scores, hit = incumbent_curve(trials, bench, spec.tolerance)
    points = None if spec.objectives is None else objective_points(trials, parse_objectives(spec.objectives), bench)
    return RunResult(spec.strategy, spec.seed, scores, hit, time.perf_counter() - started, test, points)


def objective_points(
    trials: Sequence[Any], objectives: Sequence[Objective], bench: Any = None
) -> list[tuple[float, ...] | None]:
    """Each trial's values of ``objectives`` (``None`` unless it succeeded); on a benchmark, the table's."""
    points: list[tuple[float, ...] | None] = []
    for trial in trials:
        if trial.status != "ok":
            points.append(None)
        elif bench is None:
            points.append(trial_points([trial], objectives)[0])
        else:
            points.append(_table_point(bench, trial.architecture, objectives, trial.reward))
    return points


def _table_point(
    bench: Any, arch: Any, objectives: Sequence[Objective], reward: float | None = None
) -> tuple[float, ...]:
    """An architecture's values of ``objectives`` from the table (its reward, scalarised or not, as recorded)."""
    costs = bench.costs(arch)
    value = bench.value(arch) * bench.scale
    values = {"val_score": value, "reward": value if reward is None else reward, **costs}
    missing = [o.metric for o in objectives if values.get(o.metric) is None]
    if missing:
        raise ArchsearchError(f"objectives: the {bench.name} table has no {missing[0]} for {arch}")
    return tuple(float(values[o.metric]) for o in objectives)


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
    objectives: list[Objective] | None = None
    reference: tuple[float, ...] | None = None
    exact_hypervolume: float | None = None
    exact_front: int | None = None

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

    def hypervolumes(self, strategy: str) -> np.ndarray:
        """The hypervolume after every query (a share of the exact front's where known), one row per seed."""
        assert self.objectives is not None
        if self.reference is None:
            return np.zeros((sum(r.strategy == strategy for r in self.runs), self.budget))
        reference = minimised([self.reference], self.objectives)[0]
        rows = []
        for run in self.runs:
            if run.strategy == strategy:
                points = [None if p is None else minimised([p], self.objectives)[0] for p in run.points or []]
                row = hypervolume_curve(points, reference)
                rows.append(row + [row[-1] if row else 0.0] * (self.budget - len(row)))
        values = np.array(rows, dtype=float)
        return values / self.exact_hypervolume if self.exact_hypervolume else values

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
            if self.objectives is not None:
                volumes = self.hypervolumes(name)
                key = "hypervolume_share" if self.exact_hypervolume else "hypervolume"
                entry[f"mean_{key}_at"], entry[f"ci95_{key}_at"] = {}, {}
                for point in self.checkpoints():
                    mean, low, high = _interval(volumes[:, point - 1])
                    entry[f"mean_{key}_at"][str(point)] = mean
                    entry[f"ci95_{key}_at"][str(point)] = [low, high]
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
            **({"objectives": [str(o) for o in self.objectives], "reference": list(self.reference or ()),
                "exact_front": None if self.exact_front is None else {"size": self.exact_front,
                                                                      "hypervolume": self.exact_hypervolume}}
               if self.objectives else {}),  # fmt: skip
            "strategies": strategies,
            "runs": [
                {"strategy": r.strategy, "seed": r.seed, "queries_to_best": r.queries_to_best, "seconds": r.seconds}
                for r in self.runs
            ],
        }

    def write(self, out: Path) -> dict[str, Path]:
        """``results.json``, ``table.txt`` and ``comparison.png`` in ``out``."""
        import json

        from archsearch.experiments._plots import plot_comparison, plot_hypervolumes

        out.mkdir(parents=True, exist_ok=True)
        keys = ("json", "table", "plot", "hypervolume")
        paths = {key: out / name for key, name in zip(keys, COMPARISON_FILES, strict=True)}
        paths["json"].write_text(json.dumps(self.summary(), indent=2) + "\n")
        paths["table"].write_text(self.table() + "\n")
        plot_comparison(self, paths["plot"])
        if self.objectives:
            plot_hypervolumes(self, paths["hypervolume"])
        else:
            del paths["hypervolume"]
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
        volume = "hypervolume_share" if self.exact_hypervolume else "hypervolume"
        if self.objectives:
            head += [f"{'hv share' if self.exact_hypervolume else 'hv'}@{p}" for p in points]
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
            for p in points if self.objectives else ():
                low, high = entry[f"ci95_{volume}_at"][str(p)]
                row.append(f"{entry[f'mean_{volume}_at'][str(p)]:.4g} ±{(high - low) / 2:.2g}")
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
    population = [s for s in strategies if getattr(STRATEGIES.lookup(s), "continues", False)]
    if population:
        raise ArchsearchError(f"strategies: {population[0]} sets its own budget, a schedule of training epochs, not "
                              "a number of queries; compare it at equal epochs as benchmarks/population.py does")  # fmt: skip
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


def _check_space(space: str | None, task: str | None, weight_sharing: bool, names: Callable[[str], str]) -> None:
    """A space named for the runs fits their task (one line before any run starts)."""
    if space is None:
        return
    if task is None:
        raise ArchsearchError(f"{names('space')}: a tabular benchmark has its own space")
    from archsearch.config import SearchConfig

    SearchConfig(task=task, space=space, weight_sharing=weight_sharing).check(names)


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
    objectives: str | None = None,
    cost_target: str | None = None,
    reference: Sequence[float] | None = None,
    names: Callable[[str], str] | None = None,
    space: str | None = None,
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

    With ``objectives`` every run is a study of those objectives (``cost_target`` scalarises the reward of
    the strategies of one reward), and the comparison measures the hypervolume of each run's front over
    queries against ``reference`` (one value per objective; default: see the module docstring). ``names``
    spells a setting in messages (the command line gives its flags). ``space`` (on a task) names the space
    every run searches, as ``search --space`` does (default: the task's).
    """
    from archsearch.evaluation import get_benchmark

    _check_arguments(strategies, seeds, budget, children_per_step, benchmark, task, tolerance, weight_sharing)
    _check_space(space, task, weight_sharing, names or (lambda name: name))
    bench = get_benchmark(benchmark) if benchmark else None
    parsed = _check_objectives(objectives, cost_target, reference, strategies, bench, names or (lambda name: name))
    studies = None
    if task is not None:
        from archsearch.tasks import get_task

        get_task(task)
        if out is None:
            raise ArchsearchError("compare: a comparison on a task keeps its studies and needs an output folder")
        studies = out / "studies"
        studies.mkdir(parents=True, exist_ok=True)
    options = {name: dict((strategy_options or {}).get(name, {})) for name in strategies}
    specs = [RunSpec(strategy=name, seed=seed, budget=budget, options=options[name],
                     children_per_step=children_per_step, benchmark=benchmark, noisy=noisy, task=task, trainer=dict(trainer or {}),
                     study_path=str(studies / f"{name}-s{seed}.db") if studies else None, tolerance=float(tolerance),
                     weight_sharing=weight_sharing, objectives=objectives, cost_target=cost_target, space=space)
             for name in strategies for seed in range(seeds)]  # fmt: skip
    jobs = max(1, min(jobs or os.cpu_count() or 1, len(specs)))
    started = time.perf_counter()
    runs = _run_all(specs, jobs, on_run)
    settings = {"seeds": seeds, "children_per_step": children_per_step, "noisy": noisy, "jobs": jobs,
                **({"space": space} if space else {}),
                **({"strategy_options": {k: dict(v) for k, v in strategy_options.items()}} if strategy_options else {}),
                **({"trainer": dict(trainer)} if trainer else {}), **({"tolerance": float(tolerance)} if bench else {}),
                **({"weight_sharing": True} if weight_sharing else {}),
                **({"cost_target": cost_target} if cost_target else {})}  # fmt: skip
    fronts = _fronts(parsed, reference, bench, runs) if parsed else {}
    return Comparison(runs=runs, budget=budget, benchmark=benchmark, task=task,
                      best_value=bench.best_value if bench else None,
                      random_median=_random_median(bench, tolerance) if bench else None,
                      wall_seconds=time.perf_counter() - started, settings=settings, **fronts)  # fmt: skip


def _check_objectives(
    objectives: str | None, cost_target: str | None, reference: Sequence[float] | None, strategies: Sequence[str],
    bench: Any, names: Callable[[str], str],
) -> list[Objective] | None:
    """The objectives parsed, refusing what does not fit the comparison, in one line."""
    from archsearch.config import SearchConfig
    from archsearch.strategies import STRATEGIES

    SearchConfig(objectives=objectives, cost_target=cost_target).goals(names)  # one line for a bad value
    if objectives is None:
        multi = [name for name in strategies if getattr(STRATEGIES.lookup(name), "multi_objective", False)]
        if multi:
            raise ArchsearchError(f"{names('strategies')}: {multi[0]} ranks by several objectives; give "
                                  f"{names('objectives')}")  # fmt: skip
        if reference is not None:
            raise ArchsearchError(f"{names('reference')}: the reference point of the objectives' hypervolume; give "
                                  f"{names('objectives')}")  # fmt: skip
        return None
    parsed = parse_objectives(objectives, names("objectives"))
    if bench is not None:
        recorded = ("val_score", "reward", *(["params"] if bench.params_key else []),
                    *(["flops"] if bench.flops_key else []))  # fmt: skip
        for objective in parsed:
            if objective.metric not in recorded:
                raise ArchsearchError(f"{names('objectives')}: a benchmark's trials have no {objective.metric} "
                                      f"(known: {', '.join(recorded)})")  # fmt: skip
    if reference is not None:
        if len(reference) != len(parsed) or not all(isinstance(v, int | float) and math.isfinite(v)
                                                     for v in reference):  # fmt: skip
            raise ArchsearchError(f"{names('reference')}: expected {len(parsed)} finite numbers, one per objective, "
                                  f"got {list(reference)!r:.60}")  # fmt: skip
    return parsed


def _fronts(
    objectives: list[Objective], reference: Sequence[float] | None, bench: Any, runs: Sequence[RunResult]
) -> dict[str, Any]:
    """The reference point and, on a benchmark, the exact front of the whole table and its hypervolume."""
    table = None
    if bench is not None:
        table = [_table_point(bench, arch, objectives) for arch in bench.space.enumerate() if bench.record(arch)]
    if reference is None:
        seen = minimised(table or [p for run in runs for p in run.points or [] if p is not None], objectives)
        if not seen:  # no run has a successful trial: every hypervolume is 0, against no reference
            return {"objectives": objectives, "reference": None}
        reference = minimised([nadir([seen[i] for i in pareto_front(seen)])], objectives)[0]  # back to own units
    fronts: dict[str, Any] = {"objectives": objectives, "reference": tuple(float(v) for v in reference)}
    if table is not None:
        points = minimised(table, objectives)
        front = [points[i] for i in pareto_front(points)]
        fronts["exact_front"] = len(set(front))
        fronts["exact_hypervolume"] = hypervolume(front, minimised([fronts["reference"]], objectives)[0])
    return fronts

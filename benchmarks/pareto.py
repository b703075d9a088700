"""Accuracy and cost together: Pareto search, measured (docs/results/2026-12-01-pareto.md).

Three measurements, each a subcommand that prints a table and writes its JSON to results/:

- ``macro``: NAS-Bench-Macro, accuracy against parameters. Every strategy x ``--seeds`` seeds, ``--budget``
  queries each, through ``compare --objectives val_score:max,params:min``; the mean share of the exact front's
  hypervolume (the whole table's front, reference point: its nadir moved out by a tenth of its range) with
  95 % intervals, and the wall time of all the runs together. -> pareto_macro.json
- ``front --task moons|mnist-5k``: one search of accuracy against parameters (every child's weights kept),
  its front, and the smallest network within ``--within`` (1 point) of the best validation accuracy, with
  the test accuracy of that network and of the most accurate one. -> pareto_front_TASK.json
- ``latency --task mnist-5k``: the latency of ``--repeat-archs`` architectures timed twice (how well two
  measurements agree), then an accuracy-only search against a latency-aware one of the same budget: the
  fastest network of the latency-aware search within ``--within`` of the accuracy-only pick's test
  accuracy, and how much faster it is. -> pareto_latency_TASK.json

    .venv/bin/python benchmarks/pareto.py macro [--seeds 10] [--budget 500] [--cost-target params=500000]
    .venv/bin/python benchmarks/pareto.py front --task moons [--budget 500]
    .venv/bin/python benchmarks/pareto.py latency --task mnist-5k [--budget 120]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from _common import report
from archsearch import SearchConfig, Study
from archsearch._objectives import minimised, pareto_front, parse_objectives, trial_points
from archsearch.evaluation import _cost
from archsearch.experiments import compare
from archsearch.tasks import get_task

MACRO_STRATEGIES = ("random", "evolution", "reinforce", "tpe", "nsga2", "pareto-evolution")
#: children of image tasks train briefly, as the CNN benchmark's search does
IMAGE_TRAINING = {"max_epochs": 2, "batch_size": 64, "time_limit": 30.0}


def macro(args: argparse.Namespace) -> None:
    started = time.perf_counter()
    result = compare(list(args.strategies), args.seeds, args.budget, benchmark="nas-bench-macro",
                     objectives="val_score:max,params:min", jobs=args.jobs, cost_target=args.cost_target)  # fmt: skip
    wall = time.perf_counter() - started
    summary = result.summary()
    points = [str(p) for p in result.checkpoints()]
    rows = []
    for name, entry in summary["strategies"].items():
        shares = entry["mean_hypervolume_share_at"]
        ci = entry["ci95_hypervolume_share_at"]
        rows.append([name, *(f"{shares[p]:.4f} ±{(ci[p][1] - ci[p][0]) / 2:.4f}" for p in points), entry["seconds"]])
    random_share = summary["strategies"]["random"]["mean_hypervolume_share_at"][points[-1]] if "random" in \
        summary["strategies"] else None  # fmt: skip
    name = "pareto_macro" + (f"_{args.cost_target.replace('=', '')}" if args.cost_target else "")
    report(name, f"NAS-Bench-Macro, accuracy against parameters: share of the exact front's hypervolume "
           f"({args.seeds} seeds, {wall:.1f} s in all)", ["strategy", *(f"share@{p}" for p in points), "seconds"],
           rows, {"wall_seconds": wall, "cost_target": args.cost_target, "exact_front": summary["exact_front"],
                  "reference": summary["reference"],
                  "random_share_at_budget": random_share, "summary": summary})  # fmt: skip


def _search(task: str, budget: int, per_step: int, seed: int, path: Path, **goals: Any) -> Study:
    training = IMAGE_TRAINING if get_task(task).x_train.dim() == 4 else {}
    config = SearchConfig(task=task, strategy=goals.pop("strategy", "pareto-evolution"), steps=budget // per_step,
                          children_per_step=per_step, seed=seed, save_children=True, training=training,
                          **goals)  # fmt: skip
    study = Study.create(path, config)
    study.run(progress=True)
    return study


def _named(prefix: str, args: argparse.Namespace) -> str:
    """The JSON's name: PREFIX_TASK, and _sN for a seed other than 0."""
    return f"{prefix}_{args.task}" + (f"_s{args.seed}" if args.seed else "")


def _test_score(study: Study, number: int) -> float:
    _, model = study.trial_model(number)
    return float(study.evaluator.model_test_score(model))


def front(args: argparse.Namespace) -> None:
    objectives = parse_objectives("val_score:max,params:min")
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        study = _search(args.task, args.budget, args.per_step, args.seed, Path(folder) / "front.db",
                        objectives="val_score:max,params:min")  # fmt: skip
        seconds = time.perf_counter() - started
        with study:
            trials = [t for t in study.trials() if t.status == "ok"]
            points = minimised(trial_points(trials, objectives), objectives)
            on_front = sorted((trials[i] for i in pareto_front(points)), key=lambda t: -t.val_score)
            best = max(trials, key=lambda t: (t.val_score, -t.params))
            close = [t for t in trials if t.val_score >= best.val_score - args.within]
            smallest = min(close, key=lambda t: (t.params, -t.val_score))
            picks = {"most accurate": best, f"smallest within {args.within * 100:g} pt": smallest}
            tests = {name: _test_score(study, t.number) for name, t in picks.items()}
            front_rows = [{"number": t.number, "architecture": str(t.architecture), "val_score": t.val_score,
                           "params": t.params, "flops": t.flops} for t in on_front]  # fmt: skip
    rows = [[name, str(t.architecture), t.val_score, tests[name], t.params, t.flops] for name, t in picks.items()]
    report(_named("pareto_front", args), f"{args.task}: {len(trials)} children, front of {len(on_front)} "
           f"({seconds:.0f} s)", ["pick", "architecture", "val acc", "test acc", "params", "flops"], rows,
           {"task": args.task, "budget": args.budget, "seed": args.seed, "search_seconds": seconds,
            "front": front_rows,
            "picks": {name: {"number": t.number, "architecture": str(t.architecture), "val_score": t.val_score,
                             "test_score": tests[name], "params": t.params, "flops": t.flops}
                      for name, t in picks.items()}})  # fmt: skip


def latency(args: argparse.Namespace) -> None:
    task = get_task(args.task)
    space = SearchConfig(task=args.task).build_space(task)
    rng = np.random.default_rng(args.seed)
    archs = [space.sample(rng) for _ in range(args.repeat_archs)]
    first = [_cost.latency(arch, task)[0] for arch in archs]  # one thread, as in a study
    second = [_cost.latency(arch, task)[0] for arch in archs]
    ratios = [abs(a - b) / min(a, b) for a, b in zip(first, second, strict=True)]
    agreement = {"architectures": len(archs), "median_relative_difference": statistics.median(ratios),
                 "p90_relative_difference": float(np.quantile(ratios, 0.9)), "max_relative_difference": max(ratios),
                 "first_ms": first, "second_ms": second}  # fmt: skip
    print(f"latency twice: median relative difference {agreement['median_relative_difference']:.1%}, "
          f"90th percentile {agreement['p90_relative_difference']:.1%}, max {agreement['max_relative_difference']:.1%}")
    runs = {}
    with tempfile.TemporaryDirectory() as folder:
        for name, goals in (("accuracy only", {"strategy": "evolution", "latency": True}),
                            ("latency-aware", {"objectives": "val_score:max,latency_ms:min"})):  # fmt: skip
            started = time.perf_counter()
            path = Path(folder) / f"{len(runs)}.db"
            study = _search(args.task, args.budget, args.per_step, args.seed, path, **goals)
            with study:
                trials = [t for t in study.trials() if t.status == "ok"]
                runs[name] = {"seconds": time.perf_counter() - started, "study": study, "trials": trials}
                if name == "accuracy only":
                    pick = max(trials, key=lambda t: (t.val_score, -t.params))
                    pick_test = _test_score(study, pick.number)
                    runs[name]["pick"] = (pick, pick_test)
                else:
                    # the latency-aware search's front, fastest first, until one is within `within` on test
                    points = minimised(trial_points(trials, parse_objectives("val_score:max,latency_ms:min")),
                                       parse_objectives("val_score:max,latency_ms:min"))  # fmt: skip
                    candidates = sorted((trials[i] for i in pareto_front(points)), key=lambda t: t.latency_ms)
                    found = None
                    for t in candidates:
                        test = _test_score(study, t.number)
                        if test >= pick_test - args.within:
                            found = (t, test)
                            break
                    runs[name]["pick"] = found
    accurate, accurate_test = runs["accuracy only"]["pick"]
    rows = [["accuracy only", str(accurate.architecture), accurate.val_score, accurate_test, accurate.latency_ms,
             1.0, runs["accuracy only"]["seconds"]]]  # fmt: skip
    found = runs["latency-aware"]["pick"]
    data = {"task": args.task, "budget": args.budget, "seed": args.seed, "within": args.within,
            "latency_twice": agreement}  # fmt: skip
    data["accuracy_only"] = {"architecture": str(accurate.architecture), "val_score": accurate.val_score,
                             "test_score": accurate_test, "latency_ms": accurate.latency_ms,
                             "latency_spread": accurate.latency_spread, "params": accurate.params,
                             "seconds": runs["accuracy only"]["seconds"]}  # fmt: skip
    if found is not None:
        t, test = found
        speedup = accurate.latency_ms / t.latency_ms
        rows.append(["latency-aware", str(t.architecture), t.val_score, test, t.latency_ms, speedup,
                     runs["latency-aware"]["seconds"]])  # fmt: skip
        data["latency_aware"] = {"architecture": str(t.architecture), "val_score": t.val_score, "test_score": test,
                                 "latency_ms": t.latency_ms, "latency_spread": t.latency_spread, "params": t.params,
                                 "speedup": speedup, "seconds": runs["latency-aware"]["seconds"]}  # fmt: skip
    else:
        data["latency_aware"] = None
    report(_named("pareto_latency", args), f"{args.task}: latency-aware search against accuracy only "
           f"({args.budget} children each)", ["search", "pick", "val acc", "test acc", "latency ms", "speed-up",
                                              "seconds"], rows, data)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    m = commands.add_parser("macro")
    m.add_argument("--seeds", type=int, default=10)
    m.add_argument("--budget", type=int, default=500)
    m.add_argument("--jobs", type=int, default=None)
    m.add_argument("--strategies", type=lambda s: s.split(","), default=MACRO_STRATEGIES)
    m.add_argument("--cost-target", default=None, help="MnasNet's soft target for the strategies of one reward")
    for name in ("front", "latency"):
        sub = commands.add_parser(name)
        sub.add_argument("--task", default="moons" if name == "front" else "mnist-5k")
        sub.add_argument("--budget", type=int, default=500 if name == "front" else 120)
        sub.add_argument("--per-step", type=int, default=10)
        sub.add_argument("--seed", type=int, default=0)
        sub.add_argument("--within", type=float, default=0.01)
        if name == "latency":
            sub.add_argument("--repeat-archs", type=int, default=30)
    args = parser.parse_args()
    {"macro": macro, "front": front, "latency": latency}[args.command](args)


if __name__ == "__main__":
    main()

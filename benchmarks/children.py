"""Child-epochs per second: the reference trainer against the batched trainer, with its compiled
epoch and with its PyTorch epoch (the trainer before the compiled epoch, and its fallback).

Both train the same architectures, drawn uniformly from the seed space, for the same
number of epochs (early stopping off) on the same data. The batched trainer is timed
on batches of the seed experiment's size (15) and on one large batch. Achieved GFLOP/s
count the useful arithmetic (unpadded), against a large matrix product timed in the
same run. "threads auto" is the default: on a multi-core machine the groups of a batch
train side by side (the compiled epoch on threads of this process, the PyTorch epoch in
worker processes). A search keeps one trainer, so the workers' start-up (about a second,
once per search) is left out: each trainer is timed on its best of ``--repeats`` runs.

    python benchmarks/children.py [--archs 120] [--epochs 30] [--repeats 2] [--name children]
"""

from __future__ import annotations

import argparse
import os

import numpy as np
import torch

from _common import best_of, report
from archsearch.evaluation import BatchedTrainer, SerialTrainer, TrainConfig
from archsearch.space import MLPSpace
from archsearch.tasks import get_task


def useful_flops(arch, task) -> float:  # noqa: ANN001
    """FLOPs of one full-batch epoch: forward over train + validation rows, backward over train rows."""
    sizes = (task.in_features, *arch.widths, task.out_features)
    macs = sum(a * b for a, b in zip(sizes, sizes[1:]))
    n_train, n_val = len(task.y_train), len(task.y_val)
    return 2.0 * macs * ((n_train + n_val) + 2 * n_train)


def matmul_gflops(size: int = 1024, repeats: int = 20) -> float:
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    seconds = best_of(repeats, lambda: a @ b)
    return 2 * size**3 / seconds / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", type=int, default=120)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--name", default="children", help="write results/NAME.json")
    args = parser.parse_args()

    task = get_task("moons")
    rng = np.random.default_rng(args.seed)
    archs = [MLPSpace().sample(rng) for _ in range(args.archs)]
    seeds = list(range(args.archs))
    config = TrainConfig(max_epochs=args.epochs, patience=args.epochs + 1)
    child_epochs = args.archs * args.epochs
    flops = sum(useful_flops(a, task) for a in archs) * args.epochs
    peak = matmul_gflops()

    def serial() -> None:
        SerialTrainer(task, config).evaluate_all(archs, seeds)

    def batched(trainer: BatchedTrainer, batch: int) -> None:
        for start in range(0, len(archs), batch):
            trainer.evaluate_all(archs[start : start + batch], seeds[start : start + batch])

    runs = {"serial": best_of(args.repeats, serial)}
    for epoch in ("pytorch", "compiled"):
        os.environ["ARCHSEARCH_KERNEL"] = "1" if epoch == "compiled" else "0"  # read when a trainer starts
        for batch in (15, args.archs):
            for threads in (1, None):
                label = f"batched ({epoch} epoch), batch {batch}, threads {'auto' if threads is None else threads}"
                trainer = BatchedTrainer(
                    task, TrainConfig(max_epochs=args.epochs, patience=args.epochs + 1, threads=threads)
                )
                if trainer.fused != (epoch == "compiled"):
                    raise SystemExit("the compiled epoch is not available here: no C++ compiler?")
                runs[label] = best_of(args.repeats, lambda b=batch, t=trainer: batched(t, b))
                trainer.close()

    rows, data = [], {"archs": args.archs, "epochs": args.epochs, "matmul_gflops": peak, "trainers": {}}
    for label, seconds in runs.items():
        rate = child_epochs / seconds
        gflops = flops / seconds / 1e9
        ratio = runs["serial"] / seconds
        before = runs.get(label.replace("compiled", "pytorch"), seconds) / seconds
        rows.append([label, rate, ratio, before, gflops, 100 * gflops / peak])
        data["trainers"][label] = {
            "seconds": seconds, "child_epochs_per_s": rate, "vs_serial": ratio, "vs_pytorch_epoch": before,
            "gflops": gflops,
        }  # fmt: skip
    report(
        args.name,
        f"{args.archs} uniform seed-space architectures x {args.epochs} epochs; large matmul {peak:.0f} GFLOP/s",
        ["trainer", "child-epochs/s", "x serial", "x pytorch epoch", "useful GFLOP/s", "% of matmul"],
        rows,
        data,
    )


if __name__ == "__main__":
    main()

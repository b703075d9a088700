"""The seed experiment (500 controller steps x 15 children on half moons) with each trainer.

Same seed, same controller, same training budget; only the trainer differs. Prints the wall
time, the final pick's accuracies and whether the controller learned (mean reward of the
first and last 50 steps). ``batched-pytorch`` is the batched trainer with its PyTorch epoch
(``ARCHSEARCH_KERNEL=0``: the trainer before the compiled epoch, and its fallback).

    python benchmarks/seed_experiment.py [--trainers batched,batched-pytorch,serial] [--steps 500] [--seed 0]
                                         [--name NAME]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from _common import report
from archsearch import SearchConfig, Study, TrainConfig


def run(trainer: str, steps: int, seed: int, directory: Path) -> dict:
    os.environ["ARCHSEARCH_KERNEL"] = "0" if trainer == "batched-pytorch" else "1"  # read when a trainer starts
    evaluator = trainer.removesuffix("-pytorch")
    config = SearchConfig(task="moons", evaluator=evaluator, steps=steps, children_per_step=15, seed=seed)
    created = time.perf_counter()
    study = Study.create(directory / f"{trainer}.db", config)
    start = time.perf_counter()
    study.run(progress=True)
    end = time.perf_counter()
    seconds = end - start
    rewards = np.array([t.reward for t in study.trials()]).reshape(steps, 15).mean(axis=1)
    window = min(50, steps)
    summary = study.summary()
    epochs = float(np.mean([t.epochs for t in study.trials()]))
    study.close()
    return {
        "seconds": seconds,
        "seconds_with_create": end - created,  # also building the study, its controller and trainer
        "best": summary["architecture"],
        "val_score": summary["val_score"],
        "test_score": summary["test_score"],
        "params": summary["params"],
        "first_steps_mean_reward": float(rewards[:window].mean()),
        "last_steps_mean_reward": float(rewards[-window:].mean()),
        "mean_epochs": epochs,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trainers", default="batched,serial")
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--name", default="seed_experiment", help="write results/NAME.json")
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as directory:
        for trainer in args.trainers.split(","):
            results[trainer] = run(trainer, args.steps, args.seed, Path(directory))
            print(trainer, results[trainer], flush=True)
    rows = [
        [
            name,
            r["seconds"],
            r["seconds_with_create"],
            r["best"],
            r["val_score"],
            r["test_score"],
            r["first_steps_mean_reward"],
            r["last_steps_mean_reward"],
            r["mean_epochs"],
        ]
        for name, r in results.items()
    ]
    report(
        args.name,
        f"seed experiment: {args.steps} steps x 15 children, seed {args.seed}, {TrainConfig()}",
        ["trainer", "seconds", "with create", "best", "val acc", "test acc", "reward first 50", "reward last 50",
         "mean epochs"],  # fmt: skip
        rows,
        {"steps": args.steps, "seed": args.seed, "train_config": TrainConfig().to_config(), "trainers": results},
    )


if __name__ == "__main__":
    main()

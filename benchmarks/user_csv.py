"""Your own CSV, end to end through the command line, against a tuned scikit-learn MLPClassifier.

scikit-learn's wine data (178 rows, 13 features, 3 cultivars) is written to a CSV
file with string labels; ``archsearch search --data wine.csv --target cultivar``
searches it with ``--refit`` (the final pick is retrained on train + validation,
as the grid search's refit does); an ``MLPClassifier`` is tuned by grid search on
the very same train/validation split (the split archsearch made, read back from
the study) and refit on train + validation, and both are scored on the same test
rows. The table also shows archsearch's pick before its refit.

    .venv/bin/python benchmarks/user_csv.py [--steps 100] [--seeds 5]
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from _common import report
from sklearn.datasets import load_wine
from sklearn.model_selection import GridSearchCV, PredefinedSplit
from sklearn.neural_network import MLPClassifier

from archsearch import Study
from archsearch.evaluation import load_model, split_score

GRID = {
    "hidden_layer_sizes": [(8,), (16,), (32,), (16, 16), (32, 32), (8, 4, 4)],
    "alpha": [1e-4, 1e-3, 1e-2, 1e-1],
    "learning_rate_init": [1e-3, 1e-2],
}


def write_wine(path: Path) -> None:
    data = load_wine()
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([*data.feature_names, "cultivar"])
        writer.writerows([*x, ["barolo", "grignolino", "barbera"][y]] for x, y in zip(data.data, data.target))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--seeds", type=int, default=5, help="searches with seeds 0..N-1 (each its own split)")
    args = parser.parse_args()
    rows, results = [], []
    for seed in range(args.seeds):
        result = run(args.steps, seed)
        results.append(result)
        ours, theirs = result["archsearch"], result["sklearn"]
        rows.append([seed, ours["architecture"], ours["val_accuracy"], ours["test_accuracy_before_refit"],
                     ours["test_accuracy"], ours["seconds"],
                     theirs["best_params"], theirs["val_accuracy"], theirs["test_accuracy"], theirs["seconds"]])  # fmt: skip
        print(rows[-1], flush=True)
    mean_ours = float(np.mean([r["archsearch"]["test_accuracy"] for r in results]))
    mean_theirs = float(np.mean([r["sklearn"]["test_accuracy"] for r in results]))
    report(
        "user_csv",
        f"wine.csv through the CLI: {args.steps} steps x 15 children per search; one split per seed",
        [
            "seed",
            "archsearch best",
            "val",
            "test before refit",
            "test",
            "s",
            "MLPClassifier grid best",
            "val",
            "test",
            "s",
        ],
        rows,
        {"steps": args.steps, "runs": results, "mean_test_accuracy": {"archsearch": mean_ours, "sklearn": mean_theirs}},
    )
    gap = (mean_theirs - mean_ours) * 100
    print(f"mean test accuracy over {args.seeds} splits: archsearch {mean_ours:.4f}, tuned MLPClassifier "
          f"{mean_theirs:.4f}: {'within' if gap <= 1 else 'NOT within'} 1 point ({gap:+.1f} points)")  # fmt: skip


def run(steps: int, seed: int) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        data, study_path = Path(folder) / "wine.csv", Path(folder) / "wine.db"
        write_wine(data)
        command = [sys.executable, "-m", "archsearch", "search", "--data", str(data), "--target", "cultivar",
                   "--steps", str(steps), "--study", str(study_path), "--seed", str(seed), "--quiet", "--refit"]  # fmt: skip
        started = time.perf_counter()
        subprocess.run(command, check=True)
        search_seconds = time.perf_counter() - started
        summary = json.loads(
            subprocess.run([*command[:3], "best", str(study_path), "--json"], check=True, capture_output=True).stdout
        )
        with Study.open(study_path, readonly=True) as study:
            task = study.task
            searched = load_model(study.best().architecture, task, study._storage.best_model()[1])
            before_refit = split_score(searched, task, "test")
        x_fit = np.concatenate([task.x_train.numpy(), task.x_val.numpy()])
        y_fit = np.concatenate([task.y_train.numpy(), task.y_val.numpy()])
        fold = np.r_[-np.ones(len(task.y_train)), np.zeros(len(task.y_val))]  # validate on archsearch's split
        started = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            grid = GridSearchCV(MLPClassifier(max_iter=2000, random_state=0), GRID, cv=PredefinedSplit(fold))
            grid.fit(x_fit, y_fit)
        grid_seconds = time.perf_counter() - started
        sklearn_test = float(grid.score(task.x_test.numpy(), task.y_test.numpy()))
    return {
        "seed": seed,
        "archsearch": {**{k: summary[k] for k in ("architecture", "val_accuracy", "test_accuracy", "params")},
                       "test_accuracy_before_refit": before_refit, "seconds": search_seconds},
        "sklearn": {"best_params": str(grid.best_params_), "val_accuracy": float(grid.best_score_),
                    "test_accuracy": sklearn_test, "seconds": grid_seconds},
    }  # fmt: skip


if __name__ == "__main__":
    main()

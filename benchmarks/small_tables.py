"""Small tables: archsearch with its default settings against tuned scikit-learn models on five bundled data sets.

scikit-learn's iris, wine, breast cancer, digits (8x8 images as 64 features) and diabetes are written to CSV
files (the features, then a column ``target``: class labels as integers, diabetes's values as decimals like
151.0, from which archsearch infers regression). Two subcommands do the slow parts separately, so that the
baselines are fitted once and reused while archsearch's settings are varied:

* ``search`` runs ``archsearch search --data F --target target --split-seed S`` through the CLI for split
  seeds 0..N-1, with no other flag unless given (``--steps``, ``--children-per-step``, ``--extra``), and
  records each search's wall time, best architecture, scores and the settings archsearch used;
* ``baselines`` reads each split's rows back from a one-child study on the same file and split seed (so with
  archsearch's own preprocessing: standardised features, and for regression a standardised target, which
  leaves R² unchanged), tunes logistic regression (ridge for regression), an MLPClassifier (MLPRegressor) and
  a HistGradientBoosting model by grid search on that train/validation split, refits each on train +
  validation and scores it on the test rows (accuracy, or R²). They run on one thread (BLAS and OpenMP): on a
  shared two-core machine OpenMP's waiting threads made HistGradientBoosting 5 to 20 times slower, with the same
  scores;
* ``table`` compares the two (``search`` prints it too): per data set, archsearch's mean test score over the
  splits against the best baseline's, within 1 point of accuracy (0.02 R² for regression) or not;
* ``ensemble`` takes the studies that ``search --keep FOLDER`` kept and builds each one's ensemble of its K
  best architectures (what ``--ensemble K`` does when a search ends; the trials do not depend on it, so a copy
  of each study is given the setting instead of searching again), then compares the ensembles' test scores
  with the single networks' and the baselines'.

    .venv/bin/python benchmarks/small_tables.py baselines [--datasets iris,wine] [--splits 5]
    .venv/bin/python benchmarks/small_tables.py search [--datasets iris] [--splits 5] [--steps 100]
        [--children-per-step 15] [--extra '--weight-decay 0.001'] [--name NAME] [--timeout 300] [--keep FOLDER]
    .venv/bin/python benchmarks/small_tables.py table [--name NAME]
    .venv/bin/python benchmarks/small_tables.py ensemble --keep FOLDER [--name NAME] [--k 5]
"""

from __future__ import annotations

import argparse
import json
import re
import sqlite3
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np
from _common import RESULTS, machine, report
from sklearn.base import BaseEstimator
from sklearn.datasets import load_breast_cancer, load_diabetes, load_digits, load_iris, load_wine
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import GridSearchCV, PredefinedSplit
from sklearn.neural_network import MLPClassifier, MLPRegressor
from threadpoolctl import threadpool_limits

from archsearch import Study

LOADERS: dict[str, Callable[..., Any]] = {
    "iris": load_iris,
    "wine": load_wine,
    "breast_cancer": load_breast_cancer,
    "digits": load_digits,
    "diabetes": load_diabetes,
}
REGRESSION = {"diabetes"}
LOG_GRID = np.logspace(-3, 3, 13).tolist()
MLP_GRID = {
    "hidden_layer_sizes": [(8,), (16,), (32,), (16, 16), (32, 32), (8, 4, 4)],
    "alpha": [1e-4, 1e-3, 1e-2, 1e-1],
    "learning_rate_init": [1e-3, 1e-2],
}
HGB_GRID = {"learning_rate": [0.03, 0.1], "max_leaf_nodes": [7, 15, 31], "min_samples_leaf": [5, 20]}
BASELINES_JSON = RESULTS / "small_tables_baselines.json"
BEST = ("architecture", "metric", "val_score", "test_score", "params", "trials", "refit")  # of 'archsearch best --json'
SETTINGS = ("steps", "children_per_step", "strategy", "space", "trainer", "refit", "ensemble")  # of the study's config


def write_csv(dataset: str, folder: Path) -> Path:
    """The data set as FOLDER/DATASET.csv: a header row, the features, then ``target``."""
    frame = LOADERS[dataset](as_frame=True).frame
    frame["target"] = frame["target"].astype(float if dataset in REGRESSION else int)
    path = folder / f"{dataset}.csv"
    frame.to_csv(path, index=False)
    return path


def archsearch(*arguments: str, timeout: float | None = None) -> subprocess.CompletedProcess:
    """``python -m archsearch ARGUMENTS``, its output captured; fails if it does, or runs past ``timeout``."""
    command = [sys.executable, "-m", "archsearch", *arguments]
    return subprocess.run(command, check=True, capture_output=True, text=True, timeout=timeout)


def search(data: Path, split: int, options: list[str], timeout: float | None) -> dict[str, Any]:
    """One search through the CLI on split seed ``split``: its wall time, best trial and settings."""
    study = data.with_name(f"{data.stem}_s{split}.db")
    command = ["search", "--data", str(data), "--target", "target", "--split-seed", str(split),
               "--study", str(study), "--quiet", *options]  # fmt: skip
    started = time.perf_counter()
    try:
        printed = archsearch(*command, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"split_seed": split, "timed_out": True, "seconds": time.perf_counter() - started}
    seconds = time.perf_counter() - started
    best = json.loads(archsearch("best", str(study), "--json").stdout)
    with Study.open(study, readonly=True) as opened:
        config = opened.config
    return {
        "split_seed": split,
        "timed_out": False,
        "seconds": seconds,
        **{key: best[key] for key in BEST},
        "ensemble": best.get("ensemble"),
        "final_test_score": (best.get("ensemble") or best)["test_score"],  # the study's final model's
        "printed": printed.stdout.splitlines(),
        "warnings": printed.stderr.splitlines(),
        "csv_sha256": config["task"]["sha256"],
        "settings": {key: config.get(key) for key in SETTINGS},
    }


def split_rows(data: Path, split: int) -> tuple[Any, str]:
    """The task of split seed ``split`` of ``data`` as archsearch holds it (from a one-child study), its CSV's hash."""
    study = data.with_name(f"{data.stem}_rows_s{split}.db")
    archsearch("search", "--data", str(data), "--target", "target", "--split-seed", str(split), "--study", str(study),
               "--steps", "1", "--children-per-step", "1", "--quiet")  # fmt: skip
    with Study.open(study, readonly=True) as opened:
        return opened.task, opened.config["task"]["sha256"]


def models(regression: bool) -> dict[str, tuple[BaseEstimator, dict[str, list]]]:
    """The baselines and their grids."""
    if regression:
        return {
            "linear": (Ridge(), {"alpha": LOG_GRID}),
            "mlp": (MLPRegressor(max_iter=2000, random_state=0), MLP_GRID),
            "hgb": (HistGradientBoostingRegressor(random_state=0), HGB_GRID),
        }
    return {
        "linear": (LogisticRegression(max_iter=5000), {"C": LOG_GRID}),
        "mlp": (MLPClassifier(max_iter=2000, random_state=0), MLP_GRID),
        "hgb": (HistGradientBoostingClassifier(random_state=0), HGB_GRID),
    }


def tuned(model: BaseEstimator, grid: dict[str, list], task: Any) -> dict[str, Any]:
    """``model`` grid-searched on the task's train/validation split, refit on both, scored on its test rows."""
    x_fit = np.concatenate([task.x_train.numpy(), task.x_val.numpy()])
    y_fit = np.concatenate([task.y_train.numpy(), task.y_val.numpy()])
    fold = np.r_[-np.ones(len(task.y_train)), np.zeros(len(task.y_val))]  # validate on archsearch's split
    started = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        search = GridSearchCV(model, grid, cv=PredefinedSplit(fold), refit=True).fit(x_fit, y_fit)
        test_score = float(search.score(task.x_test.numpy(), task.y_test.numpy()))
    return {
        "best_params": {key: str(value) for key, value in search.best_params_.items()},
        "val_score": float(search.best_score_),
        "test_score": test_score,
        "seconds": time.perf_counter() - started,
        "convergence_warnings": sum(issubclass(w.category, ConvergenceWarning) for w in caught),
    }


def run_baselines(args: argparse.Namespace) -> None:
    """Fit every baseline on every data set and split; write results/small_tables_baselines.json."""
    results, rows = {}, []
    with tempfile.TemporaryDirectory() as folder, threadpool_limits(1):
        for dataset in args.datasets:
            data, splits = write_csv(dataset, Path(folder)), []
            for split in range(args.splits):
                task, sha256 = split_rows(data, split)
                fits = {name: tuned(model, grid, task) for name, (model, grid) in models(task.regression).items()}
                splits.append({"split_seed": split, "problem": task.problem, "csv_sha256": sha256,
                               "rows": [len(task.y_train), len(task.y_val), len(task.y_test)], **fits})  # fmt: skip
                print(dataset, split, {name: round(fit["test_score"], 4) for name, fit in fits.items()}, flush=True)
            results[dataset] = splits
            names = list(models(dataset in REGRESSION))
            means = {name: float(np.mean([s[name]["test_score"] for s in splits])) for name in names}
            seconds = sum(s[name]["seconds"] for s in splits for name in names)
            rows.append([dataset, *means.values(), max(means, key=means.get), seconds])
    report("small_tables_baselines", f"tuned scikit-learn baselines: mean test accuracy (diabetes: R²) over "
           f"{args.splits} splits; linear: logistic regression (ridge); HGB: HistGradientBoosting",
           ["data set", "linear", "MLP", "HGB", "best", "s in all"],
           rows, {"splits": args.splits, "grids": {"log": LOG_GRID, "mlp": str(MLP_GRID), "hgb": HGB_GRID},
                  "datasets": results})  # fmt: skip


def run_search(args: argparse.Namespace) -> None:
    """Search every data set and split with archsearch's CLI; write results/small_tables_search_NAME.json."""
    options = [*(["--steps", str(args.steps)] if args.steps else []),
               *(["--children-per-step", str(args.children_per_step)] if args.children_per_step else []),
               *args.extra.split()]  # fmt: skip
    name = args.name or re.sub(r"[^A-Za-z0-9.]+", "_", " ".join(options)).strip("_") or "default"
    searched = {"options": options, "timeout": args.timeout, "datasets": {}}
    path = RESULTS / f"small_tables_search_{name}.json"
    with tempfile.TemporaryDirectory() as temporary:
        folder = args.keep or temporary
        Path(folder).mkdir(parents=True, exist_ok=True)
        for dataset in args.datasets:
            data, runs = write_csv(dataset, Path(folder)), searched["datasets"].setdefault(dataset, [])
            for split in range(args.splits):
                runs.append(search(data, split, options, args.timeout))
                print(dataset, split, f"{runs[-1]['seconds']:.0f} s", "timed out" if runs[-1]["timed_out"]
                      else f"{runs[-1]['metric']} {runs[-1]['test_score']:.4f}", flush=True)  # fmt: skip
                path.write_text(json.dumps({"machine": machine(), **searched}, indent=2))  # so far, if stopped
    compare(name, searched)


def with_ensemble(study: Path, k: int, folder: Path) -> Path:
    """A copy of ``study`` in ``folder`` whose config asks for an ensemble of ``k`` (``--ensemble K``)."""
    copy = folder / study.name
    with sqlite3.connect(study) as source, sqlite3.connect(copy) as target:
        source.backup(target)
        config = json.loads(target.execute("SELECT value FROM meta WHERE key = 'config'").fetchone()[0])
        target.execute("UPDATE meta SET value = ? WHERE key = 'config'", (json.dumps({**config, "ensemble": k}),))
    source.close()
    target.close()
    return copy


def run_ensemble(args: argparse.Namespace) -> None:
    """Build the ensemble of every kept study; write results/small_tables_ensemble_NAME_kK.json."""
    searched = json.loads((RESULTS / f"small_tables_search_{args.name}.json").read_text())
    baselines = json.loads(BASELINES_JSON.read_text())["datasets"]
    results, rows = {"k": args.k, "search": args.name, "datasets": {}}, []
    with tempfile.TemporaryDirectory() as folder:
        for dataset, runs in searched["datasets"].items():
            done = []
            for run in (r for r in runs if not r["timed_out"]):
                copy = with_ensemble(Path(args.keep) / f"{dataset}_s{run['split_seed']}.db", args.k, Path(folder))
                started = time.perf_counter()
                with Study.open(copy) as study:
                    summary = study.build_ensemble()
                    single = study.test_score()
                done.append({"split_seed": run["split_seed"], "members": summary["members"],
                             "test_score": summary["test_score"], "single_test_score": single,
                             "seconds": time.perf_counter() - started})  # fmt: skip
                print(dataset, run["split_seed"], f"single {single:.4f} ensemble {summary['test_score']:.4f}",
                      flush=True)  # fmt: skip
            results["datasets"][dataset] = done
            regression = dataset in REGRESSION
            fitted = {fit["split_seed"]: fit for fit in baselines[dataset]}
            best = max(models(regression),
                       key=lambda m: np.mean([fitted[d["split_seed"]][m]["test_score"] for d in done]))  # fmt: skip
            theirs = float(np.mean([fitted[d["split_seed"]][best]["test_score"] for d in done]))
            single = float(np.mean([d["single_test_score"] for d in done]))
            ours = float(np.mean([d["test_score"] for d in done]))
            scale, bar = (1, 0.02) if regression else (100, 1.0)
            rows.append([dataset, single, ours, best, theirs, (theirs - ours) * scale, (theirs - ours) * scale <= bar,
                         float(np.mean([d["seconds"] for d in done]))])  # fmt: skip
    report(f"small_tables_ensemble_{args.name}_k{args.k}",
           f"archsearch's ensemble of its {args.k} best architectures against its best network alone and the best "
           f"tuned baseline: mean test accuracy (diabetes: R²) over the splits of search '{args.name}'",
           ["data set", "single", "ensemble", "best baseline", "its score", "gap", "within", "s to build"],
           rows, results)  # fmt: skip


def run_table(args: argparse.Namespace) -> None:
    """Compare a search's results with the baselines again (after either was rerun)."""
    compare(args.name, json.loads((RESULTS / f"small_tables_search_{args.name}.json").read_text()))


def compare(name: str, searched: dict[str, Any]) -> None:
    """Per data set: archsearch's mean test score against the baselines' on the same splits; print the table and
    write the search results with this verdict to results/small_tables_search_NAME.json."""
    baselines = json.loads(BASELINES_JSON.read_text())["datasets"] if BASELINES_JSON.exists() else {}
    verdict, rows = {}, []
    for dataset, runs in searched["datasets"].items():
        done = [r for r in runs if not r["timed_out"]]
        fitted = {s["split_seed"]: s for s in baselines.get(dataset, [])}
        regression = dataset in REGRESSION
        row = {
            "metric": "r2" if regression else "accuracy",
            "split_seeds": [r["split_seed"] for r in done],
            "timed_out": len(runs) - len(done),
            "seconds_per_search": float(np.mean([r["seconds"] for r in runs])),
            "archsearch": float(np.mean([r.get("final_test_score", r["test_score"]) for r in done])) if done else None,
        }
        same_rows = all(r["split_seed"] in fitted and fitted[r["split_seed"]]["csv_sha256"] == r["csv_sha256"]
                        for r in done)  # fmt: skip
        if done and same_rows:
            means = {model: float(np.mean([fitted[r["split_seed"]][model]["test_score"] for r in done]))
                     for model in models(regression)}  # fmt: skip
            best = max(means, key=means.get)
            gap = (means[best] - row["archsearch"]) * (1 if regression else 100)
            bar = 0.02 if regression else 1.0
            row.update(baselines=means, best_baseline=best, gap=gap, bar=bar, within=gap <= bar)
        verdict[dataset] = row
        ours = "-" if row["archsearch"] is None else row["archsearch"]
        theirs = row["baselines"].values() if "baselines" in row else ["-"] * 3
        within = {True: "yes", False: "NO"}.get(row.get("within"), "-")
        rows.append([dataset, ours, *theirs, row.get("gap", "-"), within, row["seconds_per_search"], row["timed_out"]])
    columns = ["data set", "archsearch", "linear", "MLP", "HGB", "gap", "within", "s per search", "timed out"]
    if not any(v["timed_out"] for v in verdict.values()):  # narrow enough for 80 columns
        columns, rows = columns[:-1], [r[:-1] for r in rows]
    verdict["all_within"] = all(v.get("within", False) for v in verdict.values())
    # the search results keep their own "machine" (where the searches ran): it overrides the one report() adds
    report(f"small_tables_search_{name}",
           f"archsearch ({' '.join(searched['options']) or 'defaults'}): mean test accuracy (diabetes: R²) "
           f"against the best tuned baseline's over {len(rows)} data sets; gap in points (R²), within 1 point (0.02)",
           columns,
           rows, {**searched, "verdict": verdict})  # fmt: skip


def datasets(text: str) -> list[str]:
    """The data sets of a comma-separated list."""
    names = text.split(",")
    if unknown := set(names) - set(LOADERS):
        raise argparse.ArgumentTypeError(f"unknown: {','.join(sorted(unknown))}; known: {','.join(LOADERS)}")
    return names


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    fit = commands.add_parser("baselines", help="fit the tuned scikit-learn baselines")
    searches = commands.add_parser("search", help="run archsearch's searches and compare them with the baselines")
    for sub in (fit, searches):
        sub.add_argument("--datasets", type=datasets, default=list(LOADERS),
                         help=f"comma-separated, of {','.join(LOADERS)} (default: all)")  # fmt: skip
        sub.add_argument("--splits", type=int, default=5, help="split seeds 0..N-1 (default: 5)")
    searches.add_argument("--steps", type=int, help="archsearch's --steps (default: not given)")
    searches.add_argument("--children-per-step", type=int, help="archsearch's --children-per-step (default: not given)")
    searches.add_argument("--extra", default="", help="more 'archsearch search' options, in one string")
    searches.add_argument("--name", help="results/small_tables_search_NAME.json (default: from the options given, "
                          "or 'default')")  # fmt: skip
    searches.add_argument("--keep", metavar="FOLDER",
                          help="write the data files and studies here and keep them (default: a temporary folder)")
    searches.add_argument("--timeout", type=float,
                          help="seconds a search may run before it is stopped and left out (it counts as that long)")
    ensemble = commands.add_parser("ensemble", help="build the ensembles of the studies a search kept")
    ensemble.add_argument("--keep", required=True, metavar="FOLDER", help="the folder of 'search --keep FOLDER'")
    ensemble.add_argument("--name", default="default", help="the search results (default: 'default')")
    ensemble.add_argument("--k", type=int, default=5, help="networks per ensemble (default: 5)")
    table = commands.add_parser("table", help="compare earlier search results with the baselines again")
    table.add_argument("--name", default="default", help="the search results to compare (default: 'default')")
    args = parser.parse_args()
    {"baselines": run_baselines, "search": run_search, "table": run_table, "ensemble": run_ensemble}[args.command](args)


if __name__ == "__main__":
    main()

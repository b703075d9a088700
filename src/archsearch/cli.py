"""The ``archsearch`` command line.

Every bad input ends with one line on stderr and exit code 2; nothing is
written before the inputs are known to be good. A study that cannot be written
(a full disk) is also one line and exit code 2; its committed trials are kept.
Ctrl-C ends a command with one line and 130, SIGTERM with one line and 143
(128 + the signal, as a shell reports a process the signal ended); a search
or resume stopped either way keeps every finished trial and is resumable. A
closed stdout (``| head``) ends a command quietly with 141.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import itertools
import json
import math
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from archsearch import _limits as limits
from archsearch._objectives import MAX_COUNT_LIMIT
from archsearch._outputs import check_output_dir, check_output_file, default_output, study_paths
from archsearch.errors import ArchsearchError

if TYPE_CHECKING:  # imported where it is used, like every part
    from archsearch.config import Parts, SearchConfig

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # Ctrl-C (SIGINT)
EXIT_BROKEN_PIPE = 141  # stdout's reader went away (SIGPIPE)
EXIT_TERMINATED = 143  # SIGTERM
QUIET_HELP = "no progress on stderr (otherwise: a bar on a terminal, else a line every few seconds)"


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is a single line."""

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: error: {_one_line(message)} (see '{self.prog} --help')", file=sys.stderr)
        sys.exit(EXIT_USAGE)


def _integer(minimum: int, name: str, maximum: int | Callable[[], int] | None = None, why: str = ""):  # noqa: ANN202
    """An argparse type for integers from ``minimum`` to ``maximum`` (a number, or a function of this
    machine, such as its cores); ``name`` says which in the error, ``why`` explains the maximum."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a {name} integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be a {name} integer, got {text}")
        most = maximum() if callable(maximum) else maximum
        if most is not None and value > most:
            raise argparse.ArgumentTypeError(f"must be at most {most}{why}, got {text}")
        return value

    return parse


_positive_int = _integer(1, "positive")
_cost_limit = _integer(1, "positive", MAX_COUNT_LIMIT)
_non_negative_int = _integer(0, "non-negative")
_seed = _integer(0, "non-negative", limits.MAX_SEED, " (2**63 - 1)")
_steps = _integer(1, "positive", limits.MAX_STEPS)
_children = _integer(1, "positive", limits.MAX_CHILDREN_PER_STEP)
_epochs = _integer(1, "positive", limits.MAX_EPOCHS)
_batch_size = _integer(1, "positive", limits.MAX_BATCH_SIZE)
_layers = _integer(1, "positive", limits.MLP_MAX_LAYERS, f" (mlp; cnn: {limits.CNN_MAX_LAYERS})")
_count = _integer(1, "positive", limits.MAX_COUNT)
_folds = _integer(1, "positive", limits.MAX_FOLDS)
_ensemble = _integer(1, "positive", limits.MAX_ENSEMBLE)
_trial = _integer(0, "non-negative", limits.MAX_STEPS * limits.MAX_CHILDREN_PER_STEP, " (a trial number)")
_hidden = _integer(1, "positive", limits.MAX_HIDDEN_SIZE)
_budget = _integer(1, "positive", limits.MAX_BUDGET)
_retries = _integer(0, "non-negative", limits.MAX_RETRIES)
_natural = _integer(0, "non-negative", limits.MAX_COUNT)
_processes = _integer(1, "positive", limits.max_workers, f" ({limits.WORKERS_PER_CORE} per core of this machine)")
_threads = _integer(1, "positive", limits.available_cores, " (the cores of this machine)")


def _numbers(text: str) -> list[float]:
    """An argparse type: finite numbers separated by commas."""
    try:
        values = [float(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, got {text!r:.60}") from None
    if not all(math.isfinite(v) for v in values):
        raise argparse.ArgumentTypeError(f"expected finite numbers, got {text!r:.60}")
    return values


def _real(maximum: float, zero: bool = False):  # noqa: ANN202 -- an argparse type
    """An argparse type for finite numbers > 0 (>= 0 with ``zero``) up to ``maximum``."""
    name = "non-negative" if zero else "positive"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a {name} number, got {text!r}") from None
        if not math.isfinite(value) or value < 0 or (value == 0 and not zero):
            raise argparse.ArgumentTypeError(f"must be a {name} finite number, got {text}")
        if value > maximum:
            raise argparse.ArgumentTypeError(f"must be at most {limits.plain(maximum)}, got {text}")
        return value + 0.0  # -0.0 is 0.0

    return parse


_rate = _real(limits.MAX_RATE)
_rate_or_zero = _real(limits.MAX_RATE, zero=True)
_seconds = _real(limits.MAX_TIME_LIMIT)


def _device(text: str) -> str:
    """``--device``: its form here (one line naming the flag); whether this machine has it, where it is used."""
    if limits.DEVICE_FORM.fullmatch(text) is None:
        raise argparse.ArgumentTypeError(f"must be cpu, cuda or cuda:N, got {text!r}")
    return text


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="archsearch", description="Neural architecture search that never loses work.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (_search_parser, _resume_parser, _trials_parser, _best_parser, _pareto_parser, _report_parser,
                _export_parser, _compare_parser, _baseline_parser, _sample_parser, _replay_parser):  # fmt: skip
        add(commands)
    return parser


def _search_parser(commands: argparse._SubParsersAction) -> None:
    from archsearch.evaluation import TABULAR_BENCHMARKS
    from archsearch.strategies import STRATEGIES

    search = commands.add_parser("search", help="start a new search", description="Start a new search.")
    search.add_argument(
        "--task",
        default=None,
        choices=_task_names(),
        help="data set (default: moons); image tasks (digits, mnist-5k, mnist, fashion-mnist) search CNNs",
    )
    search.add_argument(
        "--data-dir", type=_path, default=None,
        help="with --task mnist or fashion-mnist: the folder of its IDX files; with ptb: the folder of ptb.train.txt, "
        "ptb.valid.txt and ptb.test.txt (default: the text of the optional extra, archsearch[ptb])",
    )  # fmt: skip
    _space_arguments(search)
    search.add_argument(
        "--benchmark",
        default=None,
        choices=list(TABULAR_BENCHMARKS),
        help="search a tabular benchmark instead of a task: rewards are looked up, nothing is trained",
    )
    search.add_argument("--noisy", action="store_true", help="with --benchmark: reward one recorded run, not the mean")
    _data_arguments(search.add_argument_group("your own data (instead of --task)"))
    _goal_arguments(search.add_argument_group("costs and objectives (see docs/pareto.md)"))
    search.add_argument(
        "--split-seed",
        type=_seed,
        default=None,
        help="seed of the --data split (default: the study seed); fix it to compare searches on one split",
    )
    search.add_argument(
        "--strategy", default="reinforce", choices=list(STRATEGIES), help="search strategy (default: reinforce)"
    )
    search.add_argument(
        "--strategy-settings", type=_strategy_settings, default=None, metavar="KEY=VALUE,...",
        help="the strategy's own settings, e.g. miha: m=3,pop_size=4,n=1,k=2,c=5,fitness=loss; pbt: "
        "population_size=8,interval=2,rounds=10,quantile=0.25,resample=0.25 (see docs/population.md)",
    )  # fmt: skip
    search.add_argument(
        "--keep-final-only", action="store_true",
        help="miha, pbt: once the search is done, delete every saved network but the final one (lineage JSON stays)",
    )  # fmt: skip
    search.add_argument(
        "--steps", type=_steps, default=500, help=f"strategy updates (default: 500; at most {limits.MAX_STEPS:,})"
    )
    search.add_argument(
        "--children-per-step",
        type=_children,
        default=15,
        help=f"architectures per update (default: 15; at most {limits.MAX_CHILDREN_PER_STEP:,})",
    )
    search.add_argument("--seed", type=_seed, default=0, help="study seed, 0 to 2**63 - 1 (default: 0)")
    search.add_argument(
        "--study", type=_path, default=None, help="study file to create (default: runs/TASK-STRATEGY-sSEED.db)"
    )
    search.add_argument(
        "--overwrite",
        action="store_true",
        help="replace a study already at the study's path, with its saved children, once the new search's "
        "settings and data have been checked (anything but a study, or a study being run, is still refused)",
    )
    _search_training_arguments(search.add_argument_group("child training"))
    _sharing_arguments(search.add_argument_group("weight sharing (ENAS): one supernet instead of a network per child"))
    _controller_arguments(search.add_argument_group("reinforce controller"))
    where = search.add_argument_group("where children run (never changes the trials)")
    _executor_arguments(where)
    where.add_argument(
        "--asynchronous",
        action="store_true",
        help="evolution and random: keep --children-per-step children in flight, tell each result (in trial "
        "order) as it comes in and propose a replacement at once, instead of waiting for a whole step",
    )
    search.add_argument("--quiet", action="store_true", help=QUIET_HELP)


def _space_arguments(search: argparse.ArgumentParser) -> None:
    """``search``'s options that choose the space and size its members."""
    search.add_argument(
        "--space",
        choices=("mlp", "cnn", "dag-cell", "tree-cell", "activation", "update-rule", "settings"),
        default=None,
        help="search space (default: cnn for image tasks, dag-cell (ENAS's recurrent cell) for ptb, mlp otherwise; "
        "tree-cell: Zoph & Le's; activation, update-rule: a formula in a fixed network, see docs/components.md; "
        "settings: an MLP with its optimizer, learning rate and batch size, see docs/settings.md)",
    )
    search.add_argument(
        "--hidden", type=_hidden, default=None,
        help=f"dag-cell and tree-cell: the cell's hidden size, also the word embedding's (default: 128; at most "
        f"{limits.MAX_HIDDEN_SIZE})",
    )  # fmt: skip
    search.add_argument(
        "--units", type=_widths, default=None, metavar="N,...",
        help="--space mlp or settings: the widths a hidden layer may take (default: 1,2,4,8,16,32)",
    )  # fmt: skip
    search.add_argument(
        "--optimizers", type=_names, default=None, metavar="NAME,...",
        help="--space settings: the optimizers to choose from (default: sgd,adam,adamw,adadelta,rmsprop,adagrad)",
    )  # fmt: skip
    search.add_argument(
        "--max-layers",
        type=_layers,
        default=None,
        help=f"deepest child (default: 5 for mlp, 4 for cnn; at most {limits.MLP_MAX_LAYERS} for mlp, "
        f"{limits.CNN_MAX_LAYERS} for cnn); dag-cell: the cell's nodes (default: 8)",
    )
    search.add_argument(
        "--no-skips", action="store_true", help="cnn space: no skip connections (default: the controller chooses them)"
    )
    search.add_argument(
        "--no-batch-norm",
        action="store_true",
        help="cnn space: no batch normalization (default: after every convolution)",
    )


def _goal_arguments(goals: argparse._ArgumentGroup) -> None:
    """``search``'s options for searching accuracy and cost together."""
    goals.add_argument(
        "--objectives", default=None, metavar="METRIC:DIR,...",
        help="two or more of val_score, reward, params, flops, latency_ms, epochs, seconds, each :min or :max, for "
        "the strategies that rank by several (nsga2, pareto-evolution) and the study's front (pareto, report)",
    )  # fmt: skip
    goals.add_argument("--max-params", type=_cost_limit, default=None, metavar="N",
                       help="train no architecture of more parameters: it is recorded as infeasible")  # fmt: skip
    goals.add_argument("--max-flops", type=_cost_limit, default=None, metavar="N",
                       help="train no architecture of more FLOPs per example: it is recorded as infeasible")
    goals.add_argument("--max-latency-ms", type=_real(1e6), default=None, metavar="MS",
                       help="train no architecture slower than this on one example (measured on this CPU)")
    goals.add_argument(
        "--cost-target", default=None, metavar="COST=VALUE",
        help="scalarise the reward as MnasNet does: reward * (cost / VALUE) ** w, for params, flops or latency_ms "
        "(a soft constraint for the strategies of one reward)",
    )  # fmt: skip
    goals.add_argument("--cost-weight", type=float, default=-0.07, metavar="W",
                       help="the exponent w of --cost-target, in -10..0 (default: -0.07, MnasNet's)")
    goals.add_argument("--latency", action="store_true",
                       help="time every child's forward pass on one example, batch 1, on this CPU")


def _data_arguments(data: argparse._ArgumentGroup) -> None:
    """``search``'s options for the user's own data file."""
    data.add_argument("--data", type=_path, default=None, help="a .csv file with a header row, or an .npz with X and y")
    data.add_argument("--target", default=None, help="the CSV column that holds the labels or values to predict")
    data.add_argument(
        "--problem",
        choices=("classification", "regression"),
        default=None,
        help="default: inferred from the target (text or <= 20 distinct whole numbers: classification; "
        "fractional numbers, or more whole numbers all written as decimals like 151.0: regression)",
    )
    data.add_argument(
        "--split",
        type=_fractions,
        default=(0.7, 0.2, 0.1),
        help="train,validation,test fractions, stratified by class for classification (default: 0.7,0.2,0.1)",
    )


def _search_training_arguments(train: argparse._ArgumentGroup) -> None:
    """``search``'s child-training options: the trainer, the settings ``baseline`` shares, and what is kept."""
    from archsearch.evaluation import EVALUATORS

    train.add_argument(
        "--trainer",
        default=None,
        choices=[name for name in EVALUATORS if name != "lookup"],
        help="batched: many MLP children in one vectorised pass (default for mlp); "
        "serial: the plain reference loop (default for cnn)",
    )
    _training_arguments(train)
    train.add_argument(
        "--folds",
        type=_folds,
        default=None,
        help="score each child by k-fold cross-validation on the training and validation rows together "
        "(k trainings per child; default: 1, the validation split alone; at most 100)",
    )
    train.add_argument(
        "--monitor",
        choices=("score", "loss"),
        default=None,
        help="what early stopping watches: the validation score (accuracy or R^2) or the validation loss, "
        "finer on a small split (default: score)",
    )
    train.add_argument("--device", type=_device, default="cpu", help="cpu, cuda or cuda:N (default: cpu)")
    train.add_argument(
        "--threads",
        type=_threads,
        default=None,
        help="CPU cores the trainer uses: the batched trainer trains groups of children side by side on "
        "this many threads (its compiled epoch) or worker processes, the serial one uses this many threads "
        "(default: batched, all cores once a step's work pays for them; serial, 1; at most the cores); "
        "never changes results",
    )
    train.add_argument(
        "--reuse-evaluations",
        action="store_true",
        help="train each architecture once and reuse its result when it is proposed again "
        "(faster late in a search; freezes that architecture's reward noise)",
    )
    train.add_argument(
        "--save-children",
        action="store_true",
        help="keep every child's weights in STUDY.children/ (default: only the best network's)",
    )
    train.add_argument(
        "--refit",
        action="store_true",
        help="when the search ends, retrain the best architecture on the training and validation rows "
        "together (for the epochs that set its reward) and make that the study's model",
    )
    train.add_argument(
        "--ensemble",
        type=_ensemble,
        default=None,
        metavar="K",
        help="when the search ends, train the K best architectures again (as --refit says, or as the search "
        "did) and make their average the study's final model (default: 5 for a table of your own, --data; "
        "otherwise 1, the best network alone; at most 100)",
    )


def _sharing_arguments(shared: argparse._ArgumentGroup) -> None:
    shared.add_argument(
        "--weight-sharing",
        action="store_true",
        help="score children with the shared weights of one supernet, trained between strategy steps; then "
        "derive picks and retrain the best from scratch with the child training settings (mlp and cnn spaces)",
    )
    shared.add_argument(
        "--sharing", choices=("slice", "separate"), default=None,
        help="how widths share weights: slices of the widest (default) or a tensor per width",
    )  # fmt: skip
    shared.add_argument(
        "--controller-steps", type=_count, default=None,
        help="strategy steps per pass of supernet training (default: 5)",
    )  # fmt: skip
    shared.add_argument(
        "--derive", type=_count, default=None,
        help="architectures sampled and scored on the whole validation split when the search ends (default: 100)",
    )  # fmt: skip
    shared.add_argument(
        "--retrain", type=_count, default=None, help="the best derived architectures retrained from scratch (default: 1)"
    )
    shared.add_argument(
        "--reward-words", type=_count, default=None,
        help="dag-cell and tree-cell: validation words that score a child with the shared weights (default: 2000)",
    )  # fmt: skip
    shared.add_argument(
        "--pass-words", type=_count, default=None,
        help="dag-cell and tree-cell: words of the training split that one pass of supernet training reads, the "
        "passes going through the split in turn (default: the whole split)",
    )  # fmt: skip
    shared.add_argument(
        "--warmup", type=_natural, default=None,
        help="first passes of supernet training on paths drawn uniformly from the space, before the strategy's "
        "(default: 0, as ENAS)",
    )  # fmt: skip


def _controller_arguments(rl: argparse._ArgumentGroup) -> None:
    rl.add_argument(
        "--controller-lr", type=_rate, default=None, help="Adam learning rate (default: 0.03; at most 10)"
    )
    rl.add_argument(
        "--entropy-weight", type=_rate_or_zero, default=None, help="entropy bonus weight (default: 0.1; at most 10)"
    )
    rl.add_argument(
        "--advantage",
        choices=("rank", "baseline"),
        default=None,
        help="rank: a reward's rank among the last 200 (default); baseline: reward minus a moving average",
    )
    rl.add_argument(
        "--curriculum",
        type=_curriculum,
        default=None,
        metavar="START,EVERY[,BY]",
        help="depth curriculum (Zoph & Le): children have at most START layers, BY (default 1) more "
        "every EVERY sampled children, up to --max-layers (EVERY and BY at most 10**9)",
    )


def _resume_parser(commands: argparse._SubParsersAction) -> None:
    resume = commands.add_parser(
        "resume", help="continue a stopped search", description="Continue a search where it stopped."
    )
    resume.add_argument("study", type=_path, help="study file")
    resume.add_argument(
        "--steps", type=_steps, default=None, help=f"new total number of steps (at most {limits.MAX_STEPS:,})"
    )
    _executor_arguments(resume.add_argument_group("where children run (default: as the search was started)"))
    resume.add_argument("--quiet", action="store_true", help=QUIET_HELP)


def _trials_parser(commands: argparse._SubParsersAction) -> None:
    trials = commands.add_parser("trials", help="list the trials of a study", description="List a study's trials.")
    trials.add_argument("study", type=_path, help="study file")
    trials.add_argument("--top", type=_count, default=None, help="only the N best by reward (N up to 10**6)")
    trials.add_argument("--json", action="store_true", help="JSON instead of a table")


def _replay_parser(commands: argparse._SubParsersAction) -> None:
    replay = commands.add_parser(
        "replay", help="train a found schedule of settings again, from scratch",
        description="Train the schedule that `export` wrote for a miha or pbt study's network (schedule.json) "
        "again from fresh weights, on the study's data: each piece of training continues the last one's weights "
        "with its own optimizer, learning rate, batch size and activations. With the recorded seeds (the default) "
        "it gives back the very network; --seed N draws new ones, to see whether the schedule, not luck, made it.",
    )  # fmt: skip
    replay.add_argument("schedule", type=_path, help="schedule.json from archsearch export")
    replay.add_argument("--study", type=_path, required=True, help="the study whose data and trainer to use")
    replay.add_argument("--seed", type=_seed, default=None, help="new seeds derived from N (default: the recorded ones)")
    replay.add_argument("--json", action="store_true", help="JSON instead of text")


def _best_parser(commands: argparse._SubParsersAction) -> None:
    best = commands.add_parser("best", help="show the best architecture", description="Show the best trial.")
    best.add_argument("study", type=_path, help="study file")
    best.add_argument("--json", action="store_true", help="JSON instead of text")


def _pareto_parser(commands: argparse._SubParsersAction) -> None:
    pareto = commands.add_parser(
        "pareto",
        help="the trials that no other trial beats in every objective",
        description="List the study's non-dominated trials (its Pareto front): those that no other trial matches "
        "or beats in every objective and beats in one. Failed trials, and a weight-sharing study's proxy trials, "
        "are left out; an architecture trained again counts once.",
    )
    pareto.add_argument("study", type=_path, help="study file")
    pareto.add_argument(
        "--objectives",
        default=None,
        help="METRIC:min or METRIC:max, separated by commas; metrics: val_score, reward, params, flops, latency_ms, "
        "epochs, seconds (default: the study's --objectives, else val_score:max,params:min)",
    )
    pareto.add_argument("--json", action="store_true", help="JSON instead of text")


def _report_parser(commands: argparse._SubParsersAction) -> None:
    report = commands.add_parser(
        "report",
        help="write a self-contained HTML report of a study",
        description="Write one HTML file (figures embedded) about a study: rewards, controller, best so far, "
        "decision boundary, random-architecture histogram, top architectures, config.",
    )
    report.add_argument("study", type=_path, help="study file")
    report.add_argument("-o", "--out", type=_path, default=None, help="HTML file (default: STUDY's name, .html)")
    report.add_argument(
        "--top", type=_count, default=10, help="architectures in the table (default: 10; at most 10**6)"
    )
    report.add_argument(
        "--sample", type=_path, default=None, help="a study of random architectures (archsearch sample) to histogram"
    )
    report.add_argument(
        "--reference", type=_numbers, default=None, metavar="V,V,...",
        help="the reference point of the front's hypervolume, one value per objective (default: the nadir of the "
        "study's front, moved out by a tenth of its range)",
    )  # fmt: skip


def _export_parser(commands: argparse._SubParsersAction) -> None:
    export = commands.add_parser(
        "export",
        help="write the best network as weights, architecture, standalone code and ONNX",
        description="Write the study's best network to a folder: weights.safetensors, architecture.json, "
        "model.py (plain PyTorch) and model.onnx (with archsearch[onnx]). A study searched with --ensemble K "
        "writes its ensemble: a folder per member, ensemble.json, model.py and model.onnx for the whole.",
    )
    export.add_argument("study", type=_path, help="study file")
    export.add_argument(
        "--out", type=_path, default=None, help="folder to write (default: the study's name without its extension)"
    )
    export.add_argument(
        "--trial",
        type=_trial,
        default=None,
        metavar="N",
        help="export trial N's network instead (one on the Pareto front, say), with the weights its search "
        "kept: the best's and an ensemble's are in the study, any other needs a search with --save-children",
    )
    export.add_argument(
        "--onnx",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="write model.onnx (default: when the onnx extra is installed)",
    )


def _compare_parser(commands: argparse._SubParsersAction) -> None:
    from archsearch.evaluation import TABULAR_BENCHMARKS
    from archsearch.strategies import STRATEGIES
    from archsearch.tasks import NAMED_TASKS

    compare = commands.add_parser(
        "compare",
        help="run strategies side by side over many seeds",
        description="Run every strategy x seed with the same budget; write a table, results.json and a plot.",
    )
    where = compare.add_mutually_exclusive_group(required=True)
    where.add_argument("--benchmark", choices=list(TABULAR_BENCHMARKS), help="a tabular benchmark (seconds per run)")
    where.add_argument("--task", choices=sorted(NAMED_TASKS), help="a real task: every child is trained")
    compare.add_argument(
        "--strategies",
        type=_strategy_list,
        default=["reinforce", "evolution", "random"],
        help=f"comma-separated, from {','.join(STRATEGIES)} (default: reinforce,evolution,random)",
    )
    compare.add_argument(
        "--seeds",
        type=_integer(1, "positive", limits.MAX_SEEDS),
        default=None,
        help=f"seeds per strategy (default: 30; 3 on a task; at most {limits.MAX_SEEDS:,})",
    )
    compare.add_argument(
        "--budget",
        type=_budget,
        default=None,
        help=f"queries per run (default: 1000; 300 on a task; at most {limits.MAX_BUDGET:,})",
    )
    compare.add_argument(
        "--children-per-step",
        type=_children,
        default=None,
        help=f"architectures per ask (default: 5; 15 on a task; at most {limits.MAX_CHILDREN_PER_STEP:,})",
    )
    compare.add_argument("--noisy", action="store_true", help="with --benchmark: rewards are single recorded runs")
    compare.add_argument(
        "--tolerance",
        type=_real(math.inf, zero=True),
        default=0.0,
        help="with --benchmark: a run has found the best once its pick is within this of it (default: 0)",
    )
    compare.add_argument(
        "--jobs",
        type=_processes,
        default=None,
        help=f"worker processes (default: one per core; at most {limits.WORKERS_PER_CORE} per core)",
    )
    compare.add_argument(
        "--weight-sharing", action="store_true",
        help="with --task: every run searches with shared weights and retrains its pick (see search --weight-sharing)",
    )  # fmt: skip
    compare.add_argument(
        "--space", choices=("mlp", "activation", "update-rule", "settings"), default=None,
        help="with --task: the space every run searches (default: mlp; activation, update-rule: a formula in a "
        "fixed network, see docs/components.md)",
    )  # fmt: skip
    compare.add_argument(
        "--objectives", default=None, metavar="METRIC:DIR,...",
        help="search and measure fronts: every run is a study of these objectives (see search --objectives), and "
        "the table gives the hypervolume of each run's front over queries (on a benchmark, its share of the exact "
        "front's)",
    )  # fmt: skip
    compare.add_argument("--cost-target", default=None, metavar="COST=VALUE",
                         help="scalarise the reward of the strategies of one reward (see search --cost-target)")
    compare.add_argument(
        "--reference", type=_numbers, default=None, metavar="V,V,...",
        help="the hypervolume's reference point, one value per objective (default: the nadir of the best front "
        "known, moved out by a tenth of its range)",
    )  # fmt: skip
    compare.add_argument("--out", type=_path, default=None, help="output folder (default: runs/compare-NAME)")
    compare.add_argument("--quiet", action="store_true", help=QUIET_HELP)


def _baseline_parser(commands: argparse._SubParsersAction) -> None:
    from archsearch.space._cells import STANDARD_CELLS
    from archsearch.tasks import IMAGE_TASKS, NAMED_TASKS, TEXT_TASKS

    baseline = commands.add_parser(
        "baseline",
        help="train the hand-designed network that a search must beat (a CNN on images, a standard cell on ptb)",
        description="Train seed 002's hand-designed CNN (32 and 64 filters of 5x5, max pooling, dropout, a dense "
        "layer of 128) on an image task, or a tanh RNN, LSTM or GRU language model on ptb, with the same training "
        "budget as a search's children; print its accuracy or perplexity. With --activation or --update-rule, "
        "train the fixed network of a component search (--space activation, update-rule) with that formula "
        "instead, on any task.",
    )
    baseline.add_argument("--task", required=True, choices=sorted((*NAMED_TASKS, *IMAGE_TASKS, *TEXT_TASKS)),
                          help="image or text task (any task with --activation or --update-rule)")  # fmt: skip
    formula = baseline.add_mutually_exclusive_group()
    formula.add_argument("--activation", default=None, metavar="FORMULA",
                         help="an activation function over x, such as 'x * sigmoid(beta * x)' (see docs/components.md)")
    formula.add_argument("--update-rule", default=None, metavar="FORMULA",
                         help="an update rule over g, m, v, w, noise, adam, rmsprop, such as "
                         "'exp(sign(g) * sign(m)) * g' (see docs/components.md)")  # fmt: skip
    baseline.add_argument(
        "--data-dir", type=_path, default=None,
        help="with mnist or fashion-mnist: the IDX folder; with ptb: the folder of ptb.*.txt (default: archsearch[ptb])",
    )  # fmt: skip
    baseline.add_argument("--cell", choices=STANDARD_CELLS, default=None, help="ptb: the recurrent cell (default: lstm)")
    size = baseline.add_mutually_exclusive_group()
    size.add_argument("--hidden", type=_hidden, default=None, help="ptb: the cell's hidden size (default: 128)")
    size.add_argument(
        "--params", type=_positive_int, default=None,
        help="ptb: the hidden size whose model has about this many parameters (to match a searched cell's)",
    )  # fmt: skip
    baseline.add_argument(
        "--seed", type=_seed, default=0, help="initial weights and shuffling, 0 to 2**63 - 1 (default: 0)"
    )
    _training_arguments(baseline.add_argument_group("training (defaults: as a search's children on images)"))
    baseline.add_argument("--device", type=_device, default="cpu", help="cpu, cuda or cuda:N (default: cpu)")
    baseline.add_argument(
        "--threads", type=_threads, default=None, help="CPU threads (default and most: all cores)"
    )
    baseline.add_argument("--json", action="store_true", help="JSON instead of text")


def _sample_parser(commands: argparse._SubParsersAction) -> None:
    from archsearch.tasks import TASKS

    sample = commands.add_parser(
        "sample",
        help="train random architectures and plot their accuracies",
        description="Train N uniformly random architectures; plot the histogram of validation accuracies with a KDE.",
    )
    sample.add_argument("--task", default="moons", choices=list(TASKS), help="data set (default: moons)")
    sample.add_argument(
        "--n", type=_budget, default=5000, help=f"architectures (default: 5000; at most {limits.MAX_BUDGET:,})"
    )
    sample.add_argument("--seed", type=_seed, default=0, help="sampling seed, 0 to 2**63 - 1 (default: 0)")
    sample.add_argument(
        "--study", type=_path, default=None, help="study that keeps the trials (default: runs/TASK-sample-sSEED.db)"
    )
    sample.add_argument("--plot", type=_path, default=None, help="PNG to write (default: the study's name, .png)")
    sample.add_argument("--quiet", action="store_true", help=QUIET_HELP)


def _task_names() -> list[str]:
    """The tasks ``search --task`` may name: every registered one but those that are not named by a user."""
    from archsearch.tasks import TASKS

    return [name for name in TASKS if name not in ("file", "arrays")]


def _executor_arguments(group: argparse._ArgumentGroup) -> None:
    """``--executor``, ``--workers``, ``--retries``, ``--address``: shared by ``search`` and ``resume``."""
    group.add_argument(
        "--executor",
        choices=("inline", "process", "ray"),
        default=None,
        help="inline: this process; process: a pool of --workers local processes (the default when "
        "--workers > 1); ray: Ray tasks on a cluster (--address) or a local Ray instance",
    )
    group.add_argument(
        "--workers",
        type=_processes,
        default=None,
        help=f"children evaluated at once (default: 1; ray: the CPUs; at most {limits.WORKERS_PER_CORE} per core "
        f"and {limits.MAX_WORKERS})",
    )
    group.add_argument(
        "--retries",
        type=_retries,
        default=None,
        help=f"re-runs of a child whose worker process died before it is recorded as failed (default: 2; "
        f"at most {limits.MAX_RETRIES})",
    )
    group.add_argument("--address", default=None, help="with --executor ray: the cluster to join, or 'auto'")


def _executor(args: argparse.Namespace, stored: dict | None = None):  # noqa: ANN202 -- Executor | None
    """The executor the command line asks for; ``None`` when it names none. On ``resume`` the flags
    given change the ``stored`` executor (``--retries 5`` alone keeps its kind and workers)."""
    from archsearch.config import SearchConfig
    from archsearch.execution import build_executor

    given = SearchConfig(executor=args.executor, workers=args.workers, retries=args.retries, address=args.address)
    config = given.executor_config(_flag, stored)
    return None if config is None else build_executor(config)


def _training_arguments(train: argparse._ArgumentGroup) -> None:
    """Child-training options, shared by ``search`` and ``baseline``."""
    from archsearch.config import IMAGE_TRAINING

    train.add_argument(
        "--max-epochs",
        type=_epochs,
        default=None,
        help=f"epoch limit per child (default: 50; images: {IMAGE_TRAINING['max_epochs']}; "
        f"at most {limits.MAX_EPOCHS:,})",
    )
    train.add_argument(
        "--patience",
        type=_count,
        default=None,
        help=f"early-stopping patience (default: 10; images: {IMAGE_TRAINING['patience']}; "
        f"at most {limits.MAX_COUNT:,})",
    )
    train.add_argument(
        "--lr",
        type=_rate,
        default=None,
        help=f"child Adam learning rate (default: 0.01; images: {IMAGE_TRAINING['lr']}; at most 10)",
    )
    train.add_argument(
        "--weight-decay",
        type=_rate_or_zero,
        default=None,
        help="L2 penalty on the child's weights, as torch.optim.Adam's weight_decay (default: 0; at most 10)",
    )
    train.add_argument(
        "--batch-size",
        type=_batch_size,
        default=None,
        help=f"minibatch size (default: full batch; images: {IMAGE_TRAINING['batch_size']}; "
        f"at most {limits.MAX_BATCH_SIZE:,})",
    )
    train.add_argument(
        "--time-limit",
        type=_seconds,
        default=None,
        help="seconds of training per child, after which it is validated and recorded as it is "
        f"(default: none; results then depend on the machine's speed; at most {limits.MAX_TIME_LIMIT:,})",
    )


def _path(text: str) -> Path:
    """A path argument; an empty one names nothing (``Path("")`` would be the current folder)."""
    if not text:
        raise argparse.ArgumentTypeError("expected a path, got an empty string")
    return Path(text)


def _one_line(text: object) -> str:
    """A message as one line: line breaks inside it (a file name may hold one) are written as \\n."""
    return str(text).replace("\r", "\\r").replace("\n", "\\n")


def _fractions(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not three comma-separated numbers") from None


def _curriculum(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",")]
    except ValueError:
        values = []
    if len(values) not in (2, 3) or min(values) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not START,EVERY or START,EVERY,BY (positive integers)")
    if values[0] > limits.MLP_MAX_LAYERS or max(values[1:]) > limits.MAX_CURRICULUM:
        raise argparse.ArgumentTypeError(
            f"{text!r}: START must be at most {limits.MLP_MAX_LAYERS}, EVERY and BY at most {limits.MAX_CURRICULUM:,}"
        )
    return values


def _strategy_list(text: str) -> list[str]:
    from archsearch.strategies import STRATEGIES

    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in STRATEGIES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown strategy {unknown[0] if unknown else '(none)'!r} (known: {', '.join(sorted(STRATEGIES))})"
        )
    if len(set(names)) != len(names):
        raise argparse.ArgumentTypeError("a strategy is listed twice")
    return names


def _version() -> str:
    from archsearch import __version__

    return __version__


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised wherever this process is when it arrives: it unwinds like Ctrl-C (transactions roll
    back, worker processes are closed) and is reported like it, as one line."""


def _terminate(signum: int, frame: object) -> NoReturn:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM ends the process at once, cleanup or not
    raise _Terminated


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command and return its exit code (see the module docstring); never a traceback for bad input,
    a full disk, an interrupt or a termination."""
    args = None
    # SIGTERM stops a command like Ctrl-C; only the main thread may set a handler (main() may run elsewhere)
    in_main_thread = threading.current_thread() is threading.main_thread()
    sigterm = signal.signal(signal.SIGTERM, _terminate) if in_main_thread else None
    strict = _escape_unencodable()
    try:
        args = build_parser().parse_args(argv)
        _one_line_warnings(args.command)
        handlers = {"search": _search, "resume": _resume, "trials": _trials, "best": _best, "compare": _compare}
        handler = {**handlers, "sample": _sample, "export": _export, "report": _report, "baseline": _baseline,
                   "pareto": _pareto, "replay": _replay}  # fmt: skip
        return handler[args.command](args)
    except ArchsearchError as exc:
        print(f"{_prog(args)}: error: {_one_line(exc)}{_one_line(_resume_hint(args, exc))}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt as exc:
        terminated = isinstance(exc, _Terminated)
        print(f"{_prog(args)}: {'terminated' if terminated else 'interrupted'}{_resume_hint(args)}", file=sys.stderr)
        return EXIT_TERMINATED if terminated else EXIT_INTERRUPTED
    except BrokenPipeError:
        raise  # stdout's reader went away: entry_point() ends quietly
    except OSError as exc:  # the machine refused a write or a read (a full disk, a vanished file)
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"{_prog(args)}: error: {_one_line(where)}{_one_line(exc.strerror or exc)}", file=sys.stderr)
        return EXIT_USAGE
    finally:
        if sigterm is not None:
            signal.signal(signal.SIGTERM, sigterm)
        for stream in strict:
            stream.reconfigure(errors="strict")


def _escape_unencodable() -> list[io.TextIOWrapper]:
    """Let stdout and stderr write what their encoding cannot (a file name's undecodable byte arrives as a
    lone surrogate) as an escape instead of failing; returns the streams to set back."""
    changed = []
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper) and stream.errors == "strict":
            stream.reconfigure(errors="backslashreplace")
            changed.append(stream)
    return changed


def _prog(args: argparse.Namespace | None) -> str:
    return "archsearch" if args is None else f"archsearch {args.command}"


def _resume_hint(args: argparse.Namespace | None, error: ArchsearchError | None = None) -> str:
    """How to go on after a run stopped part-way: by an interrupt, or (``error``) by a study it could not write."""
    if args is None:
        return ""
    if error is not None:
        from archsearch.study._storage import StudyWriteError

        if not isinstance(error, StudyWriteError):
            return ""
    study = getattr(args, "study", None)
    if study is None or not Path(study).exists():
        return ""
    if args.command in ("search", "resume"):
        room = " once there is room" if error is not None and "full" in str(error) else ""
        return f", every finished trial is saved; continue with 'archsearch resume {study}'{room}"
    if args.command == "sample":
        return ", every finished trial is saved; run the same command again to continue"
    return ""


def _one_line_warnings(command: str) -> None:
    """Warnings from archsearch (a worker that died, a refit that failed) as one line each, like errors;
    other libraries' warnings keep Python's form."""
    import warnings

    default = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
        if "archsearch" in str(filename) and issubclass(category, UserWarning):
            print(f"archsearch {command}: warning: {_one_line(message)}", file=sys.stderr)
        else:
            default(message, category, filename, lineno, file, line)

    warnings.showwarning = show


#: the config fields whose flag is not ``--`` and the field's name with dashes
_FIELD_FLAGS = {"skips": "--no-skips", "batch_norm": "--no-batch-norm", "evaluator": "--trainer",
                "shared": "--weight-sharing"}  # fmt: skip
#: the ``search`` arguments that are settings of weight sharing (SearchConfig.shared)
_SHARED = ("sharing", "controller_steps", "derive", "retrain", "warmup", "reward_words", "pass_words")
#: the ``search`` arguments that are TrainConfig settings
_TRAINING = ("max_epochs", "patience", "lr", "weight_decay", "batch_size", "time_limit", "threads", "folds", "monitor")


def _flag(field: str) -> str:
    """The flag that sets a :class:`SearchConfig` field, for naming it in an error."""
    return _FIELD_FLAGS.get(field, "--" + field.replace("_", "-"))


def _training(args: argparse.Namespace) -> dict:
    """The TrainConfig settings the command line gives."""
    return {name: getattr(args, name) for name in _TRAINING if getattr(args, name, None) is not None}


def _widths(text: str) -> list[int]:
    """``N,...``: layer widths separated by commas."""
    parts = [part.strip() for part in text.split(",")]
    if not all(part.isdigit() for part in parts):
        raise argparse.ArgumentTypeError(f"expected widths separated by commas, got {text!r:.60}")
    return [int(part) for part in parts]


def _names(text: str) -> list[str]:
    """``NAME,...``: names separated by commas."""
    names = [part.strip() for part in text.split(",")]
    if not all(names):
        raise argparse.ArgumentTypeError(f"expected names separated by commas, got {text!r:.60}")
    return names


def _strategy_settings(text: str) -> dict[str, int | float | str]:
    """``KEY=VALUE,...``: each value an integer, a number or a word."""
    settings: dict[str, int | float | str] = {}
    for item in text.split(","):
        key, sep, value = (part.strip() for part in item.partition("="))
        if not sep or not key.isidentifier() or not value:
            raise argparse.ArgumentTypeError(f"expected KEY=VALUE pairs separated by commas, got {item.strip()!r:.60}")
        if key in settings:
            raise argparse.ArgumentTypeError(f"{key} is given twice")
        for kind in (int, float):
            try:
                settings[key] = kind(value)
                break
            except ValueError:
                continue
        else:
            settings[key] = value
    return settings


def _search_config(args: argparse.Namespace) -> SearchConfig:
    """The search that ``archsearch search`` describes."""
    from archsearch.config import SearchConfig

    def text(path: Path | None) -> str | None:
        return None if path is None else str(path)

    same = ("task", "target", "problem", "split", "split_seed", "benchmark", "noisy", "space", "max_layers", "hidden",
            "strategy", "controller_lr", "entropy_weight", "advantage", "curriculum", "device", "executor", "workers",
            "optimizers", "units",
            "retries", "address", "steps", "children_per_step", "seed", "reuse_evaluations", "save_children", "refit",
            "ensemble", "asynchronous", "objectives", "max_params", "max_flops", "max_latency_ms", "cost_target",
            "cost_weight", "latency", "keep_final_only")  # fmt: skip
    kept = {name: getattr(args, name) for name in same}
    if args.strategy_settings:
        kept["strategy"] = {"name": args.strategy, **args.strategy_settings}
    return SearchConfig(
        **kept,
        data=text(args.data),
        data_dir=text(args.data_dir),
        skips=not args.no_skips,
        batch_norm=not args.no_batch_norm,
        evaluator=args.trainer,
        training=_training(args),
        weight_sharing=args.weight_sharing,
        shared={name: getattr(args, name) for name in _SHARED if getattr(args, name) is not None},
    )


def _search(args: argparse.Namespace) -> int:
    config = _search_config(args)
    parts = config.build(_flag)  # data read and checked before anything is written
    default = args.study is None
    if default:
        args.study = Path("runs") / f"{args.benchmark or parts.task.name}-{args.strategy}-s{args.seed}.db"
    with _made_folder(args.study.parent, default):
        return _search_in(args, config, parts)


def _search_in(args: argparse.Namespace, config: SearchConfig, parts: Parts) -> int:
    """The search, once its config is built and its default folder is there."""
    from archsearch.study import Study
    from archsearch.study._storage import check_new_study_path, discard_if_empty
    from archsearch.tasks import FileTask

    check_new_study_path(args.study, overwrite=args.overwrite)
    if parts.executor is not None and parts.executor.name == "ray":
        parts.executor.connect()  # an unreachable cluster is refused before the study file is written
    study = Study.create(args.study, config.with_parts(parts), overwrite=args.overwrite)
    print(f"study: {study.path}  ({study.steps} steps x {study.children_per_step} children, seed {args.seed})")
    if isinstance(parts.task, FileTask) and parts.task.inferred:
        print(f"problem: {parts.task.problem} (inferred: {parts.task.inferred})")
    if parts.strategy.continues:
        print(f"schedule: {parts.strategy.name}, {study.steps} steps, {parts.strategy.epochs} training epochs in all; "
              "each network trains with its own optimizer, learning rate and batch size (docs/population.md)")
    elif parts.evaluator.name in ("serial", "batched"):
        print(_children_line(parts.evaluator.to_config()))
    if study.goals:
        print(f"goals: {study.goals.describe()}")
    ensemble = study.ensemble_size
    if ensemble > 1:
        why = " (the default for a table; --ensemble 1: the best network alone)" if args.ensemble is None else ""
        print(f"final model: the average of the {ensemble} best architectures{why}")
    try:
        with study:
            study.run(progress=not args.quiet)
            _print_best(study)
    except ArchsearchError:
        discard_if_empty(args.study)  # a refused search leaves no study behind
        raise
    return 0


def _children_line(trainer: dict) -> str:
    """How children train, in one line: the settings a search starts with (the study stores them)."""
    from archsearch.evaluation import TrainConfig

    settings = TrainConfig.from_config({k: v for k, v in trainer.items() if k != "name"})
    parts = [f"{trainer['name']} trainer"]
    if settings.folds > 1:
        parts.append(f"{settings.folds}-fold cross-validated rewards")
    parts.append(f"at most {settings.max_epochs} epochs, patience {settings.patience}, lr {settings.lr:g}")
    if settings.weight_decay:
        parts.append(f"weight decay {settings.weight_decay:g}")
    parts.append("full batch" if settings.batch_size is None else f"batches of {settings.batch_size}")
    if settings.monitor == "loss":
        parts.append("early stopping on the validation loss")
    return "children: " + ", ".join(parts)


def _baseline(args: argparse.Namespace) -> int:
    from archsearch.config import SearchConfig
    from archsearch.evaluation import SerialTrainer, TrainConfig, load_model, split_score
    from archsearch.space import BaselineCNN
    from archsearch.tasks import IMAGE_TASKS, TEXT_TASKS

    if args.activation is not None or args.update_rule is not None:
        return _formula_baseline(args)
    if args.task in TEXT_TASKS:
        return _text_baseline(args)
    for flag in ("cell", "hidden", "params"):
        if getattr(args, flag) is not None:
            raise ArchsearchError(f"--{flag}: sizes the recurrent cell of a text task's baseline; {args.task} is images")
    if args.task not in IMAGE_TASKS:
        raise ArchsearchError(f"--task {args.task}: the baseline is a hand-designed CNN for images or a standard cell "
                              "for ptb; give --activation or --update-rule to train a formula on it")  # fmt: skip

    given = SearchConfig(
        task=args.task,
        data_dir=None if args.data_dir is None else str(args.data_dir),
        device=args.device,
        training=_training(args),
    )
    given.check(_flag)
    task = given.build_task()
    config = TrainConfig(**given.training_settings(images=True))
    arch = BaselineCNN(side=int(task.x_train.shape[-1]))
    if not args.json:
        print(f"baseline: {arch} on {task!r}, {config.max_epochs} epochs at most, seed {args.seed}", flush=True)
    result = SerialTrainer(task, config).train(arch, args.seed)
    if result.status != "ok":
        raise ArchsearchError(f"baseline: training {result.status}: {result.error}")
    test = split_score(load_model(arch, task, result.weights), task, "test")
    summary = {
        "task": task.name,
        "architecture": str(arch),
        "params": result.params,
        "val_score": result.val_score,
        "test_score": test,
        "epochs": result.epochs,
        "kept_epoch": result.kept_epoch,
        "seconds": result.seconds,
        "seed": args.seed,
        "training": config.to_config(),
    }
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(
            f"baseline: val_accuracy {result.val_score:.4f}  test_accuracy {test:.4f}  params {result.params}  "
            f"epochs {result.epochs}  ({result.seconds:.1f} s)"
        )
    return 0


def _formula_baseline(args: argparse.Namespace) -> int:
    """``baseline --activation F`` or ``--update-rule F``: the fixed child of that component space, trained
    with the formula as a search's children are."""
    from archsearch.config import SearchConfig
    from archsearch.evaluation import SerialTrainer, TrainConfig, load_model, split_score

    kind, flag = ("activation", "--activation") if args.activation is not None else ("update-rule", "--update-rule")
    for name in ("cell", "hidden", "params"):
        if getattr(args, name) is not None:
            raise ArchsearchError(f"--{name}: sizes a recurrent cell; {flag} trains a formula's fixed network")
    given = SearchConfig(task=args.task, space=kind, data_dir=None if args.data_dir is None else str(args.data_dir),
                         device=args.device, training=_training(args))  # fmt: skip
    given.check(_flag)
    task = given.build_task()
    space = given.build_space(task, _flag)
    text = args.activation if args.activation is not None else args.update_rule
    arch = space.architecture.parse(text, space.child, space.widths, where=flag)
    images = task.x_train.dim() == 4
    config = TrainConfig(**given.training_settings(images))
    if not args.json:
        print(f"baseline: {kind} {arch} in the {space.child} child {list(space.widths)} on {task!r}, "
              f"{config.max_epochs} epochs at most, seed {args.seed}", flush=True)  # fmt: skip
    result = SerialTrainer(task, config).train(arch, args.seed)
    if result.status != "ok":
        raise ArchsearchError(f"{flag}: training {result.status}: {result.error}")
    test = split_score(load_model(arch, task, result.weights), task, "test")
    metric = "r2" if task.regression else "accuracy"
    summary = {"task": task.name, "space": kind, "formula": str(arch), "params": result.params,
               "val_score": result.val_score, "test_score": test, "epochs": result.epochs,
               "kept_epoch": result.kept_epoch, "seconds": result.seconds, "seed": args.seed,
               "training": config.to_config()}  # fmt: skip
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"baseline: val_{metric} {result.val_score:.4f}  test_{metric} {test:.4f}  params {result.params}  "
              f"epochs {result.epochs}  ({result.seconds:.1f} s)")  # fmt: skip
    return 0


def _text_baseline(args: argparse.Namespace) -> int:
    """``baseline --task ptb``: a standard cell's language model, trained as a cell search's picks retrain."""
    from archsearch.config import LANGUAGE_TRAINING, SearchConfig
    from archsearch.evaluation import LanguageTrainer, TrainConfig
    from archsearch.space import StandardCell
    from archsearch.space._cells import matched_hidden

    given = SearchConfig(task=args.task, data_dir=None if args.data_dir is None else str(args.data_dir),
                         device=args.device, training=_training(args))  # fmt: skip
    given.check(_flag)
    task = given.build_task()
    cell = args.cell or "lstm"
    hidden = args.hidden or (128 if args.params is None else matched_hidden(cell, args.params, task.n_classes))
    arch = StandardCell(cell, hidden)
    config = TrainConfig(**{"device": args.device, **LANGUAGE_TRAINING, **_training(args)})
    trainer = LanguageTrainer(task, config)
    if not args.json:
        print(f"baseline: {arch} on {task!r}, {arch.num_params(task.n_classes, task.n_classes):,} parameters, "
              f"{config.max_epochs} passes at most, seed {args.seed}", flush=True)  # fmt: skip
    ((_, result),) = trainer.evaluate([arch], [args.seed])
    if result.status != "ok":
        raise ArchsearchError(f"baseline: training {result.status}: {result.error}")
    test = trainer.test_score(arch, result.weights)
    summary = {
        "task": task.name, "architecture": str(arch), "params": result.params, "val_score": result.val_score,
        "test_score": test, "val_perplexity": math.exp(-result.val_score),
        "test_perplexity": None if test is None else math.exp(-test), "epochs": result.epochs,
        "kept_epoch": result.kept_epoch, "seconds": result.seconds, "seed": args.seed, "training": config.to_config(),
    }  # fmt: skip
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"baseline: val_perplexity {_shown(result.val_score, 'log_likelihood')}  test_perplexity "
              f"{_shown(test, 'log_likelihood')}  params {result.params}  epochs {result.epochs}  "
              f"({result.seconds:.1f} s)")  # fmt: skip
    return 0


def _resume(args: argparse.Namespace) -> int:
    from archsearch.study import Study

    with Study.open(args.study) as study:
        executor = _executor(args, study.config.get("executor"))
        if executor is not None:
            study.executor = executor
        before = study.completed_steps()
        if args.steps is not None and args.steps < before:
            raise ArchsearchError(f"--steps: {args.steps} is fewer than the {before} steps {args.study} has completed")
        target = args.steps or study.steps
        print(f"study: {study.path}  (resuming at step {before + 1 if before < target else before} of {target})")
        study.run(steps=args.steps, progress=not args.quiet)
        _print_best(study)
    return 0


def _print_best(study) -> None:  # noqa: ANN001
    summary = study.summary()
    if summary["architecture"] is None:
        print("no successful trial yet")
        return
    where = f"(trial {summary['trial']} of {summary['trials']})"
    bench = summary.get("benchmark")
    if bench:
        found = "the benchmark's best" if bench["value"] == bench["best_value"] else f"best {bench['best_value']:g}"
        test = f"  test {bench['test_metric']} {bench['test_value']:g}" if "test_metric" in bench else ""
        print(
            f"best: {summary['architecture']}  {bench['name']} {bench['metric']} {bench['value']:g} ({found}){test}  "
            f"{where}"
        )
    else:
        metric = summary["metric"]
        label = _METRIC_LABELS.get(metric, metric)
        print(
            f"best: {summary['architecture']}  val_{label} {_shown(summary['val_score'], metric)}  "
            f"test_{label} {_shown(summary['test_score'], metric)}  params {summary['params']}  {where}"
        )
        if summary.get("refit"):
            refit = summary["refit"]
            print(f"refit: retrained on {refit['rows']} training + validation rows for {refit['epochs']} epochs")
        if summary.get("ensemble"):
            ensemble = summary["ensemble"]
            members = ", ".join(str(number) for number in ensemble["members"])
            print(f"ensemble: the {len(ensemble['members'])} best architectures (trials {members}) averaged  "
                  f"test_{label} {_shown(ensemble['test_score'], metric)}")  # fmt: skip
    if "weight_sharing" in summary:
        _print_phases(summary["weight_sharing"], summary["kind"], summary["metric"])
    first, last = summary["mean_reward_first_steps"], summary["mean_reward_last_steps"]
    window = summary["trend_window"]
    if first is not None:  # None until a step is complete
        print(f"mean reward: first {window} steps {first:.4f}, last {window} steps {last:.4f}")
    print(f"results: {study.path}  (archsearch trials {study.path} --top 10)")


#: how a study's metric is named where its scores are shown
_METRIC_LABELS = {"r2": "r2", "accuracy": "accuracy", "log_likelihood": "perplexity"}


def _shown(score: float | None, metric: str) -> str:
    """A score as the user reads it: accuracy and R^2 as stored, a language model's as its perplexity."""
    if score is None:
        return "None"
    if metric == "log_likelihood":
        return f"{math.exp(-score):.2f}" if -score < 700 else "inf"
    return f"{score:.4f}"


def _print_phases(phases: dict, kind: str, metric: str = "accuracy") -> None:
    """A weight-sharing study's phases under its best line: what the shared weights preferred, and what
    the retraining made of it."""
    print(
        f"weight sharing: {phases['search_trials']} children scored with shared weights, {phases['derived']} "
        f"derived, {phases['retrained']} retrained from scratch"
    )
    proxy = phases["best_proxy"]
    if proxy is not None:
        print(f"  best by shared weights: {proxy['architecture']}  val {_shown(proxy['val_score'], metric)} "
              f"(trial {proxy['trial']})")  # fmt: skip
    for final in phases["final"]:
        score = "n/a" if final["proxy_val_score"] is None else _shown(final["proxy_val_score"], metric)
        print(f"  retrained: {final['architecture']}  val {_shown(final['val_score'], metric)}  (shared weights {score}; "
              f"trial {final['trial']}, {final['status']})")  # fmt: skip
    if kind == "proxy":
        print("  the search has not retrained a pick yet: the best above is scored with shared weights")
    if phases["kendall_tau"] is not None:
        print(f"  Kendall tau, shared-weight vs trained score: {phases['kendall_tau']:.2f} ({phases['tau_pairs']} architectures)")


def _compare(args: argparse.Namespace) -> int:
    from archsearch.experiments import compare
    from archsearch.experiments._compare import COMPARISON_FILES
    from archsearch.study._progress import progress_for

    on_task = args.task is not None
    name = args.task or args.benchmark
    seeds = args.seeds or (3 if on_task else 30)
    budget = args.budget or (300 if on_task else 1000)
    per_step = args.children_per_step or (15 if on_task else 5)
    out = args.out or Path("runs") / f"compare-{name}"
    check_output_dir(out, COMPARISON_FILES, [], "--out" if args.out else "compare")
    total = len(args.strategies) * seeds
    print(f"comparing {', '.join(args.strategies)} on {name}: {seeds} seeds x {budget} queries each -> {out}")
    progress = None if args.quiet else progress_for(total, label="runs", rewards=False)
    finished = itertools.count(1)
    with progress or contextlib.nullcontext():
        result = compare(
            args.strategies,
            seeds,
            budget,
            benchmark=args.benchmark,
            noisy=args.noisy,
            task=args.task,
            children_per_step=per_step,
            out=out,
            jobs=args.jobs,
            on_run=(lambda _run: progress.update(next(finished))) if progress else None,
            tolerance=args.tolerance,
            weight_sharing=args.weight_sharing,
            objectives=args.objectives,
            cost_target=args.cost_target,
            reference=args.reference,
            names=_flag,
            space=args.space,
        )
    paths = result.write(out)
    print(result.table())
    if result.random_median is not None:
        print(
            f"benchmark best {result.best_value:g}; random search without repeats needs a median of "
            f"{result.random_median} queries to find it (analytically)"
        )
    if result.exact_front is not None:
        print(f"exact front of the whole table: {result.exact_front} architectures; hv share: the hypervolume of "
              f"a run's front over the exact front's, reference point {list(result.reference or ())}")  # fmt: skip
    print(f"{total} runs in {result.wall_seconds:.1f} s; results: {paths['json']}  plot: {paths['plot']}")
    return 0


def _sample(args: argparse.Namespace) -> int:
    from archsearch.experiments import sample, write_sample
    from archsearch.experiments._plots import check_image_path
    from archsearch.experiments._sample import numbers_path

    study = args.study or Path("runs") / f"{args.task}-sample-s{args.seed}.db"
    plot = args.plot or default_output(study, ".png")
    if args.plot is None and numbers_path(plot) == study:  # a study x.json: not x.png, whose numbers are x.json
        plot = study.with_name(study.name + ".png")
    flag = "--plot" if args.plot else "sample"
    check_output_file(plot, study_paths(study), flag)  # before any training: the plot is written last
    check_output_file(numbers_path(plot), study_paths(study), flag)
    check_image_path(plot, flag)
    print(f"sampling {args.n} random architectures on {args.task} -> {study}")
    with _made_folder(study.parent, args.study is None):
        result = sample(args.task, args.n, study, seed=args.seed, progress=not args.quiet)
    if not result.accuracies:
        raise ArchsearchError(f"{study}: none of the {result.failed} sampled architectures trained successfully")
    numbers = write_sample(result, plot)
    summary = result.to_dict()
    peaks = ", ".join(f"{p:.3f}" for p in result.peaks)
    print(
        f"{summary['n']} architectures ({result.trained} trained now, {result.failed} failed) "
        f"in {result.seconds:.1f} s; "
        f"validation accuracy mean {summary['mean']:.4f}, median {summary['quantiles']['0.5']:.4f}; "
        f"{len(result.peaks)} mode(s) at {peaks}"
    )
    print(f"plot: {plot}  numbers: {numbers}")
    return 0


@contextlib.contextmanager
def _made_folder(folder: Path, make: bool) -> Iterator[None]:
    """With ``make``, create the default output ``folder`` if it is missing, and remove it again if the
    command is then refused or stopped before writing anything in it: a refused command leaves nothing."""
    made = make and not folder.exists()
    if made:
        folder.mkdir(parents=True)
    try:
        yield
    except BaseException:
        if made:
            with contextlib.suppress(OSError):  # not empty: it holds what the command saved
                folder.rmdir()
        raise


def _report(args: argparse.Namespace) -> int:
    from archsearch.report import write_report
    from archsearch.study import Study

    out = args.out or default_output(args.study, ".html")
    with contextlib.ExitStack() as stack:
        study = stack.enter_context(Study.open(args.study, readonly=True))
        sample = stack.enter_context(Study.open(args.sample, readonly=True)) if args.sample else None
        inputs = study.input_paths() + (sample.input_paths() if sample else [])
        check_output_file(out, inputs, "--out" if args.out else "report")
        objectives = len(study.goals.objectives) or 2
        if args.reference is not None and len(args.reference) != objectives:
            raise ArchsearchError(f"--reference: expected {objectives} numbers, one per objective of the study, got "
                                  f"{len(args.reference)}")  # fmt: skip
        write_report(study, out, top=args.top, sample=sample, reference=args.reference)
    print(f"report: {out}  ({out.stat().st_size:,d} bytes)")
    return 0


def _export(args: argparse.Namespace) -> int:
    from archsearch.export import EXPORT_FILES, export_best, export_names, export_trial, onnx_available
    from archsearch.study import Study

    out = args.out or (
        args.study.with_suffix("") if args.study.suffix else args.study.with_name(args.study.name + "-export")
    )
    with Study.open(args.study, readonly=True) as study:
        names = EXPORT_FILES if args.trial is not None else export_names(study)
        check_output_dir(out, names, study.input_paths(), "--out" if args.out else "export")
        if args.trial is not None:
            paths = export_trial(study, args.trial, out, onnx=args.onnx)
            best, members = study.trial_model(args.trial)[0], None
        else:
            paths = export_best(study, out, onnx=args.onnx)
            best, members = study.best(), study.ensemble_members()
    if members is None:
        print(f"exported {best.architecture} (trial {best.number}) to {out}/")
    else:
        numbers = ", ".join(str(trial.number) for trial in members)
        print(f"exported the ensemble of {len(members)} networks (trials {numbers}) to {out}/")
    width = max(20, *map(len, paths))
    for name, path in paths.items():
        print(f"  {name:{width}s} {path.stat().st_size:>9,d} bytes")
    if "model.onnx" not in paths and args.onnx is None and not onnx_available():
        print("  (no model.onnx: pip install 'archsearch[onnx]' to write one)")
    return 0


def _trials(args: argparse.Namespace) -> int:
    from archsearch.study import Study

    with Study.open(args.study, readonly=True) as study:
        trials = study.trials(top=args.top)
        metric = study.metric
        score = {"r2": "val_r2", "log_likelihood": "val_ppl"}.get(metric, "val_acc")
    if args.json:
        print(json.dumps([t.to_dict() for t in trials], indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(box=None)
    lineage = any(t.parent is not None for t in trials)  # a population study: each trial continues a parent
    for column in ("#", "step", *(["parent"] if lineage else []), "architecture", "status", "reward", score, "params",
                   "epochs", "seconds"):  # fmt: skip
        table.add_column(column, justify="left" if column in ("architecture", "status") else "right")
    for t in trials:
        table.add_row(
            str(t.number),
            str(t.step),
            *([("-" if t.parent is None else str(t.parent))] if lineage else []),
            str(t.architecture),
            t.status if t.error is None else f"{t.status}: {t.error[:40]}",
            f"{t.reward:.4f}",
            _shown(t.val_score, metric) if metric == "log_likelihood" else f"{t.val_score:.3f}",
            str(t.params),
            str(t.epochs),
            f"{t.seconds:.3f}",
        )
    Console(soft_wrap=True).print(table)
    return 0


def _pareto(args: argparse.Namespace) -> int:
    from archsearch._objectives import minimised, non_dominated_sort, parse_objectives, trial_points
    from archsearch.study import Study

    given = None if args.objectives is None else parse_objectives(args.objectives)  # a bad flag reads nothing
    with Study.open(args.study, readonly=True) as study:
        objectives = given or list(study.goals.objectives) or parse_objectives("val_score:max,params:min")
        missing = [o.metric for o in objectives if o.metric in ("flops", "latency_ms")
                   and any(getattr(t, o.metric) is None for t in study.trials() if t.status == "ok")]  # fmt: skip
        if missing:
            why = "search with --latency" if missing[0] == "latency_ms" else "a study of an older archsearch"
            raise ArchsearchError(f"--objectives: {missing[0]} is not recorded for every trial of {args.study} ({why})")
        seen, trials = set(), []
        for t in study.trials():
            if t.status == "ok" and t.kind != "proxy" and t.arch_hash not in seen:
                seen.add(t.arch_hash)
                trials.append(t)
        metric = study.metric
    values = trial_points(trials, objectives)
    points = minimised(values, objectives)
    front = sorted(non_dominated_sort(points)[0] if points else [], key=lambda i: points[i])
    if args.json:
        names = [str(o) for o in objectives]
        rows = [{**trials[i].to_dict(), "objectives": dict(zip(names, values[i], strict=True))} for i in front]
        print(json.dumps({"objectives": names, "trials": len(trials), "front": rows}, indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    print(f"{len(front)} of {len(trials)} trials are not dominated in {', '.join(map(str, objectives))}")
    table = Table(box=None)
    for column in ("#", "architecture", *(o.metric for o in objectives)):
        table.add_column(column, justify="left" if column == "architecture" else "right")
    for i in front:
        t = trials[i]
        shown = {"val_score": _shown(t.val_score, metric) if metric == "log_likelihood" else f"{t.val_score:.4f}",
                 "reward": f"{t.reward:.4f}", "seconds": f"{t.seconds:.3f}"}  # fmt: skip
        table.add_row(str(t.number), str(t.architecture), *(shown.get(o.metric, str(getattr(t, o.metric)))
                                                             for o in objectives))  # fmt: skip
    Console(soft_wrap=True).print(table)
    return 0


def _replay(args: argparse.Namespace) -> int:
    from archsearch.study import Study
    from archsearch.study._population import read_schedule, replay

    with Study.open(args.study, readonly=True) as study:
        if not study.continues:
            raise ArchsearchError(f"{args.study}: a {study.config['strategy']['name']} study; replay trains a schedule "
                                  "on the data of the miha or pbt study that exported it")  # fmt: skip
        pieces = read_schedule(args.schedule, study.space)
        results = replay(pieces, study.evaluator, args.seed)
        last = results[-1]
        test = None
        if last.status == "ok":
            test = study.evaluator.model_test_score(study.evaluator.model(pieces[len(results) - 1][0], last.weights))
    summary = {
        "pieces": len(pieces), "trained": len(results), "epochs": sum(r.epochs for r in results),
        "status": last.status, "error": last.error, "val_score": last.val_score, "test_score": test,
        "val_scores": [r.val_score for r in results],
    }  # fmt: skip
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        what = "recorded seeds" if args.seed is None else f"seeds from {args.seed}"
        print(f"replayed {summary['trained']} of {len(pieces)} pieces, {summary['epochs']} epochs ({what})")
        if last.status != "ok":
            print(f"stopped: piece {len(results) - 1} {last.status}: {last.error}")
        else:
            print(f"val_{study.metric} {last.val_score:.4f}  test_{study.metric} {test:.4f}")
    return 0


def _best(args: argparse.Namespace) -> int:
    from archsearch.study import Study

    with Study.open(args.study, readonly=True) as study:
        if args.json:
            print(json.dumps(study.summary(), indent=2))
        else:
            _print_best(study)
    return 0


def entry_point() -> None:
    """Console-script entry: ``archsearch``.

    When stdout's reader goes away (``archsearch trials --json | head -1``) the command stops quietly
    with 141, the status of a Unix tool ended by SIGPIPE (Python turns that signal into an exception).
    """
    try:
        code = main()
        sys.stdout.flush()  # here, where a closed pipe can still be caught
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # the exit's own flush goes nowhere
        code = EXIT_BROKEN_PIPE
    sys.exit(code)


if __name__ == "__main__":
    entry_point()

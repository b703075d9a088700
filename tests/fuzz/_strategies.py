"""Hypothesis strategies: argument vectors for every subcommand, mixing valid and hostile values.

A command is a list of :class:`Flag` s, each with valid and hostile forms. A generated vector
takes the valid form of every flag but none, one or two, whose hostile form it takes instead: a
third of the cases are valid commands (checked for what they must not change), the rest probe one
or two flags each rather than failing on the first of many. Valid values are small, so a case that
trains trains for a fraction of a second; hostile ones are malformed, negative, zero, huge, NaN,
empty or unicode numbers, and paths that are, or lead to, something the command reads. Paths are
:class:`Ref` keys, laid out per case by ``materialise``.
"""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import strategies as st

from ._harness import Ref

#: malformed in every integer flag
BAD_INT = ("0", "-1", "-0", "1.5", "nan", "inf", "", "  ", "x", "1e3", "0x2", "²", "½", "9" * 5000, "--", "-٣")
#: huge: refused by every size flag (processes, threads, layers, batch sizes, children, seeds)
HUGE_INT = ("99999999999999999999", "18446744073709551616", "1" + "0" * 40, "2147483648", "9223372036854775808")
#: malformed or out of range in every positive float flag
BAD_FLOAT = ("0", "-1", "-0.0", "nan", "-nan", "inf", "-inf", "1e309", "1e-400", "", "x", "0x1p3", "1,5", "1e308")
#: accepted by Python's int() although unusual: unicode digits, full-width digits, spaces, signs, underscores
ODD_INT = ("١", "１", " 1 ", "+1", "0_1")


@dataclass(frozen=True)
class Flag:
    """One part of a command line: its valid forms (``[]`` = left out) and its hostile forms."""

    valid: st.SearchStrategy[list]
    hostile: st.SearchStrategy[list]


def flag(name: str, valid: tuple[str, ...], hostile: tuple[str, ...], required: bool = False) -> Flag:
    """``name VALUE``; left out among the valid forms unless ``required``."""
    valid_forms = [[name, value] for value in valid] + ([] if required else [[]])
    return Flag(st.sampled_from(valid_forms), st.sampled_from([[name, value] for value in hostile]))


def number(name: str, valid: tuple[str, ...], huge: bool = True, required: bool = False) -> Flag:
    """An integer flag: hostile forms are malformed integers and, for sizes, huge ones."""
    return flag(name, valid + ODD_INT[:1], BAD_INT + (HUGE_INT if huge else ()), required)


def real(name: str, valid: tuple[str, ...]) -> Flag:
    return flag(name, valid + ("1e-320", "١.٥"), BAD_FLOAT)


def switch(name: str, hostile: tuple[list, ...] = ()) -> Flag:
    return Flag(st.sampled_from([[], [name]]), st.sampled_from([[name, "yes"], [name, name], *hostile]))


def path(name: str | None, valid: tuple[str, ...], hostile: tuple[str, ...]) -> Flag:
    """A path flag (``name`` None: the positional study); its values are :class:`Ref` keys."""
    prefix = [name] if name else []
    forms = [[*prefix, Ref(key)] for key in valid] + ([[]] if name else [])
    return Flag(st.sampled_from(forms), st.sampled_from([[*prefix, Ref(key)] for key in hostile]))


def fixed(*forms: list, hostile: tuple[list, ...]) -> Flag:
    return Flag(st.sampled_from(list(forms)), st.sampled_from(list(hostile)))


#: junk after a command: an unknown flag, a stray word, a flag without its value, --help
JUNK = Flag(st.just([]), st.sampled_from([["--bogus"], ["extra"], ["--steps"], ["-o"], ["--", "x"], ["--help"]]))


def command(name: str, flags: list[Flag]) -> st.SearchStrategy[list]:
    """``name`` and the flags in order: valid forms, except none, one or two hostile ones."""
    parts = [*flags, JUNK]

    @st.composite
    def build(draw: st.DrawFn) -> list:
        hostile = set(draw(st.lists(st.integers(0, len(parts) - 1), max_size=2, unique=True)))
        argv: list = [name]
        for index, part in enumerate(parts):
            argv += draw(part.hostile if index in hostile else part.valid)
        return argv

    return build()


#: existing paths a command must not write over, and new or unusable ones
STUDY_OUTPUTS = ("study", "link", "hard", "wal", "shm", "children", "in_children", "data", "sample", "dir")
NEW_PATHS = ("fresh", "in_dir", "unicode")
BAD_NEW_PATHS = ("missing", "dangling", "loop", "undecodable", "newline", "empty", "dot")
#: what a command reading a study may be given instead of one
NOT_STUDIES = ("wal", "children", "data", "dir", "missing_study", "empty", "dev_null", "undecodable", "newline",
               "fresh", "dot")
STUDIES = ("study", "abs_study", "link", "hard")


def executor() -> Flag:
    return fixed(
        [], [], ["--executor", "inline"], ["--retries", "3"], ["--workers", "1"], ["--retries", "0"],
        hostile=(
            ["--executor", "ray2"], ["--executor", ""], ["--executor", "inline", "--workers", "2"],
            ["--address", "auto"], ["--address", ""], *(["--workers", value] for value in BAD_INT[:4] + HUGE_INT),
            *(["--executor", "process", "--workers", value] for value in HUGE_INT),
            *(["--retries", value] for value in ("-1", "x", *HUGE_INT)),
        ),
    )


def training(epochs: tuple[str, ...], time_limit: tuple[str, ...] = ()) -> list[Flag]:
    """Child-training flags; ``--max-epochs`` is always given, so a valid case trains an epoch or two
    (``--time-limit`` is valid with the serial trainer only)."""
    return [
        number("--patience", ("1", "3")),
        real("--lr", ("0.01", "0.5")),
        Flag(st.sampled_from([[], ["--weight-decay", "0"], ["--weight-decay", "0.01"]]),
             st.sampled_from([["--weight-decay", value] for value in BAD_FLOAT if value not in ("0", "-0.0")])),
        flag("--batch-size", ("32", "128"), BAD_INT + HUGE_INT),  # not 1: a batch of one row is slow
        flag("--time-limit", time_limit, BAD_FLOAT + (() if time_limit else ("5",)), required=bool(time_limit)),
        flag("--device", ("cpu",), ("cuda", "cuda:7", "meta", "tpu", "", "cpu:0", "cuda:99999", "CPU")),
        number("--threads", ("1",)),
        number("--max-epochs", epochs, required=True),
    ]


def goals() -> Flag:
    """Objectives, limits and a soft target: valid ones fit every source (a limit every space meets)."""
    return fixed(
        [], [], ["--objectives", "val_score:max,params:min"], ["--max-params", "100000000"], ["--latency"],
        ["--cost-target", "params=500"], ["--cost-target", "flops=1000", "--cost-weight", "-0.5"],
        ["--max-flops", "10000000000", "--objectives", "val_score:max,flops:min"],
        hostile=(
            ["--max-params", "1"], ["--max-params", "0"], ["--max-params", "x"], ["--max-flops", "-3"],
            ["--max-latency-ms", "nan"], ["--max-latency-ms", "0"], ["--cost-target", "params"],
            ["--cost-target", "size=3"], ["--cost-target", "params=-1"], ["--cost-weight", "-0.5"],
            ["--cost-target", "params=5", "--cost-weight", "3"], ["--objectives", "val_score:max"],
            ["--objectives", "val_score:up,params:min"], ["--objectives", "val_score:max,size:min"],
            ["--max-params", "1" + "0" * 30],
        ),
    )  # fmt: skip


def search_argv() -> st.SearchStrategy[list]:
    # flags that only some sources, spaces or strategies accept are valid only in the groups that fit
    source = fixed(
        [], ["--task", "moons"], ["--task", "moons", "--max-layers", "2"], ["--max-layers", "1"],
        ["--benchmark", "nas-bench-macro"], ["--benchmark", "nas-bench-macro", "--noisy"],
        ["--data", Ref("data"), "--target", "label"], ["--data", Ref("data"), "--target", "label", "--max-layers", "3"],
        ["--data", Ref("data"), "--target", "label", "--split", "0.6,0.2,0.2", "--split-seed", "3"],
        ["--data", Ref("data"), "--target", "label", "--problem", "classification"],
        hostile=(
            ["--task", "mnist"], ["--task", "mnist", "--data-dir", Ref("dir")], ["--task", "cifar"], ["--noisy"],
            ["--task", "fashion-mnist", "--data-dir", Ref("missing")], ["--data", Ref("data"), "--target", "nope"],
            ["--data", Ref("data")], ["--data", Ref("study"), "--target", "label"],
            ["--data", Ref("dir"), "--target", "label"], ["--data", Ref("missing"), "--target", "label"],
            ["--data", Ref("dev_null"), "--target", "label"], ["--task", "moons", "--data", Ref("data")],
            ["--task", "moons", "--benchmark", "nas-bench-macro"], ["--task", "digits", "--space", "mlp"],
            ["--target", "label"], ["--split-seed", "3"], ["--problem", "regression"], ["--space", "cnn"],
            ["--no-skips"], ["--no-batch-norm"], ["--space", "rnn"], ["--task", "moons", "--space", "activation"],
            ["--space", "update-rule"], ["--task", "digits", "--space", "activation", "--max-layers", "2"],
            ["--task", "moons", "--space", "settings"], ["--task", "digits", "--space", "settings"],
            ["--space", "settings", "--units", "0,4"], ["--space", "mlp", "--units", "a"], ["--units", "4,4"],
            ["--task", "digits", "--units", "8"], ["--space", "settings", "--optimizers", "adam,adam"],
            ["--benchmark", "nas-bench-macro", "--max-layers", "2"],
            *(["--max-layers", value] for value in BAD_INT + HUGE_INT),
            *(["--data", Ref("data"), "--target", "label", "--split", value]
              for value in ("1,0,0", "0.5,0.5", "-1,1,1", "nan,0.5,0.5", "0.7,0.2,0.1,0", "", "0.001,0.001,0.998",
                            "a,b,c", "1e308,1e308,1e308", "0.3,0.3,0.3")),
            *(["--data", Ref("data"), "--target", "label", "--split-seed", value] for value in ("-1", *HUGE_INT)),
        ),
    )
    strategy = fixed(
        [], ["--strategy", "random"], ["--strategy", "random", "--asynchronous"], ["--strategy", "evolution"],
        ["--strategy", "evolution", "--asynchronous"], ["--strategy", "tpe"], ["--advantage", "baseline"],
        ["--strategy", "reinforce", "--controller-lr", "0.03", "--entropy-weight", "0"], ["--curriculum", "1,1"],
        ["--curriculum", "2,3,1", "--entropy-weight", "0.1", "--advantage", "rank"],
        hostile=(
            ["--strategy", "magic"], ["--strategy", ""], ["--strategy", "RANDOM"],
            ["--strategy", "tpe", "--asynchronous"], ["--strategy", "random", "--curriculum", "1,1"],
            ["--advantage", "none"], ["--strategy", "evolution", "--controller-lr", "0.1"],
            ["--strategy", "miha"], ["--strategy", "pbt", "--strategy-settings", "population_size=0"],
            ["--strategy", "miha", "--strategy-settings", "pop_size=0,c=1e999"], ["--strategy-settings", "x"],
            ["--strategy", "miha", "--strategy-settings", "fitness=speed"], ["--keep-final-only"],
            ["--strategy", "pbt", "--strategy-settings", "quantile=nan,m=2"], ["--strategy-settings", "a=1,a=2"],
            *(["--controller-lr", value] for value in BAD_FLOAT),
            *(["--entropy-weight", value] for value in BAD_FLOAT if value not in ("0", "-0.0")),
            *(["--curriculum", value] for value in ("0,1", "1", "a,b", "1,1,1,1", "1,99999999999999999999", "", "-1,2",
                                                    "1,1,0")),
        ),
    )
    return command(
        "search",
        [
            source,
            strategy,
            number("--steps", ("1", "2"), huge=False, required=True),
            number("--children-per-step", ("1", "2", "3"), required=True),
            number("--seed", ("0", "5")),
            path("--study", ("fresh_db", "fresh_db", "unicode_db", "in_dir_db"),
                 (*STUDY_OUTPUTS, "missing", "dangling", "loop", "undecodable", "empty", "dot", "dev_null")),
            flag("--trainer", ("batched",), ("serial", "fast", "")),
            *training(("1", "2")),
            switch("--reuse-evaluations"),
            switch("--save-children"),
            switch("--refit"),
            number("--ensemble", ("1", "3")),
            goals(),
            executor(),
            switch("--quiet"),
        ],
    )


def resume_argv() -> st.SearchStrategy[list]:
    return command(
        "resume",
        [
            path(None, STUDIES, (*NOT_STUDIES, "sample")),
            flag("--steps", ("2", "3"), BAD_INT + ("1",)),  # below the steps done: refused
            executor(),
            switch("--quiet"),
        ],
    )


def trials_argv() -> st.SearchStrategy[list]:
    return command(
        "trials",
        [path(None, (*STUDIES, "sample"), NOT_STUDIES), number("--top", ("1", "3", "100")), switch("--json")],
    )


def best_argv() -> st.SearchStrategy[list]:
    return command("best", [path(None, (*STUDIES, "sample"), NOT_STUDIES), switch("--json")])


def pareto_argv() -> st.SearchStrategy[list]:
    return command(
        "pareto",
        [
            path(None, (*STUDIES, "sample"), NOT_STUDIES),
            flag("--objectives", ("val_score:max,params:min", "params:min,seconds:min,reward:max",
                                  "val_score:max,flops:min"),
                 ("", "val_score:max", "val_score:up,params:min", "latency:min,params:min", "params:min,params:max",
                  "val_score:max,,params:min", ":max,params:min")),
            switch("--json"),
        ],
    )  # fmt: skip


def report_argv() -> st.SearchStrategy[list]:
    return command(
        "report",
        [
            path(None, STUDIES, NOT_STUDIES),
            path("-o", ("fresh_html", "unicode", "in_dir", "dev_null"),
                 (*STUDY_OUTPUTS, *BAD_NEW_PATHS, "dev_full", "abs_study")),
            number("--top", ("1", "3")),
            path("--sample", ("sample",), ("study", "link", "data", "missing_study", "dir", "empty")),
            flag("--reference", ("0,100000", "-1,1e9"), ("1", "a,b", "nan,1", "1,2,3", "")),
        ],
    )


def export_argv() -> st.SearchStrategy[list]:
    # --no-onnx always: ONNX takes seconds to write, and it goes into the same checked folder
    return command(
        "export",
        [
            path(None, STUDIES, NOT_STUDIES),
            path("--out", ("fresh", "unicode", "in_dir", "dot"), (*STUDY_OUTPUTS, *BAD_NEW_PATHS[:-1], "dev_null")),
            fixed(["--no-onnx"], hostile=(["--no-onnx=1"], ["--onnx=yes"])),
            flag("--trial", ("0", "1"), BAD_INT + HUGE_INT),
        ],
    )


def compare_argv() -> st.SearchStrategy[list]:
    return command(
        "compare",
        [
            fixed(["--benchmark", "nas-bench-macro"], ["--benchmark", "nas-bench-macro"], ["--task", "moons"],
                  hostile=([], ["--task", "moons", "--benchmark", "nas-bench-macro"], ["--task", "digits"],
                           ["--benchmark", "nas-bench-201"], ["--task", "moons", "--space", "activation"],
                           ["--benchmark", "nas-bench-macro", "--space", "update-rule"], ["--space", "cnn"])),
            # one strategy, one seed: a single run, so compare starts no worker processes
            flag("--strategies", ("random", "evolution", "tpe", "reinforce"),
                 ("", ",", "magic", "random,random", "random,,", " random ", "RANDOM"), required=True),
            number("--seeds", ("1",), required=True),
            number("--budget", ("1", "3", "6"), huge=False, required=True),
            number("--children-per-step", ("1", "2")),
            switch("--noisy"),
            flag("--objectives", ("val_score:max,params:min",),
                 ("val_score:max,latency_ms:min", "val_score:max", "x:min,params:max")),  # fmt: skip
            number("--jobs", ("1",)),
            path("--out", ("fresh", "unicode", "in_dir"), (*STUDY_OUTPUTS, *BAD_NEW_PATHS, "dev_null")),
            switch("--quiet"),
        ],
    )


def sample_argv() -> st.SearchStrategy[list]:
    return command(
        "sample",
        [
            flag("--task", ("moons",), ("digits", "x", "")),
            number("--n", ("1", "2"), huge=False, required=True),
            number("--seed", ("0", "3")),
            path("--study", ("fresh_db", "sample", "unicode_db"),
                 ("study", "link", "hard", "wal", "children", "data", "dir", "missing", "dangling", "empty")),
            path("--plot", ("fresh_png", "in_dir_png"), (*STUDY_OUTPUTS, *BAD_NEW_PATHS, "dev_full", "fresh")),
            switch("--quiet"),
        ],
    )


def baseline_argv() -> st.SearchStrategy[list]:
    return command(
        "baseline",
        [
            fixed(["--task", "digits"], ["--task", "moons", "--activation", "x * sigmoid(beta * x)"],
                  ["--task", "digits", "--update-rule", "exp(sign(g) * sign(m)) * g"],
                  hostile=([], ["--task", "mnist"], ["--task", "moons"], ["--task", "mnist", "--data-dir", Ref("dir")],
                           ["--task", "digits", "--data-dir", Ref("dir")],
                           ["--task", "fashion-mnist", "--data-dir", Ref("study")],
                           ["--task", "moons", "--activation", "relu(x)"], ["--task", "moons", "--activation", ""],
                           ["--task", "moons", "--update-rule", "x"], ["--task", "moons", "--activation", "x" * 5000],
                           ["--task", "moons", "--activation", "(" * 100 + "x" + ")" * 100],
                           ["--task", "ptb", "--activation", "x"], ["--task", "moons", "--activation", "1 / (x - x)"])),
            number("--seed", ("0", "2")),
            *training(("1",), time_limit=("0.5",)),
            switch("--json"),
        ],
    )


SUBCOMMANDS = {
    "search": search_argv,
    "resume": resume_argv,
    "trials": trials_argv,
    "best": best_argv,
    "report": report_argv,
    "export": export_argv,
    "compare": compare_argv,
    "sample": sample_argv,
    "baseline": baseline_argv,
    "pareto": pareto_argv,
}

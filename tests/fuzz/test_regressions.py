"""Every failure the generated suites found, as a plain test of its own (no Hypothesis).

Each runs ``archsearch.cli.main`` in-process on copies of the session's studies and asserts the
house rules with ``check_case``: exit 0 or 2, one line when 2, no traceback, nothing written by a
refused command and no file a command reads written over.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from ._harness import Ref, check_case, materialise
from .test_tampered import apply

pytestmark = pytest.mark.fuzz

#: a search that trains one child for one epoch
TINY = ["--steps", "1", "--children-per-step", "1", "--max-epochs", "1", "--quiet"]


#: the ``case`` fixture: ``case(kind)`` copies a study and lays out the paths around it
Case = Callable[..., tuple[Path, dict]]


@pytest.fixture
def case(library: dict[str, Path], tmp_path: Path) -> Case:
    """``case(kind)``: the folder and :class:`Ref` paths of a copy of study ``kind`` named study.db."""

    def make(kind: str = "mlp", name: str = "study.db") -> tuple[Path, dict]:
        return tmp_path, materialise(library, kind, name, tmp_path)

    return make


# -- an empty path where a study is named: its default output name is derived from it ---------------


@pytest.mark.parametrize(
    "argv",
    [
        ["report", ""],  # ValueError: PosixPath('.') has an empty name (default_output)
        ["export", "", "--no-onnx"],  # the same, in _export's default folder name
        ["sample", "--n", "1", "--study", ""],  # the same, in the default plot name
        ["sample", "--n", "1", "--study", "new.db", "--plot", "."],  # the same, in numbers_path (with_suffix)
    ],
    ids=["report", "export", "sample", "sample-plot"],
)
def test_an_empty_path_is_one_line(argv: list, case: Case) -> None:
    folder, refs = case()
    outcome = check_case(argv, folder, refs, allowed=(2,))
    assert any(word in outcome.err for word in ("''", "empty", "study", "names a folder"))


# -- sample --plot: its format is checked before anything is trained -----------------------------


@pytest.mark.parametrize("plot", ["fresh.out", "data.csv", "plot.txt"])
def test_sample_refuses_a_plot_matplotlib_cannot_write_before_training(plot: str, case: Case) -> None:
    # was: ValueError: Format 'out' is not supported (...), after training, with the study left behind
    folder, refs = case()
    outcome = check_case(["sample", "--n", "1", "--study", "new.db", "--plot", plot, "--quiet"], folder, refs,
                         allowed=(2,))
    assert "--plot" in outcome.err
    assert not (folder / "new.db").exists()


# -- paths a terminal cannot print: undecodable bytes (surrogate escapes) and newlines ---------------


@pytest.mark.parametrize(
    "argv",
    [
        ["export", Ref("study"), "--out", "\udcff", "--no-onnx"],
        ["report", Ref("study"), "-o", "\udcff.html"],
        ["search", *TINY, "--study", "\udcff.db"],
        ["sample", "--n", "1", "--study", "\udcff.db", "--quiet"],
        ["compare", "--benchmark", "nas-bench-macro", "--strategies", "random", "--seeds", "1", "--budget", "1",
         "--out", "\udcff", "--quiet"],
    ],
    ids=["export", "report", "search", "sample", "compare"],
)
def test_an_undecodable_path_is_printed_without_a_traceback(argv: list, case: Case) -> None:
    # a file name with the byte 0xff (argv decodes it as '\udcff'); printing it to a UTF-8 stdout raised
    # UnicodeEncodeError: 'utf-8' codec can't encode character '\udcff' ...: surrogates not allowed
    folder, refs = case()
    check_case(argv, folder, refs, may_change=lambda rel: False)


@pytest.mark.parametrize(
    "argv",
    [
        ["trials", "a\nb.db"],
        ["search", "--data", "x\ny.csv", "--target", "label", *TINY],
        ["report", "missing\n.db"],
    ],
    ids=["trials", "search", "report"],
)
def test_an_error_naming_a_path_with_a_newline_is_one_line(argv: list, case: Case) -> None:
    # was: "archsearch trials: error: a" and "b.db: no such study file" on two lines
    folder, refs = case()
    check_case(argv, folder, refs, allowed=(2,))


# -- resume of a damaged study: refused before anything is run or written ---------------------------


@pytest.mark.parametrize(
    "damage",
    [
        (("delete", "trials", "all"),),
        (("architecture", '{"kind": "cnn", "layers": []}', "all"),),
        (("column", "reward", None, "first"),),
    ],
    ids=["trials-deleted", "architecture-of-another-space", "reward-null"],
)
@pytest.mark.parametrize("kind", ["mlp", "reinforce"])
def test_resume_with_more_steps_of_a_damaged_study_changes_nothing(damage: tuple, kind: str, case: Case) -> None:
    # was: one line and exit 2, but only after a step was trained and committed (trials, checkpoint, model,
    # config's steps; with saved children, their files too)
    folder, refs = case(kind)
    apply(folder / "study.db", damage)
    check_case(["resume", Ref("study"), "--steps", "3", "--quiet"], folder, refs, allowed=(2,))


@pytest.mark.parametrize(
    "argv",
    [
        ["best", Ref("study")],  # exit 0, "no successful trial yet"
        ["best", Ref("study"), "--json"],  # exit 0, a summary without a trial
        ["export", Ref("study"), "--no-onnx"],  # exit 2, but "no successful trial to export yet"
        ["resume", Ref("study"), "--quiet"],  # was exit 0, "no successful trial yet"
        ["trials", Ref("study")],
        ["report", Ref("study")],
    ],
    ids=["best", "best-json", "export", "resume", "trials", "report"],
)
def test_a_study_whose_trials_were_all_deleted_is_refused_by_every_command(argv: list, case: Case) -> None:
    # trials and report say "trial 0 is missing, though its step is complete"; best took the empty table
    # for a study without a successful trial
    folder, refs = case()
    apply(folder / "study.db", (("delete", "trials", "all"),))
    outcome = check_case(argv, folder, refs, allowed=(2,))
    assert "missing" in outcome.err


@pytest.mark.parametrize("kind", ["mlp", "reinforce"])
@pytest.mark.parametrize("steps", [[], ["--steps", "3"]], ids=["as-stored", "more-steps"])
def test_resume_refuses_a_checkpoint_of_another_strategy_in_one_line(kind: str, steps: list, case: Case) -> None:
    # was: KeyError: 'rng' from RandomSearch.load_state_dict (a checkpoint blob holding other tensors)
    import io

    import torch

    buffer = io.BytesIO()
    torch.save({"weight": torch.zeros(2, 2), "x": torch.ones(1)}, buffer)
    folder, refs = case(kind)
    apply(folder / "study.db", (("blob", "checkpoints", "state", buffer.getvalue(), 0),))
    outcome = check_case(["resume", Ref("study"), *steps, "--quiet"], folder, refs, allowed=(2,))
    assert "checkpoint" in outcome.err


def test_resume_refuses_a_pickled_checkpoint_without_torchs_warning(case: Case) -> None:
    # was: torch's two-line UserWarning "Detected pickle protocol 4 in the checkpoint ..." before the one line
    import pickle

    folder, refs = case()
    apply(folder / "study.db", (("blob", "checkpoints", "state", pickle.dumps({"os": "system"}, protocol=4), 0),))
    outcome = check_case(["resume", Ref("study"), "--quiet"], folder, refs, allowed=(2,))
    assert "checkpoint" in outcome.err


def test_ctrl_c_while_the_study_file_is_created_leaves_no_half_study(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # was: Ctrl-C between sqlite3.connect and the schema's commit left an empty s.db, and the message said
    # "continue with 'archsearch resume s.db'", which answered "not an archsearch study (no such table: meta)";
    # search then refused the path as taken
    from archsearch.study import _storage

    def interrupted(db: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(_storage, "_configure", interrupted)
    refs = {"study": Path("s.db")}
    check_case(["search", *TINY, "--study", Ref("study")], tmp_path, refs, allowed=(130,))
    monkeypatch.undo()
    if (tmp_path / "s.db").exists():
        check_case(["resume", Ref("study"), "--quiet"], tmp_path, refs, may_change=lambda rel: True, allowed=(0,))
    else:
        check_case(["search", *TINY, "--study", Ref("study")], tmp_path, refs, allowed=(0,))


@pytest.mark.parametrize(
    "flags",
    [
        ["--max-layers", "1000000000000"],  # hung building the controller's schedule
        ["--max-layers", "100000"],  # searched, printed its results, then never exited
        ["--strategy", "random", "--children-per-step", "100000000"],  # hung asking for the first step
        ["--executor", "process", "--workers", "1000000"],  # would have started a million worker processes
        ["--trainer", "serial", "--threads", "100000"],  # would have asked PyTorch for 100,000 threads
    ],
    ids=["max-layers-1e12", "max-layers-1e5", "children-1e8", "workers-1e6", "threads-1e5"],
)
def test_a_size_beyond_its_bound_is_refused_before_anything_starts(flags: list, tmp_path: Path) -> None:
    # found by hand while building the suite (before the bounds of archsearch._limits), run in subprocesses
    # with a time limit; in-process here, where the harness's guards stop a case that would hang or fork
    check_case(["search", *TINY, *flags, "--study", "s.db"], tmp_path, {}, allowed=(2,))

"""Generated argument vectors for every subcommand, on copies of real studies.

Each case: exit 0 or 2, one line on stderr when 2, no traceback; a refused command changes no file;
a successful one changes no existing file except the study it writes (``resume``, ``sample``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ._harness import STUDY_NAMES, Folder, Ref, check_case, materialise
from ._strategies import SUBCOMMANDS

pytestmark = pytest.mark.fuzz

#: generated cases per subcommand; the sum is what docs/hostile-input.md reports
EXAMPLES = {
    "search": 36,
    "resume": 16,
    "trials": 16,
    "best": 12,
    "report": 8,
    "export": 14,
    "compare": 8,
    "sample": 6,
    "baseline": 4,
    "pareto": 8,
}


def fuzz_settings(examples: int) -> settings:
    """Reproducible in CI: a fixed sequence of cases, no example database, no per-case deadline."""
    return settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


def _may_change(argv: list, refs: dict) -> set[str]:
    """Existing paths a successful command may write: the study that resume continues, or sample's own."""
    study = str(refs["study"])
    resumed = {Ref("study"), Ref("abs_study"), Ref("link"), Ref("hard")}
    if argv[0] == "resume" and argv[1] in resumed:
        return {study, "hard.db", f"{study}.children"}
    if argv[0] == "resume" and argv[1] == Ref("sample") or argv[0] == "sample" and Ref("sample") in argv:
        return {str(refs["sample"])}
    return set()


def _run(command: str, argv: list, kind: str, name: str, library: dict[str, Path], case_folder: Folder) -> None:
    with case_folder() as folder:
        refs = materialise(library, kind, name, folder)
        allowed = _may_change(argv, refs)
        check_case(argv, folder, refs, may_change=lambda rel: any(rel == p or rel.startswith(p + "/") for p in allowed))


def _test(command: str) -> Callable[..., None]:
    """The generated test of one subcommand."""

    @fuzz_settings(EXAMPLES[command])
    @given(
        argv=SUBCOMMANDS[command](),
        kind=st.sampled_from(["mlp", "reinforce", "data"]),
        name=st.sampled_from(STUDY_NAMES),
    )
    def test(argv: list, kind: str, name: str, library: dict[str, Path], case_folder: Folder) -> None:
        _run(command, argv, kind, name, library, case_folder)

    test.__name__ = f"test_{command}_arguments"
    test.__doc__ = f"Generated ``archsearch {command}`` argument vectors keep the house rules."
    return test


test_search_arguments = _test("search")
test_resume_arguments = _test("resume")
test_trials_arguments = _test("trials")
test_best_arguments = _test("best")
test_report_arguments = _test("report")
test_export_arguments = _test("export")
test_compare_arguments = _test("compare")
test_sample_arguments = _test("sample")
test_baseline_arguments = _test("baseline")
test_pareto_arguments = _test("pareto")

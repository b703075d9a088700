"""Commands that search show their progress on stderr when it is not a terminal: a line per step (or per
run of a comparison), at most one every few seconds; ``--quiet`` shows none, and stdout stays the same.

In-process runs write stderr to a ``StringIO``, which is not a terminal, as a log file or CI is not.
"""

import re

from .conftest import one_line_error

BENCH = ["--benchmark", "nas-bench-macro", "--strategy", "random", "--children-per-step", "5"]
COMPARE = ["compare", "--benchmark", "nas-bench-macro", "--strategies", "random", "--seeds", "2", "--budget", "10",
           "--jobs", "1"]  # fmt: skip


def counts(stderr: str, label: str, total: int) -> list[int]:
    """The count on each progress line, every line of ``stderr`` checked to be one."""
    found = [re.fullmatch(rf"{label} (\d+)/{total}  .*elapsed \d+:\d\d:\d\d  eta \S+", line)
             for line in stderr.splitlines()]  # fmt: skip
    assert found and all(found), stderr
    return [int(match.group(1)) for match in found]


def test_search_and_resume_print_lines_on_stderr_and_their_results_on_stdout(tmp_path, run):
    shown = run("search", *BENCH, "--steps", "4", "--study", tmp_path / "shown.db", check=True)
    quiet = run("search", *BENCH, "--steps", "4", "--study", tmp_path / "quiet.db", "--quiet", check=True)
    steps = counts(shown.stderr, "step", 4)
    assert steps[0] == 1 and steps[-1] == 4 and "mean reward" in shown.stderr
    assert quiet.stderr == ""
    assert shown.stdout.replace("shown.db", "quiet.db") == quiet.stdout  # stdout is for results only
    resumed = run("resume", tmp_path / "shown.db", "--steps", "6", check=True)
    assert counts(resumed.stderr, "step", 6)[-1] == 6
    assert run("resume", tmp_path / "quiet.db", "--steps", "6", "--quiet", check=True).stderr == ""


def test_compare_prints_a_line_per_finished_run(tmp_path, run):
    shown = run(*COMPARE, "--out", tmp_path / "shown", check=True)
    assert counts(shown.stderr, "runs", 2) == [1, 2]  # the first and the last always print
    assert run(*COMPARE, "--out", tmp_path / "quiet", "--quiet", check=True).stderr == ""


def test_sample_prints_its_steps(tmp_path, run):
    shown = run("sample", "--task", "moons", "--n", "2", "--study", tmp_path / "s.db", check=True)
    assert counts(shown.stderr, "step", 1) == [1]


def test_a_refusal_without_quiet_is_still_one_line(tmp_path, run):
    # refused inside compare(), after the command has made its progress: no line before the first run ends
    one_line_error(run("compare", "--task", "moons", "--strategies", "random", "--tolerance", "0.1",
                       "--out", tmp_path / "c"), "tolerance")  # fmt: skip
    study = tmp_path / "s.db"
    run("search", *BENCH, "--steps", "2", "--study", study, "--quiet", check=True)
    one_line_error(run("resume", study, "--steps", "1"), "--steps")

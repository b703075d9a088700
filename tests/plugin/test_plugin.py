"""A plugin installed beside archsearch adds a benchmark and a space through entry points: the command
line and ``Study.open`` find them with no wrapper script, and without the plugin say what to install.

``site/`` holds the plugin as pip would install it (a package and its ``.dist-info`` folder with
``entry_points.txt``); putting it on ``PYTHONPATH`` installs it for the subprocesses these tests run.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SITE = Path(__file__).resolve().parent / "site"
TABLE = json.loads((SITE / "archsearch_toy_plugin" / "table.json").read_text())


def _run(*args: str, plugin: bool = True, cwd: Path | None = None) -> subprocess.CompletedProcess:
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and Path(p) != SITE]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SITE)] * plugin + paths), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, cwd=cwd)


def _archsearch(*args: str, plugin: bool = True, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return _run("-m", "archsearch", *map(str, args), plugin=plugin, cwd=cwd)


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    """A search of the plugin's benchmark, started from the command line."""
    path = tmp_path_factory.mktemp("plugin") / "toy.db"
    proc = _archsearch("search", "--benchmark", "toy", "--strategy", "random", "--steps", "2",
                       "--children-per-step", "4", "--study", path, "--quiet")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "toy accuracy" in proc.stdout
    return path


def test_best_finds_the_plugins_benchmark_and_space(study):
    proc = _archsearch("best", study, "--json")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["benchmark"]["name"] == "toy" and summary["benchmark"]["best_value"] == 95.0
    assert summary["benchmark"]["value"] == TABLE[summary["architecture"]]["accuracy"]
    assert summary["trials"] == 8


def test_study_open_rebuilds_the_plugins_space(study):
    script = (
        "import sys; from archsearch import Study\n"
        "with Study.open(sys.argv[1], readonly=True) as s:\n"
        "    print(type(s.space).__name__, s.space.kind, s.evaluator.benchmark.name, len(s.trials()))\n"
    )
    proc = _run("-c", script, str(study))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["ToySpace", "toy-code", "toy", "8"]


def test_without_the_plugin_best_says_which_entry_point_group_to_install(study):
    proc = _archsearch("best", study, plugin=False)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert f"{study}: space.kind: unknown space 'toy-code'" in proc.stderr
    assert "'archsearch.spaces' entry-point group" in proc.stderr


def test_compare_runs_the_plugins_benchmark(tmp_path):
    out = tmp_path / "compare"
    proc = _archsearch("compare", "--benchmark", "toy", "--strategies", "random,evolution", "--seeds", "2",
                       "--budget", "8", "--children-per-step", "4", "--jobs", "1", "--out", out, "--quiet")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    results = json.loads((out / "results.json").read_text())
    assert results["benchmark"] == "toy" and results["best_value"] == 95.0
    assert sorted(results["strategies"]) == ["evolution", "random"] and len(results["runs"]) == 4
    # random search without repeats sees all 8 codes within its budget of 8, so each of its runs finds the best
    assert all(run["queries_to_best"] is not None for run in results["runs"] if run["strategy"] == "random")


def test_without_the_plugin_the_benchmark_is_not_offered(tmp_path):
    proc = _archsearch("compare", "--benchmark", "toy", "--out", tmp_path / "c", plugin=False)
    assert proc.returncode == 2 and "invalid choice: 'toy'" in proc.stderr
    assert list(tmp_path.iterdir()) == []

"""``archsearch search --task ptb`` and ``archsearch baseline --task ptb``: perplexities on the command line,
exact resume after SIGKILL, and every refusal one line with exit code 2 that writes nothing."""

from __future__ import annotations

import json
import math

import pytest

from ..conftest import benchmark_script
from .conftest import one_line_error, uninterrupted

CELLS = ["--task", "ptb", "--hidden", "12", "--max-layers", "3", "--weight-sharing", "--steps", "4",
         "--children-per-step", "2", "--controller-steps", "2", "--derive", "3", "--retrain", "2", "--reward-words",
         "100", "--max-epochs", "1", "--batch-size", "16", "--seed", "2"]  # fmt: skip


def test_a_cell_search_shows_perplexities_and_its_phases(tmp_path, run, ptb_folder):
    study = tmp_path / "ptb.db"
    proc = run("search", *CELLS, "--data-dir", ptb_folder, "--study", study, "--quiet", check=True)
    best = json.loads(run("best", study, "--json", check=True).stdout)
    assert best["metric"] == "log_likelihood" and best["kind"] == "final" and best["architecture_json"]["kind"] == "dag-cell"
    val, test = math.exp(-best["val_score"]), math.exp(-best["test_score"])
    assert f"val_perplexity {val:.2f}  test_perplexity {test:.2f}" in proc.stdout
    assert "weight sharing: 8 children scored with shared weights" in proc.stdout
    table = run("trials", study, check=True).stdout
    assert "val_ppl" in table and f"{val:.2f}" in table
    export = run("export", study, "--out", tmp_path / "out", "--no-onnx")
    one_line_error(export, "export builds MLP and CNN networks", "dag-cell")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("cell", ["tanh", "lstm", "gru"])
def test_a_baseline_cell_of_matched_parameters(run, ptb_folder, cell):
    proc = run("baseline", "--task", "ptb", "--data-dir", ptb_folder, "--cell", cell, "--params", "6000",
               "--max-epochs", "1", "--batch-size", "16", "--json", check=True)  # fmt: skip
    summary = json.loads(proc.stdout)
    assert summary["architecture"].startswith(f"{cell}-") and abs(summary["params"] - 6000) < 600
    assert summary["val_perplexity"] == pytest.approx(math.exp(-summary["val_score"]))
    assert summary["test_perplexity"] == pytest.approx(math.exp(-summary["test_score"]))
    assert summary["epochs"] == 1 and summary["val_perplexity"] < 2 * 41  # no worse than a little off uniform


@pytest.mark.parametrize(
    ("argv", "needles"),
    [
        (["search", "--task", "ptb", "--data-dir", "{missing}"], ["task ptb:", "is not a folder"]),
        (["search", "--task", "ptb", "--data-dir", "{folder}", "--space", "cnn"], ["--space cnn", "models words"]),
        (["search", "--space", "tree-cell"], ["--space tree-cell", "(use --task ptb)"]),
        (["search", "--hidden", "64"], ["--hidden", "the mlp space has none"]),
        (["search", "--task", "ptb", "--data-dir", "{folder}", "--weight-sharing", "--sharing", "slice"],
         ["--sharing", "not a setting of a cell search"]),
        (["search", "--reward-words", "10", "--weight-sharing"], ["--reward-words", "task ptb"]),
        (["baseline", "--task", "digits", "--cell", "lstm"], ["--cell", "digits is images"]),
        (["baseline", "--task", "ptb", "--data-dir", "{folder}", "--hidden", "0"], ["--hidden", "positive"]),
    ],
)
def test_what_a_cell_search_refuses_is_one_line_and_writes_nothing(tmp_path, run, ptb_folder, argv, needles):
    argv = [a.format(missing=tmp_path / "nowhere", folder=ptb_folder) for a in argv]
    study = tmp_path / "refused.db"
    proc = run(*argv, *(["--study", study] if argv[0] == "search" else []))
    assert proc.returncode == 2, proc
    assert any(all(n in line for n in needles) for line in proc.stderr.strip().splitlines()[-1:]), proc.stderr
    assert not study.exists()


@pytest.mark.slow
def test_kill_9_then_resume_gives_the_uninterrupted_cell_search(tmp_path, ptb_folder):
    """benchmarks/kill_anywhere.py on a cell search: SIGKILL in the search, then ``archsearch resume`` to
    the end (the in-process tests of test_cell_search.py stop a study in a pass, between proxy trials, in
    derivation and in retraining; each launch here costs a process start-up)."""
    script = benchmark_script("kill_anywhere")
    search = [*CELLS, "--data-dir", str(ptb_folder)]
    # 8 proxy trials in the search (4 steps of 2), then the derived ones (3 at most), then 2 retrained
    reference = uninterrupted(search, tmp_path / "straight.db")
    result = script.run(seed=1, search=search, workdir=tmp_path, at_trials=[5], reference=reference)
    assert result["kills"] == 1 and result["trials"] == result["trials_uninterrupted"] >= 12, result
    assert result["same_trials"] and result["same_steps"] and result["same"], result

"""``archsearch search --weight-sharing``: the phases on the command line, in ``best``, ``report`` and
``export``, and every refusal one line with exit code 2 that writes nothing."""

from __future__ import annotations

import json

import pytest

from ..conftest import benchmark_script
from .conftest import one_line_error, uninterrupted

WS = ["--weight-sharing", "--steps", "4", "--children-per-step", "3", "--controller-steps", "2", "--derive", "6",
      "--retrain", "2", "--max-layers", "2", "--max-epochs", "6", "--batch-size", "64", "--seed", "5", "--quiet"]  # fmt: skip


def test_search_best_report_and_export_show_both_phases(tmp_path, run):
    study = tmp_path / "ws.db"
    proc = run("search", *WS, "--study", study, check=True)
    assert "weight sharing: 12 children scored with shared weights" in proc.stdout
    assert proc.stdout.count("  retrained: ") == 2 and "Kendall tau" in proc.stdout
    best = json.loads(run("best", study, "--json", check=True).stdout)
    assert best["kind"] == "final" and best["phase"] == "retrain" and best["test_score"] is not None
    phases = best["weight_sharing"]
    assert phases["retrained"] == 2 and phases["tau_pairs"] == 2 and phases["kendall_tau"] in (-1.0, 1.0, None)
    run("report", study, "-o", tmp_path / "r.html", check=True)
    page = (tmp_path / "r.html").read_text()
    assert "Weight sharing: search, derivation, retraining" in page and "shared weights" in page
    run("export", study, "--out", tmp_path / "out", "--no-onnx", check=True)
    source = json.loads((tmp_path / "out" / "architecture.json").read_text())["source"]
    assert (source["phase"], source["kind"], source["trial"]) == ("retrain", "final", best["trial"])
    assert source["weight_sharing"]["final"] == phases["final"]
    trials = json.loads(run("trials", study, "--json", check=True).stdout)
    assert {(t["phase"], t["kind"]) for t in trials} == {("search", "proxy"), ("derive", "proxy"), ("retrain", "final")}


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["--weight-sharing", "--benchmark", "nas-bench-macro"], ["--weight-sharing: a tabular benchmark"]),
        (["--weight-sharing", "--executor", "process", "--workers", "2"], ["--executor:", "run it inline"]),
        (["--weight-sharing", "--strategy", "random", "--asynchronous"], ["--asynchronous: cannot be combined"]),
        (["--weight-sharing", "--reuse-evaluations"], ["--reuse-evaluations: cannot be combined"]),
        (["--derive", "5"], ["--derive: a setting of weight sharing; add --weight-sharing"]),
        (["--weight-sharing", "--derive", "3", "--retrain", "4"], ["--retrain: retrains the best derived", "at most --derive (3), got 4"]),
        (["--weight-sharing", "--controller-steps", "0"], ["--controller-steps"]),
    ],
)
def test_what_weight_sharing_cannot_do_is_one_line_and_writes_nothing(tmp_path, run, args, needles):
    proc = run("search", *args, "--study", tmp_path / "s.db", cwd=tmp_path)
    one_line_error(proc, *needles)
    assert list(tmp_path.iterdir()) == []


def test_resuming_a_weight_sharing_study_elsewhere_is_refused(tmp_path, run):
    study = tmp_path / "ws.db"
    run("search", *WS, "--study", study, check=True)
    before = study.read_bytes()
    one_line_error(run("resume", study, "--executor", "process", "--workers", "2"), "resume it inline")
    assert study.read_bytes() == before


def test_compare_runs_weight_sharing_studies_and_reports_the_retrained_picks(tmp_path, run):
    out = tmp_path / "cmp"
    proc = run("compare", "--task", "moons", "--strategies", "reinforce,random", "--seeds", "1", "--budget", "6",
               "--children-per-step", "3", "--weight-sharing", "--jobs", "1", "--out", out, "--quiet", check=True)  # fmt: skip
    assert "mean test of the retrained pick" in proc.stdout
    summary = json.loads((out / "results.json").read_text())
    assert summary["settings"]["weight_sharing"] is True and "shared weights" in summary["score"]
    for name in ("reinforce", "random"):
        assert 0.5 <= summary["strategies"][name]["mean_test_score"] <= 1.0
    one_line_error(run("compare", "--benchmark", "nas-bench-macro", "--weight-sharing", "--out", tmp_path / "b"),
                   "weight_sharing: a tabular benchmark")  # fmt: skip


def test_the_classifier_searches_with_shared_weights_and_predicts_with_the_retrained_pick():
    from sklearn.datasets import make_moons

    from archsearch import NASClassifier

    X, y = make_moons(300, noise=0.2, random_state=0)
    model = NASClassifier(budget=6, children_per_step=3, max_epochs=20, weight_sharing=True).fit(X, y)
    phases = model.study_.phases()
    assert phases["search_trials"] == 6 and phases["retrained"] == 1
    assert model.study_.best().kind == "final" and model.best_architecture_ == model.study_.best().architecture
    assert model.score(X, y) > 0.8


@pytest.mark.slow
def test_kill_9_anywhere_then_resume_gives_the_uninterrupted_weight_sharing_study(tmp_path):
    """benchmarks/kill_anywhere.py on a weight-sharing search: SIGKILL during the search, once the search
    is over, and between the two retrainings, each followed by ``archsearch resume``."""
    script = benchmark_script("kill_anywhere")
    search = [*WS[:-1], "--task", "moons", "--executor", "inline"]
    # 12 proxy trials in the search, then the 6 derived ones, then 2 retrained: the search command is
    # killed in the search, its first resume after the derivation (the derived children are recorded in a
    # burst: a kill due at 13 trials finds 18), its second once the first retrained pick is in.
    reference = uninterrupted(search, tmp_path / "straight.db")
    result = script.run(seed=1, search=search, workdir=tmp_path, at_trials=[2, 13, 19], reference=reference)
    at_kill = [event.get("trials_at_kill") for event in result["events"]]
    assert result["kills"] == 3 and at_kill[-1] == 19 and result["trials"] == 20, result
    assert result["trials"] == result["trials_uninterrupted"], result
    assert result["same_trials"] and result["same_steps"] and result["same"], result

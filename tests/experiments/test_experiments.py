"""Comparisons and random samples: their statistics, files, and reuse of finished work."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from archsearch.errors import ArchsearchError
from archsearch.evaluation import TABULAR_BENCHMARKS, get_benchmark
from archsearch.experiments import compare, density_peaks, incumbent_curve, sample, write_sample
from archsearch.experiments._compare import random_median

from ..strategies.test_strategies import toy_benchmark

PNG = b"\x89PNG\r\n\x1a\n"


def trial(number, reward, code, params=0, status="ok"):
    arch = SimpleNamespace(code=code)
    return SimpleNamespace(number=number, reward=reward, params=params, status=status, architecture=arch, val_loss=None)


def test_incumbent_is_the_best_reward_so_far_and_hits_count_from_one():
    bench = SimpleNamespace(value=lambda arch: {"a": 1.0, "b": 3.0, "c": 2.0}[arch.code], best_value=3.0)
    trials = [trial(0, 0.1, "a"), trial(1, 0.9, "b", status="failed"), trial(2, 0.5, "c"), trial(3, 0.7, "b")]
    scores, hit = incumbent_curve(trials, bench)
    assert scores == [1.0, 1.0, 2.0, 3.0]  # a failed trial never becomes the incumbent
    assert hit == 4


def test_incumbent_ties_go_to_fewer_parameters_then_the_earlier_trial():
    bench = SimpleNamespace(value=lambda arch: {"a": 1.0, "b": 2.0, "c": 3.0}[arch.code], best_value=3.0)
    trials = [trial(0, 0.5, "a", params=10), trial(1, 0.5, "b", params=5), trial(2, 0.5, "c", params=5)]
    assert incumbent_curve(trials, bench) == ([1.0, 2.0, 2.0], None)


def test_a_tolerance_counts_near_ties_as_having_found_the_best():
    bench = SimpleNamespace(value=lambda arch: {"a": 1.0, "b": 2.9, "c": 3.0}[arch.code], best_value=3.0)
    trials = [trial(0, 0.1, "a"), trial(1, 0.5, "b"), trial(2, 0.7, "c")]
    assert incumbent_curve(trials, bench) == ([1.0, 2.9, 3.0], 3)
    assert incumbent_curve(trials, bench, tolerance=0.1) == ([1.0, 2.9, 3.0], 2)
    assert incumbent_curve(trials, bench, tolerance=0.05) == ([1.0, 2.9, 3.0], 3)


def test_a_comparison_with_a_tolerance(toy):
    exact = compare(["random"], seeds=3, budget=300, benchmark="toy", jobs=1)
    near = compare(["random"], seeds=3, budget=300, benchmark="toy", jobs=1, tolerance=10.0)
    assert [r.scores for r in near.runs] == [r.scores for r in exact.runs]  # the same runs, scored alike
    # within 10 of 100: the optimum and the 6 x 3 codes one position off it (91.7)
    assert len(toy.codes_within(10.0)) == 19
    assert near.summary()["analytical_random_median"] == random_median(4096, 19) == 147
    assert exact.summary()["settings"]["tolerance"] == 0.0 and near.summary()["settings"]["tolerance"] == 10.0
    for run, exact_run in zip(near.runs, exact.runs):
        first = next((q for q, score in enumerate(run.scores, start=1) if score >= 90.0), None)
        assert run.queries_to_best == first
        if exact_run.queries_to_best is not None:
            assert first is not None and exact_run.queries_to_best >= first
    assert sum(r.queries_to_best is not None for r in near.runs) > sum(
        r.queries_to_best is not None for r in exact.runs
    )


def test_a_comparison_on_a_table_that_lacks_codes(monkeypatch):
    from ..evaluation.test_lookup import cell_benchmark

    bench = cell_benchmark()  # 30 of 36 codes; the 6 missing ones are trials with status missing
    monkeypatch.setitem(TABULAR_BENCHMARKS, "cells", lambda: bench)
    result = compare(["random", "evolution"], seeds=2, budget=36, benchmark="cells", children_per_step=4, jobs=1)
    # random search draws from all 36 codes, the missing ones too
    assert result.summary()["analytical_random_median"] == random_median(36, 1) == 18
    random_runs = [r for r in result.runs if r.strategy == "random"]
    assert all(r.queries_to_best is not None and r.scores[-1] == 100.0 for r in random_runs)  # it drew all 36


def test_compare_on_the_command_line_takes_a_tolerance(tmp_path, capsys):
    from archsearch.cli import main

    args = ["compare", "--benchmark", "nas-bench-macro", "--strategies", "random", "--seeds", "2", "--budget", "20"]
    assert main([*args, "--tolerance", "0.1", "--jobs", "1", "--out", str(tmp_path / "cmp"), "--quiet"]) == 0
    summary = json.loads((tmp_path / "cmp" / "results.json").read_text())
    # 9 codes lie within 0.1 points of the best mean accuracy: random search needs a median of 487 queries
    assert len(get_benchmark("nas-bench-macro").codes_within(0.1)) == 9 and summary["settings"]["tolerance"] == 0.1
    assert summary["analytical_random_median"] == random_median(6561, 9) == 487
    assert "median of 487 queries" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main([*args, "--tolerance", "-1"])


def test_random_median_is_the_exact_median_of_sampling_without_replacement():
    assert random_median(10, 1) == 5
    assert random_median(4, 2) == 1  # P(miss the first draw) = 1/2
    # brute force for 2 optima among 12: P(first hit <= k) over all orderings
    rng = np.random.default_rng(0)
    firsts = [min(np.flatnonzero(rng.permutation(12) < 2)) + 1 for _ in range(20_000)]
    assert random_median(12, 2) == int(np.median(firsts))


@pytest.fixture
def toy(monkeypatch):
    bench = toy_benchmark()
    monkeypatch.setitem(TABULAR_BENCHMARKS, "toy", lambda: bench)
    return bench


def test_comparison_statistics_and_files(tmp_path, toy):
    result = compare(["evolution", "random"], seeds=4, budget=400, benchmark="toy", jobs=1)
    summary = result.summary()
    assert summary["best_value"] == 100.0 and summary["analytical_random_median"] == 2048
    for name in ("evolution", "random"):
        entry = summary["strategies"][name]
        assert entry["seeds"] == 4 and list(entry["mean_best_at"]) == ["50", "100", "200", "400"]
        curves = result.curves(name)
        assert curves.shape == (4, 400)
        assert np.all(np.diff(curves, axis=1) >= 0)  # best so far never gets worse
        for point, mean in entry["mean_best_at"].items():
            assert mean == pytest.approx(curves[:, int(point) - 1].mean())
            low, high = entry["ci95_best_at"][point]
            assert low <= mean <= high
        hits = [r.queries_to_best for r in result.runs if r.strategy == name]
        assert entry["success_rate"] == sum(h is not None for h in hits) / 4
    # evolution climbs this separable landscape; random search samples 10 % of it
    assert summary["strategies"]["evolution"]["success_rate"] == 1.0
    assert summary["strategies"]["random"]["median_queries_to_best"] is None

    paths = result.write(tmp_path / "cmp")
    written = json.loads(paths["json"].read_text())
    assert set(written["strategies"]["evolution"]) >= {
        "median_queries_to_best",
        "success_rate",
        "mean_best_at",
        "seconds",
    }
    assert paths["plot"].read_bytes()[:8] == PNG and paths["plot"].stat().st_size > 10_000
    assert "| evolution |" in paths["table"].read_text()


def test_results_do_not_depend_on_the_number_of_worker_processes():
    inline = compare(["reinforce", "random"], seeds=2, budget=40, benchmark="nas-bench-macro", jobs=1)
    pooled = compare(["reinforce", "random"], seeds=2, budget=40, benchmark="nas-bench-macro", jobs=2)
    assert [(r.strategy, r.seed, r.scores) for r in inline.runs] == [
        (r.strategy, r.seed, r.scores) for r in pooled.runs
    ]


def test_noisy_rewards_still_score_the_incumbent_by_its_mean():
    result = compare(["random"], seeds=1, budget=30, benchmark="nas-bench-macro", noisy=True, jobs=1)
    bench = get_benchmark("nas-bench-macro")
    means = {float(r["mean_acc"]) for r in bench.records.values()}
    assert all(score in means for score in result.runs[0].scores)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"strategies": ["annealing"], "benchmark": "nas-bench-macro"}, "unknown strategy 'annealing'"),
        ({"strategies": ["random"]}, "exactly one of a benchmark and a task"),
        ({"strategies": ["random"], "task": "moons"}, "needs an output folder"),
        ({"strategies": ["random"], "benchmark": "nas-bench-101"}, "unknown benchmark 'nas-bench-101'"),
        ({"strategies": ["random"], "benchmark": "nas-bench-macro", "tolerance": -0.1}, "^tolerance: must be"),
        ({"strategies": ["random"], "benchmark": "nas-bench-macro", "tolerance": float("nan")}, "^tolerance: must"),
        ({"strategies": ["random"], "task": "moons", "tolerance": 1.0}, "^tolerance: only a comparison on a benchmark"),
    ],
)
def test_bad_comparisons_say_what_is_wrong(kwargs, message):
    with pytest.raises(ArchsearchError, match=message):
        compare(seeds=1, budget=10, **kwargs)


def test_a_comparison_on_a_task_keeps_and_reuses_its_studies(tmp_path):
    options = {"task": "moons", "children_per_step": 3, "trainer": {"max_epochs": 3}, "out": tmp_path, "jobs": 1}
    first = compare(["random", "evolution"], seeds=1, budget=6, **options)
    studies = sorted(p.name for p in (tmp_path / "studies").glob("*.db"))
    assert studies == ["evolution-s0.db", "random-s0.db"]
    assert all(r.test_score is not None for r in first.runs)
    again = compare(["random", "evolution"], seeds=1, budget=6, **options)
    assert [r.scores for r in again.runs] == [r.scores for r in first.runs]
    longer = compare(["random"], seeds=1, budget=9, **options)  # extends the kept study
    assert longer.runs[0].scores[:6] == first.runs[0].scores


def test_density_peaks_finds_the_modes_of_a_mixture():
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.normal(0.5, 0.02, 300), rng.normal(0.8, 0.02, 500), rng.normal(0.97, 0.01, 800)])
    peaks = density_peaks(values)
    assert len(peaks) == 3
    assert np.allclose(peaks, [0.5, 0.8, 0.97], atol=0.02)
    assert len(density_peaks(rng.normal(0.9, 0.02, 500))) == 1


def test_sample_trains_once_and_reuses_the_study(tmp_path):
    path = tmp_path / "sample.db"
    first = sample("moons", 12, path, trainer={"max_epochs": 3}, progress=False)
    assert len(first.accuracies) + first.failed == 12 and first.trained == 12
    again = sample("moons", 12, path, progress=False)
    assert again.trained == 0 and again.accuracies == first.accuracies
    more = sample("moons", 20, path, progress=False)
    assert more.trained == 12 and more.accuracies[:12] == first.accuracies  # whole steps of 12
    numbers = write_sample(more, tmp_path / "hist.png")
    assert (tmp_path / "hist.png").read_bytes()[:8] == PNG
    assert json.loads(numbers.read_text())["n"] == 20


def test_sample_refuses_a_study_of_something_else(tmp_path):
    from archsearch.study import Study

    path = tmp_path / "search.db"
    Study.create(path, "moons", steps=1).close()  # a reinforce search
    with pytest.raises(ArchsearchError, match="not a random sample of task 'moons'"):
        sample("moons", 3, path, progress=False)


def test_kept_studies_of_other_settings_are_refused(tmp_path):
    options = {"task": "moons", "children_per_step": 3, "out": tmp_path, "jobs": 1}
    compare(["random"], seeds=1, budget=3, trainer={"max_epochs": 2}, **options)
    with pytest.raises(ArchsearchError, match="kept from a comparison with other settings"):
        compare(["random"], seeds=1, budget=3, trainer={"max_epochs": 3}, **options)

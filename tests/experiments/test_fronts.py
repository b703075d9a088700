"""Comparisons of fronts: the hypervolume over queries, and its share of the exact front of a whole table."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from archsearch._objectives import hypervolume, hypervolume_curve, minimised, nadir, parse_objectives
from archsearch.errors import ArchsearchError
from archsearch.evaluation import get_benchmark
from archsearch.experiments import compare

OBJECTIVES = "val_score:max,params:min"
points = st.lists(st.one_of(st.none(), st.tuples(st.integers(0, 6), st.integers(0, 6))), max_size=15)


@settings(max_examples=100, deadline=None, derandomize=True, database=None)
@given(points)
def test_the_hypervolume_curve_is_the_volume_of_every_prefix(queries):
    curve = hypervolume_curve(queries, (7, 7))
    for q in range(len(queries)):
        seen = [p for p in queries[: q + 1] if p is not None]
        assert curve[q] == pytest.approx(hypervolume(seen, (7, 7)))
    assert curve == sorted(curve)


def test_the_default_reference_is_the_fronts_nadir_moved_out_by_a_tenth_of_its_range():
    assert nadir([(-0.9, 10.0), (-0.5, 2.0)]) == pytest.approx((-0.5 + 0.04, 10.0 + 0.8))
    assert nadir([(1.0, 2.0)]) == (2.0, 3.0)


@pytest.fixture(scope="module")
def fronts():
    return compare(["random", "pareto-evolution"], seeds=2, budget=60, benchmark="nas-bench-macro", jobs=1,
                   objectives=OBJECTIVES)  # fmt: skip


def test_the_exact_front_is_the_whole_tables_front_found_by_a_sweep(fronts):
    """A point is on the front of accuracy (max) against parameters (min) when every point with fewer or as
    many parameters is less accurate (ties in both: kept, as non_dominated_sort keeps them)."""
    bench = get_benchmark("nas-bench-macro")
    objectives = parse_objectives(OBJECTIVES)
    table = {(r["mean_acc"] * bench.scale, r["params"]) for r in bench.records.values()}
    exact, best = [], -1.0
    for params in sorted({p for _, p in table}):
        top = max(acc for acc, p in table if p == params)
        if top > best:
            exact.append((top, params))
            best = top
    assert fronts.exact_front == len(exact)
    reference = fronts.reference
    assert reference[0] < min(p[0] for p in exact) and reference[1] > max(p[1] for p in exact)
    volume = hypervolume(minimised(exact, objectives), minimised([reference], objectives)[0])
    assert fronts.exact_hypervolume == pytest.approx(volume)


def test_a_runs_share_is_its_fronts_hypervolume_over_the_exact_ones(fronts):
    objectives = parse_objectives(OBJECTIVES)
    reference = minimised([fronts.reference], objectives)[0]
    for name in ("random", "pareto-evolution"):
        shares = fronts.hypervolumes(name)
        runs = [r for r in fronts.runs if r.strategy == name]
        for run, row in zip(runs, shares, strict=True):
            found = minimised([p for p in run.points if p is not None], objectives)
            assert row[-1] == pytest.approx(hypervolume(found, reference) / fronts.exact_hypervolume)
            assert 0 < row[-1] <= 1 + 1e-12 and list(row) == sorted(row)
    summary = fronts.summary()
    assert summary["objectives"] == OBJECTIVES.split(",") and summary["exact_front"]["size"] == fronts.exact_front
    assert set(summary["strategies"]["random"]["mean_hypervolume_share_at"]) == {"50", "60"}


def test_a_comparison_of_fronts_writes_its_hypervolume_plot(tmp_path, fronts):
    paths = fronts.write(tmp_path)
    assert paths["hypervolume"].read_bytes().startswith(b"\x89PNG")
    assert "hv share@60" in paths["table"].read_text()
    assert json.loads(paths["json"].read_text())["reference"] == list(fronts.reference)


def test_a_declared_reference_is_used_as_given():
    result = compare(["random"], seeds=1, budget=20, benchmark="nas-bench-macro", jobs=1, objectives=OBJECTIVES,
                     reference=[0.5, 3e6])  # fmt: skip
    assert result.reference == (0.5, 3e6)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"strategies": ["nsga2"]}, "^strategies: nsga2 ranks by several objectives; give objectives"),
        ({"reference": [1.0, 2.0]}, "^reference: the reference point of the objectives' hypervolume"),
        ({"objectives": OBJECTIVES, "reference": [1.0]}, r"^reference: expected 2 finite numbers"),
        ({"objectives": "val_score:max,latency_ms:min"}, "^objectives: a benchmark's trials have no latency_ms"),
        ({"objectives": "val_score:max,size:min"}, "^objectives: unknown metric 'size'"),
        ({"objectives": OBJECTIVES, "cost_target": "params"}, "^cost_target: expected COST=VALUE"),
    ],
)
def test_bad_comparisons_of_fronts_are_one_line(kwargs, message):
    kwargs = {"strategies": ["random"], **kwargs}
    with pytest.raises(ArchsearchError, match=message):
        compare(seeds=1, budget=10, benchmark="nas-bench-macro", **kwargs)

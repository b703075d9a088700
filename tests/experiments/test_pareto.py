import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from archsearch import ArchsearchError
from archsearch._objectives import (
    Objective, dominates, hypervolume, minimised, non_dominated_sort, pareto_front, parse_objectives,
)  # fmt: skip

points_2d = st.lists(st.tuples(*[st.integers(0, 6)] * 2), min_size=0, max_size=12)
points_3d = st.lists(st.tuples(*[st.integers(0, 5)] * 3), min_size=0, max_size=9)


def brute_force_fronts(points):
    left, fronts = set(range(len(points))), []
    while left:
        front = sorted(i for i in left if not any(dominates(points[j], points[i]) for j in left))
        fronts.append(front)
        left -= set(front)
    return fronts


def brute_force_volume(points, reference):
    """Count the unit cells of the integer grid below the reference that some point dominates."""
    cells = itertools.product(*(range(r) for r in reference))
    return sum(any(all(p[d] <= c[d] for d in range(len(c))) for p in points) for c in cells)


@settings(max_examples=150, deadline=None, derandomize=True, database=None)
@given(st.one_of(points_2d, points_3d))
def test_non_dominated_sort_equals_the_brute_force_peeling(points):
    assert non_dominated_sort(points) == brute_force_fronts(points)


@settings(max_examples=150, deadline=None, derandomize=True, database=None)
@given(st.one_of(points_2d, points_3d))
def test_hypervolume_equals_counting_the_dominated_cells(points):
    reference = (7,) * len(points[0]) if points else (7, 7)
    assert hypervolume(points, reference) == pytest.approx(brute_force_volume(points, reference))


def test_hypervolume_by_hand_and_points_outside_the_reference():
    assert hypervolume([(1, 3), (2, 2), (3, 1)], (4, 4)) == 6.0  # three steps: 3 + 2 + 1
    assert hypervolume([(1, 3), (5, 0)], (4, 4)) == 3.0  # (5, 0) is not better than 4 in x: no volume
    assert hypervolume([], (1, 1)) == 0.0


def test_max_objectives_are_negated():
    objectives = [Objective("val_score", "max"), Objective("params", "min")]
    points = minimised([(0.9, 100), (0.8, 50), (0.7, 200)], objectives)
    assert points == [(-0.9, 100.0), (-0.8, 50.0), (-0.7, 200.0)]
    assert non_dominated_sort(points) == [[0, 1], [2]]


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("val_score:max", "at least two"),
        ("val_score:max,latency:min", "unknown metric 'latency'"),
        ("val_score:max,params:low", "must be min or max, got 'low'"),
        ("val_score:max,params", "expected METRIC:min"),
        ("params:min,params:max", "named twice"),
        ("", "expected METRIC:min"),
    ],
)
def test_bad_objectives_are_one_line(text, needle):
    with pytest.raises(ArchsearchError, match=needle) as caught:
        parse_objectives(text)
    assert str(caught.value).startswith("--objectives: ") and "\n" not in str(caught.value)


def test_good_objectives_parse_in_order():
    assert [str(o) for o in parse_objectives("val_score:max, params:min")] == ["val_score:max", "params:min"]
    assert np.isfinite(hypervolume([(-0.9, 10)], (0.0, 100.0)))


@settings(max_examples=150, deadline=None, derandomize=True, database=None)
@given(st.one_of(points_2d, points_3d))
def test_the_front_alone_equals_the_first_front_of_the_sort(points):
    assert pareto_front(points) == (non_dominated_sort(points)[0] if points else [])

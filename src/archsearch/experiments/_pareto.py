"""Several objectives at once: which trials are not dominated, and how much of the objective space they cover.

Objectives are named as ``metric:direction`` (``val_score:max,params:min``). A point dominates another
when it is at least as good in every objective and better in one; the Pareto front is the set of points
that no other point dominates. Non-dominated sorting peels the fronts off one after another, as NSGA-II
does (Deb et al. 2002). The hypervolume of a set is the measure of the region that it dominates and that
dominates a reference point: the usual single number for how good a front is (Zitzler & Thiele 1998).
Everything here works on plain lists of numbers; a study's trials become points in :func:`trial_points`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

from archsearch.errors import ArchsearchError

#: what a trial's objective may be: the columns every study records for every trial
TRIAL_METRICS = ("val_score", "reward", "params", "epochs", "seconds")
DIRECTIONS = ("min", "max")


class Objective(NamedTuple):
    """A metric of a trial, and whether less (``min``) or more (``max``) is better."""

    metric: str
    direction: str

    def __str__(self) -> str:
        return f"{self.metric}:{self.direction}"


def parse_objectives(text: str, where: str = "--objectives") -> list[Objective]:
    """``val_score:max,params:min`` as objectives; one line naming ``where`` for anything else."""
    objectives: list[Objective] = []
    for part in text.split(","):
        metric, sep, direction = part.strip().partition(":")
        if not metric or not sep:
            raise ArchsearchError(f"{where}: expected METRIC:min or METRIC:max, separated by commas, got {part!r:.60}")
        if metric not in TRIAL_METRICS:
            raise ArchsearchError(f"{where}: unknown metric {metric!r:.40} (known: {', '.join(TRIAL_METRICS)})")
        if direction not in DIRECTIONS:
            raise ArchsearchError(f"{where}: the direction of {metric} must be min or max, got {direction!r:.40}")
        if any(o.metric == metric for o in objectives):
            raise ArchsearchError(f"{where}: {metric} is named twice")
        objectives.append(Objective(metric, direction))
    if len(objectives) < 2:
        raise ArchsearchError(f"{where}: a trade-off needs at least two objectives, got {text!r:.60}")
    return objectives


def minimised(points: Sequence[Sequence[float]], objectives: Sequence[Objective]) -> list[tuple[float, ...]]:
    """The points with every ``max`` objective negated, so that less is better in every coordinate."""
    signs = [1.0 if o.direction == "min" else -1.0 for o in objectives]
    return [tuple(s * float(v) for s, v in zip(signs, point, strict=True)) for point in points]


def dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """Whether ``a`` dominates ``b``, both to be minimised: no worse anywhere, better somewhere."""
    return all(x <= y for x, y in zip(a, b, strict=True)) and any(x < y for x, y in zip(a, b, strict=True))


def non_dominated_sort(points: Sequence[Sequence[float]]) -> list[list[int]]:
    """The fronts of ``points`` (to be minimised), best first: lists of indices in the points' order.

    Deb et al.'s fast sort: for every point, how many points dominate it and which it dominates; the
    first front is those that none dominates, and removing a front frees the next. O(M N^2).
    """
    n = len(points)
    beaten_by = [0] * n
    beats: list[list[int]] = [[] for _ in range(n)]
    for i in range(n):
        for j in range(i + 1, n):
            if dominates(points[i], points[j]):
                beats[i].append(j)
                beaten_by[j] += 1
            elif dominates(points[j], points[i]):
                beats[j].append(i)
                beaten_by[i] += 1
    fronts, current = [], [i for i in range(n) if beaten_by[i] == 0]
    while current:
        fronts.append(current)
        following = []
        for i in current:
            for j in beats[i]:
                beaten_by[j] -= 1
                if beaten_by[j] == 0:
                    following.append(j)
        current = sorted(following)
    return fronts


def hypervolume(points: Sequence[Sequence[float]], reference: Sequence[float]) -> float:
    """The measure of the region that ``points`` (to be minimised) dominate and that dominates
    ``reference``; points not better than the reference in every coordinate add nothing.

    Exact, by slicing the last coordinate: between consecutive values of it, the volume is the
    hypervolume of the points below in one dimension fewer. Fine for the fronts of a study (tens to
    hundreds of points in two to four objectives); exponential in the number of objectives.
    """
    inside = [tuple(map(float, p)) for p in points if all(x < r for x, r in zip(p, reference, strict=True))]
    return _slices(inside, tuple(map(float, reference)))


def _slices(points: list[tuple[float, ...]], reference: tuple[float, ...]) -> float:
    if not points:
        return 0.0
    if len(reference) == 1:
        return reference[0] - min(p[0] for p in points)
    ordered = sorted(points, key=lambda p: p[-1])
    volume = 0.0
    for k, point in enumerate(ordered):
        upper = ordered[k + 1][-1] if k + 1 < len(ordered) else reference[-1]
        if upper > point[-1]:
            below = [p[:-1] for p in ordered[: k + 1]]
            volume += (upper - point[-1]) * _slices(below, reference[:-1])
    return volume


def trial_points(trials: Sequence[Any], objectives: Sequence[Objective]) -> list[tuple[float, ...]]:
    """Each trial's values of the objectives, in the objectives' order."""
    return [tuple(float(getattr(t, o.metric)) for o in objectives) for t in trials]

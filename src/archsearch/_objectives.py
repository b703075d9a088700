"""Several objectives at once: what a study optimises, which trials are not dominated, and how much of the
objective space they cover.

Objectives are named as ``metric:direction`` (``val_score:max,params:min``). A point dominates another
when it is at least as good in every objective and better in one; the Pareto front is the set of points
that no other point dominates. Non-dominated sorting peels the fronts off one after another, as NSGA-II
does (Deb et al. 2002). The hypervolume of a set is the measure of the region that it dominates and that
dominates a reference point: the usual single number for how good a front is (Zitzler & Thiele 1998).
Everything here works on plain lists of numbers; a study's trials become points in :func:`trial_points`.

A study's :class:`Goals` say what its search optimises besides the validation score: objectives for the
strategies that rank by several (NSGA-II, Pareto evolution), hard limits that an architecture must meet to be
trained at all, and a soft target that scalarises the reward of the strategies that take one (MnasNet's
``reward * (cost / target) ** w``, Tan et al. 2019). Every cost here is known before training: the parameter
count and FLOPs from the architecture, the latency from timing the untrained network.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from archsearch.errors import ArchsearchError

#: what a trial's objective may be: the columns a study records for its trials (``flops`` where the space
#: or table gives them, ``latency_ms`` where the study measures it)
TRIAL_METRICS = ("val_score", "reward", "params", "flops", "latency_ms", "epochs", "seconds")
DIRECTIONS = ("min", "max")
#: the costs known before a child trains: what a hard limit or a soft target may name
COSTS = ("params", "flops", "latency_ms")
#: MnasNet's exponent of the soft constraint (Tan et al. 2019, alpha = beta = -0.07)
MNASNET_WEIGHT = -0.07
#: the largest limit or target of a count (parameters, FLOPs) and of a latency in milliseconds
MAX_COUNT_LIMIT, MAX_LATENCY_MS = 10**15, 10**6
#: an infeasible child's value of every objective, to be minimised: worse than any measured value
INFEASIBLE = 1e300


class Objective(NamedTuple):
    """A metric of a trial, and whether less (``min``) or more (``max``) is better."""

    metric: str
    direction: str

    def __str__(self) -> str:
        return f"{self.metric}:{self.direction}"


def parse_objectives(text: str | Sequence[str], where: str = "--objectives") -> list[Objective]:
    """``val_score:max,params:min`` (or its parts as a list) as objectives; one line naming ``where`` for
    anything else."""
    if not isinstance(text, str):
        if not isinstance(text, list | tuple) or not all(isinstance(part, str) for part in text):
            raise ArchsearchError(f"{where}: expected METRIC:min or METRIC:max strings, got {text!r:.60}")
        text = ",".join(text)
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


def pareto_front(points: Sequence[Sequence[float]]) -> list[int]:
    """The indices of the non-dominated ``points`` (to be minimised), in the points' order: the first front
    of :func:`non_dominated_sort`, found in O(N F) for a front of F points. In lexicographic order no point
    dominates one before it, so each needs comparing with the front kept so far only."""
    order = sorted(range(len(points)), key=lambda i: tuple(points[i]))
    front: list[int] = []
    for i in order:
        if not any(dominates(points[j], points[i]) for j in front):
            front.append(i)
    return sorted(front)


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


def nadir(front: Sequence[tuple[float, ...]]) -> tuple[float, ...]:
    """The default reference point of a front (to be minimised): each coordinate's worst value on the front,
    moved out by a tenth of its range there (by 1 where the front has a single value)."""
    worst = [max(p[k] for p in front) for k in range(len(front[0]))]
    spans = [w - min(p[k] for p in front) for k, w in enumerate(worst)]
    return tuple(w + (0.1 * s if s > 0 else 1.0) for w, s in zip(worst, spans))


def hypervolume_curve(points: Sequence[tuple[float, ...] | None], reference: Sequence[float]) -> list[float]:
    """The hypervolume of the non-dominated points among the first q, for every q (``points`` to be minimised;
    ``None``: a query that added nothing)."""
    front: list[tuple[float, ...]] = []
    volume, curve = 0.0, []
    for point in points:
        if point is not None and not any(dominates(kept, point) or kept == point for kept in front):
            front = [kept for kept in front if not dominates(point, kept)] + [point]
            volume = hypervolume(front, reference)
        curve.append(volume)
    return curve


def trial_points(trials: Sequence[Any], objectives: Sequence[Objective]) -> list[tuple[float, ...]]:
    """Each trial's values of the objectives, in the objectives' order (a value not recorded: NaN)."""
    return [tuple(_value(getattr(t, o.metric)) for o in objectives) for t in trials]


def _value(value: Any) -> float:
    return math.nan if value is None else float(value)


def _positive(where: str, value: Any, cost: str, integer: bool = True) -> float:
    """``value`` as a limit or target of ``cost``: positive, finite, an integer where ``integer``."""
    kinds = (int,) if integer else (int, float)
    most = MAX_LATENCY_MS if cost == "latency_ms" else MAX_COUNT_LIMIT
    if isinstance(value, int) and not isinstance(value, bool) and value > most:  # before a float of it overflows
        raise ArchsearchError(f"{where}: must be at most {most:.0e}, got {str(value):.40}")
    if isinstance(value, bool) or not isinstance(value, kinds) or not math.isfinite(value) or value <= 0:
        what = "a positive integer" if integer else "a positive number"
        raise ArchsearchError(f"{where}: must be {what}, got {value!r:.40}")
    if value > most:
        raise ArchsearchError(f"{where}: must be at most {most:.0e}, got {value!r:.40}")
    return value


@dataclass(frozen=True)
class Goals:
    """What a study optimises besides the reward, and the costs it measures (see the module docstring).

    ``objectives``: two or more, for the strategies that rank by several and for the study's front.
    ``limits``: cost -> the most an architecture may have (``params``, ``flops``, ``latency_ms``); one over
    a limit is recorded as ``infeasible`` and not trained. ``target``: (cost, value, weight): the reward of
    a trained child becomes ``reward * (cost / value) ** weight``. ``latency``: time every child.
    """

    objectives: tuple[Objective, ...] = ()
    limits: dict[str, int | float] = field(default_factory=dict)
    target: tuple[str, float, float] | None = None
    latency: bool = False

    def __post_init__(self) -> None:
        named = {o.metric for o in self.objectives} | set(self.limits) | ({self.target[0]} if self.target else set())
        if "latency_ms" in named:
            object.__setattr__(self, "latency", True)

    def __bool__(self) -> bool:
        return bool(self.objectives or self.limits or self.target or self.latency)

    @classmethod
    def parse(
        cls,
        objectives: str | Sequence[str] | None = None,
        limits: dict[str, Any] | None = None,
        target: str | None = None,
        weight: float = MNASNET_WEIGHT,
        latency: bool = False,
        names: Any = None,
    ) -> Goals:
        """Goals from a config's fields; ``names`` spells a field in messages (the CLI gives its flags)."""
        names = names or (lambda name: name)
        parsed = tuple(parse_objectives(objectives, names("objectives"))) if objectives is not None else ()
        kept = {}
        for cost, value in (limits or {}).items():
            if value is not None:
                kept[cost] = _positive(names(f"max_{cost}"), value, cost, integer=cost != "latency_ms")
        aim = None
        if target is not None:
            where = names("cost_target")
            metric, sep, value = str(target).partition("=")
            if not sep or metric.strip() not in COSTS:
                raise ArchsearchError(f"{where}: expected COST=VALUE with COST one of {', '.join(COSTS)}, "
                                      f"got {str(target)!r:.60}")  # fmt: skip
            try:
                number = float(value)
            except ValueError:
                raise ArchsearchError(f"{where}: {value.strip()!r:.40} is not a number") from None
            _positive(where, number, metric.strip(), integer=False)
            if isinstance(weight, bool) or not isinstance(weight, int | float) or not -10 <= weight <= 0:
                raise ArchsearchError(f"{names('cost_weight')}: must be a number in -10..0, got {weight!r:.40}")
            aim = (metric.strip(), number, float(weight))
        elif weight != MNASNET_WEIGHT:
            raise ArchsearchError(f"{names('cost_weight')}: the exponent of {names('cost_target')}, which is not given")
        return cls(parsed, kept, aim, bool(latency))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, as a study stores it."""
        return {
            "objectives": [str(o) for o in self.objectives],
            "limits": dict(self.limits),
            "target": None if self.target is None else {"cost": self.target[0], "value": self.target[1],
                                                         "weight": self.target[2]},
            "latency": self.latency,
        }  # fmt: skip

    @classmethod
    def from_dict(cls, data: Any, where: str = "goals") -> Goals:
        """Goals from :meth:`to_dict` output (a study file's: untrusted); anything else is one line."""
        if not isinstance(data, dict) or set(data) != {"objectives", "limits", "target", "latency"}:
            raise ArchsearchError(f"{where}: expected objectives, limits, target and latency, got {data!r:.80}")
        limits, target = data["limits"], data["target"]
        if not isinstance(limits, dict) or not set(limits) <= set(COSTS):
            raise ArchsearchError(f"{where}.limits: expected costs among {', '.join(COSTS)}, got {limits!r:.80}")
        if target is not None and (not isinstance(target, dict) or set(target) != {"cost", "value", "weight"}):
            raise ArchsearchError(f"{where}.target: expected cost, value and weight, got {target!r:.80}")
        if not isinstance(data["latency"], bool):
            raise ArchsearchError(f"{where}.latency: expected true or false, got {data['latency']!r:.40}")
        objectives = data["objectives"] or None
        text = None if target is None else f"{target['cost']}={target['value']!r}"
        weight = MNASNET_WEIGHT if target is None else target["weight"]
        names = {"objectives": f"{where}.objectives", "cost_target": f"{where}.target",
                 "cost_weight": f"{where}.target.weight"}  # fmt: skip
        return cls.parse(objectives, {k: v for k, v in limits.items()}, text, weight, data["latency"],
                         lambda name: names.get(name, f"{where}.limits.{name.removeprefix('max_')}"))

    def describe(self) -> str:
        """One line for a person: the objectives, limits, target and timing."""
        parts = []
        if self.objectives:
            parts.append("objectives " + ", ".join(map(str, self.objectives)))
        for cost, most in self.limits.items():
            parts.append(f"at most {most:g} ms" if cost == "latency_ms" else f"at most {int(most):,} {cost}")
        if self.target is not None:
            cost, value, weight = self.target
            parts.append(f"reward x ({cost} / {value:g}) ** {weight:g}")
        if self.latency:
            parts.append("latency timed on this CPU")
        return "; ".join(parts)

    def breaks(self, costs: dict[str, float | None]) -> str | None:
        """Why an architecture of these ``costs`` is not trained (the first limit it exceeds), or ``None``."""
        for cost, most in self.limits.items():
            value = costs.get(cost)
            if value is not None and value > most:
                shown = f"{value:.3g} ms" if cost == "latency_ms" else f"{int(value):,} {cost}"
                limit = f"{most:g} ms" if cost == "latency_ms" else f"{int(most):,}"
                return f"has {shown}, over the limit of {limit} (max_{cost})"
        return None

    def scalarised(self, reward: float, costs: dict[str, float | None]) -> float:
        """The reward that a strategy of one reward sees: MnasNet's soft constraint where a target is set."""
        if self.target is None:
            return reward
        cost, value, weight = self.target
        measured = costs.get(cost)
        if measured is None or measured <= 0:
            return reward
        return reward * (measured / value) ** weight

    def worst(self) -> tuple[float, ...]:
        """What a strategy of several objectives is told for an infeasible child (over a hard limit, never
        trained): a point that every feasible child dominates, in every objective the same."""
        return (INFEASIBLE,) * len(self.objectives)

    def minimised(self, values: dict[str, float | None]) -> tuple[float, ...]:
        """A trial's objective values, each signed so that less is better (a missing value counts as 0)."""
        return tuple((1.0 if o.direction == "min" else -1.0) * float(values.get(o.metric) or 0.0)
                     for o in self.objectives)  # fmt: skip

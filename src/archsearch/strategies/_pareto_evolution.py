"""Regularized (aging) evolution, Real et al. (2019), over several objectives at once.

The search of the evolution strategy, with one change: a tournament is won by NSGA-II's crowded
comparison (Deb et al. 2002) instead of by the best reward. The winner among the contestants drawn is
the one of lowest non-dominated rank (rank 0: no member of the population is better in every
objective; rank 1: only rank 0 members are; and so on), then, within a rank, the one of largest
crowding distance (the farthest from its neighbours along its rank's front, so that parents spread
along the trade-off rather than crowd at one end of it), then the oldest. Ranks and distances are
those within the whole population, as in NSGA-II: within a handful of contestants, the crowding
distance would only tell the two ends of their front (infinitely far) from the rest, never pick out an
isolated member. The objectives are each outcome's ``objectives`` (the study's objectives, each signed
so that less is better); the reward is not used. Age decides who leaves the population, as in
evolution, and the first ``population_size`` proposals are drawn uniformly at random.

A child that failed, or that a tabular benchmark lacks, measured nothing: it takes no place in the
population. A child that diverged, or that breaks a hard constraint of the study (``infeasible``), was
measured and joins the population with its objective values.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from archsearch.errors import ArchsearchError
from archsearch.space import Architecture, SearchSpace
from archsearch.strategies._base import Outcome, mean_reward
from archsearch.strategies._evolution import RegularizedEvolution


def dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """Whether ``a`` is no worse than ``b`` in every objective and better in one (less is better)."""
    return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))


def non_dominated_ranks(points: Sequence[Sequence[float]]) -> list[int]:
    """Each point's non-dominated rank: 0 for the points no other point dominates, 1 for those dominated
    only by rank 0, and so on (quadratic in the number of points, as Deb et al.'s sort)."""
    values = np.asarray(points, dtype=float).reshape(len(points), -1)
    # beats[i, j]: point i dominates point j
    beats = np.all(values[:, None] <= values[None, :], axis=2) & np.any(values[:, None] < values[None, :], axis=2)
    ranks = np.full(len(points), -1)
    remaining = np.ones(len(points), dtype=bool)
    rank = 0
    while remaining.any():
        front = remaining & ~beats[remaining].any(axis=0)
        ranks[front] = rank
        remaining &= ~front
        rank += 1
    return [int(r) for r in ranks]


def crowding_distances(points: Sequence[Sequence[float]]) -> list[float]:
    """Each point's crowding distance within ``points`` (one front): the sum over the objectives of the gap
    between its two neighbours, as a fraction of the front's range; infinite at either end of a range."""
    distances = [0.0] * len(points)
    for objective in range(len(points[0]) if points else 0):
        order = sorted(range(len(points)), key=lambda i: points[i][objective])
        low, high = points[order[0]][objective], points[order[-1]][objective]
        distances[order[0]] = distances[order[-1]] = math.inf
        if high == low:
            continue
        for before, middle, after in zip(order, order[1:], order[2:]):
            distances[middle] += (points[after][objective] - points[before][objective]) / (high - low)
    return distances


def crowded_ranking(points: Sequence[Sequence[float]]) -> list[tuple[int, float]]:
    """Each point's non-dominated rank and its crowding distance among the points of that rank."""
    ranks = non_dominated_ranks(points)
    distances = [0.0] * len(points)
    for rank in set(ranks):
        members = [i for i, r in enumerate(ranks) if r == rank]
        for i, distance in zip(members, crowding_distances([points[i] for i in members])):
            distances[i] = distance
    return list(zip(ranks, distances))


def crowded_winner(contestants: Sequence[int], ranking: Sequence[tuple[int, float]]) -> int:
    """The contestant (an index into ``ranking``) that NSGA-II's crowded comparison prefers: the lowest
    rank, then the largest crowding distance; on a tie, the lowest index (in a population, the oldest)."""
    return min(contestants, key=lambda i: (ranking[i][0], -ranking[i][1], i))


class ParetoEvolution(RegularizedEvolution):
    """Aging evolution whose tournaments are won by non-dominated rank, then crowding distance."""

    name = "pareto-evolution"
    multi_objective = True

    def __init__(self, space: SearchSpace, seed: int = 0, population_size: int = 20, sample_size: int = 5) -> None:
        super().__init__(space, seed, population_size, sample_size)
        #: (architecture, reward, objective values), oldest first
        self.population: deque[tuple[Architecture, float, tuple[float, ...]]] = deque()  # type: ignore[assignment]

    def _picker(self) -> Callable[[list[int]], int]:
        """The contestant of the best non-dominated front, the least crowded within it."""
        ranking = crowded_ranking([values for _, _, values in self.population])
        return lambda contestants: crowded_winner(contestants, ranking)

    def tell(self, outcomes: Sequence[Outcome]) -> dict[str, float]:
        for outcome in outcomes:
            if not outcome.measured:
                continue
            values = tuple(float(v) for v in outcome.objectives)
            if not values:
                raise ArchsearchError(f"strategy {self.name}: needs several objectives (--objectives ...)")
            if self.population and len(values) != len(self.population[0][2]):
                shown = f"expected {len(self.population[0][2])} objective values, got {len(values)}"
                raise ArchsearchError(f"strategy {self.name}: {shown}")
            self.population.append((outcome.architecture, float(outcome.reward), values))
            if len(self.population) > self.population_size:
                self.population.popleft()
        metrics = mean_reward(outcomes)
        if self.population:
            metrics["front_size"] = float(non_dominated_ranks([values for _, _, values in self.population]).count(0))
        return metrics

    def state_dict(self) -> dict[str, Any]:
        return {
            "rng": self.rng.bit_generator.state,
            "population": [(arch.to_json(), reward, tuple(values)) for arch, reward, values in self.population],
            "proposed": self.proposed,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]
        self.population = deque(
            (Architecture.from_json(a), float(r), tuple(float(v) for v in values))
            for a, r, values in state["population"]
        )
        self.proposed = int(state["proposed"])

"""The strategy contract: propose architectures, learn from their outcomes.

Strategies never train anything; they see architectures, rewards and statuses only (an
:class:`Outcome` each), never the evaluator's results, so that they sit beside evaluation rather
than above it. Everything they need to continue exactly where they stopped (weights,
optimiser state, random number generator states) is in ``state_dict``.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from archsearch import _limits as limits
from archsearch.space import Architecture, SearchSpace

#: ``ok``: trained and scored; ``diverged``: its training blew up (a fact about the architecture);
#: ``failed``: its evaluation crashed; ``missing``: a tabular benchmark has no entry for it; ``infeasible``: it
#: breaks a hard constraint of the study (``--max-params``, ...), so it was not trained. ``failed`` and
#: ``missing`` measured nothing; ``infeasible`` says something about the architecture, like ``diverged``.
STATUSES = ("ok", "diverged", "failed", "missing", "infeasible")


@dataclass(frozen=True)
class Outcome:
    """What a strategy learns about one architecture it proposed: its reward and how it was obtained.

    A child that did not finish carries the evaluator's reward for it (0) and its status; each
    strategy says what it makes of such an outcome. In a study with several objectives, ``objectives``
    holds a measured outcome's values of them in the study's order, each signed so that less is better
    (a ``max`` objective negated); it is empty otherwise, and for an outcome that measured nothing.
    ``trial`` is the number the study recorded it under and ``losses`` its training loss per epoch: a
    population strategy (:class:`PopulationStrategy`) names parents by trial and ranks by the curve.
    """

    architecture: Architecture
    reward: float
    status: str = "ok"
    objectives: tuple[float, ...] = ()
    trial: int | None = None
    losses: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"outcome: status {self.status!r} is not one of {', '.join(STATUSES)}")
        if not math.isfinite(self.reward):
            raise ValueError(f"outcome: reward {self.reward!r} is not finite")
        if not all(math.isfinite(v) for v in self.objectives):
            raise ValueError(f"outcome: objectives {self.objectives!r} are not all finite")

    @property
    def measured(self) -> bool:
        """Whether the reward measures the architecture (``ok`` or ``diverged``), rather than saying
        that nothing was measured (``failed``, ``missing``)."""
        return self.status in ("ok", "diverged", "infeasible")


def outcomes(archs: Sequence[Architecture], rewards: Sequence[float]) -> list[Outcome]:
    """Successful outcomes, one per architecture and reward."""
    if len(archs) != len(rewards):
        raise ValueError(f"outcomes: {len(archs)} architectures but {len(rewards)} rewards")
    return [Outcome(arch, float(reward)) for arch, reward in zip(archs, rewards)]


class Strategy(ABC):
    """Base class: ``ask`` for architectures, ``tell`` their outcomes. ``seed``: an integer in 0..2**63 - 1."""

    name: ClassVar[str]
    #: True when the strategy can learn from one result at a time, so that an asynchronous study
    #: may tell each result as it arrives and ask for one replacement (evolution, random search);
    #: REINFORCE and TPE learn from a whole step's rewards.
    asynchronous: ClassVar[bool] = False
    #: True when the strategy ranks by several objectives (each outcome's ``objectives``) rather than by the
    #: reward alone; a study gives it objectives or refuses to start (NSGA-II, Pareto evolution).
    multi_objective: ClassVar[bool] = False
    #: True for a population strategy (MIHA, PBT): each proposal also names the trial whose weights it
    #: continues and the epochs it trains (:meth:`PopulationStrategy.starts`).
    continues: ClassVar[bool] = False

    def __init__(self, space: SearchSpace, seed: int = 0) -> None:
        self.space = space
        self.seed = limits.seed("strategy.seed", seed)

    @abstractmethod
    def ask(self, n: int) -> list[Architecture]:
        """Propose ``n`` architectures to evaluate next."""

    @abstractmethod
    def tell(self, outcomes: Sequence[Outcome]) -> dict[str, float]:
        """Learn from the outcomes of architectures it proposed; return metrics worth logging."""

    def sample(self, n: int, rng: np.random.Generator) -> list[Architecture]:
        """``n`` architectures to train shared weights on, or to derive picks from, once a weight-sharing
        search is done: proposals that expect no outcome. By default uniform over the space, drawn with
        ``rng`` (as single-path one-shot training samples, Guo et al. 2020, and random search with weight
        sharing, Li & Talwalkar 2019); a strategy with a policy samples from it instead."""
        return [self.space.sample(rng) for _ in range(n)]

    @abstractmethod
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly as if never stopped."""

    @abstractmethod
    def load_state_dict(self, state: dict[str, Any]) -> None: ...

    def to_config(self) -> dict[str, Any]:
        """Constructor arguments other than the space, plus ``"name"``."""
        return {"name": self.name, "seed": self.seed}


def mean_reward(outcomes: Sequence[Outcome]) -> dict[str, float]:
    """The metric every strategy logs: the mean reward of what it was told (none: no metric)."""
    return {"mean_reward": float(np.mean([o.reward for o in outcomes]))} if outcomes else {}

"""The config edge: names in a study file or on the command line -> components.

Library code passes instances around; only this table turns names into classes,
so a study file can be reopened and a command line can be parsed.
"""

from __future__ import annotations

from typing import Any

from archsearch.errors import ArchsearchError
from archsearch.evaluation import BatchedTrainer, Evaluator, LookupEvaluator, SerialTrainer, TrainConfig
from archsearch.space import SearchSpace
from archsearch.strategies import TPE, RandomSearch, RegularizedEvolution, Reinforce, Strategy
from archsearch.tasks import Task

STRATEGIES: dict[str, type[Strategy]] = {
    "evolution": RegularizedEvolution,
    "random": RandomSearch,
    "reinforce": Reinforce,
    "tpe": TPE,
}
TRAINERS: dict[str, type[Evaluator]] = {"batched": BatchedTrainer, "serial": SerialTrainer}


def build_strategy(config: dict[str, Any], space: SearchSpace) -> Strategy:
    """A strategy from ``Strategy.to_config()`` output."""
    config = dict(config)
    name = config.pop("name", None)
    if name not in STRATEGIES:
        raise ArchsearchError(f"strategy: unknown strategy {name!r} (known: {', '.join(sorted(STRATEGIES))})")
    try:
        return STRATEGIES[name](space, **config)
    except TypeError as exc:
        raise ArchsearchError(f"strategy: bad settings for {name!r} ({exc})") from None


def build_evaluator(config: dict[str, Any], task: Task | None) -> Evaluator:
    """A trainer (or a tabular benchmark's lookup) from ``Evaluator.to_config()`` output."""
    config = dict(config)
    name = config.pop("name", None)
    if name == LookupEvaluator.name:
        return LookupEvaluator(config["benchmark"], noisy=config.get("noisy", False))
    if task is None:
        raise ArchsearchError(f"trainer: {name!r} trains on a task, and none is given")
    if name not in TRAINERS:
        raise ArchsearchError(f"trainer: unknown trainer {name!r} (known: {', '.join(sorted(TRAINERS))})")
    return TRAINERS[name](task, TrainConfig.from_config(config))

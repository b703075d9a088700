"""Search strategies: they propose architectures and learn from their outcomes."""

from archsearch.registry import Registry
from archsearch.strategies._base import STATUSES, Outcome, Strategy, outcomes
from archsearch.strategies._controller import Controller
from archsearch.strategies._evolution import RegularizedEvolution
from archsearch.strategies._random import RandomSearch
from archsearch.strategies._reinforce import Reinforce
from archsearch.strategies._tpe import TPE

#: strategy name -> class, called as ``factory(space, seed=..., **settings)``
STRATEGIES: Registry = Registry("strategy", "strategies")
for _strategy in (RegularizedEvolution, RandomSearch, Reinforce, TPE):
    STRATEGIES.register(_strategy.name, _strategy)

__all__ = [
    "STATUSES",
    "STRATEGIES",
    "TPE",
    "Controller",
    "Outcome",
    "RandomSearch",
    "RegularizedEvolution",
    "Reinforce",
    "Strategy",
    "outcomes",
]

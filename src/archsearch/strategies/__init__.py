"""Search strategies: they propose architectures and learn from rewards."""

from archsearch.registry import Registry
from archsearch.strategies._base import Strategy
from archsearch.strategies._controller import Controller
from archsearch.strategies._evolution import RegularizedEvolution
from archsearch.strategies._random import RandomSearch
from archsearch.strategies._reinforce import Reinforce
from archsearch.strategies._tpe import TPE

#: strategy name -> class, called as ``factory(space, seed=..., **settings)``
STRATEGIES: Registry = Registry("strategy", "strategies")
for _strategy in (RegularizedEvolution, RandomSearch, Reinforce, TPE):
    STRATEGIES.register(_strategy.name, _strategy)

__all__ = ["STRATEGIES", "TPE", "Controller", "RandomSearch", "RegularizedEvolution", "Reinforce", "Strategy"]

"""Search strategies: they propose architectures and learn from their outcomes."""

from archsearch.registry import Registry
from archsearch.strategies._base import STATUSES, Outcome, Strategy, outcomes
from archsearch.strategies._controller import Controller
from archsearch.strategies._evolution import RegularizedEvolution
from archsearch.strategies._miha import MIHA
from archsearch.strategies._nsga2 import NSGA2
from archsearch.strategies._pareto_evolution import ParetoEvolution
from archsearch.strategies._pbt import PBT
from archsearch.strategies._population import PopulationStrategy, Start
from archsearch.strategies._random import RandomSearch
from archsearch.strategies._reinforce import Reinforce
from archsearch.strategies._tpe import TPE

#: strategy name -> class, called as ``factory(space, seed=..., **settings)``
STRATEGIES: Registry = Registry("strategy", "strategies")
for _strategy in (RegularizedEvolution, RandomSearch, Reinforce, TPE, NSGA2, ParetoEvolution, MIHA, PBT):
    STRATEGIES.register(_strategy.name, _strategy)

__all__ = [
    "MIHA",
    "NSGA2",
    "PBT",
    "PopulationStrategy",
    "Start",
    "STATUSES",
    "STRATEGIES",
    "TPE",
    "Controller",
    "Outcome",
    "ParetoEvolution",
    "RandomSearch",
    "RegularizedEvolution",
    "Reinforce",
    "Strategy",
    "outcomes",
]

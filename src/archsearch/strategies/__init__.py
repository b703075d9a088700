"""Search strategies: they propose architectures and learn from their outcomes."""

from archsearch.strategies._base import STATUSES, Outcome, Strategy, outcomes
from archsearch.strategies._controller import Controller
from archsearch.strategies._evolution import RegularizedEvolution
from archsearch.strategies._random import RandomSearch
from archsearch.strategies._reinforce import Reinforce
from archsearch.strategies._tpe import TPE

__all__ = [
    "STATUSES",
    "TPE",
    "Controller",
    "Outcome",
    "RandomSearch",
    "RegularizedEvolution",
    "Reinforce",
    "Strategy",
    "outcomes",
]

"""Search strategies: they propose architectures and learn from rewards."""

from archsearch.strategies._base import Strategy
from archsearch.strategies._controller import Controller
from archsearch.strategies._evolution import RegularizedEvolution
from archsearch.strategies._random import RandomSearch
from archsearch.strategies._reinforce import Reinforce
from archsearch.strategies._tpe import TPE

__all__ = ["TPE", "Controller", "RandomSearch", "RegularizedEvolution", "Reinforce", "Strategy"]

"""Search strategies: they propose architectures and learn from rewards."""

from archsearch.strategies._base import Strategy
from archsearch.strategies._controller import Controller
from archsearch.strategies._reinforce import Reinforce

__all__ = ["Controller", "Reinforce", "Strategy"]

"""Studies: the search loop and the SQLite file that records it."""

from archsearch.config import build_evaluator, build_strategy
from archsearch.strategies import STRATEGIES
from archsearch.study._storage import Trial
from archsearch.study._study import StepInfo, Study, child_seed

__all__ = ["STRATEGIES", "StepInfo", "Study", "Trial", "build_evaluator", "build_strategy", "child_seed"]

"""archsearch: neural architecture search that is correct, fast and never loses work."""

from archsearch.errors import ArchsearchError
from archsearch.evaluation import (
    BatchedTrainer,
    Evaluator,
    Executor,
    InlineExecutor,
    LookupEvaluator,
    ProcessExecutor,
    RayExecutor,
    Result,
    SerialTrainer,
    TrainConfig,
)
from archsearch.space import Architecture, MLPArchitecture, MLPSpace, SearchSpace
from archsearch.strategies import TPE, RandomSearch, RegularizedEvolution, Reinforce, Strategy
from archsearch.study import Study, Trial
from archsearch.tasks import Task, get_task

__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    """The scikit-learn estimators, imported on first use: scikit-learn takes a second to import,
    which the command line and the trainer's worker processes need not pay."""
    if name in ("NASClassifier", "NASRegressor"):
        from archsearch import _estimators

        return getattr(_estimators, name)
    raise AttributeError(f"module 'archsearch' has no attribute {name!r}")


__all__ = [
    "TPE",
    "Architecture",
    "ArchsearchError",
    "BatchedTrainer",
    "Evaluator",
    "Executor",
    "InlineExecutor",
    "LookupEvaluator",
    "NASClassifier",
    "NASRegressor",
    "ProcessExecutor",
    "RayExecutor",
    "RandomSearch",
    "RegularizedEvolution",
    "MLPArchitecture",
    "MLPSpace",
    "Reinforce",
    "Result",
    "SearchSpace",
    "SerialTrainer",
    "Strategy",
    "Study",
    "Task",
    "TrainConfig",
    "Trial",
    "get_task",
]

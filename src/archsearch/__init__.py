"""archsearch: neural architecture search that is correct, fast and never loses work."""

from archsearch.errors import ArchsearchError
from archsearch.evaluation import Evaluator, Result, SerialTrainer, TrainConfig
from archsearch.space import Architecture, MLPArchitecture, MLPSpace, SearchSpace
from archsearch.strategies import Reinforce, Strategy
from archsearch.study import Study, Trial
from archsearch.tasks import Task, get_task

__version__ = "0.1.0"

__all__ = [
    "Architecture",
    "ArchsearchError",
    "Evaluator",
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

"""archsearch: neural architecture search that is correct, fast and never loses work."""

from archsearch.errors import ArchsearchError

__version__ = "0.1.0"

#: where each public name lives; imported on first use, so that ``archsearch --help`` (and a Ctrl-C
#: while the command line starts) does not wait for PyTorch, and scikit-learn is loaded only by the
#: estimators
_PUBLIC = {
    "archsearch.config": ("SearchConfig",),
    "archsearch.evaluation": (
        "BatchedTrainer", "Evaluator", "LookupEvaluator", "Result", "SerialTrainer", "TrainConfig",
    ),
    "archsearch.execution": ("Executor", "InlineExecutor", "ProcessExecutor", "RayExecutor"),
    "archsearch.space": ("Architecture", "MLPArchitecture", "MLPSpace", "SearchSpace"),
    "archsearch.strategies": ("TPE", "RandomSearch", "RegularizedEvolution", "Reinforce", "Strategy"),
    "archsearch.study": ("Study", "Trial"),
    "archsearch.tasks": ("Task", "get_task"),
    "archsearch._estimators": ("NASClassifier", "NASRegressor"),
}  # fmt: skip
_HOME = {name: module for module, names in _PUBLIC.items() for name in names}


def __getattr__(name: str) -> object:
    """A public name, imported from its subpackage on first use."""
    if name not in _HOME:
        raise AttributeError(f"module 'archsearch' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(_HOME[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


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
    "SearchConfig",
    "SearchSpace",
    "SerialTrainer",
    "Strategy",
    "Study",
    "Task",
    "TrainConfig",
    "Trial",
    "get_task",
]

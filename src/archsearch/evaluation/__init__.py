"""Turning architectures into rewards: trainers, their settings, and the worker processes they train on."""

from collections.abc import Callable
from typing import Any

from archsearch.errors import ArchsearchError
from archsearch.evaluation._base import Evaluator, Trainer
from archsearch.evaluation._batched import BatchedTrainer
from archsearch.evaluation._config import TrainConfig
from archsearch.evaluation._ensemble import Ensemble
from archsearch.evaluation._language import CELL_SCHEDULE, LanguageTrainer, SharedCellEvaluator
from archsearch.evaluation._lookup import TABULAR_BENCHMARKS, LookupEvaluator, TabularBenchmark, get_benchmark
from archsearch.evaluation._result import Refit, Result, Status
from archsearch.evaluation._reuse import ReusingEvaluator
from archsearch.evaluation._scoring import accuracy, load_model, split_score, validation_loss, validation_score
from archsearch.evaluation._serial import SerialTrainer
from archsearch.evaluation._shared import SCHEDULE, SharedWeightsEvaluator
from archsearch.evaluation._supernet import SHARINGS, Supernet, build_supernet
from archsearch.registry import Registry
from archsearch.space import SearchSpace
from archsearch.tasks import Task

#: evaluator name (a study config's ``trainer.name``) -> factory, called as ``factory(task, **settings)``
#: with the settings of ``to_config()`` (less ``"name"``); ``task`` is ``None`` for a tabular benchmark
EVALUATORS: Registry = Registry("evaluator", "evaluators")


def _trainer(trainer: type[BatchedTrainer | SerialTrainer]) -> Callable[..., Evaluator]:
    def build(task: Task | None, **settings: Any) -> Evaluator:
        if task is None:
            raise ArchsearchError(f"trainer: {trainer.name!r} trains on a task, and none is given")
        return trainer(task, TrainConfig.from_config(settings))

    return build


def _lookup(task: Task | None, benchmark: str, noisy: bool = False) -> Evaluator:
    return LookupEvaluator(benchmark, noisy=noisy)


def _shared(
    task: Task | None, space: SearchSpace | None = None, reference: dict | None = None, **settings: Any
) -> Evaluator:
    if task is None or space is None:
        raise ArchsearchError("trainer: weight sharing trains on a task and its search space, and none is given")
    if not isinstance(reference, dict):
        raise ArchsearchError(f"trainer.reference: expected a trainer's config, got {type(reference).__name__}")
    reference = dict(reference)
    name = reference.pop("name", None)
    if name not in (SerialTrainer.name, BatchedTrainer.name):
        raise ArchsearchError(f"trainer.reference: final picks retrain with serial or batched, not {name!r}")
    schedule = {key: settings.pop(key) for key in (*SCHEDULE, "seed") if key in settings}
    trainer = EVALUATORS.lookup(name)(task, **reference)
    return SharedWeightsEvaluator(task, space, TrainConfig.from_config(settings), trainer, **schedule)


_shared.needs_space = True  # type: ignore[attr-defined]


def _language(task: Task | None, bptt: int = 35, clip: float = 0.25, **settings: Any) -> Evaluator:
    if task is None:
        raise ArchsearchError("trainer: 'language' trains on a task, and none is given")
    return LanguageTrainer(task, TrainConfig.from_config(settings), bptt=bptt, clip=clip)


def _shared_cell(
    task: Task | None, space: SearchSpace | None = None, reference: dict | None = None, **settings: Any
) -> Evaluator:
    if task is None or space is None:
        raise ArchsearchError("trainer: a cell search trains on a task and its search space, and none is given")
    if not isinstance(reference, dict) or reference.get("name") != LanguageTrainer.name:
        raise ArchsearchError("trainer.reference: a cell search's picks retrain with the 'language' trainer")
    trainer = _language(task, **{k: v for k, v in reference.items() if k != "name"})
    keys = (*CELL_SCHEDULE, "seed", "bptt", "clip")
    schedule = {key: settings.pop(key) for key in keys if key in settings}
    return SharedCellEvaluator(task, space, TrainConfig.from_config(settings), trainer, **schedule)


_shared_cell.needs_space = True  # type: ignore[attr-defined]

EVALUATORS.register(BatchedTrainer.name, _trainer(BatchedTrainer))
EVALUATORS.register(SerialTrainer.name, _trainer(SerialTrainer))
EVALUATORS.register(LookupEvaluator.name, _lookup)
EVALUATORS.register(SharedWeightsEvaluator.name, _shared)
EVALUATORS.register(LanguageTrainer.name, _language)
EVALUATORS.register(SharedCellEvaluator.name, _shared_cell)
#: evaluators whose studies search in phases (search with shared weights, derive, retrain)
SHARED_EVALUATORS = (SharedWeightsEvaluator.name, SharedCellEvaluator.name)

__all__ = [
    "BatchedTrainer",
    "CELL_SCHEDULE",
    "LanguageTrainer",
    "SharedCellEvaluator",
    "EVALUATORS",
    "Ensemble",
    "Evaluator",
    "LookupEvaluator",
    "TABULAR_BENCHMARKS",
    "TabularBenchmark",
    "Refit",
    "SCHEDULE",
    "SHARED_EVALUATORS",
    "SHARINGS",
    "SharedWeightsEvaluator",
    "Result",
    "ReusingEvaluator",
    "SerialTrainer",
    "Status",
    "Supernet",
    "TrainConfig",
    "Trainer",
    "accuracy",
    "build_supernet",
    "get_benchmark",
    "load_model",
    "split_score",
    "validation_loss",
    "validation_score",
]

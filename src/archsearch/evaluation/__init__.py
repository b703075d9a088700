"""Turning architectures into rewards: trainers, their settings, and the worker processes they train on."""

from archsearch.evaluation._base import Evaluator
from archsearch.evaluation._batched import BatchedTrainer
from archsearch.evaluation._config import TrainConfig
from archsearch.evaluation._lookup import TABULAR_BENCHMARKS, LookupEvaluator, TabularBenchmark, get_benchmark
from archsearch.evaluation._result import Result, Status
from archsearch.evaluation._scoring import accuracy, load_model, split_score, validation_loss, validation_score
from archsearch.evaluation._serial import SerialTrainer

__all__ = [
    "BatchedTrainer",
    "Evaluator",
    "LookupEvaluator",
    "TABULAR_BENCHMARKS",
    "TabularBenchmark",
    "Result",
    "SerialTrainer",
    "Status",
    "TrainConfig",
    "accuracy",
    "get_benchmark",
    "load_model",
    "split_score",
    "validation_loss",
    "validation_score",
]

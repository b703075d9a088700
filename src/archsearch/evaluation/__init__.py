"""Turning architectures into rewards: trainers, their settings, and the worker processes they train on."""

from archsearch.evaluation._base import Evaluator, Trainer
from archsearch.evaluation._batched import BatchedTrainer
from archsearch.evaluation._config import TrainConfig
from archsearch.evaluation._lookup import TABULAR_BENCHMARKS, LookupEvaluator, TabularBenchmark, get_benchmark
from archsearch.evaluation._result import Refit, Result, Status
from archsearch.evaluation._reuse import ReusingEvaluator
from archsearch.evaluation._scoring import accuracy, load_model, split_score, validation_loss, validation_score
from archsearch.evaluation._serial import SerialTrainer

__all__ = [
    "BatchedTrainer",
    "Evaluator",
    "LookupEvaluator",
    "TABULAR_BENCHMARKS",
    "TabularBenchmark",
    "Refit",
    "Result",
    "ReusingEvaluator",
    "SerialTrainer",
    "Status",
    "TrainConfig",
    "Trainer",
    "accuracy",
    "get_benchmark",
    "load_model",
    "split_score",
    "validation_loss",
    "validation_score",
]

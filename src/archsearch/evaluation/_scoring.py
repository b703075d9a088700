"""Scoring helpers shared by trainers and by the final pick.

A child's *validation score* drives early stopping and the reward. For
classification it is accuracy. For regression it is the coefficient of
determination R^2 = 1 - SSE / SST on the validation split, clipped at 0 (a
network worse than predicting the validation mean scores 0), so it lies in
[0, 1] like accuracy and the reward ``score ** reward_power`` means the same
thing for both problems. Early stopping reads the *unclipped* score (a network
climbing from R^2 = -3 to -0.1 is learning, though it scores 0 throughout), and
a regression score counts as improved only when it rises by more than
``MIN_R2_GAIN``: accuracy moves in whole validation samples, R^2 creeps up forever.
"""

from __future__ import annotations

import torch
from torch import nn

from archsearch.errors import ArchsearchError
from archsearch.space import Architecture, MLPArchitecture
from archsearch.tasks import Task

MIN_R2_GAIN = 1e-4
EVAL_ROWS = 1024  # rows per forward pass when only predicting: bounds memory on large image splits


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``model(x)`` in chunks of ``EVAL_ROWS`` rows, without gradients."""
    if len(x) <= EVAL_ROWS:
        return model(x)
    return torch.cat([model(chunk) for chunk in x.split(EVAL_ROWS)])


def accuracy(logits: torch.Tensor, y: torch.Tensor) -> float:
    """Fraction of rows whose largest logit is the true class, as an exact ratio of counts."""
    return int((logits.argmax(-1) == y).sum()) / len(y)


def total_sum_of_squares(y: torch.Tensor) -> float:
    """SST of a regression target, in float64 (so both trainers divide by the same number)."""
    y64 = y.double()
    return float(((y64 - y64.mean()) ** 2).sum())


def r2_from_sse(sse: float, sst: float) -> float:
    """R^2 from the sum of squared errors; a constant target (SST 0) scores 1 only when predicted exactly."""
    if sst <= 0.0:
        return 1.0 if sse == 0.0 else 0.0
    return 1.0 - sse / sst


def squared_error(outputs: torch.Tensor, y: torch.Tensor) -> float:
    """Sum of squared errors of one-output predictions ``outputs`` (rows, 1)."""
    return float(((outputs[:, 0] - y) ** 2).sum())


def validation_score(outputs: torch.Tensor, y: torch.Tensor, regression: bool) -> float:
    """Accuracy, or R^2 not yet clipped: what early stopping reads (``max(0, score)`` is the reward's)."""
    if not regression:
        return accuracy(outputs, y)
    return r2_from_sse(squared_error(outputs, y), total_sum_of_squares(y))


def improved(score: float, best: float, regression: bool) -> bool:
    """Whether a validation score beats the best so far, for early stopping."""
    return score > best + MIN_R2_GAIN if regression else score > best


def training_loss(outputs: torch.Tensor, y: torch.Tensor, regression: bool) -> torch.Tensor:
    """Mean cross-entropy, or mean squared error of the single output."""
    if regression:
        return nn.functional.mse_loss(outputs[:, 0], y)
    return nn.functional.cross_entropy(outputs, y)


def load_model(arch: Architecture, task: Task, weights: dict[str, torch.Tensor]) -> nn.Module:
    """``arch`` built for ``task`` with ``weights`` loaded, in eval mode.

    Weights come from files (a study, saved children), so they are checked first: the same names,
    shapes and kinds of number as the network's own, and finite; anything else is one
    :class:`ArchsearchError` line naming the first difference.
    """
    model = arch.build(task.in_features, task.out_features)
    own = model.state_dict()
    if not isinstance(weights, dict):
        raise ArchsearchError(f"weights: expected a dict of named tensors, got {type(weights).__name__}")
    missing, unexpected = sorted(own.keys() - weights.keys()), sorted(weights.keys() - own.keys(), key=str)
    if missing or unexpected:
        name = f"no {missing[0]!r}" if missing else f"an unexpected {str(unexpected[0])[:60]!r}"
        raise ArchsearchError(f"weights: {name} ({len(missing)} missing, {len(unexpected)} unexpected)")
    for name, tensor in own.items():
        given = weights[name]
        if not isinstance(given, torch.Tensor):
            raise ArchsearchError(f"weights: {name!r} is {type(given).__name__}, not a tensor")
        if given.is_meta or given.layout != torch.strided:
            raise ArchsearchError(f"weights: {name!r} is not a dense tensor holding values")
        if given.shape != tensor.shape:
            raise ArchsearchError(f"weights: {name!r} has shape {list(given.shape)}, the network {list(tensor.shape)}")
        if given.dtype != tensor.dtype and not (given.is_floating_point() and tensor.is_floating_point()):
            raise ArchsearchError(f"weights: {name!r} holds {given.dtype}, the network {tensor.dtype}")
        if given.is_floating_point() and not bool(torch.isfinite(given).all()):
            raise ArchsearchError(f"weights: {name!r} holds values that are not finite")
    model.load_state_dict(weights)
    return model.eval()


@torch.no_grad()
def split_score(model: nn.Module, task: Task, split: str) -> float:
    """Accuracy, or R^2 (not clipped: a test R^2 below 0 is reported as it is), on one split."""
    x, y = task.split(split)
    outputs = predict(model, x)
    if not task.regression:
        return accuracy(outputs, y)
    return r2_from_sse(squared_error(outputs, y), total_sum_of_squares(y))


@torch.no_grad()
def validation_loss(arch: Architecture, task: Task, weights: dict[str, torch.Tensor]) -> float:
    """The training loss of the kept weights on the validation split: a finer measure than the score."""
    x, y = task.split("val")
    if isinstance(arch, MLPArchitecture):
        outputs = arch.apply(weights, x)
    else:
        outputs = predict(load_model(arch, task, weights), x)
    return float(training_loss(outputs, y, task.regression))

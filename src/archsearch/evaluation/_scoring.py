"""Scoring helpers shared by trainers and by the final pick."""

from __future__ import annotations

import torch
from torch import nn

from archsearch.space import Architecture
from archsearch.tasks import Task


def accuracy(logits: torch.Tensor, y: torch.Tensor) -> float:
    """Fraction of rows whose largest logit is the true class, as an exact ratio of counts."""
    return int((logits.argmax(-1) == y).sum()) / len(y)


def load_model(arch: Architecture, task: Task, weights: dict[str, torch.Tensor]) -> nn.Module:
    """``arch`` built for ``task`` with ``weights`` loaded, in eval mode."""
    model = arch.build(task.in_features, task.out_features)
    model.load_state_dict(weights)
    return model.eval()


@torch.no_grad()
def split_accuracy(model: nn.Module, task: Task, split: str) -> float:
    x, y = task.split(split)
    return accuracy(model(x), y)


@torch.no_grad()
def validation_loss(arch: Architecture, task: Task, weights: dict[str, torch.Tensor]) -> float:
    """Mean cross-entropy of the kept weights on the validation split: a finer measure than accuracy."""
    x, y = task.split("val")
    return float(nn.functional.cross_entropy(load_model(arch, task, weights)(x), y))

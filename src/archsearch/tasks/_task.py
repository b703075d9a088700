"""Tasks: a data set with fixed train / validation / test splits.

The validation split drives the reward; the test split is touched once, for
the final pick of a search, and never for the reward.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass(frozen=True, eq=False)
class Task:
    """Tensors of one data set, already split and preprocessed.

        ``x_*`` are float32 feature matrices (rows, features), or for image tasks
    images (N, channels, height, width), whose ``in_features`` is the channel count.
    ``problem`` is ``"classification"`` (``y_*`` are int64 class indices, one output per class) or ``"regression"``
    (``y_*`` are the float32 target, standardised, one output; ``n_classes`` is 0).
        ``config`` is what rebuilds the task (see :func:`archsearch.tasks.get_task`).
        ``preprocessing`` says how raw inputs became ``x``, so an exported model can
        take raw rows: ``features`` (names of the columns of ``x``), ``mean`` and
        ``std`` (x = (raw - mean) / std, absent when the task does not scale) and
        ``classes`` (the label of each class index) or, for regression,
        ``target_mean`` and ``target_std`` (target = output * std + mean).
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    n_classes: int
    config: dict[str, Any] = field(default_factory=dict)
    preprocessing: dict[str, Any] = field(default_factory=dict)
    problem: str = "classification"

    @property
    def regression(self) -> bool:
        return self.problem == "regression"

    @property
    def in_features(self) -> int:
        return int(self.x_train.shape[1])

    @property
    def out_features(self) -> int:
        return 1 if self.regression else self.n_classes

    def split(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x, y)`` of ``"train"``, ``"val"`` or ``"test"``."""
        return getattr(self, f"x_{name}"), getattr(self, f"y_{name}")

    def __repr__(self) -> str:
        sizes = "/".join(str(len(self.split(s)[1])) for s in ("train", "val", "test"))
        kind = "regression" if self.regression else f"{self.n_classes} classes"
        inputs = f"{self.in_features} features"
        if self.x_train.dim() == 4:
            inputs = "x".join(str(d) for d in self.x_train.shape[1:]) + " images"
        return f"Task({self.name!r}, {sizes}, {inputs}, {kind})"

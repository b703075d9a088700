"""What an evaluation returns: the reward and everything worth recording about a child."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch

Status = Literal["ok", "diverged", "failed", "missing", "infeasible"]


@dataclass
class Result:
    """The outcome of training and scoring one child.

    ``reward`` is what the strategy sees. ``val_score`` is the validation
    score behind it (accuracy, or R^2 for regression; the best of the last epochs), ``val_curve`` and
    ``train_loss`` hold one value per epoch. ``weights`` are the child's
    weights at ``kept_epoch`` (the epoch whose validation accuracy set the
    reward), kept so the final pick needs no retraining; studies persist them
    only for the best child. ``attempts`` counts the evaluations it took: more than one when an
    executor re-ran the child after its worker process died. ``flops``, ``latency_ms`` and
    ``latency_spread`` are its costs (:mod:`archsearch.evaluation._cost`), which the study fills in.
    ``optimizer_state``: the optimizer's state after training, flat (a continued child's, see
    :mod:`archsearch.evaluation._continued`), so that a later child can resume it.
    """

    reward: float
    status: Status = "ok"
    val_score: float = 0.0
    val_curve: list[float] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    params: int = 0
    seconds: float = 0.0
    error: str | None = None
    kept_epoch: int = 0
    val_loss: float | None = None
    attempts: int = 1
    weights: dict[str, torch.Tensor] | None = field(default=None, repr=False)
    flops: int | None = None
    latency_ms: float | None = None
    latency_spread: float | None = None
    optimizer_state: dict[str, torch.Tensor] | None = field(default=None, repr=False)

    @property
    def epochs(self) -> int:
        return len(self.train_loss)

    @classmethod
    def failure(cls, status: Status, error: str, params: int = 0, seconds: float = 0.0, **fields) -> Result:
        """A child that diverged or crashed: reward 0 and the reason (``fields``: curves, attempts)."""
        return cls(reward=0.0, status=status, error=error, params=params, seconds=seconds, **fields)


@dataclass
class Refit:
    """A final pick retrained on the training and validation rows together: for ``epochs`` epochs on
    ``rows`` rows, ending with ``weights``."""

    epochs: int
    rows: int
    weights: dict[str, torch.Tensor] = field(repr=False)

"""k-fold cross-validation: a child's reward from k trainings instead of one small validation split.

With ``folds = k`` (a :class:`TrainConfig` setting) the training and validation rows are pooled and
dealt into k folds; the child is trained k times from the same initial weights, each time on k - 1
folds and validated on the one left out, exactly as a trainer trains on an ordinary task (fold ``f``
*is* an ordinary task: :func:`fold_task`). The test rows are never among them. The folds follow from
the task alone, so every executor, resume and trainer deals the same ones:

- classification: rows in order of class (stable), dealt round-robin, so each fold holds each class
  in proportion (stratified, as scikit-learn's ``StratifiedKFold`` without shuffling the pooled order);
- regression: rows in order of target value, dealt the same way, so each fold spans the range.

The pooled rows are the task's training rows then its validation rows, already in the split's random
order. The combined result (:func:`combine`) scores the child by the mean of its folds' validation
scores; its weights are the first fold's (a network trained on (k - 1)/k of the pooled rows), and
``--refit`` retrains the pick on all of them for the folds' mean kept epoch.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch

from archsearch.errors import ArchsearchError
from archsearch.evaluation._config import TrainConfig
from archsearch.evaluation._result import Result
from archsearch.evaluation._scoring import validation_loss
from archsearch.space import Architecture
from archsearch.tasks import Task


def pooled(task: Task) -> tuple[torch.Tensor, torch.Tensor]:
    """The training rows then the validation rows, which the folds are dealt from."""
    return torch.cat([task.x_train, task.x_val]), torch.cat([task.y_train, task.y_val])


def fold_ids(task: Task, folds: int) -> torch.Tensor:
    """The fold (0 to ``folds`` - 1) of each pooled row; see the module docstring."""
    y = pooled(task)[1]
    if folds > len(y):
        raise ArchsearchError(
            f"trainer.folds: {folds} folds need at least {folds} training and validation rows, the task has {len(y)}"
        )
    order = torch.argsort(y, stable=True)
    ids = torch.empty(len(y), dtype=torch.long)
    ids[order] = torch.arange(len(y)) % folds
    return ids


def fold_task(task: Task, folds: int, fold: int) -> Task:
    """The task whose training rows are the pooled rows outside fold ``fold`` and whose validation rows
    are those inside it (both in pooled order); the test rows are the task's own."""
    return fold_tasks(task, folds)[fold]


def fold_tasks(task: Task, folds: int) -> list[Task]:
    """:func:`fold_task` of every fold, the rows pooled and dealt once."""
    (x, y), ids = pooled(task), fold_ids(task, folds)
    tasks = []
    for fold in range(folds):
        inside, outside = ids == fold, ids != fold
        split = {"x_train": x[outside], "y_train": y[outside], "x_val": x[inside], "y_val": y[inside]}
        tasks.append(dataclasses.replace(task, **split))
    return tasks


def combine(arch: Architecture, tasks: Sequence[Task], results: Sequence[Result], config: TrainConfig) -> Result:
    """One child's result from its folds' (``results[f]`` trained on ``tasks[f]``).

    ``val_score`` is the mean of the folds' scores and ``reward`` its power, as for one split;
    ``val_curve`` and ``train_loss`` are the means of the folds that reached each epoch; ``kept_epoch``
    the folds' mean, rounded; ``val_loss`` the mean of each fold's loss on its own held-out rows. A
    fold that diverged or failed makes the child's result that failure, naming the fold.
    """
    params, seconds = results[0].params, sum(r.seconds for r in results)
    curves = {"val_curve": _mean_curve([r.val_curve for r in results]),
              "train_loss": _mean_curve([r.train_loss for r in results])}  # fmt: skip
    for fold, result in enumerate(results):
        if result.status != "ok":
            error = f"fold {fold + 1} of {len(results)}: {result.error}"
            return Result.failure(result.status, error, params, seconds, attempts=result.attempts, **curves)
    losses = [
        r.val_loss if r.val_loss is not None else validation_loss(arch, task, r.weights)
        for task, r in zip(tasks, results)
    ]
    score = sum(r.val_score for r in results) / len(results)
    return Result(
        reward=score**config.reward_power,
        val_score=score,
        params=params,
        seconds=seconds,
        kept_epoch=max(1, round(sum(r.kept_epoch for r in results) / len(results))),
        val_loss=sum(losses) / len(losses),
        attempts=max(r.attempts for r in results),
        weights=results[0].weights,
        **curves,
    )


def _mean_curve(curves: Sequence[list[float]]) -> list[float]:
    """Per epoch, the mean of the curves that reach it."""
    length = max((len(c) for c in curves), default=0)
    out = []
    for epoch in range(length):
        values = [c[epoch] for c in curves if len(c) > epoch]
        out.append(sum(values) / len(values))
    return out

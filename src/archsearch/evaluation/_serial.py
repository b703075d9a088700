"""The reference trainer: one child at a time, a plain PyTorch loop.

It is deliberately simple so that it is obviously right; faster trainers are
tested against it.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections import deque
from collections.abc import Iterator, Sequence

import numpy as np
import torch

from archsearch.evaluation._base import Trainer, torch_threads
from archsearch.evaluation._continued import Continued, train_continued
from archsearch.evaluation._folds import combine
from archsearch.evaluation._result import Result
from archsearch.evaluation._scoring import improved, predict, training_loss, validation_score
from archsearch.space import Architecture


class SerialTrainer(Trainer):
    """Trains each child on its own with ``torch.optim.Adam`` (an update-rule member: its own rule) and
    early stopping.

    The loss is cross-entropy (classification) or mean squared error (regression); the
    validation score is accuracy or clipped R^2 (see :mod:`archsearch.evaluation._scoring`).
    """

    name = "serial"
    cross_validates = True
    ensembles = True

    @property
    def job_threads(self) -> int:
        return self.config.threads or 1

    def evaluate(self, archs: Sequence[Architecture], seeds: Sequence[int]) -> Iterator[tuple[int, Result]]:
        """Children one after another, on ``config.threads`` threads (default 1: tiny networks gain
        nothing from more, and results then never depend on the machine's core count)."""
        with torch_threads(self.config.threads or 1):
            for index, (arch, seed) in enumerate(zip(archs, seeds, strict=True)):
                if isinstance(arch, Continued):  # a population strategy's child (see evaluation._continued)
                    yield index, train_continued(self, arch, seed)
                else:
                    yield index, self.train(arch, seed) if self.config.folds == 1 else self.cross_validate(arch, seed)

    def cross_validate(self, arch: Architecture, seed: int) -> Result:
        """``arch`` trained from the same initial weights on each fold's task in turn, and scored by
        their mean (see :mod:`archsearch.evaluation._folds`)."""
        one = dataclasses.replace(self.config, folds=1)
        results = [SerialTrainer(task, one).train(arch, seed) for task in self.fold_tasks]
        return combine(arch, self.fold_tasks, results, self.config)

    def train(self, arch: Architecture, seed: int) -> Result:
        """Train one child from the initial weights that ``seed`` determines."""
        cfg, task = self.config, self.task
        start = time.perf_counter()
        params = arch.num_params(task.in_features, task.out_features)
        losses: list[float] = []
        vals: list[float] = []
        val_losses: list[float] = []  # only when early stopping watches them

        def failure(status, error):  # noqa: ANN001, ANN202
            return Result.failure(status, error, params, time.perf_counter() - start, val_curve=vals, train_loss=losses)

        try:
            # dropout draws from the global generator: seed it per child, and leave the caller's untouched
            with torch.random.fork_rng(devices=_cuda_devices(cfg.device)):
                _seed_dropout(seed, cfg.device)
                generator = torch.Generator().manual_seed(int(seed))
                model = arch.build(task.in_features, task.out_features, generator=generator).to(cfg.device)
                x, y = (t.to(cfg.device) for t in task.split("train"))
                x_val, y_val = (t.to(cfg.device) for t in task.split("val"))
                if x.dim() == 4:  # images: convolutions run faster in channels-last layout on CPU
                    model = model.to(memory_format=torch.channels_last)
                    x, x_val = (t.contiguous(memory_format=torch.channels_last) for t in (x, x_val))
                optimizer = arch.optimizer(model.parameters(), cfg.lr, cfg.weight_decay, int(seed))
                batch_size = arch.batch_size(cfg.batch_size)
                recent: deque[dict[str, torch.Tensor]] = deque(maxlen=cfg.reward_window)
                best, waited, out_of_time = -math.inf, 0, False
                deadline = None if cfg.time_limit is None else start + cfg.time_limit
                for epoch in range(cfg.max_epochs):
                    trained = epoch_and_validation(model, optimizer, (x, y, x_val), batch_size, generator,
                                                   task.regression, epoch, deadline)  # fmt: skip
                    if isinstance(trained, str):
                        return failure("diverged", trained)
                    loss, logits, out_of_time = trained
                    losses.append(loss)
                    score = validation_score(logits, y_val, task.regression)
                    vals.append(max(0.0, score))
                    kept = _finite_copy(model)  # outputs can stay finite when a weight is not (-inf before a ReLU)
                    if kept is None:
                        return failure("diverged", f"weights became non-finite at epoch {epoch + 1}")
                    recent.append(kept)
                    if cfg.monitor == "loss":
                        val_losses.append(float(training_loss(logits, y_val, task.regression)))
                        score = -val_losses[-1]  # lower is better: improved() then reads it as a score
                    better = improved(score, best, task.regression and cfg.monitor == "score")
                    best, waited = (score, 0) if better else (best, waited + 1)
                    if waited >= cfg.patience or out_of_time:
                        break
                reward, val_score, kept_epoch = cfg.reward(vals)
                weights = recent[kept_epoch - 1 - (len(vals) - len(recent))]
        except Exception as exc:  # a broken child is a recorded trial, not a crashed search
            return failure("failed", f"{type(exc).__name__}: {exc}")
        return Result(
            reward=reward,
            val_score=val_score,
            val_curve=vals,
            train_loss=losses,
            params=params,
            seconds=time.perf_counter() - start,
            kept_epoch=kept_epoch,
            val_loss=val_losses[kept_epoch - 1] if val_losses else None,
            weights=weights,
        )


def train_epoch(
    model: torch.nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
    batch_size: int | None, generator: torch.Generator, regression: bool, deadline: float | None = None,
) -> tuple[float, bool]:
    """One epoch of minibatches in the order ``generator`` draws (``None`` or a batch of all rows: the full
    batch); ``(mean training loss, out of time)``. A loss that is not finite is returned at once, and past
    ``deadline`` (a ``time.perf_counter()`` value) the epoch stops after its current batch."""
    n = len(y)
    if batch_size is None or batch_size >= n:
        batches = [(x, y)]
    else:
        order = torch.randperm(n, generator=generator).to(x.device)
        batches = [(x[i], y[i]) for i in order.split(batch_size)]
    total, seen = 0.0, 0
    model.train()  # dropout on
    for xb, yb in batches:
        loss = training_loss(model(xb), yb, regression)
        if not torch.isfinite(loss):
            return float(loss.item()), False
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += loss.item() * len(yb)
        seen += len(yb)
        if deadline is not None and time.perf_counter() > deadline:
            return total / seen, True
    return total / seen, False


def epoch_and_validation(
    model: torch.nn.Module, optimizer: torch.optim.Optimizer, data: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    batch_size: int | None, generator: torch.Generator, regression: bool, epoch: int, deadline: float | None = None,
) -> tuple[float, torch.Tensor, bool] | str:
    """:func:`train_epoch` on ``data``'s training rows, then the outputs on its validation rows: ``(mean
    training loss, validation outputs, out of time)``, or why the child diverged at this (0-based) epoch."""
    x, y, x_val = data
    loss, out_of_time = train_epoch(model, optimizer, x, y, batch_size, generator, regression, deadline)
    if not math.isfinite(loss):
        return f"training loss became {loss} at epoch {epoch + 1}"
    model.eval()
    logits = predict(model, x_val)
    if not torch.isfinite(logits).all():
        return f"validation outputs became non-finite at epoch {epoch + 1}"
    return loss, logits, out_of_time


def _finite_copy(model: torch.nn.Module) -> dict[str, torch.Tensor] | None:
    """The model's state as :func:`_kept` copies, or ``None`` when a floating-point value of it is not finite."""
    kept = {k: _kept(v) for k, v in model.state_dict().items()}
    return kept if all(torch.isfinite(t).all() for t in kept.values() if t.is_floating_point()) else None


def _kept(tensor: torch.Tensor) -> torch.Tensor:
    """A copy of a weight on the CPU in the standard layout, whatever the layout it trained in."""
    return tensor.detach().to("cpu", memory_format=torch.contiguous_format, copy=True)


def _seed_dropout(seed: int, device: str) -> None:
    """Seed the generator that the child's dropout masks draw from (the global one of its device)
    with a number derived from its seed but not equal to it."""
    derived = int(np.random.SeedSequence([int(seed), 1]).generate_state(1)[0])
    torch.default_generator.manual_seed(derived)
    for index in _cuda_devices(device):
        with torch.cuda.device(index):
            torch.cuda.manual_seed(derived)


def _cuda_devices(device: str) -> list[int]:
    """The CUDA devices whose random state training may touch."""
    place = torch.device(device)
    return [place.index or 0] if place.type == "cuda" else []

"""The batched trainer's group with the compiled epoch (:mod:`archsearch.evaluation._native`).

Same semantics as :class:`~archsearch.evaluation._batched._Group`: the same initial weights, Adam,
early stopping, kept weights and results. The compiled code runs the epochs themselves (each
child's backward pass, Adam step and forward pass, which gives both the validation statistics of
this epoch and the training loss of the next) and the early-stopping bookkeeping of
``_Group._validated``, in double precision as Python does it; it returns to Python only when a
child stops or diverges, and Python makes that child's result. A child that stops keeps its slot
in the buffers and is no longer computed, so nothing is copied when children stop. The
validation loss of the kept weights comes with the result (the study need not compute it again).

Used for full-batch training on the CPU without cross-validation (the seed experiment's
setting); minibatches, folds and other devices keep the PyTorch epoch.
"""

from __future__ import annotations

import ctypes
import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from archsearch.evaluation import _native
from archsearch.evaluation._batched import _BETA1, _BETA2, _EPS, _Child, _Group
from archsearch.evaluation._result import Result
from archsearch.evaluation._scoring import MIN_R2_GAIN, total_sum_of_squares

_COLUMNS = 16  # the kernel's vector width in floats: buffers have a multiple of it as columns
_ACTIVATIONS = {"relu": 1, "tanh": 2}
_STOPPED, _VALIDATION_NOT_FINITE, _LOSS_NOT_FINITE = 1, 2, 3  # the kernel's events


class FusedGroup(_Group):
    """Children of one depth trained by the compiled epochs."""

    def train(self) -> Iterator[tuple[Any, Result]]:
        """Train until every child stops; yields ``(child.key, result)`` as each does."""
        train = _native.library().archsearch_train
        self._prepare()
        while self.children:
            if train(self._group_pointer, self.active.ctypes.data, len(self.active)):
                yield from self._events()

    def _events(self) -> Iterator[tuple[Any, Result]]:
        """The results of the children that stopped or diverged; the others stay."""
        keep = []
        for row, child in enumerate(self.children):
            event = int(self.event[child.slot])
            if event:
                yield child.key, self._ended(child, row, event, int(self.event_epoch[child.slot]))
            else:
                keep.append(row)
        self.children = [self.children[i] for i in keep]
        self.active = np.array([child.slot for child in self.children], dtype=np.int64)

    def _ended(self, child: _Child, row: int, event: int, epoch: int) -> Result:
        """The result of a child whose event came at ``epoch``, its curves read from the kernel's."""
        losses, vals, val_losses = self.curves[child.slot]
        trained = epoch if event != _LOSS_NOT_FINITE else epoch - 1
        child.losses = losses[:trained].tolist()
        child.vals = vals[: epoch if event == _STOPPED else epoch - 1].tolist()
        child.val_losses = val_losses[: len(child.vals)].tolist()
        if event == _LOSS_NOT_FINITE:
            return self._failure(child, f"training loss became {float(losses[epoch - 1])} at epoch {epoch}")
        if event == _VALIDATION_NOT_FINITE:
            return self._failure(child, f"validation outputs became non-finite at epoch {epoch}")
        result = self._finish(child, row)
        if not all(bool(torch.isfinite(w).all()) for w in result.weights.values()):  # finite outputs, not a network
            return self._failure(child, f"the kept weights of epoch {result.kept_epoch} are not finite")
        return result

    def _prepare(self) -> None:
        """The kernel's view of the group: data in columns, per-child widths, buffers, settings."""
        task, cfg = self.task, self.cfg
        x_train, y_train = task.split("train")
        x_val, y_val = task.split("val")
        n_train, n_val = len(y_train), len(y_val)
        sst = total_sum_of_squares(y_val) if task.regression else 0.0
        for child in self.children:
            child.n_val, child.sst = n_val, sst
        cols = -(-(n_train + n_val) // _COLUMNS) * _COLUMNS
        x = torch.zeros(self.sizes[0], cols)
        x[:, : n_train + n_val] = torch.cat([x_train, x_val]).T
        y = torch.zeros(cols)
        y[: n_train + n_val] = torch.cat([y_train, y_val]).float()
        depth, slots = len(self.sizes) - 2, self.g
        self.slots = slots
        sizes = np.array(self.sizes, dtype=np.int64)
        widths = np.array([c.arch.widths for c in self.children], dtype=np.int64).reshape(slots, depth)
        acts = np.array([[_ACTIVATIONS[a] for a in c.arch.activations] for c in self.children], dtype=np.int64)
        offsets = np.array([o for start, bias, _ in self._layout(slots) for o in (start, bias)], dtype=np.int64)
        stride = cols * (int(sizes[1:].sum()) + int(sizes[-1]))  # layer outputs, then dL/dlogits
        widest = int(sizes.max())
        work = torch.empty(slots, stride)
        scratch = torch.empty(2 * widest * cols + widest * widest + widest)
        stats = torch.zeros(4, slots)
        self.curves = np.zeros((slots, 3, cfg.max_epochs))
        best = np.full(slots, -math.inf)
        waited = np.zeros(slots, dtype=np.int64)
        self.event = np.zeros(slots, dtype=np.int64)
        self.event_epoch = np.zeros(slots, dtype=np.int64)
        self.active = np.arange(slots, dtype=np.int64)
        self._keepalive = (x, y, sizes, widths, acts, offsets, work, scratch, stats, best, waited)  # the kernel's
        min_gain = MIN_R2_GAIN if task.regression and cfg.monitor == "score" else 0.0
        self.kernel_group = _native.Group(
            depth, task.out_features, int(task.regression), n_train, n_val, cols, slots, self.flat.numel(),
            *(a.ctypes.data for a in (sizes, widths, acts, offsets)),
            *(t.data_ptr() for t in (self.flat, self.m, self.v, x, y, work)), stride, scratch.data_ptr(),
            stats.data_ptr(), cfg.lr, _BETA1, _BETA2, _EPS, cfg.weight_decay,
            cfg.max_epochs, cfg.patience, cfg.reward_window, int(cfg.monitor == "loss"), min_gain, sst,
            self.ring.data_ptr(), *(a.ctypes.data for a in (self.curves, best, waited, self.event, self.event_epoch)),
            0, 0,
        )  # fmt: skip
        self._group_pointer = ctypes.addressof(self.kernel_group)

    def _stacked(self, child: _Child, row: int) -> tuple[int, int]:
        return child.slot, self.slots

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
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from archsearch.evaluation import _native
from archsearch.evaluation._batched import _BETA1, _BETA2, _EPS, Workspace, _Child, _Group
from archsearch.evaluation._result import Result
from archsearch.evaluation._scoring import MIN_R2_GAIN, total_sum_of_squares

_COLUMNS = 16  # the kernel's vector width in floats: buffers have a multiple of it as columns
_ACTIVATIONS = {"relu": 1, "tanh": 2}
_STOPPED, _VALIDATION_NOT_FINITE, _LOSS_NOT_FINITE = 1, 2, 3  # the kernel's events


class FusedGroup(_Group):
    """Children of one depth trained by the compiled epochs."""

    def __init__(self, trainer: Any, members: list, workspace: Workspace | None = None) -> None:
        self.workspace = workspace or Workspace()
        self.data = _Data.of(trainer)
        super().__init__(trainer, members)

    def _init_parameters(self) -> None:
        """As :meth:`_Group._init_parameters`: the same initial weights, written with NumPy into buffers of
        the workspace (only the kernel reads them: no gradient buffers, and padding is never read)."""
        self.slots = self.g  # a child keeps its slot while the others stop
        self.layout = self._layout(self.slots)
        total, window = self.layout[-1][2], self.cfg.reward_window
        self.flat, self.m, self.v = (self.workspace.take(total).zero_() for _ in range(3))
        self.ring = self.workspace.take(window * total).view(window, total)
        blocks = self._blocks(self.flat)
        for row, child in enumerate(self.children):
            init = child.arch.init_params(self.task.in_features, self.task.out_features, child.generator)
            for (weight, bias), (weights, biases) in zip(init, blocks):
                weights[row, : weight.shape[0], : weight.shape[1]] = weight.numpy()
                biases[row, : len(bias)] = bias.numpy()

    def _blocks(self, flat: torch.Tensor) -> list[tuple[np.ndarray, np.ndarray]]:
        """NumPy views of each layer's weights (slots, fan_out, fan_in) and biases (slots, fan_out) in a
        flat buffer of the group's layout: :meth:`_Group._views` without PyTorch's price per view."""
        values = flat.numpy()
        return [
            (values[start:bias].reshape(self.slots, rows, columns), values[bias:end].reshape(self.slots, rows))
            for (start, bias, end), columns, rows in zip(self.layout, self.sizes, self.sizes[1:])
        ]

    def train(self) -> Iterator[tuple[Any, Result]]:
        """Train until every child stops; yields ``(child.key, result)`` as each does."""
        train = _native.library().archsearch_train
        try:
            self._prepare()
            self.workspace.group = self
            while self.children and not self.workspace.cancelled:
                events = train(self._group_pointer, self.active.ctypes.data, len(self.active))
                if events > 0:
                    yield from self._events()
                elif events == 0:  # every child has an event by max_epochs: this is a bug, not a result
                    raise RuntimeError("the compiled epoch ended with children still training")
        finally:
            self.workspace.group = None
            self.workspace.release()

    def stop(self) -> None:
        """Make the compiled epochs return before their next epoch (from another thread)."""
        self.kernel_group.stop = 1

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
        return self._finish(child, row)

    def _weights(self, flat: torch.Tensor, child: _Child, row: int) -> dict[str, torch.Tensor]:
        """As :meth:`_Group._weights`, sliced in NumPy (a tenth of the cost of PyTorch's views here)."""
        sizes = (self.task.in_features, *child.arch.widths, self.task.out_features)
        weights = {}
        for layer, (weight, bias) in enumerate(self._blocks(flat)):
            fan_in, fan_out = sizes[layer], sizes[layer + 1]
            weights[f"{2 * layer}.weight"] = torch.from_numpy(weight[child.slot, :fan_out, :fan_in].copy())
            weights[f"{2 * layer}.bias"] = torch.from_numpy(bias[child.slot, :fan_out].copy())
        return weights

    def _prepare(self) -> None:
        """The kernel's view of the group: data in columns, per-child widths, buffers, settings."""
        task, cfg, data = self.task, self.cfg, self.data
        n_train, n_val, cols, sst = data.n_train, data.n_val, data.cols, data.sst
        depth, slots = len(self.sizes) - 2, self.slots
        sizes = np.array(self.sizes, dtype=np.int64)
        widths = np.array([c.arch.widths for c in self.children], dtype=np.int64).reshape(slots, depth)
        acts = np.array([[_ACTIVATIONS[a] for a in c.arch.activations] for c in self.children], dtype=np.int64)
        offsets = np.array([o for start, bias, _ in self.layout for o in (start, bias)], dtype=np.int64)
        stride = cols * (int(sizes[1:].sum()) + int(sizes[-1]))  # layer outputs, then dL/dlogits
        widest = int(sizes.max())
        work = self.workspace.take(slots * stride).view(slots, stride)
        scratch = self.workspace.take(2 * widest * cols + widest * widest + widest)
        stats = torch.zeros(4, slots, dtype=torch.float32)
        self.curves = np.zeros((slots, 3, cfg.max_epochs))
        best = np.full(slots, -math.inf)
        waited = np.zeros(slots, dtype=np.int64)
        self.event = np.zeros(slots, dtype=np.int64)
        self.event_epoch = np.zeros(slots, dtype=np.int64)
        self.active = np.arange(slots, dtype=np.int64)
        self._keepalive = (sizes, widths, acts, offsets, work, scratch, stats, best, waited)  # what the kernel reads
        min_gain = MIN_R2_GAIN if task.regression and cfg.monitor == "score" else 0.0
        self.kernel_group = _native.Group(
            depth, task.out_features, int(task.regression), n_train, n_val, cols, slots, self.flat.numel(),
            *(a.ctypes.data for a in (sizes, widths, acts, offsets)),
            *(t.data_ptr() for t in (self.flat, self.m, self.v, data.x, data.y, work)), stride, scratch.data_ptr(),
            stats.data_ptr(), cfg.lr, _BETA1, _BETA2, _EPS, cfg.weight_decay,
            cfg.max_epochs, cfg.patience, cfg.reward_window, int(cfg.monitor == "loss"), min_gain, sst,
            self.ring.data_ptr(), *(a.ctypes.data for a in (self.curves, best, waited, self.event, self.event_epoch)),
            0, 0, 0,
        )  # fmt: skip
        self._group_pointer = ctypes.addressof(self.kernel_group)


@dataclass(frozen=True)
class _Data:
    """The task's training then validation rows as the kernel reads them: features by columns
    (``x``: features x ``cols``, zero beyond the rows) and targets (``y``: class indices as floats,
    or the regression target). Made once per trainer and process, shared by its groups."""

    x: torch.Tensor
    y: torch.Tensor
    n_train: int
    n_val: int
    cols: int
    sst: float  # regression: the total sum of squares of the validation targets

    @classmethod
    def of(cls, trainer: Any) -> _Data:
        data = trainer.__dict__.get("_fused_data")
        if data is None:
            data = trainer.__dict__["_fused_data"] = cls.make(trainer.task)
        return data

    @classmethod
    def make(cls, task: Any) -> _Data:
        x_train, y_train = task.split("train")
        x_val, y_val = task.split("val")
        n_train, n_val = len(y_train), len(y_val)
        cols = -(-(n_train + n_val) // _COLUMNS) * _COLUMNS
        x = torch.zeros(task.in_features, cols, dtype=torch.float32)
        x[:, : n_train + n_val] = torch.cat([x_train, x_val]).T
        y = torch.zeros(cols, dtype=torch.float32)
        y[: n_train + n_val] = torch.cat([y_train, y_val]).float()
        sst = total_sum_of_squares(y_val) if task.regression else 0.0
        return cls(x, y, n_train, n_val, cols, sst)

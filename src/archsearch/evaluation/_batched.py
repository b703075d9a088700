"""The batched trainer: many MLP children trained together in one vectorised pass.

Children of equal depth form a group. Within a group every layer is padded to
the group's widest child at that layer and the children's weights are stacked,
so one batched matrix product per layer trains the whole group. Padding is
exact, not approximate: padded weights start at zero and receive exactly zero
gradient (their inputs or their downstream weights are zero), so Adam leaves
them at zero. Forward and backward passes are written out by hand (an MLP with
softmax cross-entropy, or one output with squared error, has a short, well-known
gradient), each group's
parameters, gradients and Adam moments live in flat buffers so one Adam update
is a handful of operations, and all intermediate tensors live in buffers
allocated once per group: small networks make framework overhead and memory
allocation, not arithmetic, the cost to beat.

Each child keeps the reference trainer's semantics: the same initial weights
from its seed (both use ``MLPArchitecture.init_params``), its own Adam moments,
its own early stopping, the same reward and the same kept weights. Validation
of the weights after epoch ``e`` is computed in the same forward pass as the
training loss of epoch ``e + 1`` (both read the same weights), which saves a
pass per epoch. A child that stops early leaves its group's buffers, so it
stops costing.

In full batches on the CPU, where a C++ compiler is at hand, groups train with the compiled
epoch instead (:mod:`archsearch.evaluation._fused`): the same semantics, each child computed at
its own widths, the groups on threads of this process.

Results agree with :class:`SerialTrainer` to float32 rounding: padding changes
the order of additions inside matrix products, and tanh is computed as
``2 * sigmoid(2z) - 1`` (cheaper than ``torch.tanh`` on the CPU, and equal to it
within float32 rounding). The equivalence is tested. A child's numbers can depend on its
batch-mates through that rounding, so a study re-runs an interrupted batch
whole (``batch_dependent``) to reproduce an uninterrupted run exactly; not with the compiled
epoch, which computes each child alone.
"""

from __future__ import annotations

import functools
import math
import queue
import threading
import time
import warnings
import weakref
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from archsearch._limits import max_workers
from archsearch.errors import ArchsearchError
from archsearch.evaluation import _native
from archsearch.evaluation._base import Trainer, torch_threads
from archsearch.evaluation._config import TrainConfig
from archsearch.evaluation._folds import combine, fold_ids, pooled
from archsearch.evaluation._result import Result
from archsearch.evaluation._scoring import improved, r2_from_sse, total_sum_of_squares
from archsearch.evaluation._workers import WorkerPool, available_cores, job_for
from archsearch.space import Architecture, MLPArchitecture
from archsearch.tasks import Task

aten = torch.ops.aten
_FUSED_ADAM = hasattr(torch, "_fused_adam_")  # one kernel for the whole update (PyTorch >= 2.4 on CPU)
_BETA1, _BETA2, _EPS = 0.9, 0.999, 1e-8  # torch.optim.Adam's defaults, as the reference trainer uses


class BatchedTrainer(Trainer):
    """Trains a batch of MLP children at once, with the reference trainer's semantics."""

    name = "batched"
    cross_validates = True
    ensembles = True
    max_batch = 256  # children planned and held in memory at once; larger batches are split
    _workers: WorkerPool | None = None
    _no_workers = False  # set when worker processes could not be started

    def __init__(self, task: Task, config: TrainConfig | None = None) -> None:
        super().__init__(task, config)
        if self.config.time_limit is not None:
            raise ArchsearchError(
                "trainer.time_limit: the batched trainer trains children in lockstep, without a limit per child; "
                "use the serial trainer"
            )
        if self.config.folds > 1 and self.config.batch_size is not None:
            raise ArchsearchError(
                "trainer.batch_size: the batched trainer cross-validates (folds) in full batches; "
                "leave the batch size out or use the serial trainer"
            )

    def evaluate(self, archs: Sequence[Architecture], seeds: Sequence[int]) -> Iterator[tuple[int, Result]]:
        groups = self.jobs(archs, seeds)
        costs = [self._group_cost([archs[i] for i in members]) for members in groups]
        workers = self._workers_for(costs)
        pool = self._pool(workers) if workers > 1 and not self.fused else None
        with torch_threads(1):  # one core per group: results never depend on the number of cores
            if workers > 1 and self.fused:
                yield from self._in_threads(groups, archs, seeds, workers)
            elif pool is None:
                for members in groups:
                    yield from self.train_group(members, archs, seeds)
            else:
                portable = [job_for(archs, seeds, members) for members in groups]
                yield from pool.run(portable, inline=lambda job: self.train_group(*job))

    def _in_threads(
        self, groups: list[list[int]], archs: Sequence[Architecture], seeds: Sequence[int], threads: int
    ) -> Iterator[tuple[int, Result]]:
        """Groups trained side by side on ``threads`` threads of this process, costliest first, each
        result yielded as it comes. The compiled epoch runs without Python's lock, so threads use the
        cores as worker processes would, without sending the children and their weights between
        processes. When the caller stops early, every group stops before its next epoch."""
        pending, results = deque(groups), queue.SimpleQueue()

        def work(workspace: Workspace) -> None:
            try:
                while not workspace.cancelled:
                    try:
                        members = pending.popleft()
                    except IndexError:
                        return
                    for item in self.train_group(members, archs, seeds, workspace):
                        results.put(item)
                    workspace.release()  # also when the group failed before it could
            finally:
                results.put(None)

        workspaces = [Workspace() for _ in range(threads)]
        running = [threading.Thread(target=work, args=(w,), name="archsearch-group", daemon=True) for w in workspaces]
        started: list[threading.Thread] = []
        try:
            for thread in running:
                thread.start()
                started.append(thread)
            finished = 0
            while finished < len(started):
                item = results.get()
                if item is None:
                    finished += 1
                else:
                    yield item
        finally:  # stopped early (an interrupt, an error while recording): the groups stop within an epoch
            pending.clear()
            for workspace in workspaces:
                workspace.cancel()
            for thread in started:
                thread.join()

    def jobs(self, archs: Sequence[Architecture], seeds: Sequence[int]) -> list[list[int]]:
        """The batch's groups (children trained together), costliest first."""
        if len(archs) != len(seeds):
            raise ValueError(f"evaluate: {len(archs)} architectures but {len(seeds)} seeds")
        for arch in archs:
            if not isinstance(arch, MLPArchitecture):
                raise ArchsearchError(f"trainer: the batched trainer trains MLPs only, got kind {arch.kind!r}")
        rows = len(self.task.y_train) + len(self.task.y_val)
        groups = []
        for start in range(0, len(archs), self.max_batch):
            chunk = range(start, min(start + self.max_batch, len(archs)))
            chosen = [archs[i] for i in chunk]
            if self.fused:
                planned = plan_fused_groups(chosen, self.task.in_features, self.task.out_features, rows)
            else:
                planned = plan_groups(chosen, self.task.in_features, self.task.out_features, rows, self.config.folds)
            groups += [[chunk[i] for i in members] for members in planned]
        costs = [self._group_cost([archs[i] for i in members]) for members in groups]
        return [groups[j] for j in sorted(range(len(groups)), key=lambda j: -costs[j])]

    def run_job(
        self, members: Sequence[int], archs: Sequence[Architecture] | dict, seeds: Sequence[int] | dict
    ) -> Iterator[tuple[int, Result]]:
        """One group, trained single-threaded (as everywhere, so results never depend on where)."""
        with torch_threads(1):
            yield from self.train_group(list(members), archs, seeds)

    @property
    def batch_dependent(self) -> bool:  # type: ignore[override]
        """The PyTorch epoch pads a group to its widest child, so a child's rounding depends on its
        batch-mates (a study re-runs an interrupted batch whole); the compiled epoch computes each
        child alone (a study trains only the children an interruption lost)."""
        return not self.fused

    @functools.cached_property
    def fused(self) -> bool:
        """Whether groups train with the compiled epoch (:mod:`archsearch.evaluation._native`): full
        batches on the CPU without folds, where a compiler is at hand; decided once, by the process
        that holds the trainer, and sent with it to the workers."""
        cfg = self.config
        full_batch = cfg.batch_size is None or cfg.batch_size >= len(self.task.y_train)
        if cfg.folds > 1 or not full_batch or torch.device(cfg.device).type != "cpu" or not _native.enabled():
            return False
        return _native.library() is not None

    def _group(self, members: list[tuple[int, MLPArchitecture, int]], workspace: Workspace | None) -> _Group:
        """A group for ``members``: with the compiled epoch when the process that planned the batch chose
        it and this process has it too (a worker process that cannot load it trains the PyTorch epoch)."""
        if self.fused and _native.library() is not None:
            from archsearch.evaluation._fused import FusedGroup  # it extends _Group, defined below

            return FusedGroup(self, members, workspace)
        return _Group(self, members)

    def _workers_for(self, costs: list[float]) -> int:
        """Worker processes (threads, for the compiled epoch) worth using for groups of these modelled
        epoch costs: ``config.threads`` when given, else the cores available once the batch's work pays
        for handing groups out."""
        if len(costs) < 2 or torch.device(self.config.device).type != "cpu":
            return 1
        if self.config.threads is not None:  # within what this machine takes; results never change
            return min(self.config.threads, max_workers(), len(costs))
        if sum(costs) * self.config.max_epochs < (_THREAD_WORK if self.fused else _POOL_WORK):
            return 1
        return min(available_cores(), len(costs))

    def _group_cost(self, group: list[MLPArchitecture]) -> float:
        """Modelled microseconds of one epoch of one group."""
        rows = len(self.task.y_train) + len(self.task.y_val)
        if self.fused:
            return _GROUP_COST + sum(_child_cost(a, self.task.in_features, self.task.out_features, rows) for a in group)
        widest = [max(a.widths[layer] for a in group) for layer in range(len(group[0].layers))]
        sizes = np.array([self.task.in_features, *widest, self.task.out_features], dtype=np.float64)
        return float(_cost(len(group) * self.config.folds, sizes, rows))

    def _pool(self, size: int) -> WorkerPool | None:
        """The worker processes, started on first use and kept until :meth:`close` (a study closes
        them when a run returns); None (train in this process) when they cannot be started."""
        if self._no_workers:
            return None
        if self._workers is None or self._workers.alive < min(size, self._workers.size):
            self.close()
            try:
                self._workers = WorkerPool(self, size)
            except (OSError, RuntimeError) as exc:
                warnings.warn(f"{exc}; training in this process only", stacklevel=3)
                self._no_workers = True
                return None
            self._finalizer = weakref.finalize(self, self._workers.close)
        return self._workers

    def __getstate__(self) -> dict[str, Any]:
        """Settings and task only: a copy sent to a worker process trains its groups in that process."""
        state = dict(self.__dict__)
        for name in ("_workers", "_no_workers", "_finalizer", "fold_tasks", "_fused_data"):
            state.pop(name, None)
        return state

    def close(self) -> None:
        """Stop the worker processes, if any were started."""
        if self._workers is not None:
            self._finalizer.detach()
            self._workers.close()
            self._workers = None

    def train_group(
        self,
        members: list[int],
        archs: Sequence[Architecture] | dict,
        seeds: Sequence[int] | dict,
        workspace: Workspace | None = None,
    ) -> Iterator[tuple[int, Result]]:
        """Train the children ``members`` (indices into ``archs`` and ``seeds``) as one group
        (``workspace``: scratch memory kept from the groups trained before it on this thread)."""
        done: set[int] = set()
        start = time.perf_counter()
        folds = self.config.folds
        try:
            group = self._group([(i, archs[i], seeds[i]) for i in members], workspace)
            if folds == 1:
                for index, result in group.train():
                    done.add(index)
                    yield index, result
                return
            trained: dict[int, dict[int, Result]] = {}
            for (index, fold), result in group.train():
                trained.setdefault(index, {})[fold] = result
                if len(trained[index]) == folds:
                    done.add(index)
                    results = [trained[index][f] for f in range(folds)]
                    yield index, combine(archs[index], self.fold_tasks, results, self.config)
        except Exception as exc:  # a broken batch is recorded trials, not a crashed search
            error = f"{type(exc).__name__}: {exc}"
            seconds = time.perf_counter() - start
            for index in members:
                if index not in done:
                    params = archs[index].num_params(self.task.in_features, self.task.out_features)
                    yield index, Result.failure("failed", error, params, seconds)


# A cost model of one training epoch, in microseconds of one CPU core, used to decide which children
# to train together. A group pays a fixed price per operation it launches (so fewer, larger groups
# are better) and every child pays for its group's padded layer sizes (so a group should hold
# children of similar widths). The per-group and per-layer prices were measured on a 2-core x86
# machine (groups of 12-row data, where arithmetic is negligible); the per-row prices were fitted
# the same way and then kept slightly high, which splits batches into a few more, tighter groups:
# that was faster on replayed seed-experiment batches, alone and on two worker processes.
# The constants are fixed, not measured at run time: grouping changes float rounding, and the same
# batch must always be grouped the same way.
_GROUP_COST = 75.0  # per group and epoch: loss, validation, Adam, bookkeeping
_LAYER_COST = 18.0  # per group, layer and epoch: a handful of launched operations
_MAC_COST = 6e-5  # per multiply-accumulate and row: forward plus two backward products
_ELEMENT_COST = 2e-3  # per activation element and row: the elementwise passes around them
MAX_GROUP = 8  # children per group at most, so that groups can run on several cores


# Modelled microseconds of a whole batch above which its groups are handed to worker processes:
# a few milliseconds of messages per batch, and a second or two to start the workers once.
_POOL_WORK = 50_000.0
_THREAD_WORK = 2_000.0  # the same for threads, which start in microseconds


def _cost(children: np.ndarray, sizes: np.ndarray, rows: int) -> np.ndarray:
    """Modelled epoch cost of groups of ``children`` children padded to ``sizes`` (..., layers + 1)."""
    macs = (sizes[..., :-1] * sizes[..., 1:]).sum(-1)
    elements = sizes[..., 1:].sum(-1)
    per_child = rows * (_MAC_COST * macs + _ELEMENT_COST * elements)
    return _GROUP_COST + _LAYER_COST * (sizes.shape[-1] - 1) + children * per_child


def _child_cost(arch: MLPArchitecture, in_features: int, out_features: int, rows: int) -> float:
    """Modelled epoch cost of one child computed at its own widths (the compiled epoch)."""
    sizes = np.array([in_features, *arch.widths, out_features], dtype=np.float64)
    return float(_cost(1, sizes, rows)) - _GROUP_COST - _LAYER_COST * len(arch.widths)


def plan_fused_groups(
    archs: Sequence[MLPArchitecture], in_features: int, out_features: int, rows: int
) -> list[list[int]]:
    """Groups for the compiled epoch, which computes each child at its own widths: padding costs
    nothing there and a child's numbers do not depend on its batch-mates, so grouping only trades
    the fixed price of a group (setting it up, about as much as a small child's few epochs) against
    how evenly the groups share out over the cores. A child of one depth joins the group before it
    until that group's modelled cost reaches a sixteenth of the batch's: large children train alone,
    small ones together."""
    costs = [_child_cost(a, in_features, out_features, rows) for a in archs]
    share = sum(costs) / 16
    by_depth: dict[int, list[int]] = {}
    for index, arch in enumerate(archs):
        by_depth.setdefault(len(arch.layers), []).append(index)
    groups: list[list[int]] = []
    for _, indices in sorted(by_depth.items()):
        cost = math.inf
        for index in sorted(indices, key=lambda i: -costs[i]):
            if cost >= share or len(groups[-1]) == MAX_GROUP:
                groups.append([])
                cost = 0.0
            groups[-1].append(index)
            cost += costs[index]
    return [sorted(group) for group in groups]


def plan_groups(
    archs: Sequence[MLPArchitecture], in_features: int, out_features: int, rows: int, folds: int = 1
) -> list[list[int]]:
    """Split a batch into groups that are trained together, to minimise the modelled cost (a child
    cross-validated on ``folds`` folds is that many members of its group).

    Children of equal width profile always share a group (no padding). Then, within each depth,
    the two groups whose merger saves the most modelled time are merged, as long as merging saves
    anything: greedy agglomeration, deterministic for a given batch.
    """
    profiles: dict[tuple[int, ...], list[int]] = {}
    for index, arch in enumerate(archs):
        profiles.setdefault(arch.widths, []).append(index)
    by_depth: dict[int, list[tuple[tuple[int, ...], list[int]]]] = {}
    for widths, indices in profiles.items():
        for start in range(0, len(indices), MAX_GROUP):
            by_depth.setdefault(len(widths), []).append((widths, indices[start : start + MAX_GROUP]))
    groups: list[list[int]] = []
    for depth in sorted(by_depth):
        members = [indices for _, indices in by_depth[depth]]
        sizes = np.array([(in_features, *w, out_features) for w, _ in by_depth[depth]], dtype=np.float64)
        counts = np.array([len(m) for m in members], dtype=np.float64)
        alive = np.ones(len(members), dtype=bool)
        cost = _cost(counts * folds, sizes, rows)
        merged_sizes = np.maximum(sizes[:, None, :], sizes[None, :, :])
        saving = cost[:, None] + cost[None, :] - _cost((counts[:, None] + counts[None, :]) * folds, merged_sizes, rows)
        np.fill_diagonal(saving, -np.inf)
        saving[counts[:, None] + counts[None, :] > MAX_GROUP] = -np.inf
        while len(members) > 1:
            i, j = np.unravel_index(np.argmax(saving), saving.shape)
            if saving[i, j] <= 0:
                break
            i, j = min(i, j), max(i, j)
            members[i] = members[i] + members[j]
            members[j] = []
            alive[j] = False
            sizes[i] = np.maximum(sizes[i], sizes[j])
            counts[i] += counts[j]
            cost[i] = _cost(counts[i] * folds, sizes[i], rows)
            saving[j, :] = saving[:, j] = -np.inf
            row = cost[i] + cost - _cost((counts[i] + counts) * folds, np.maximum(sizes[i], sizes), rows)
            row[~alive | (counts[i] + counts > MAX_GROUP)] = -np.inf
            row[i] = -np.inf
            saving[i, :] = saving[:, i] = row
        groups += [sorted(m) for m in members if m]
    return groups


class Workspace:
    """Scratch memory for the groups trained one after another on one thread, kept between groups.

    A fresh buffer of a few megabytes is new memory from the operating system, and its first touch
    costs a page fault per page; threads of one process take those faults one at a time, which
    costs the second core much of its work. A workspace hands out views of buffers it keeps.
    """

    def __init__(self) -> None:
        self._buffers: list[torch.Tensor] = []
        self._used = 0
        self.group: Any = None  # the group training with it now, if it can be stopped
        self.cancelled = False

    def cancel(self) -> None:
        """Stop the group training with this workspace before its next epoch, and any group after it."""
        self.cancelled = True
        group = self.group
        if group is not None:
            group.stop()

    def take(self, size: int) -> torch.Tensor:
        """An uninitialised float32 buffer of ``size`` elements, valid until :meth:`release`."""
        if self._used == len(self._buffers):
            self._buffers.append(torch.empty(0))
        buffer = self._buffers[self._used]
        if buffer.numel() < size:
            buffer = self._buffers[self._used] = torch.empty(size, dtype=torch.float32)
        self._used += 1
        return buffer[:size]

    def release(self) -> None:
        """Every buffer handed out is free again."""
        self._used = 0


@dataclass
class _Child:
    index: int
    arch: MLPArchitecture
    generator: torch.Generator
    params: int
    losses: list[float] = field(default_factory=list)
    vals: list[float] = field(default_factory=list)
    best: float = -math.inf  # best validation score so far (regression: R^2 before clipping)
    waited: int = 0  # epochs since it last improved
    key: Any = None  # what its results are yielded under: its index, or (index, fold) when cross-validated
    n_val: int = 0  # its validation rows (cross-validated: its fold's)
    sst: float = 0.0  # regression: the total sum of squares of its validation targets
    val_losses: list[float] = field(default_factory=list)  # when early stopping watches them
    slot: int = 0  # its row in the buffers the group started with


class _Group:
    """Children of one depth, stacked and padded, trained in lockstep until each stops."""

    def __init__(self, trainer: BatchedTrainer, members: list[tuple[int, MLPArchitecture, int]]) -> None:
        self.cfg = trainer.config
        self.task = task = trainer.task
        self.device = torch.device(self.cfg.device)
        self.start = time.perf_counter()
        members = sorted(members, key=lambda m: m[1].activations)  # equal activations in contiguous runs
        self.folds = folds = self.cfg.folds  # a cross-validated child is one member per fold, each from its seed
        self.children = [
            _Child(
                index,
                arch,
                torch.Generator().manual_seed(int(seed)),
                arch.num_params(task.in_features, task.out_features),
                key=index if folds == 1 else (index, fold),
            )
            for index, arch, seed in members
            for fold in range(folds)
        ]
        for slot, child in enumerate(self.children):
            child.slot = slot
        depth = len(members[0][1].layers)
        widest = [max(c.arch.widths[layer] for c in self.children) for layer in range(depth)]
        self.sizes = [task.in_features, *widest, task.out_features]
        self._workspace: dict[tuple, torch.Tensor] = {}
        self._init_parameters()

    @property
    def g(self) -> int:
        return len(self.children)

    @property
    def binary(self) -> bool:
        """Two classes: a prediction is one comparison, against boolean labels."""
        return self.task.out_features == 2 and not self.task.regression

    # -- parameters ------------------------------------------------------------------------------

    def _layout(self, g: int) -> list[tuple[int, int, int]]:
        """(weight start, bias start, bias end) per layer of a flat buffer holding ``g`` children.

        Each layer's weights are one contiguous (g, fan_out, fan_in) block followed by its biases,
        so every view is contiguous and matrix products can write gradients straight into it.
        """
        layout, offset = [], 0
        for fan_in, fan_out in zip(self.sizes, self.sizes[1:]):
            bias = offset + g * fan_out * fan_in
            layout.append((offset, bias, bias + g * fan_out))
            offset = bias + g * fan_out
        return layout

    def _views(self, flat: torch.Tensor, g: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return [
            (flat[start:bias].view(g, fan_out, fan_in), flat[bias:end].view(g, fan_out, 1))
            for (start, bias, end), fan_in, fan_out in zip(self._layout(g), self.sizes, self.sizes[1:])
        ]

    def _init_parameters(self) -> None:
        total = self._layout(self.g)[-1][2]
        flat = torch.zeros(total)
        views = self._views(flat, self.g)
        for row, child in enumerate(self.children):
            init = child.arch.init_params(self.task.in_features, self.task.out_features, child.generator)
            for (weight, bias), (w_view, b_view) in zip(init, views):
                w_view[row, : weight.shape[0], : weight.shape[1]] = weight
                b_view[row, : bias.shape[0], 0] = bias
        self.flat = flat.to(self.device)
        self.m = torch.zeros_like(self.flat)
        self.v = torch.zeros_like(self.flat)
        self.grad = torch.zeros_like(self.flat)
        self.denom = torch.zeros_like(self.flat)
        self.ring = torch.zeros(self.cfg.reward_window, total, device=self.device)
        # constants as 0-d tensors: a Python number costs a conversion on every operation it enters
        self._two = torch.tensor(2.0, device=self.device)
        self._minus_one = torch.tensor(-1.0, device=self.device)
        self._step = torch.zeros((), device=self.device)

    def _bind(self) -> None:
        """Views of parameters and workspace for the current children, built once per membership."""
        g, sizes, device = self.g, self.sizes, self.device
        self.params = self._views(self.flat, g)
        self.grads = self._views(self.grad, g)
        depth = len(sizes) - 2
        self.runs = [_runs([c.arch.activations[layer] for c in self.children]) for layer in range(depth)]
        self.is_tanh = [
            torch.tensor([float(c.arch.activations[layer] == "tanh") for c in self.children], device=device).view(
                -1, 1, 1
            )
            for layer in range(depth)
        ]
        self.passes = {tag: self._pass_buffers(tag, rows) for tag, rows in self.rows.items()}
        self._plans: dict[Any, list[tuple]] = {}
        # per child: loss, correct validation points (regression: squared error), checksum
        # (and, when early stopping watches it, the classification validation loss)
        self.stats = torch.empty(4 if self._classification_val_loss else 3, g, device=device)

    def _pass_buffers(self, tag: str, rows: int) -> dict[str, Any]:
        """Buffers of a pass over ``rows`` rows, each allocated on first use.

        Forward: "x" (input), "h" (outputs per layer), "tanh" (scratch per layer); backward:
        "up" and "relu-grad" per layer, "log-p" and "picked" for the loss. Every buffer has
        exactly its pass's shape: ``out=`` arguments must be contiguous.
        """
        sizes, depth = self.sizes, len(self.sizes) - 2
        makers = {
            "x": lambda: self._buffer(f"{tag}-x", sizes[0], rows),
            "h": lambda: [self._buffer(f"{tag}-h{l}", sizes[l + 1], rows) for l in range(depth + 1)],
            "tanh": lambda: [self._buffer(f"{tag}-tanh{l}", sizes[l + 1], rows) for l in range(depth)],
            "up": lambda: [None] + [self._buffer(f"{tag}-up{l}", sizes[l], rows) for l in range(1, depth + 1)],
            "relu-grad": lambda: (
                [None] + [self._buffer(f"{tag}-relu-grad{l}", sizes[l], rows) for l in range(1, depth + 1)]
            ),
            "log-p": lambda: self._buffer(f"{tag}-log-p", sizes[-1], rows),
            "picked": lambda: self._buffer(f"{tag}-picked", sizes[-1], rows),
        }
        return _Lazy(makers)

    def _buffer(self, name: str, *shape: int) -> torch.Tensor:
        """A (g, *shape) workspace tensor, allocated once for the group's first g and then sliced."""
        buffer = self._workspace.get(name)
        if buffer is None:
            buffer = self._workspace[name] = torch.empty(self.g, *shape, device=self.device)
        return buffer[: self.g]

    def _remove(self, keep: list[int]) -> None:
        """Keep only the children at rows ``keep``; the others have stopped and stop costing."""
        if not keep:
            self.children = []
            return
        old_g, index = self.g, torch.tensor(keep, dtype=torch.long, device=self.device)

        def compact(flat: torch.Tensor) -> torch.Tensor:
            parts = []
            for start, bias, end in self._layout(old_g):
                parts.append(flat[start:bias].view(old_g, -1).index_select(0, index).reshape(-1))
                parts.append(flat[bias:end].view(old_g, -1).index_select(0, index).reshape(-1))
            return torch.cat(parts)

        self.members = {name: t.index_select(0, index) for name, t in self.members.items()}
        self.flat, self.m, self.v = compact(self.flat), compact(self.m), compact(self.v)
        self.ring = torch.stack([compact(r) for r in self.ring])
        self.grad = torch.zeros_like(self.flat)
        self.denom = torch.zeros_like(self.flat)
        self.children = [self.children[i] for i in keep]
        self._bind()

    # -- maths -----------------------------------------------------------------------------------

    def _forward(self, tag: str) -> list[torch.Tensor]:
        """Activations of every layer for the pass ``tag`` (its input already in place); the last are logits."""
        plan = self._plans.get(tag) or self._plan_forward(tag)
        for bias, weight, h, z, activate in plan:
            torch.baddbmm(bias, weight, h, out=z)
            if activate is not None:
                activate()
        return self.passes[tag]["hs"]

    def _plan_forward(self, tag: str) -> list[tuple]:
        """The views and bound operations of a forward pass, made once per membership: building
        views costs microseconds each, as much as the arithmetic of a small layer."""
        buffers = self.passes[tag]
        hs = buffers["hs"] = [buffers["x"], *buffers["h"]]
        depth = len(self.params) - 1
        plan = []
        for layer, (weight, bias) in enumerate(self.params):
            z = buffers["h"][layer]
            activate = self._activation(z, layer, buffers["tanh"][layer]) if layer < depth else None
            plan.append((bias, weight, hs[layer], z, activate))
        self._plans[tag] = plan
        return plan

    def _activation(self, z: torch.Tensor, layer: int, scratch: torch.Tensor) -> Any:
        """relu or tanh per child, in place, as one callable. tanh(z) is computed as 2 sigmoid(2z) - 1
        (see the module docstring)."""
        two, minus_one = self._two, self._minus_one
        runs = self.runs[layer]
        if len(runs) > 2:  # many runs: both activations on every child, then pick per child (lerp by 0 or 1 is exact)
            is_tanh = self.is_tanh[layer]

            def mixed() -> None:
                torch.add(minus_one, torch.mul(z, two, out=scratch).sigmoid_(), alpha=2, out=scratch)
                torch.lerp(z.relu_(), scratch, is_tanh, out=z)

            return mixed
        relus, tanhs = self._blocks(layer, z)

        def by_runs() -> None:
            for (block,) in relus:
                block.relu_()
            for (block,) in tanhs:
                torch.add(minus_one, block.mul_(two).sigmoid_(), alpha=2, out=block)

        return by_runs

    def _blocks(self, layer: int, *tensors: torch.Tensor) -> tuple[list[tuple], list[tuple]]:
        """The rows of ``tensors`` of each run of equal activation at ``layer``, relu runs then tanh runs."""
        relus, tanhs = [], []
        for start, end, activation in self.runs[layer]:
            rows = tuple(t if end - start == len(t) else t[start:end] for t in tensors)
            (relus if activation == "relu" else tanhs).append(rows)
        return relus, tanhs

    def _backward(self, forward: str, tag: str, n: int) -> None:
        """Gradients of the summed per-child losses into ``self.grad``, from dL/dlogits that
        :meth:`_delta` left in pass ``tag``'s buffer.

        The backward pass reads the first ``n`` rows of the forward pass ``forward`` and writes into
        the buffers of pass ``tag``, which has exactly ``n`` rows.
        """
        key = (forward, tag)
        plan = self._plans.get(key) or self._plan_backward(forward, tag, n)
        delta = self.passes[tag]["log-p"]
        for g_weight, g_bias, h_in_t, weight_t, upstream, activation_backward in plan:
            torch.bmm(delta, h_in_t, out=g_weight)
            torch.sum(delta, dim=2, keepdim=True, out=g_bias)
            if upstream is None:
                break
            torch.bmm(weight_t, delta, out=upstream)
            activation_backward()
            delta = upstream

    def _plan_backward(self, forward: str, tag: str, n: int) -> list[tuple]:
        hs = self.passes[forward]["hs"]  # the forward pass ran, and was planned, first
        buffers = self.passes[tag]
        depth = len(self.params) - 1
        plan = []
        for layer in range(depth, -1, -1):
            g_weight, g_bias = self.grads[layer]
            h_in = hs[layer][..., :n]
            if layer == 0:
                plan.append((g_weight, g_bias, h_in.transpose(1, 2), None, None, None))
                break
            upstream = buffers["up"][layer]
            plan.append(
                (
                    g_weight,
                    g_bias,
                    h_in.transpose(1, 2),
                    self.params[layer][0].transpose(1, 2),
                    upstream,
                    self._activation_backward(upstream, h_in, layer - 1, buffers["relu-grad"][layer]),
                )
            )
        self._plans[(forward, tag)] = plan
        return plan

    def _activation_backward(self, upstream: torch.Tensor, out: torch.Tensor, layer: int, scratch: torch.Tensor) -> Any:
        """dL/dz from dL/dh in place: relu passes it where h > 0, tanh multiplies it by 1 - h^2."""
        runs = self.runs[layer]
        if len(runs) > 2:
            is_tanh = self.is_tanh[layer]

            def mixed() -> None:
                relu = aten.threshold_backward.grad_input(upstream, out, 0, grad_input=scratch)
                aten.tanh_backward.grad_input(upstream, out, grad_input=upstream)
                torch.lerp(relu, upstream, is_tanh, out=upstream)

            return mixed
        relus, tanhs = self._blocks(layer, upstream, out)

        def by_runs() -> None:
            for block, h in relus:
                aten.threshold_backward.grad_input(block, h, 0, grad_input=block)
            for block, h in tanhs:
                aten.tanh_backward.grad_input(block, h, grad_input=block)

        return by_runs

    def _adam(self, step: int) -> None:
        """torch.optim.Adam's update, on all children's parameters at once."""
        if _FUSED_ADAM:
            self._step.fill_(step)
            torch._fused_adam_(
                [self.flat], [self.grad], [self.m], [self.v], [], [self._step],
                lr=self.cfg.lr, beta1=_BETA1, beta2=_BETA2, weight_decay=self.cfg.weight_decay, eps=_EPS, amsgrad=False, maximize=False,
            )  # fmt: skip
            return
        if self.cfg.weight_decay:
            self.grad.add_(self.flat, alpha=self.cfg.weight_decay)
        self.m.lerp_(self.grad, 1 - _BETA1)
        self.v.mul_(_BETA2).addcmul_(self.grad, self.grad, value=1 - _BETA2)
        # sqrt is ~10x slower on exact zeros (padding, dead units) than on other values; lifting v by
        # 1e-30 avoids that and changes no result (the denominator is >= eps = 1e-8 anyway).
        torch.add(self.v, 1e-30, out=self.denom).sqrt_().div_((1 - _BETA2**step) ** 0.5).add_(_EPS)
        self.flat.addcdiv_(self.m, self.denom, value=-self.cfg.lr / (1 - _BETA1**step))

    def _losses(self, logits: torch.Tensor, target: torch.Tensor, out: torch.Tensor, tag: str) -> torch.Tensor:
        """Per-child mean loss into ``out``; leaves what :meth:`_delta` needs in pass ``tag``'s buffer.

        Classification: ``target`` is minus the one-hot targets over the rows (:func:`_scaled_targets`),
        so the mean cross-entropy is one product and one sum; the log-probabilities are left.
        Regression: ``target`` is the target row, the loss is the mean squared error and the
        errors are left.
        """
        if self.task.regression:
            error = torch.sub(logits, target, out=self.passes[tag]["log-p"])
            squares = torch.mul(error, error, out=self.passes[tag]["picked"])
            if "weights" in self.members and tag == "train":  # cross-validated: each member's own rows
                return torch.sum(squares.mul_(self.members["weights"]), dim=(1, 2), out=out)
            torch.sum(squares, dim=(1, 2), out=out)
            return out.div_(logits.shape[-1])
        log_p = aten._log_softmax.out(logits, 1, False, out=self.passes[tag]["log-p"])
        return torch.sum(torch.mul(log_p, target, out=self.passes[tag]["picked"]), dim=(1, 2), out=out)

    def _delta(self, target: torch.Tensor, tag: str) -> torch.Tensor:
        """dL/dlogits = (softmax - onehot) / n, from the log-probabilities the last ``_losses`` left
        (regression: 2 (output - target) / n, from the errors)."""
        buffer = self.passes[tag]["log-p"]
        n = target.shape[-1]
        weights = self.members.get("weights") if tag == "train" else None  # cross-validated: 1 / own rows
        if self.task.regression:
            return buffer.mul_(2 / n) if weights is None else buffer.mul_(weights).mul_(self._two)
        if weights is not None:
            return torch.addcmul(target, buffer.exp_(), weights, out=buffer)
        return torch.add(target, buffer.exp_(), alpha=1 / n, out=buffer)

    def _validation_stats(self, views: _LogitViews, y_val: torch.Tensor) -> None:
        """Correctly classified validation points (regression: the squared error) into ``stats[1]``, a
        finiteness checksum into ``stats[2]``. ``y_val`` is boolean for two classes."""
        val_logits = views.val
        held_out = self.members.get("held-out")  # cross-validated: each member validates on its fold only
        if held_out is not None:
            val_logits = torch.where(held_out, val_logits, 0.0)
        if self.task.regression:
            squares = torch.sub(views.val, y_val).square_()
            if held_out is not None:
                squares = torch.where(held_out, squares, 0.0)
            torch.sum(squares, dim=(1, 2), out=views.correct)
        else:
            if views.second is not None:  # argmax of two classes; a tie goes to class 0, as argmax does
                predicted = torch.gt(views.second, views.first)
            else:
                predicted = views.val.argmax(dim=1)
            hits = predicted == y_val
            if held_out is not None:
                hits = hits.logical_and_(held_out[:, 0])
            torch.sum(hits, dim=1, out=views.correct)
            if self._classification_val_loss:  # mean cross-entropy: log-probabilities times minus one-hot / rows
                target = self.members.get("val-target", self.shared_val_target)
                torch.sum(torch.log_softmax(views.val, dim=1).mul_(target), dim=(1, 2), out=self.stats[3])
        torch.sum(val_logits, dim=(1, 2), out=views.checksum)  # inf or nan in, inf or nan out

    def _logit_views(self, forward: str, n_train: int) -> _LogitViews:
        """Views of pass ``forward``'s logits and of ``stats``, made once per membership."""
        key = ("views", forward)
        views = self._plans.get(key)
        if views is None:
            logits = self.passes[forward]["hs"][-1]  # the pass has run (and was planned) first
            val = logits[..., self.val_offset :] if forward == "all" else logits
            two = self.binary
            views = self._plans[key] = _LogitViews(
                logits[..., :n_train], val, self.stats[0], self.stats[1], self.stats[2],
                val[:, 0] if two else None, val[:, 1] if two else None,
            )  # fmt: skip
        return views

    # -- training --------------------------------------------------------------------------------

    def train(self) -> Iterator[tuple[Any, Result]]:
        """Train until every member stops; yields ``(child.key, result)`` as each does."""
        cfg, task, device = self.cfg, self.task, self.device
        x_train, y_train = (t.to(device) for t in task.split("train"))
        x_val, y_val = (t.to(device) for t in task.split("val"))
        classes = torch.arange(task.out_features, device=device)[:, None]
        self.members: dict[str, torch.Tensor] = {}  # per-member tensors, kept in step with the members
        if self.folds > 1:
            x_train, y_train = x_val, y_val = tuple(t.to(device) for t in pooled(task))
            self._fold_members(y_train, classes)
        else:
            sst = total_sum_of_squares(y_val) if task.regression else 0.0
            for child in self.children:
                child.n_val, child.sst = len(y_val), sst
        n_train = len(y_train)
        minibatch = cfg.batch_size is not None and cfg.batch_size < n_train
        self.shared_target = _scaled_targets(y_train[None, :], classes, task.regression)
        if self._classification_val_loss:
            self.shared_val_target = _weighted_one_hot(y_val, classes, 1.0 / len(y_val))
        if self.binary:
            y_val = y_val.bool()  # compared with a boolean prediction: no type promotion per epoch
        # cross-validated, every member's pass covers the pooled rows: it trains on its own and validates on the others
        self.val_offset = 0 if self.folds > 1 else n_train
        all_x = x_train if self.folds > 1 else torch.cat([x_train, x_val])
        self.rows = {"all": len(all_x), "train": n_train, "val": len(y_val)}
        self._bind()
        self.passes["all"]["x"].copy_(all_x.T.expand_as(self.passes["all"]["x"]))
        self.passes["val"]["x"].copy_(x_val.T.expand_as(self.passes["val"]["x"]))

        for epoch in range(1, cfg.max_epochs + 2):
            # One forward pass reads the weights after epoch - 1: it validates epoch - 1 and, in
            # full-batch mode, gives this epoch's training loss. One read-back serves both.
            full_batch_step = not minibatch and epoch <= cfg.max_epochs
            views = None
            if full_batch_step:
                self._forward("all")
                views = self._logit_views("all", n_train)
                self._losses(views.train, self.target, views.loss, "train")
            elif epoch > 1:
                self._forward("val")
                views = self._logit_views("val", 0)
            if epoch > 1:
                self._validation_stats(views, y_val)
            stats = self.stats.tolist()
            if epoch > 1:
                keep = yield from self._validated(epoch - 1, stats)
                if keep is not None:
                    stats = [[row[i] for i in keep] for row in stats]
                    self._remove(keep)
                    if full_batch_step and self.children:  # the loss pass must follow the rows kept
                        self._forward("all")
                        views = self._logit_views("all", n_train)
                        self._losses(views.train, self.target, views.loss, "train")
            if epoch > cfg.max_epochs or not self.children:
                return
            if minibatch:
                losses = self._minibatch_epoch(x_train, y_train, classes, epoch).tolist()
            else:
                losses = stats[0]
                self._delta(self.target, "train")
                self._backward("all", "train", n_train)
                self._adam(epoch)
            keep = yield from self._losses_recorded(epoch, losses)
            if keep is not None:
                self._remove(keep)
            if not self.children:
                return

    def _fold_members(self, y: torch.Tensor, classes: torch.Tensor) -> None:
        """Per-member rows when cross-validated: ``held-out`` marks a member's fold among the pooled rows
        ``y``, ``weights`` is one over its training rows' count on the others (the loss is their mean),
        and for classification ``target`` is minus the one-hot targets times those weights."""
        device, regression = self.device, self.task.regression
        member_folds = torch.tensor([child.key[1] for child in self.children], device=device)
        held_out = fold_ids(self.task, self.folds).to(device)[None, :] == member_folds[:, None]
        counts = held_out.sum(1)
        weights = (~held_out).float().div_((len(y) - counts)[:, None].float())[:, None, :]
        self.members = {"held-out": held_out[:, None, :], "weights": weights}
        if not regression:
            self.members["target"] = _weighted_one_hot(y, classes, weights)
        if self._classification_val_loss:
            held = held_out[:, None, :].float().div_(counts[:, None, None].float())
            self.members["val-target"] = _weighted_one_hot(y, classes, held)
        for child, rows in zip(self.children, held_out):
            child.n_val = int(rows.sum())
            child.sst = total_sum_of_squares(y[rows]) if regression else 0.0

    @property
    def _classification_val_loss(self) -> bool:
        """Whether each epoch computes a classification validation loss (regression's is its squared error)."""
        return self.cfg.monitor == "loss" and not self.task.regression

    @property
    def target(self) -> torch.Tensor:
        """What :meth:`_losses` and :meth:`_delta` take for the full-batch training rows."""
        return self.members.get("target", self.shared_target)

    def _minibatch_epoch(self, x: torch.Tensor, y: torch.Tensor, classes: torch.Tensor, epoch: int) -> torch.Tensor:
        """One epoch of minibatch steps; every child shuffles with its own generator, as in the reference."""
        n, size = len(y), self.cfg.batch_size
        orders = torch.stack([torch.randperm(n, generator=c.generator) for c in self.children]).to(self.device)
        total = torch.zeros(self.g, device=self.device)
        losses = torch.empty(self.g, device=self.device)
        steps_per_epoch = -(-n // size)
        for k, start in enumerate(range(0, n, size)):
            rows = orders[:, start : start + size]  # (children, batch rows)
            b = rows.shape[1]
            tag = f"mini{b}"
            if tag not in self.passes:
                self.rows[tag] = b
                self.passes[tag] = self._pass_buffers(tag, b)
            self.passes[tag]["x"].copy_(x[rows].transpose(1, 2))
            hs = self._forward(tag)
            target = _scaled_targets(y[rows][:, None, :], classes, self.task.regression)
            self._losses(hs[-1], target, losses, tag)
            self._delta(target, tag)
            self._backward(tag, tag, b)
            self._adam((epoch - 1) * steps_per_epoch + k + 1)
            total += losses * b
        return total / n

    def _losses_recorded(self, epoch: int, losses: list[float]):  # noqa: ANN202 -- a generator with a return value
        """Append this epoch's training losses; a child whose loss is not finite has diverged.

        Yields the diverged children's results and returns the rows to keep, or None when all stay.
        """
        keep = []
        for row, (child, loss) in enumerate(zip(self.children, losses)):
            if math.isfinite(loss):
                child.losses.append(loss)
                keep.append(row)
            else:
                yield child.key, self._failure(child, f"training loss became {loss} at epoch {epoch}")
        return keep if len(keep) < self.g else None

    def _validated(self, epoch: int, stats: list[list[float]]):  # noqa: ANN202
        """Validation bookkeeping for ``epoch``: curve, kept weights, early stopping, divergence.

        ``stats`` are the rows of ``self.stats`` read back. Yields the results of children that stop and
        returns the rows to keep, or None when all stay.
        """
        cfg, correct, checksum = self.cfg, stats[1], stats[2]
        self.ring[(epoch - 1) % cfg.reward_window].copy_(self.flat)
        keep = []
        for row, child in enumerate(self.children):
            if not math.isfinite(checksum[row]):
                yield child.key, self._failure(child, f"validation outputs became non-finite at epoch {epoch}")
                continue
            if self.task.regression:
                score = r2_from_sse(correct[row], child.sst)
            else:
                score = int(correct[row]) / child.n_val
            child.vals.append(max(0.0, score))
            if cfg.monitor == "loss":  # the reference's mean loss: squared error, or cross-entropy from stats
                child.val_losses.append(correct[row] / child.n_val if self.task.regression else stats[3][row])
                score = -child.val_losses[-1]  # lower is better: improved() then reads it as a score
            if improved(score, child.best, self.task.regression and cfg.monitor == "score"):
                child.best, child.waited = score, 0
            else:
                child.waited += 1
            if child.waited >= cfg.patience or epoch == cfg.max_epochs:
                yield child.key, self._finish(child, row)
            else:
                keep.append(row)
        return keep if len(keep) < self.g else None

    def _finish(self, child: _Child, row: int) -> Result:
        reward, accuracy, kept_epoch = self.cfg.reward(child.vals)
        weights = self._weights(self.ring[(kept_epoch - 1) % self.cfg.reward_window], child, row)
        if not np.isfinite(np.concatenate([w.numpy().ravel() for w in weights.values()])).all():
            # finite outputs from weights that are not a network (the study does not check weights that
            # come with their validation loss)
            return self._failure(child, f"the kept weights of epoch {kept_epoch} are not finite")
        return Result(
            reward=reward,
            val_score=accuracy,
            val_curve=child.vals,
            train_loss=child.losses,
            params=child.params,
            seconds=time.perf_counter() - self.start,
            kept_epoch=kept_epoch,
            val_loss=child.val_losses[kept_epoch - 1] if child.val_losses else None,
            weights=weights,
        )

    def _weights(self, flat: torch.Tensor, child: _Child, row: int) -> dict[str, torch.Tensor]:
        """``child``'s weights (at ``row`` of the current children) in a flat buffer, unpadded, by the
        names of the reference trainer's ``nn.Sequential``."""
        sizes = (self.task.in_features, *child.arch.widths, self.task.out_features)
        weights = {}
        for layer, (weight, bias) in enumerate(self._views(flat, self.g)):
            fan_in, fan_out = sizes[layer], sizes[layer + 1]
            weights[f"{2 * layer}.weight"] = weight[row, :fan_out, :fan_in].cpu().clone()
            weights[f"{2 * layer}.bias"] = bias[row, :fan_out, 0].cpu().clone()
        return weights

    def _failure(self, child: _Child, error: str) -> Result:
        seconds = time.perf_counter() - self.start
        return Result.failure("diverged", error, child.params, seconds, val_curve=child.vals, train_loss=child.losses)


@dataclass
class _LogitViews:
    """Views used every epoch: logits of the training and validation rows, the rows of ``stats``
    they fill, and for two classes each class's validation logits."""

    train: torch.Tensor
    val: torch.Tensor
    loss: torch.Tensor
    correct: torch.Tensor
    checksum: torch.Tensor
    first: torch.Tensor | None
    second: torch.Tensor | None


def _scaled_targets(y: torch.Tensor, classes: torch.Tensor, regression: bool) -> torch.Tensor:
    """What the loss multiplies the log-probabilities by: minus the one-hot targets over the number of
    rows (y: (..., 1, rows) class indices; classes: (classes, 1)). For regression, y as a float row."""
    if regression:
        return y
    return (y == classes).float().mul_(-1.0 / y.shape[-1])


def _weighted_one_hot(y: torch.Tensor, classes: torch.Tensor, weights: torch.Tensor | float) -> torch.Tensor:
    """Minus the one-hot targets of class indices ``y`` (rows) times ``weights`` per row (a number, or
    (members, 1, rows)): what log-probabilities are multiplied by for a weighted mean cross-entropy."""
    return (y[None, None, :] == classes).float().mul(weights).neg_()


class _Lazy(dict):
    """A dict whose entries are made by ``makers[key]()`` when first looked up."""

    def __init__(self, makers: dict[str, Any]) -> None:
        super().__init__()
        self._makers = makers

    def __missing__(self, key: str) -> Any:
        value = self[key] = self._makers[key]()
        return value


def _runs(activations: list[str]) -> list[tuple[int, int, str]]:
    """Maximal runs of equal activation: [(start, end, activation), ...]."""
    runs: list[tuple[int, int, str]] = []
    for row, activation in enumerate(activations):
        if runs and runs[-1][2] == activation:
            runs[-1] = (runs[-1][0], row + 1, activation)
        else:
            runs.append((row, row + 1, activation))
    return runs

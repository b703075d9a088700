"""Training that continues from earlier weights: the children of population strategies (MIHA, PBT).

A :class:`Continued` job carries the architecture to train, the weights it starts from (``None``:
the fresh weights its seed gives), the optimizer state it resumes (``None``: a new optimizer, as when
the optimizer changed) and the exact number of epochs. There is no early stopping: the schedule says
how long each piece of training lasts, and the child keeps its *last* weights, which are what the
next piece continues from. Its reward is the validation score of that last epoch raised to the
trainer's ``reward_power``; its result carries the optimizer's state for the next piece.

An optimizer's state is kept as a flat dict of tensors (``"<param index>.<name>"``), so that it is
saved with safetensors beside the weights and never unpickled.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import torch

from archsearch.evaluation._result import Result
from archsearch.evaluation._scoring import validation_score
from archsearch.space import Architecture


@dataclass(frozen=True)
class Continued:
    """``architecture`` trained for ``epochs`` epochs from ``weights`` and ``optimizer_state``."""

    architecture: Architecture
    epochs: int
    weights: dict[str, torch.Tensor] | None = field(default=None, repr=False)
    optimizer_state: dict[str, torch.Tensor] | None = field(default=None, repr=False)

    @property
    def hash(self) -> str:
        return self.architecture.hash

    def __str__(self) -> str:
        return f"{self.architecture} (+{self.epochs} epochs)"


def flat_state(optimizer: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    """The optimizer's per-parameter state as ``{"<index>.<name>": tensor}`` (numbers become 0-d tensors)."""
    flat = {}
    for index, values in optimizer.state_dict()["state"].items():
        for name, value in values.items():
            if value is None:
                continue
            tensor = value if isinstance(value, torch.Tensor) else torch.tensor(value)
            flat[f"{index}.{name}"] = tensor.detach().to("cpu", copy=True).contiguous()
    return flat


def load_flat_state(optimizer: torch.optim.Optimizer, flat: dict[str, torch.Tensor]) -> None:
    """Resume ``optimizer`` from :func:`flat_state`'s output; ``ValueError`` when it does not fit."""
    groups = optimizer.state_dict()["param_groups"]
    count = sum(len(g["params"]) for g in groups)
    state: dict[int, dict[str, Any]] = {}
    for key, tensor in flat.items():
        index, _, name = key.partition(".")
        if not index.isdigit() or not name or int(index) >= count:
            raise ValueError(f"optimizer state key {key!r} does not name a parameter")
        state.setdefault(int(index), {})[name] = tensor
    params = [p for group in optimizer.param_groups for p in group["params"]]
    for index, values in state.items():
        for name, tensor in values.items():
            if tensor.dim() and tensor.shape != params[index].shape:
                raise ValueError(f"optimizer state {index}.{name} has shape {tuple(tensor.shape)}, the parameter "
                                 f"{tuple(params[index].shape)}")  # fmt: skip
    optimizer.load_state_dict({"state": state, "param_groups": groups})


def state_mismatch(optimizer: torch.optim.Optimizer, flat: dict[str, torch.Tensor]) -> str | None:
    """Why ``flat`` is not a state of ``optimizer`` (whose parameters it takes one zero step on, to learn the
    names, shapes and types its state has), or ``None`` when it is one with finite values."""
    for group in optimizer.param_groups:
        for param in group["params"]:
            param.grad = torch.zeros_like(param)
    optimizer.step()
    expected = {key: (tuple(t.shape), t.dtype) for key, t in flat_state(optimizer).items()}
    given = {key: (tuple(t.shape), t.dtype) for key, t in flat.items()}
    if set(given) != set(expected):
        odd = sorted(set(given) ^ set(expected))[0]
        return f"{'unexpected' if odd in given else 'no'} entry {odd!r:.40}"
    for key, layout in given.items():
        if layout != expected[key]:
            return f"{key} is {layout[1]} of shape {layout[0]}, expected {expected[key][1]} of shape {expected[key][0]}"
        if flat[key].is_floating_point() and not torch.isfinite(flat[key]).all():
            return f"{key} holds values that are not finite"
    return None


def train_continued(trainer: Any, job: Continued, seed: int) -> Result:
    """Train ``job`` with ``trainer``'s task and config (a serial trainer's); see the module docstring."""
    from archsearch.evaluation._serial import _finite_copy, _seed_dropout, epoch_and_validation

    cfg, task, arch = trainer.config, trainer.task, job.architecture
    start = time.perf_counter()
    params = arch.num_params(task.in_features, task.out_features)
    losses: list[float] = []
    vals: list[float] = []

    def failure(status, error):  # noqa: ANN001, ANN202
        return Result.failure(status, error, params, time.perf_counter() - start, val_curve=vals, train_loss=losses)

    try:
        with torch.random.fork_rng(devices=[]):
            _seed_dropout(seed, "cpu")
            generator = torch.Generator().manual_seed(int(seed))
            model = arch.build(task.in_features, task.out_features, generator=generator)
            if job.weights is not None:
                model.load_state_dict(job.weights)
            optimizer = arch.optimizer(model.parameters(), cfg.lr, cfg.weight_decay, int(seed))
            if job.optimizer_state is not None:
                load_flat_state(optimizer, job.optimizer_state)
            x, y = task.split("train")
            x_val, y_val = task.split("val")
            batch_size = arch.batch_size(cfg.batch_size)
            for epoch in range(job.epochs):
                trained = epoch_and_validation(model, optimizer, (x, y, x_val), batch_size, generator,
                                               task.regression, epoch)  # fmt: skip
                if isinstance(trained, str):
                    return failure("diverged", trained)
                losses.append(trained[0])
                vals.append(max(0.0, validation_score(trained[1], y_val, task.regression)))
            weights = _finite_copy(model)
            if weights is None:
                return failure("diverged", f"weights became non-finite by epoch {job.epochs}")
            state = flat_state(optimizer)
    except Exception as exc:  # a broken child is a recorded trial, not a crashed search
        return failure("failed", f"{type(exc).__name__}: {exc}")
    return Result(reward=vals[-1] ** cfg.reward_power, val_score=vals[-1], val_curve=vals, train_loss=losses,
                  params=params, seconds=time.perf_counter() - start, kept_epoch=job.epochs, weights=weights,
                  optimizer_state=state)  # fmt: skip

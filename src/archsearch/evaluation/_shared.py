"""The shared-weights evaluator: ENAS's one supernet instead of a network per child.

Pham et al. (2018) make a search affordable by training one network that holds the weights of every
choice at every layer position (:mod:`archsearch.evaluation._supernet`); a child is a path through it
and is scored with the weights it shares, without training of its own. A weight-sharing study
alternates, as in their section 2:

(a) :meth:`SharedWeightsEvaluator.train_pass`: one pass over the training split, each minibatch
    through an architecture the strategy samples (:meth:`Strategy.sample`), Adam on the path's weights;
    (the first ``warmup`` passes through architectures drawn uniformly from the space instead, so that
    every depth and operation has trained before the strategy's samples take over);
(b) ``controller_steps`` strategy steps, each child's reward its accuracy with the shared weights on
    ``reward_rows`` validation rows that its seed draws (:meth:`evaluate`).

When the budget is spent the study samples ``derive`` architectures, scores each on the whole
validation split (:meth:`score`), and retrains the best ``retrain`` of them from scratch with the
reference trainer (:meth:`train_final`): those are the study's final trials, and its pick.

A proxy score normalizes with each batch's own statistics (batch normalization in training mode,
running statistics left as they are) and without dropout: a shared operation's running statistics mix
the many paths that trained it, and would score a child by others' inputs.

The supernet, its optimizer and the generator of the minibatch order are the evaluator's state
(:meth:`state_dict`), which the study commits with the strategy's after every step: a search killed
at any point resumes to the same study.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from archsearch import _limits as limits
from archsearch.errors import ArchsearchError
from archsearch.evaluation._base import Trainer, torch_threads
from archsearch.evaluation._config import TrainConfig
from archsearch.evaluation._result import Refit, Result
from archsearch.evaluation._scoring import EVAL_ROWS, training_loss, validation_score
from archsearch.evaluation._supernet import SHARINGS, Supernet, build_supernet
from archsearch.space import Architecture, SearchSpace
from archsearch.tasks import Task

#: settings of the weight-sharing schedule, and their defaults
SCHEDULE = {"sharing": "slice", "controller_steps": 5, "derive": 100, "retrain": 1, "reward_rows": 256, "warmup": 0}


class SharedWeightsEvaluator(Trainer):
    """Scores children with one supernet's shared weights; retrains final picks with ``reference``.

    ``config`` trains the supernet (its ``batch_size``, ``lr``, ``weight_decay``, ``threads``,
    ``device``; ``reward_power`` shapes the proxy reward); ``reference`` is the trainer whose
    settings retrain the final picks from scratch (the serial trainer, the reference of the house).
    ``seed`` draws the supernet's initial weights and its first minibatch order.
    """

    name = "shared"
    #: the study runs a weight-sharing search's phases for this evaluator (see the module docstring)
    shares_weights: ClassVar[bool] = True

    def __init__(
        self,
        task: Task,
        space: SearchSpace,
        config: TrainConfig | None = None,
        reference: Trainer | None = None,
        *,
        seed: int = 0,
        sharing: str = SCHEDULE["sharing"],
        controller_steps: int = SCHEDULE["controller_steps"],
        derive: int = SCHEDULE["derive"],
        retrain: int = SCHEDULE["retrain"],
        reward_rows: int = SCHEDULE["reward_rows"],
        warmup: int = SCHEDULE["warmup"],
    ) -> None:
        super().__init__(task, config or TrainConfig(batch_size=64))
        from archsearch.evaluation._serial import SerialTrainer  # the reference trainer, a Trainer itself

        self.space = space
        self.reference = reference or SerialTrainer(task)
        self.seed = limits.seed("trainer.seed", seed)
        if sharing not in SHARINGS:
            raise ArchsearchError(f"trainer.sharing: must be one of {', '.join(SHARINGS)}, got {sharing!r}")
        self.sharing = sharing
        self.controller_steps, self.derive, self.retrain, self.warmup = checked_schedule(
            controller_steps, derive, retrain, warmup
        )
        self.reward_rows = limits.integer("trainer.reward_rows", reward_rows, 1, limits.MAX_BATCH_SIZE)
        if self.config.batch_size is None:
            raise ArchsearchError("trainer.batch_size: weight sharing trains on minibatches; give a batch size")
        if len(task.y_val) == 0:
            raise ArchsearchError("task: weight sharing scores children on the validation split, which is empty")
        generator = torch.Generator().manual_seed(self.seed)
        self.supernet: Supernet = build_supernet(space, task.in_features, task.out_features, sharing, generator)
        self.images = task.x_train.dim() == 4
        self.supernet.to(self.config.device)
        if self.images:  # convolutions run faster in channels-last layout on CPU, as the serial trainer's do
            self.supernet.to(memory_format=torch.channels_last)
        self.optimizer = torch.optim.Adam(
            self.supernet.parameters(), lr=self.config.lr, weight_decay=self.config.weight_decay
        )
        self.generator = torch.Generator().manual_seed(self.seed)
        self.passes = 0

    # -- (a) training the shared weights ------------------------------------------------------------

    @property
    def batches_per_pass(self) -> int:
        """Minibatches in one pass over the training split: how many architectures a pass samples."""
        return max(1, math.ceil(len(self.task.y_train) / self.config.batch_size))

    def train_pass(self, archs: Sequence[Architecture]) -> dict[str, float]:
        """One pass over the training split, minibatch ``b`` through ``archs[b]``; returns the mean loss."""
        if len(archs) != self.batches_per_pass:
            raise ValueError(f"train_pass: needs {self.batches_per_pass} architectures, got {len(archs)}")
        x, y = self.task.split("train")
        order = torch.randperm(len(y), generator=self.generator)
        derived = int(np.random.SeedSequence([self.seed, self.passes, 2]).generate_state(1)[0])
        total, seen = 0.0, 0
        with torch_threads(self.config.threads or 1), torch.random.fork_rng(devices=[]):
            torch.manual_seed(derived)  # dropout's masks: a pure function of the seed and the pass
            self.supernet.train()
            for arch, rows in zip(archs, order.split(self.config.batch_size), strict=True):
                xb, yb = self._input(x[rows]), y[rows].to(self.config.device)
                loss = training_loss(self.supernet(xb, arch), yb, self.task.regression)
                if not torch.isfinite(loss):
                    raise ArchsearchError(
                        f"trainer: the shared weights diverged (loss {loss.item()} on {arch}); lower trainer.lr"
                    )
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer.step()
                total += loss.item() * len(yb)
                seen += len(yb)
        self.passes += 1
        return {"shared_loss": total / seen}

    # -- (b) scoring with the shared weights --------------------------------------------------------

    def evaluate(self, archs: Sequence[Architecture], seeds: Sequence[int]) -> Iterator[tuple[int, Result]]:
        """Each child's proxy reward: its score with the shared weights on ``reward_rows`` validation
        rows drawn with its seed."""
        x, y = self.task.split("val")
        for index, (arch, seed) in enumerate(zip(archs, seeds, strict=True)):
            generator = torch.Generator().manual_seed(int(seed))
            rows = torch.randperm(len(y), generator=generator)[: self.reward_rows]
            yield index, self._proxy(arch, x[rows], y[rows])

    def score(self, arch: Architecture) -> Result:
        """A derived architecture's proxy score on the whole validation split."""
        return self._proxy(arch, *self.task.split("val"))

    def _proxy(self, arch: Architecture, x: torch.Tensor, y: torch.Tensor) -> Result:
        start = time.perf_counter()
        params = arch.num_params(self.task.in_features, self.task.out_features)
        try:
            with torch_threads(self.config.threads or 1), self._scoring():
                outputs = torch.cat(
                    [self.supernet(self._input(chunk), arch).cpu() for chunk in x.split(EVAL_ROWS)]
                )
        except Exception as exc:  # noqa: BLE001 -- a path that cannot run is a recorded failure
            return Result.failure("failed", f"{type(exc).__name__}: {exc}", params, time.perf_counter() - start)
        if not torch.isfinite(outputs).all():
            return Result.failure("diverged", "the shared weights give non-finite outputs", params)
        score = max(0.0, validation_score(outputs, y, self.task.regression))
        return Result(
            reward=score**self.config.reward_power,
            val_score=score,
            params=params,
            seconds=time.perf_counter() - start,
            val_loss=float(training_loss(outputs, y, self.task.regression)),
        )

    def _input(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.config.device)
        return x.contiguous(memory_format=torch.channels_last) if self.images else x

    @contextmanager
    def _scoring(self) -> Iterator[None]:
        """No gradients, no dropout, batch normalization by the batch's own statistics with the running
        ones untouched (see the module docstring)."""
        norms = [m for m in self.supernet.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        kept = [(m.momentum, None if m.num_batches_tracked is None else m.num_batches_tracked.clone()) for m in norms]
        self.supernet.eval()
        for m in norms:
            m.train()
            m.momentum = 0.0
        try:
            with torch.no_grad():
                yield
        finally:
            for m, (momentum, tracked) in zip(norms, kept):
                m.momentum = momentum
                if tracked is not None:
                    m.num_batches_tracked.copy_(tracked)
            self.supernet.train()

    # -- final picks --------------------------------------------------------------------------------

    def train_final(self, arch: Architecture, seed: int) -> Result:
        """``arch`` trained from scratch by the reference trainer: a final trial."""
        ((_, result),) = self.reference.evaluate([arch], [seed])
        return result

    def refit(self, arch: Architecture, seed: int, epochs: int) -> Refit:
        return self.reference.refit(arch, seed, epochs)

    # -- state --------------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """The supernet's weights, its optimizer's state, the minibatch order's generator and the passes
        done: what a resumed study needs to continue exactly."""
        return {
            "supernet": self.supernet.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "generator": self.generator.get_state(),
            "passes": self.passes,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """A state from :meth:`state_dict`; one that does not fit this supernet raises ``ValueError``."""
        self.passes = restore_supernet(self.supernet, self.optimizer, self.config, state)
        self.generator.set_state(state["generator"])

    def to_config(self) -> dict[str, Any]:
        return {
            **super().to_config(),
            "seed": self.seed,
            "sharing": self.sharing,
            "controller_steps": self.controller_steps,
            "derive": self.derive,
            "retrain": self.retrain,
            "reward_rows": self.reward_rows,
            **({"warmup": self.warmup} if self.warmup else {}),
            "reference": self.reference.to_config(),
        }


def checked_schedule(controller_steps: int, derive: int, retrain: int, warmup: int) -> tuple[int, int, int, int]:
    """The phases' schedule that every shared-weights evaluator takes, each setting checked against its bounds
    (``retrain`` at most ``derive``)."""
    controller_steps = limits.integer("trainer.controller_steps", controller_steps, 1, limits.MAX_COUNT)
    derive = limits.integer("trainer.derive", derive, 1, limits.MAX_COUNT)
    retrain = limits.integer("trainer.retrain", retrain, 1, derive)
    return controller_steps, derive, retrain, limits.integer("trainer.warmup", warmup, 0, limits.MAX_COUNT)


def restore_supernet(
    supernet: nn.Module, optimizer: torch.optim.Optimizer, config: TrainConfig, state: dict[str, Any]
) -> int:
    """Load a committed state (checked first, see :func:`check_supernet_state`) into ``supernet`` and its Adam
    ``optimizer``, with the study's learning rate and weight decay whatever the state says; returns the passes
    it had done."""
    check_supernet_state(supernet, state)
    supernet.load_state_dict(state["supernet"])
    optimizer.load_state_dict(state["optimizer"])
    for group in optimizer.param_groups:
        group.update(lr=config.lr, weight_decay=config.weight_decay)
    return state["passes"]


def check_supernet_state(supernet: nn.Module, state: dict[str, Any]) -> None:
    """A supernet's committed state from a study file (untrusted): a pass count, weights of the supernet's
    names, shapes and types, all finite, and Adam's moments for its parameters; ``ValueError`` otherwise."""
    passes = state["passes"]
    if type(passes) is not int or passes < 0:
        raise ValueError(f"'passes' is {passes!r:.40}, not a count")
    own = supernet.state_dict()
    weights = state["supernet"]
    if not isinstance(weights, dict) or weights.keys() != own.keys():
        raise ValueError("the supernet's weights do not fit this study's space")
    for name, tensor in own.items():
        given = weights[name]
        if not isinstance(given, torch.Tensor) or given.shape != tensor.shape or given.dtype != tensor.dtype:
            raise ValueError(f"the supernet's {name!r} does not fit this study's space")
        if given.is_floating_point() and not bool(torch.isfinite(given).all()):
            raise ValueError(f"the supernet's {name!r} holds values that are not finite")
    _check_moments(state["optimizer"], list(supernet.parameters()))


def _check_moments(optimizer: Any, tensors: list[torch.Tensor]) -> None:
    """An Adam state from a study file that fits the supernet: per parameter, finite moments of its
    shape and a step count; anything else raises ``ValueError``."""
    if not isinstance(optimizer, dict) or not isinstance(optimizer.get("state"), dict):
        raise ValueError("the optimizer's state is not Adam's")
    groups = optimizer.get("param_groups")
    if not isinstance(groups, list) or len(groups) != 1 or groups[0].get("params") != list(range(len(tensors))):
        raise ValueError("the optimizer's parameters do not fit this study's supernet")
    for index, moments in optimizer["state"].items():
        if type(index) is not int or not 0 <= index < len(tensors) or not isinstance(moments, dict):
            raise ValueError(f"the optimizer's state names parameter {index!r:.40}, which the supernet lacks")
        for key in ("exp_avg", "exp_avg_sq"):
            moment = moments.get(key)
            if not isinstance(moment, torch.Tensor) or moment.shape != tensors[index].shape:
                raise ValueError(f"the optimizer's {key} of parameter {index} does not fit the supernet")
            if not bool(torch.isfinite(moment).all()):
                raise ValueError(f"the optimizer's {key} of parameter {index} holds values that are not finite")
        if not isinstance(moments.get("step"), torch.Tensor | int | float):
            raise ValueError(f"the optimizer's step count of parameter {index} is missing")

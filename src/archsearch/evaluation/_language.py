"""Language models: the reference trainer of recurrent cells, and their shared-weights evaluator.

A child is a cell architecture (:mod:`archsearch.space._cells`) inside a word-level language model.
Its training split is laid out as ``batch_size`` parallel columns of the word stream and read in
windows of ``bptt`` words; the state after a window is carried, detached, into the next (truncated
backpropagation through time), and the gradient's norm is clipped to ``clip``. Adam trains with the
config's ``lr`` and ``weight_decay``.

Scores: the validation split is read the same way with the state carried across all of it, and the
mean cross-entropy per word ``L`` (nats) gives the perplexity ``exp(L)``. A trial's ``val_loss`` is
``L``, its ``val_score`` and ``test_score`` are ``-L`` (the mean log-likelihood per word: higher is
better, as for every other score of the house; ``perplexity = exp(-score)``), and its reward is
``REWARD_SCALE / perplexity``: Pham et al.'s (2018) form, in (0, 1] for every model better than
guessing among 80 words, and a reward that halves when the perplexity doubles (Zoph & Le's
``80 / perplexity ** 2`` quarters it, which flattens the differences a search must tell apart
among good cells).

:class:`SharedCellEvaluator` is ENAS's loop for cells (Pham et al. 2018, section 2.2): one supernet
holds every choice's weights (the tree space's cells all share one set; the DAG space has a matrix per
edge); a pass trains it over the training split, each window through an architecture the strategy
samples; a child's proxy reward is its perplexity with the shared weights on ``reward_words``
validation words from a position its seed draws. The study runs the phases as for MLPs and CNNs
(:mod:`archsearch.study._phases`): search, derivation on the whole validation split, retraining from
scratch by :class:`LanguageTrainer`.
"""

from __future__ import annotations

import ctypes
import functools
import math
import time
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from archsearch import _limits as limits
from archsearch.errors import ArchsearchError
from archsearch.evaluation._base import Trainer, torch_threads
from archsearch.evaluation._config import TrainConfig
from archsearch.evaluation._result import Result
from archsearch.evaluation._scoring import load_model
from archsearch.evaluation._shared import checked_schedule, restore_supernet
from archsearch.space import Architecture, SearchSpace
from archsearch.space._cells import CellArchitecture, CellLanguageModel, DagCellSpace, State, TreeCellSpace
from archsearch.tasks import Task

REWARD_SCALE = 80.0
#: the language-model settings beside ``TrainConfig``, and their defaults (Zaremba et al. 2014's window)
LANGUAGE_SETTINGS = {"bptt": 35, "clip": 0.25}
#: how a language model trains unless its config says otherwise: Adam on 32 columns, two passes over the
#: training split, the better one kept
LANGUAGE_TRAINING = {"max_epochs": 2, "patience": 2, "lr": 0.002, "batch_size": 32}
#: words scored at once when a split is evaluated: its columns
EVAL_COLUMNS = 10


def layout(x: torch.Tensor, y: torch.Tensor, columns: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A stream as ``columns`` parallel columns (time, columns), the last words that do not fill a row
    dropped."""
    rows = len(x) // columns
    if rows < 1:
        raise ArchsearchError(f"trainer.batch_size: {columns} columns need {columns} words, the split has {len(x)}")
    return (t[: rows * columns].view(columns, rows).t().contiguous() for t in (x, y))  # type: ignore[return-value]


def windows(rows: int, bptt: int) -> list[slice]:
    """The windows of ``bptt`` rows that one pass reads, the last one shorter."""
    return [slice(start, min(start + bptt, rows)) for start in range(0, rows, bptt)]


def detach(state: State) -> State:
    return tuple(s.detach() for s in state)


def mean_loss(
    model: CellLanguageModel, x: torch.Tensor, y: torch.Tensor, bptt: int, arch: CellArchitecture | None = None,
) -> float:
    """Mean cross-entropy per word (nats) of ``model`` (through ``arch`` for a supernet) over a laid-out
    split, the state carried from window to window."""
    was_training = model.training
    model.eval()
    total, state = 0.0, model.initial_state(x.shape[1], arch)
    with torch.no_grad():
        for window in windows(x.shape[0], bptt):
            logits, state = model(x[window], state, arch)
            total += float(nn.functional.cross_entropy(logits.flatten(0, 1), y[window].flatten(), reduction="sum"))
    model.train(was_training)
    return total / y.numel()


def train_pass(
    model: CellLanguageModel,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    bptt: int,
    clip: float,
    archs: Sequence[CellArchitecture | None],
    skip_nonfinite: bool = False,
) -> tuple[float, int]:
    """One pass over a laid-out split, window ``w`` through ``archs[w]``; returns the mean training loss
    and the windows skipped. A window whose loss is not finite raises ``FloatingPointError``; with
    ``skip_nonfinite`` (a supernet, through which some sampled cells blow up) it is skipped instead: no
    update, and the next window starts from a fresh state. Skipping every window raises too."""
    model.train()
    total, words, state, skipped = 0.0, 0, None, 0
    for window, arch in zip(windows(x.shape[0], bptt), archs, strict=True):
        if state is None or (arch is not None and len(state) != arch.state_size()):
            state = model.initial_state(x.shape[1], arch)
        logits, state = model(x[window], state, arch)
        state = detach(state)
        loss = nn.functional.cross_entropy(logits.flatten(0, 1), y[window].flatten())
        if not torch.isfinite(loss):
            if not skip_nonfinite:
                raise FloatingPointError(f"the training loss became {loss.item()}")
            skipped, state = skipped + 1, None
            continue
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), clip)
        optimizer.step()
        total += loss.item() * y[window].numel()
        words += y[window].numel()
    if not words:
        raise FloatingPointError(f"the training loss was not finite in any of the {skipped} windows")
    return total / words, skipped


@functools.cache
def keep_freed_memory() -> None:
    """Let glibc keep large freed blocks for reuse instead of returning them to the system.

    A language model's logits and their gradient are tens of megabytes per window (words x vocabulary);
    glibc serves blocks that large with a fresh mapping each time, and the kernel zero-fills every page
    of it on first touch, which can cost the system as much time as the softmax itself. Raising the
    mapping threshold (and the trim threshold with it) makes the blocks come from the heap, reused from
    window to window. The process then keeps up to that much freed memory. Elsewhere than glibc (macOS,
    musl) this does nothing.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(_M_MMAP_THRESHOLD, 1 << 30)
        libc.mallopt(_M_TRIM_THRESHOLD, 1 << 30)
    except (OSError, AttributeError):
        pass


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)


def reward(loss: float) -> float:
    """``REWARD_SCALE / perplexity`` for a mean cross-entropy of ``loss`` nats."""
    return REWARD_SCALE * math.exp(-loss) if loss < 700 else 0.0


class _LanguageBase(Trainer):
    """What both language-model evaluators share: the laid-out splits and the two settings."""

    refits: ClassVar[bool] = False

    def __init__(self, task: Task, config: TrainConfig | None, bptt: int, clip: float) -> None:
        if task.problem != "language-model":
            raise ArchsearchError(f"task: {task.name!r} is not a language-modelling task; cells model word streams")
        super().__init__(task, config or TrainConfig(**LANGUAGE_TRAINING))
        if self.config.batch_size is None:
            raise ArchsearchError("trainer.batch_size: a language model reads its split in columns; give their count")
        self.bptt = limits.integer("trainer.bptt", bptt, 1, limits.MAX_BATCH_SIZE)
        self.clip = limits.real("trainer.clip", clip, 0.0, 1e6)
        if self.clip <= 0:
            raise ArchsearchError(f"trainer.clip: must be > 0, got {clip}")
        self._laid: dict[tuple[str, int], tuple[torch.Tensor, torch.Tensor]] = {}
        keep_freed_memory()

    def laid_out(self, split: str, columns: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """A split in ``columns`` columns (the batch size for training, ``EVAL_COLUMNS`` otherwise), on the device."""
        columns = columns or (self.config.batch_size if split == "train" else EVAL_COLUMNS)
        key = (split, columns)
        if key not in self._laid:
            x, y = layout(*self.task.split(split), columns)
            self._laid[key] = (x.to(self.config.device), y.to(self.config.device))
        return self._laid[key]

    def model(self, arch: Architecture, weights: dict[str, torch.Tensor]) -> torch.nn.Module:
        return load_model(_cell(arch), self.task, weights).to(self.config.device)

    def validation_loss(self, arch: Architecture, weights: dict[str, torch.Tensor]) -> float | None:
        with torch_threads(self.config.threads or 1):
            return mean_loss(self.model(arch, weights), *self.laid_out("val"), self.bptt)

    def test_score(self, arch: Architecture, weights: dict[str, torch.Tensor] | None) -> float | None:
        """Minus the mean cross-entropy per test word: ``exp(-score)`` is the test perplexity."""
        if weights is None or len(self.task.y_test) == 0:
            return None
        with torch_threads(self.config.threads or 1):
            return -mean_loss(self.model(arch, weights), *self.laid_out("test"), self.bptt)

    def to_config(self) -> dict[str, Any]:
        return {**super().to_config(), "bptt": self.bptt, "clip": self.clip}


def _cell(arch: Architecture) -> CellArchitecture:
    if not isinstance(arch, CellArchitecture):
        raise ArchsearchError(f"a language model needs a recurrent cell, got a {arch.kind} architecture")
    return arch


class LanguageTrainer(_LanguageBase):
    """Trains each child language model from scratch, ``max_epochs`` passes at most, stopping after
    ``patience`` passes without a better validation perplexity; keeps the best pass's weights."""

    name = "language"

    def __init__(
        self,
        task: Task,
        config: TrainConfig | None = None,
        *,
        bptt: int = LANGUAGE_SETTINGS["bptt"],
        clip: float = LANGUAGE_SETTINGS["clip"],
    ) -> None:
        super().__init__(task, config, bptt, clip)

    def evaluate(self, archs: Sequence[Architecture], seeds: Sequence[int]) -> Iterator[tuple[int, Result]]:
        with torch_threads(self.config.threads or 1):
            for index, (arch, seed) in enumerate(zip(archs, seeds, strict=True)):
                yield index, self.train(arch, seed)

    def train(self, arch: Architecture, seed: int) -> Result:
        """One child trained from the initial weights that ``seed`` draws."""
        cfg, task, start = self.config, self.task, time.perf_counter()
        cell = _cell(arch)
        params = cell.num_params(task.in_features, task.out_features)
        losses: list[float] = []
        vals: list[float] = []

        def failure(status, error):  # noqa: ANN001, ANN202
            seconds = time.perf_counter() - start
            return Result.failure(status, error, params, seconds, val_curve=vals, train_loss=losses)

        try:
            generator = torch.Generator().manual_seed(int(seed))
            model = cell.build(task.in_features, task.out_features, generator).to(cfg.device)
            optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
            x, y = self.laid_out("train")
            x_val, y_val = self.laid_out("val")
            best, kept, weights, waited = math.inf, 0, None, 0
            for epoch in range(cfg.max_epochs):
                try:
                    archs = [None] * len(windows(x.shape[0], self.bptt))
                    losses.append(train_pass(model, optimizer, x, y, self.bptt, self.clip, archs)[0])
                except FloatingPointError as exc:
                    return failure("diverged", f"{exc} at epoch {epoch + 1}")
                loss = mean_loss(model, x_val, y_val, self.bptt)
                if not math.isfinite(loss):
                    return failure("diverged", f"the validation loss became {loss} at epoch {epoch + 1}")
                vals.append(-loss)
                if loss < best:
                    best, kept, waited = loss, epoch + 1, 0
                    weights = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
                else:
                    waited += 1
                if waited >= cfg.patience or (cfg.time_limit is not None and time.perf_counter() - start > cfg.time_limit):
                    break
        except Exception as exc:  # noqa: BLE001 -- a broken child is a recorded trial, not a crashed search
            return failure("failed", f"{type(exc).__name__}: {exc}")
        return Result(
            reward=reward(best), val_score=-best, val_curve=vals, train_loss=losses, params=params,
            seconds=time.perf_counter() - start, kept_epoch=kept, val_loss=best, weights=weights,
        )  # fmt: skip

    def refit(self, arch: Architecture, seed: int, epochs: int) -> Any:
        raise ArchsearchError("refit: a language model's validation words score its passes; it is not refitted")


#: settings of the cell search's schedule, and their defaults
CELL_SCHEDULE = {"controller_steps": 5, "derive": 20, "retrain": 1, "reward_words": 2000, "warmup": 0, "pass_words": 0}


class SharedCellEvaluator(_LanguageBase):
    """Scores cells with one supernet's shared weights; retrains final picks with ``reference``
    (see the module docstring). ``config`` trains the supernet, ``seed`` draws its initial weights."""

    name = "shared-cell"
    shares_weights: ClassVar[bool] = True

    def __init__(
        self,
        task: Task,
        space: SearchSpace,
        config: TrainConfig | None = None,
        reference: LanguageTrainer | None = None,
        *,
        seed: int = 0,
        bptt: int = LANGUAGE_SETTINGS["bptt"],
        clip: float = LANGUAGE_SETTINGS["clip"],
        controller_steps: int = CELL_SCHEDULE["controller_steps"],
        derive: int = CELL_SCHEDULE["derive"],
        retrain: int = CELL_SCHEDULE["retrain"],
        reward_words: int = CELL_SCHEDULE["reward_words"],
        warmup: int = CELL_SCHEDULE["warmup"],
        pass_words: int = CELL_SCHEDULE["pass_words"],
    ) -> None:
        super().__init__(task, config, bptt, clip)
        if not isinstance(space, TreeCellSpace | DagCellSpace):
            raise ArchsearchError(f"space: {space.kind!r} is not a cell space; language models search tree-cell or "
                                  "dag-cell")  # fmt: skip
        self.space = space
        self.reference = reference or LanguageTrainer(task, bptt=bptt, clip=clip)
        self.seed = limits.seed("trainer.seed", seed)
        self.controller_steps, self.derive, self.retrain, self.warmup = checked_schedule(
            controller_steps, derive, retrain, warmup
        )
        self.reward_words = limits.integer("trainer.reward_words", reward_words, 1, limits.MAX_BATCH_SIZE)
        self.pass_words = limits.integer("trainer.pass_words", pass_words, 0, limits.MAX_STEPS * 1000)
        generator = torch.Generator().manual_seed(self.seed)
        member = space.sample(np.random.default_rng(0))
        shapes = space.supernet_shapes() if isinstance(space, DagCellSpace) else None
        self.supernet = CellLanguageModel(member, task.n_classes, generator, shapes).to(self.config.device)
        self.optimizer = torch.optim.Adam(self.supernet.parameters(), lr=self.config.lr,
                                          weight_decay=self.config.weight_decay)  # fmt: skip
        self.passes = 0

    @property
    def batches_per_pass(self) -> int:
        """Windows in one pass: how many architectures a pass samples. A pass reads the whole training
        split, or with ``pass_words`` that many words (whole windows, at least one, at most the split)."""
        total = len(windows(self.laid_out("train")[0].shape[0], self.bptt))
        if not self.pass_words:
            return total
        return max(1, min(total, round(self.pass_words / (self.bptt * self.config.batch_size))))

    def _pass_rows(self) -> slice:
        """The rows that the next pass reads: passes of ``pass_words`` go through the split in turn (the
        one that reaches its end reads what is left), then start again at the top."""
        rows = self.laid_out("train")[0].shape[0]
        every = windows(rows, self.bptt)
        count = self.batches_per_pass
        first = (self.passes % math.ceil(len(every) / count)) * count
        chosen = every[first : first + count]
        return slice(chosen[0].start, chosen[-1].stop)

    def train_pass(self, archs: Sequence[Architecture]) -> dict[str, float]:
        """One pass (see :attr:`batches_per_pass`), window ``w`` through ``archs[w]``; returns the mean loss."""
        if len(archs) != self.batches_per_pass:
            raise ValueError(f"train_pass: needs {self.batches_per_pass} architectures, got {len(archs)}")
        x, y = self.laid_out("train")
        rows = self._pass_rows()
        cells = [_cell(a) for a in archs][: len(windows(rows.stop - rows.start, self.bptt))]
        with torch_threads(self.config.threads or 1):
            try:
                loss, skipped = train_pass(self.supernet, self.optimizer, x[rows], y[rows], self.bptt, self.clip,
                                           cells, skip_nonfinite=True)  # fmt: skip
            except FloatingPointError as exc:
                raise ArchsearchError(f"trainer: the shared weights diverged ({exc}); lower trainer.lr") from None
        self.passes += 1
        return {"shared_loss": loss, "skipped_windows": float(skipped)}

    def evaluate(self, archs: Sequence[Architecture], seeds: Sequence[int]) -> Iterator[tuple[int, Result]]:
        """Each child's proxy reward: its perplexity with the shared weights on ``reward_words`` words of
        the validation split, read from a position its seed draws."""
        x, y = self.laid_out("val")
        rows = max(1, min(x.shape[0], self.reward_words // x.shape[1]))
        for index, (arch, seed) in enumerate(zip(archs, seeds, strict=True)):
            first = int(np.random.default_rng(int(seed)).integers(x.shape[0] - rows + 1))
            yield index, self._proxy(arch, x[first : first + rows], y[first : first + rows])

    def score(self, arch: Architecture) -> Result:
        """A derived cell's proxy score on the whole validation split."""
        return self._proxy(arch, *self.laid_out("val"))

    def _proxy(self, arch: Architecture, x: torch.Tensor, y: torch.Tensor) -> Result:
        start = time.perf_counter()
        cell = _cell(arch)
        params = cell.num_params(self.task.in_features, self.task.out_features)
        try:
            with torch_threads(self.config.threads or 1):
                loss = mean_loss(self.supernet, x, y, self.bptt, cell)
        except Exception as exc:  # noqa: BLE001 -- a path that cannot run is a recorded failure
            return Result.failure("failed", f"{type(exc).__name__}: {exc}", params, time.perf_counter() - start)
        if not math.isfinite(loss):
            return Result.failure("diverged", "the shared weights give non-finite outputs", params)
        return Result(reward=reward(loss), val_score=-loss, params=params, seconds=time.perf_counter() - start,
                      val_loss=loss)  # fmt: skip

    def train_final(self, arch: Architecture, seed: int) -> Result:
        """``arch`` trained from scratch by the reference trainer: a final trial."""
        ((_, result),) = self.reference.evaluate([arch], [seed])
        return result

    def model(self, arch: Architecture, weights: dict[str, torch.Tensor]) -> torch.nn.Module:
        return self.reference.model(arch, weights)

    def state_dict(self) -> dict[str, Any]:
        """The supernet's weights, its optimizer's state and the passes done."""
        return {"supernet": self.supernet.state_dict(), "optimizer": self.optimizer.state_dict(), "passes": self.passes}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """A state from :meth:`state_dict`; one that does not fit this supernet raises ``ValueError``."""
        self.passes = restore_supernet(self.supernet, self.optimizer, self.config, state)

    def to_config(self) -> dict[str, Any]:
        return {
            **super().to_config(),
            "seed": self.seed,
            "controller_steps": self.controller_steps,
            "derive": self.derive,
            "retrain": self.retrain,
            "reward_words": self.reward_words,
            **({"warmup": self.warmup} if self.warmup else {}),
            **({"pass_words": self.pass_words} if self.pass_words else {}),
            "reference": self.reference.to_config(),
        }

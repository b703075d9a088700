"""REINFORCE with an LSTM controller (Zoph & Le 2017), the reference strategy.

For a step of m sampled architectures with rewards R_k the controller minimises

    L = -(1/m) * sum_k A_k * sum_t log p(a_t | a_<t)  -  lambda * (1/m) * sum_k H_k

where H_k is the summed entropy of the policy along sequence k. The
advantage A_k is one of

- ``"rank"`` (default): the rank of R_k among the last ``rank_window`` rewards
  (this step's included), as a fraction in [0, 1] with ties counting half,
  minus 1/2. It depends only on the order of rewards, not their scale, so the
  same learning rate and entropy weight suit a reward spread of 0.3 early in a
  search and of 0.0002 at its end, and suit every task; and because the window
  moves with the policy, the best of *recent* children is always pushed up.
- ``"baseline"``: A_k = R_k - b, with b an exponential moving average of past
  step mean rewards (decay ``baseline_decay``; initialised to the first step's
  mean), as in Zoph & Le. Its updates shrink with the reward spread, so it needs more queries to find the
  best (docs/results/2026-11-23-reinforce-sensitivity.md).

The controller is updated once per step with Adam. Every outcome counts, whatever its
status: a child that diverged, failed or is missing from a table carries a reward of 0, so the
controller learns to avoid proposing such children.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from archsearch import _limits as limits
from archsearch.errors import ArchsearchError
from archsearch.space import Architecture, SearchSpace
from archsearch.strategies._base import Outcome, Strategy
from archsearch.strategies._controller import PAD, Controller

ADVANTAGES = ("rank", "baseline")


class Reinforce(Strategy):
    """Policy-gradient search with an LSTM controller.

    Args:
        space: the search space; its schedule of decisions drives the controller.
        seed: seeds the controller's initial weights and its sampling.
        hidden_size, num_layers: the controller LSTM (Zoph & Le: 2 layers of 35).
        lr: Adam learning rate of the controller.
        advantage: ``"rank"`` or ``"baseline"`` (see the module docstring).
        rank_window: how many recent rewards the rank advantage compares with.
        baseline_decay: decay of the moving-average baseline (reported, and used by
            ``advantage="baseline"``).
        entropy_weight: lambda, the weight of the entropy bonus. Its scale is the
            advantage's: 0.1 for ranks (in [-1/2, 1/2]), about 1e-3 for raw rewards.
        init_range: controller weights start uniform in [-init_range, init_range].
        device: where the controller lives: ``cpu``, ``cuda`` or ``cuda:N`` of this machine.
        curriculum: ``(start, every, by)``, a depth curriculum (Zoph & Le 2017 grew their
            children by 2 layers every 1,600 samples): children have at most ``start`` layers
            at first, and ``by`` more for every ``every`` architectures sampled, up to the
            space's ``max_layers``. The cap is a forced EOS, so the controller's
            probabilities and its REINFORCE loss are those of the capped policy.

    Bounds (checked here, so a study file cannot exceed them either): ``lr`` in (0, 10],
    ``entropy_weight`` and ``init_range`` in [0, 10], ``rank_window`` up to 10**6, ``hidden_size``
    up to 1024, ``num_layers`` up to 8, the curriculum's ``every`` and ``by`` up to 10**9.
    """

    name = "reinforce"

    def __init__(
        self,
        space: SearchSpace,
        seed: int = 0,
        hidden_size: int = 35,
        num_layers: int = 2,
        lr: float = 0.03,
        advantage: str = "rank",
        rank_window: int = 200,
        baseline_decay: float = 0.9,
        entropy_weight: float = 0.1,
        init_range: float = 0.08,
        device: str = "cpu",
        curriculum: Sequence[int] | None = None,
    ) -> None:
        super().__init__(space, seed)
        self.curriculum = None if curriculum is None else _check_curriculum(space, curriculum)
        self.baseline_decay = limits.real("strategy.baseline_decay", baseline_decay, 0.0, 1.0)
        if self.baseline_decay == 1.0:
            raise ArchsearchError(f"strategy.baseline_decay: must be in [0, 1), got {baseline_decay}")
        self.lr = limits.real("strategy.lr", lr, 0.0, limits.MAX_RATE, above=True)
        self.entropy_weight = limits.real("strategy.entropy_weight", entropy_weight, 0.0, limits.MAX_RATE)
        if advantage not in ADVANTAGES:
            raise ArchsearchError(f"strategy.advantage: must be one of {', '.join(ADVANTAGES)}, got {advantage!r}")
        self.advantage = advantage
        self.rank_window = limits.integer("strategy.rank_window", rank_window, 1, limits.MAX_COUNT)
        self.hidden_size = limits.integer("strategy.hidden_size", hidden_size, 1, limits.MAX_HIDDEN_SIZE)
        self.num_layers = limits.integer("strategy.num_layers", num_layers, 1, limits.MAX_CONTROLLER_LAYERS)
        self.init_range = limits.real("strategy.init_range", init_range, 0.0, limits.MAX_RATE)
        self.recent: deque[float] = deque(maxlen=self.rank_window)
        self.device = torch.device(limits.device("strategy.device", device))
        init_seed, sample_seed = np.random.SeedSequence(self.seed).generate_state(2)
        init_generator = torch.Generator().manual_seed(int(init_seed))
        with torch.random.fork_rng(devices=[]):  # module constructors draw from the global RNG; leave it untouched
            controller = Controller(space, self.hidden_size, self.num_layers, self.init_range, init_generator)
        self.controller = controller.to(self.device)
        # the fused kernel updates all controller tensors in one call: same maths, a fraction of the overhead
        self.optimizer = torch.optim.Adam(self.controller.parameters(), lr=self.lr, fused=True)
        self.generator = torch.Generator(device=self.device).manual_seed(int(sample_seed))
        self.baseline: float | None = None
        self.updates = 0
        self.sampled = 0
        self._asked_eos: int | None = None

    def depth_cap(self, sampled: int | None = None) -> int | None:
        """The curriculum's most layers after ``sampled`` architectures (default: so far); None: no cap."""
        if self.curriculum is None:
            return None
        start, every, by = self.curriculum
        cap = start + by * ((self.sampled if sampled is None else sampled) // every)
        return cap if cap < self.space.max_layers else None

    def _eos_slot(self, cap: int | None) -> int | None:
        """The slot whose forced EOS ends a child at ``cap`` layers."""
        if cap is None:
            return None
        eos_slots = [t for t, slot in enumerate(self.space.slots) if slot.eos]
        return eos_slots[cap - self.space.min_layers]

    def ask(self, n: int) -> list[Architecture]:
        self._asked_eos = self._eos_slot(self.depth_cap())
        tokens = self.controller.sample(n, self.generator, eos_at=self._asked_eos).cpu()
        self.sampled += n
        return self._decoded(tokens)

    def sample(self, n: int, rng: np.random.Generator) -> list[Architecture]:
        """``n`` architectures from the controller's policy, as ENAS trains its shared weights and derives
        its picks (Pham et al. 2018); drawn with the controller's own generator, so ``rng`` is unused and
        the curriculum's count of proposals is unchanged."""
        return self._decoded(self.controller.sample(n, self.generator, eos_at=self._eos_slot(self.depth_cap())).cpu())

    def _decoded(self, tokens: torch.Tensor) -> list[Architecture]:
        return [self.space.decode([t for t in row.tolist() if t != PAD]) for row in tokens]

    def _tokens(self, archs: Sequence[Architecture]) -> torch.Tensor:
        n_slots = len(self.space.slots)
        rows = [self.space.encode(a) for a in archs]
        padded = [row + [PAD] * (n_slots - len(row)) for row in rows]
        return torch.tensor(padded, dtype=torch.long, device=self.device)

    def tell(self, outcomes: Sequence[Outcome]) -> dict[str, float]:
        """One controller update from a step of outcomes (each status counts with its reward)."""
        if not outcomes:
            raise ValueError("tell: needs the outcomes of a step, got none")
        archs = [o.architecture for o in outcomes]
        values = np.array([float(o.reward) for o in outcomes])
        mean = float(values.mean())
        baseline = mean if self.baseline is None else self.baseline
        if self.advantage == "rank":
            self.recent.extend(values.tolist())
            window = np.sort(np.fromiter(self.recent, dtype=float))
            below = np.searchsorted(window, values, side="left")
            not_above = np.searchsorted(window, values, side="right")
            advantages = (below + not_above) / (2.0 * len(window)) - 0.5
        else:
            advantages = values - baseline
        advantage = torch.tensor(advantages, dtype=torch.float32, device=self.device)
        log_prob, entropy = self.controller.log_probs(self._tokens(archs), eos_at=self._asked_eos)
        loss = -(advantage * log_prob).mean() - self.entropy_weight * entropy.mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.baseline = self.baseline_decay * baseline + (1.0 - self.baseline_decay) * mean
        self.updates += 1
        return {
            "loss": float(loss.detach()),
            "entropy": float(entropy.detach().mean()),
            "baseline": self.baseline,
            "mean_reward": mean,
        }

    def state_dict(self) -> dict[str, Any]:
        return {
            "controller": self.controller.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "generator": self.generator.get_state(),
            "baseline": self.baseline,
            "recent": list(self.recent),
            "updates": self.updates,
            "sampled": self.sampled,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.controller.load_state_dict(state["controller"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])
        self.baseline = state["baseline"]
        self.recent = deque((float(r) for r in state.get("recent", [])), maxlen=self.rank_window)
        self.updates = int(state["updates"])
        self.sampled = int(state.get("sampled", 0))

    def to_config(self) -> dict[str, Any]:
        return {
            **super().to_config(),
            "hidden_size": self.hidden_size,
            "num_layers": self.num_layers,
            "lr": self.lr,
            "advantage": self.advantage,
            "rank_window": self.rank_window,
            "baseline_decay": self.baseline_decay,
            "entropy_weight": self.entropy_weight,
            "init_range": self.init_range,
            "device": str(self.device),
            **({"curriculum": list(self.curriculum)} if self.curriculum is not None else {}),
        }


def _check_curriculum(space: SearchSpace, curriculum: Sequence[int]) -> tuple[int, int, int]:
    try:
        values = tuple(curriculum)
    except TypeError:
        values = ()
    if len(values) == 2:
        values = (*values, 1)
    if len(values) != 3 or not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        raise ArchsearchError(f"strategy.curriculum: must be (start, every) or (start, every, by), got {curriculum!r}")
    start, every, by = values
    if not hasattr(space, "min_layers") or not hasattr(space, "max_layers"):
        raise ArchsearchError(f"strategy.curriculum: the {space.kind!r} space has no depth to grow")
    if not space.min_layers <= start <= space.max_layers:
        raise ArchsearchError(
            f"strategy.curriculum: start must be within the space's {space.min_layers}..{space.max_layers} layers, "
            f"got {start}"
        )
    if every < 1 or by < 1:
        raise ArchsearchError(f"strategy.curriculum: every and by must be >= 1, got {every} and {by}")
    if every > limits.MAX_CURRICULUM or by > limits.MAX_CURRICULUM:
        raise ArchsearchError(
            f"strategy.curriculum: every and by must be at most {limits.MAX_CURRICULUM}, got {every} and {by}"
        )
    return start, every, by

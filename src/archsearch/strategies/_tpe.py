"""TPE, through Optuna's ``TPESampler`` (optional extra: ``pip install 'archsearch[optuna]'``).

Each slot of the space's schedule is one categorical Optuna parameter (its choices
plus EOS where the space allows ending there); a variable-length architecture is a
define-by-run trial that stops at EOS. Optuna stays inside this file: the state that
archsearch saves is the history of (tokens, reward) pairs, from which the Optuna study
is rebuilt on resume, and every proposal uses a sampler seeded from the strategy seed
and the proposal's number, so a resumed search proposes exactly what an uninterrupted
one would.

A child that failed, or that a tabular benchmark lacks, measured nothing: it is told to Optuna
as a failed trial (its ``FAIL`` state), which TPE leaves out of its model, and it is not in the
saved history. A child that diverged was measured (that architecture does not train): its reward
of 0 is fitted like any other.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from archsearch import _limits as limits
from archsearch.errors import ArchsearchError
from archsearch.space import Architecture, SearchSpace
from archsearch.strategies._base import Outcome, Strategy, mean_reward


def _optuna(strategy: str = "tpe") -> Any:
    """Optuna, quiet; one line naming ``strategy`` when the extra is not installed."""
    try:
        import optuna
    except ImportError:
        raise ArchsearchError(
            f"strategy {strategy}: needs Optuna; install it with pip install 'archsearch[optuna]'"
        ) from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def slot_distributions(optuna: Any, space: SearchSpace) -> list[Any]:
    """One categorical Optuna parameter per slot of the space's schedule: its choices, plus EOS where allowed."""
    distributions = []
    for slot in space.slots:
        options = len(space.decisions[slot.decision].choices) + (1 if slot.eos else 0)
        distributions.append(optuna.distributions.CategoricalDistribution(tuple(range(options))))
    return distributions


def suggest_tokens(trial: Any, space: SearchSpace, distributions: Sequence[Any]) -> list[int]:
    """The tokens an Optuna trial suggests, slot by slot, up to and including EOS (define-by-run)."""
    tokens = []
    for position, (slot, distribution) in enumerate(zip(space.slots, distributions)):
        token = trial.suggest_categorical(f"slot{position}", distribution.choices)
        tokens.append(token)
        if slot.eos and token == space.decisions[slot.decision].eos_token:
            break
    return tokens


class TPE(Strategy):
    """Tree-structured Parzen estimator (Bergstra et al. 2011) over the space's decisions."""

    name = "tpe"

    def __init__(self, space: SearchSpace, seed: int = 0, n_startup_trials: int = 10) -> None:
        super().__init__(space, seed)
        self.n_startup_trials = limits.integer("strategy.n_startup_trials", n_startup_trials, 0, limits.MAX_COUNT)
        self.optuna = _optuna()
        self.history: list[tuple[list[int], float]] = []
        self.proposed = 0
        self._study = self.optuna.create_study(direction="maximize")
        self._pending: list[tuple[Architecture, Any]] = []
        self._distributions = slot_distributions(self.optuna, space)

    def _sampler(self) -> Any:
        seed = int(np.random.SeedSequence([self.seed, self.proposed]).generate_state(1)[0])
        return self.optuna.samplers.TPESampler(seed=seed, n_startup_trials=self.n_startup_trials)

    def ask(self, n: int) -> list[Architecture]:
        archs = []
        for _ in range(n):
            self._study.sampler = self._sampler()
            trial = self._study.ask()
            tokens = suggest_tokens(trial, self.space, self._distributions)
            arch = self.space.decode(tokens)
            self._pending.append((arch, trial))
            archs.append(arch)
            self.proposed += 1
        return archs

    def tell(self, outcomes: Sequence[Outcome]) -> dict[str, float]:
        for outcome in outcomes:
            arch = outcome.architecture
            position = next((i for i, (a, _) in enumerate(self._pending) if a == arch), None)
            if position is None:
                raise ValueError(f"tell: {arch} was not proposed by this strategy")
            _, trial = self._pending.pop(position)
            if not outcome.measured:
                self._study.tell(trial, state=self.optuna.trial.TrialState.FAIL)
                continue
            self._study.tell(trial, float(outcome.reward))
            self.history.append((self.space.encode(arch), float(outcome.reward)))
        return mean_reward(outcomes)

    def state_dict(self) -> dict[str, Any]:
        return {"history": [(list(tokens), reward) for tokens, reward in self.history], "proposed": self.proposed}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._study = self.optuna.create_study(direction="maximize")
        self._pending = []
        self.history = [(list(tokens), float(reward)) for tokens, reward in state["history"]]
        for tokens, reward in self.history:
            params = {f"slot{i}": token for i, token in enumerate(tokens)}
            distributions = {f"slot{i}": self._distributions[i] for i in range(len(tokens))}
            self._study.add_trial(
                self.optuna.trial.create_trial(params=params, distributions=distributions, value=reward)
            )
        self.proposed = int(state["proposed"])

    def to_config(self) -> dict[str, Any]:
        return {**super().to_config(), "n_startup_trials": self.n_startup_trials}

"""NSGA-II, Deb et al. (2002), through Optuna's ``NSGAIISampler`` (optional: ``pip install 'archsearch[optuna]'``).

NSGA-II looks for the trade-off between several objectives (accuracy against size, say) rather than
for one best architecture. Each generation of ``population_size`` children is bred, by crossover and
mutation, from parents chosen among the previous generation and its own parents by non-dominated rank
first and crowding distance second, so that the parents are the best trade-offs found so far and spread
along them. The first generation is drawn uniformly at random. What it minimises is each outcome's
``objectives`` (the study's objectives, each signed so that less is better); the reward is not used.
Their number is learned from the first measured outcome and is fixed from then on.

As in the TPE strategy, each slot of the space's schedule is one categorical Optuna parameter (its
choices plus EOS where the space allows ending there), a variable-length architecture is a
define-by-run trial that stops at EOS, and every proposal uses a sampler seeded from the strategy seed
and the proposal's number. Optuna stays inside this file, and the study it keeps is always one that
archsearch's saved state rebuilds: a proposal's Optuna trial is closed as soon as its parameters are
drawn (as failed, which NSGA-II leaves out of every population), and a measured outcome joins the study
as a completed trial with its objective values and the generation Optuna gave it, which is also how
the study is rebuilt on resume. Optuna picks the parents of a generation once, when the generation's
first child is drawn; a study rebuilt later could pick others (children of the previous generation
told since count then), so the parents picked are part of the saved state too. A resumed search thus
proposes exactly what an uninterrupted one would, whatever the order of asks and tells.

``tell`` reports ``front_size``: how many of the children measured so far no other one dominates.

A child that failed, or that a tabular benchmark lacks, measured nothing: it has no objective values,
takes no part in any population and is not in the saved history. A child that diverged, or that breaks
a hard constraint of the study (``infeasible``), was measured: its objective values count like any other.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import numpy as np

from archsearch import _limits as limits
from archsearch.errors import ArchsearchError
from archsearch.space import Architecture, SearchSpace
from archsearch.strategies._base import Outcome, Strategy, mean_reward
from archsearch.strategies._pareto_evolution import dominates
from archsearch.strategies._tpe import _optuna, slot_distributions, suggest_tokens

#: the Optuna user attribute that holds a trial's proposal number
_PROPOSAL = "archsearch:proposal"


@functools.cache
def _sampler_class(optuna: Any) -> type:
    """Optuna's NSGA-II sampler, with the parents of each generation kept by the strategy (see above), and
    the parameters that every completed trial has (those crossed over) kept by it too."""

    class NSGAIISampler(optuna.samplers.NSGAIISampler):
        def __init__(self, parents: dict[int, list[int]], search_space: dict[str, Any], **settings: Any) -> None:
            super().__init__(**settings)
            self.parents = parents
            self.search_space = search_space

        def infer_relative_search_space(self, study: Any, trial: Any) -> dict[str, Any]:
            # what Optuna's would find by comparing every completed trial's parameters again, at each proposal
            return dict(self.search_space)

        def get_parent_population(self, study: Any, generation: int) -> list[Any]:
            if generation == 0:
                return []
            if generation not in self.parents:
                chosen = super().get_parent_population(study, generation)
                self.parents[generation] = sorted(t.user_attrs[_PROPOSAL] for t in chosen)
            numbers = set(self.parents[generation])
            complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
            return [t for t in complete if t.user_attrs[_PROPOSAL] in numbers]

    return NSGAIISampler


class NSGA2(Strategy):
    """Non-dominated sorting genetic algorithm II (Deb et al. 2002) over the space's decisions."""

    name = "nsga2"
    multi_objective = True

    def __init__(
        self,
        space: SearchSpace,
        seed: int = 0,
        population_size: int = 20,
        mutation_prob: float | None = None,
        crossover_prob: float = 0.9,
    ) -> None:
        super().__init__(space, seed)
        self.population_size = limits.integer("strategy.population_size", population_size, 2, limits.MAX_COUNT)
        if mutation_prob is not None:
            mutation_prob = limits.real("strategy.mutation_prob", mutation_prob, 0, 1)
        self.mutation_prob = mutation_prob
        self.crossover_prob = limits.real("strategy.crossover_prob", crossover_prob, 0, 1)
        self.optuna = _optuna("nsga2")
        self._sampler_class = _sampler_class(self.optuna)
        self._distributions = slot_distributions(self.optuna, space)
        #: measured children in the order they were told: (proposal number, tokens, objective values, generation)
        self.history: list[tuple[int, list[int], tuple[float, ...], int]] = []
        #: generation -> the proposal numbers of its parents, once Optuna has picked them
        self.parents: dict[int, list[int]] = {}
        self.objectives: int | None = None  # how many, once the first measured outcome says
        self.proposed = 0
        self._pending: list[tuple[Architecture, int, list[int], int]] = []
        self._front: list[tuple[float, ...]] = []
        self._shortest: int | None = None  # the fewest slots a measured child has
        self._study = self._new_study()

    def _new_study(self) -> Any:
        # before the number of objectives is known the study holds closed trials only, which count for nothing
        return self.optuna.create_study(directions=["minimize"] * (self.objectives or 1))

    def _sampler(self) -> Any:
        seed = int(np.random.SeedSequence([self.seed, self.proposed]).generate_state(1)[0])
        names = {f"slot{i}": self._distributions[i] for i in range(self._shortest or 0)}
        search_space = {name: names[name] for name in sorted(names) if not names[name].single()}
        return self._sampler_class(
            self.parents,
            search_space,
            population_size=self.population_size,
            mutation_prob=self.mutation_prob,
            crossover_prob=self.crossover_prob,
            seed=seed,
        )

    def ask(self, n: int) -> list[Architecture]:
        archs = []
        for _ in range(n):
            self._study.sampler = self._sampler()
            trial = self._study.ask()
            tokens = suggest_tokens(trial, self.space, self._distributions)
            frozen = self._study.tell(trial, state=self.optuna.trial.TrialState.FAIL)
            generation = int(frozen.system_attrs[self._sampler_class._get_generation_key()])
            arch = self.space.decode(tokens)
            self._pending.append((arch, self.proposed, tokens, generation))
            archs.append(arch)
            self.proposed += 1
        return archs

    def tell(self, outcomes: Sequence[Outcome]) -> dict[str, float]:
        for outcome in outcomes:
            arch = outcome.architecture
            position = next((i for i, pending in enumerate(self._pending) if pending[0] == arch), None)
            if position is None:
                raise ValueError(f"tell: {arch} was not proposed by this strategy")
            _, number, tokens, generation = self._pending.pop(position)
            if not outcome.measured:
                continue
            entry = (number, tokens, self._values(outcome), generation)
            self.history.append(entry)
            self._add(entry)
        metrics = mean_reward(outcomes)
        if self._front:
            metrics["front_size"] = float(len(self._front))
        return metrics

    def _values(self, outcome: Outcome) -> tuple[float, ...]:
        values = tuple(float(v) for v in outcome.objectives)
        if not values:
            raise ArchsearchError(f"strategy {self.name}: needs several objectives (--objectives ...)")
        if self.objectives is None:
            self.objectives = len(values)
            self._study = self._new_study()
        elif len(values) != self.objectives:
            shown = f"expected {self.objectives} objective values, got {len(values)}"
            raise ArchsearchError(f"strategy {self.name}: {shown}")
        return values

    def _add(self, entry: tuple[int, list[int], tuple[float, ...], int]) -> None:
        """One measured child into the Optuna study, and into the non-dominated set told so far."""
        number, tokens, values, generation = entry
        self._study.add_trial(
            self.optuna.trial.create_trial(
                params={f"slot{i}": token for i, token in enumerate(tokens)},
                distributions={f"slot{i}": self._distributions[i] for i in range(len(tokens))},
                values=list(values),
                user_attrs={_PROPOSAL: number},
                system_attrs={self._sampler_class._get_generation_key(): generation},
            )
        )
        self._shortest = len(tokens) if self._shortest is None else min(self._shortest, len(tokens))
        if not any(dominates(member, values) for member in self._front):
            self._front = [member for member in self._front if not dominates(values, member)] + [values]

    def state_dict(self) -> dict[str, Any]:
        return {
            "history": [(number, list(tokens), tuple(values), gen) for number, tokens, values, gen in self.history],
            "parents": [(generation, list(numbers)) for generation, numbers in sorted(self.parents.items())],
            "objectives": self.objectives,
            "proposed": self.proposed,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.objectives = None if state["objectives"] is None else int(state["objectives"])
        self.history = [
            (int(number), [int(t) for t in tokens], tuple(float(v) for v in values), int(generation))
            for number, tokens, values, generation in state["history"]
        ]
        self.parents = {int(generation): [int(n) for n in numbers] for generation, numbers in state["parents"]}
        self.proposed = int(state["proposed"])
        self._pending = []
        self._front = []
        self._shortest = None
        self._study = self._new_study()
        for entry in self.history:
            self._add(entry)

    def to_config(self) -> dict[str, Any]:
        return {
            **super().to_config(),
            "population_size": self.population_size,
            "mutation_prob": self.mutation_prob,
            "crossover_prob": self.crossover_prob,
        }

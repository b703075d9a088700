"""A weight-sharing study's phases: the search with shared weights, derivation, retraining.

*Search* (steps ``0 .. steps - 1``): before every ``controller_steps``-th step the evaluator trains
its supernet for one pass over the training split, each minibatch through an architecture the
strategy samples; each step's children are then scored with the shared weights (proxy trials) and
told to the strategy. The supernet's state is committed with the strategy's, in the step's
transaction, whenever a pass changed it.

*Derive* (step ``steps``): the strategy samples ``derive`` architectures (duplicates dropped), each
scored on the whole validation split with the shared weights (proxy trials).

*Retrain* (step ``steps + 1``): the best ``retrain`` of those by that score, each trained from scratch
by the reference trainer (final trials). The study's pick is its best final trial.

Every draw is a pure function of the study's seed and committed state, so a study killed anywhere
(in a pass, between derived trials, in a retraining) resumes to the same trials.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from archsearch.errors import ArchsearchError
from archsearch.study import _untrusted
from archsearch.study._storage import Trial, rank

if TYPE_CHECKING:
    from archsearch.study._study import StepInfo, Study

#: spawn keys of the generators that sample for the supernet's passes and for derivation, apart from
#: the children's seeds (see ``child_seed``)
_PASS_KEY, _DERIVE_KEY = 2**32, 2**32 + 1


def _rng(seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


def check_shared_run(study: Study, done: int, steps: int | None) -> None:
    """Before a weight-sharing study's run writes anything: its budget cannot grow once it has derived
    (the derived trials follow the last step), and its evaluator's committed state is loaded."""
    if study.executor.name != "inline":
        raise ArchsearchError(
            f"executor: {study.path} searches with shared weights, scored in the one process that holds them; "
            "resume it inline"
        )
    derived = study._storage.trials(step=study.steps)
    if steps is not None and steps != study.steps and derived:
        raise ArchsearchError(
            f"steps: {study.path} has derived its picks from {study.steps} steps of search; its budget cannot "
            "change now (start a new study)"
        )
    stored = study._storage.evaluator_state()
    if stored is None:
        if done:
            raise ArchsearchError(
                f"{study.path}: the shared weights' state is missing; trials and best still work, resume does not"
            )
        return
    with _untrusted.fitting(f"{study.path}: the shared weights' state does not fit the study"):
        study.evaluator.load_state_dict(stored[1])


def run_shared(
    study: Study, start: int, best: Trial | None, report: Callable[[StepInfo], None], show: bool
) -> Trial | None:
    """The search from step ``start``, then derivation and retraining; returns the best trial."""
    evaluator = study.evaluator
    for step in range(start, study.steps):
        metrics: dict[str, float] = {}
        while evaluator.passes < step // evaluator.controller_steps + 1:
            rng, count = _rng(study.seed, _PASS_KEY, evaluator.passes), evaluator.batches_per_pass
            if evaluator.passes < evaluator.warmup:
                archs = [study.space.sample(rng) for _ in range(count)]
            else:
                archs = study.strategy.sample(count, rng)
            metrics = evaluator.train_pass(archs)
        state = evaluator.state_dict() if metrics else None
        best, info = study._run_step(step, best, metrics, state)
        report(info)
    if study.steps > study.completed_steps():
        return best
    return _retrain(study, _derive(study, show), show)


def _derive(study: Study, show: bool) -> list[Trial]:
    """The derived trials: distinct architectures sampled from the trained strategy, each scored on the
    whole validation split."""
    evaluator, step, m = study.evaluator, study.steps, study.children_per_step
    sampled = study.strategy.sample(evaluator.derive, _rng(study.seed, _DERIVE_KEY))
    distinct: dict[str, Any] = {}
    for arch in sampled:
        distinct.setdefault(arch.hash, arch)
    archs = list(distinct.values())
    done, best = study._recorded(step, archs), study.best()
    if show and len(done) < len(archs):
        print(f"deriving: {len(archs)} architectures scored with the shared weights", file=sys.stderr)
    for slot, arch in enumerate(archs):
        if slot not in done:
            result = evaluator.score(arch)
            number = step * m + slot
            done[slot], best = study._record(step, slot, arch, 0, result, best, None, number, "derive", "proxy")
    return [done[slot] for slot in range(len(archs))]


def _retrain(study: Study, derived: list[Trial], show: bool) -> Trial | None:
    """The final trials: the best derived architectures trained from scratch; returns the best trial."""
    from archsearch.study._study import child_seed

    evaluator, step, m = study.evaluator, study.steps + 1, study.children_per_step
    top = sorted((t for t in derived if t.status == "ok"), key=rank)[: evaluator.retrain]
    done = study._recorded(step, [t.architecture for t in top])
    first = (step - 1) * m + len(derived)
    best = study.best()
    for slot, trial in enumerate(top):
        if slot in done:
            continue
        if show:
            print(f"retraining {slot + 1}/{len(top)} from scratch: {trial.architecture}", file=sys.stderr)
        seed = child_seed(study.seed, step, slot)
        result = evaluator.train_final(trial.architecture, seed)
        done[slot], best = study._record(step, slot, trial.architecture, seed, result, best, None, first + slot,
                                         "retrain", "final")  # fmt: skip
    return study.best()


def phases_summary(trials: list[Trial]) -> dict[str, Any]:
    """A weight-sharing study's phases as JSON: how many trials each holds, the best proxy trial, and
    every final trial beside the proxy score of its architecture; with two or more, the Kendall tau
    between proxy scores and the scores of the same architectures trained from scratch (how well the
    shared weights rank; Yu et al. 2020 found it often near zero)."""
    phases = {phase: [t for t in trials if t.phase == phase] for phase in ("search", "derive", "retrain")}
    proxy = {t.arch_hash: t.val_score for t in phases["derive"]}
    scored = sorted((t for t in trials if t.kind == "proxy" and t.status == "ok"), key=rank)
    final = [
        {"trial": t.number, "architecture": str(t.architecture), "status": t.status, "val_score": t.val_score,
         "proxy_val_score": proxy.get(t.arch_hash), "params": t.params}
        for t in phases["retrain"]
    ]  # fmt: skip
    pairs = [(f["proxy_val_score"], f["val_score"]) for f in final if f["status"] == "ok"]
    return {
        "search_trials": len(phases["search"]),
        "derived": len(phases["derive"]),
        "retrained": len(phases["retrain"]),
        "best_proxy": None if not scored else {
            "trial": scored[0].number, "phase": scored[0].phase, "architecture": str(scored[0].architecture),
            "val_score": scored[0].val_score,
        },
        "final": final,
        "kendall_tau": kendall_tau(pairs),
        "tau_pairs": len(pairs),
    }  # fmt: skip


def kendall_tau(pairs: list[tuple[float, float]]) -> float | None:
    """Kendall's tau-b of the pairs; ``None`` with fewer than two, or where one side is constant."""
    if len(pairs) < 2:
        return None
    from scipy import stats

    first, second = zip(*pairs)
    tau = stats.kendalltau(first, second).statistic
    return None if tau != tau else float(tau)  # nan: a constant side

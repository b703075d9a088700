"""Deduplication as a wrapper: an architecture equivalent to one already evaluated takes its result.

Equivalent means the same canonical hash (see ``Architecture.hash``). Late in a search a strategy
resamples the same architectures; training them again costs time and, by drawing new noise, gives
one architecture several rewards. The price is that the first training's luck counts every time.

A study asks ``plan`` which children of a step take an earlier result: the earliest successful
evaluation of an equivalent architecture before the step, else the first equivalent child earlier
in the step (whatever its status). It evaluates the others through its executor (the wrapper passes
evaluations straight to the evaluator it wraps, and a worker receives only that one), hands every
recorded result to ``remember``, and records ``reused`` for the rest. Plans depend only on what was
recorded before, so a resumed study that remembers its stored trials plans exactly as an
uninterrupted one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from typing import Any

import torch

from archsearch.evaluation._base import Evaluator
from archsearch.evaluation._result import Refit, Result
from archsearch.space import Architecture


class ReusingEvaluator(Evaluator):
    """``inner``, with each equivalent architecture evaluated once (see the module docstring)."""

    def __init__(self, inner: Evaluator) -> None:
        self.inner = inner
        self._first: dict[str, int] = {}  # hash -> key of its earliest successful result
        self._results: dict[int, Result] = {}  # key -> a result that a planned child takes
        self._wanted: set[int] = set()  # keys of this step's children that later children take

    @property
    def name(self) -> str:  # type: ignore[override]
        return self.inner.name

    @property
    def batch_dependent(self) -> bool:  # type: ignore[override]
        return self.inner.batch_dependent

    @property
    def refits(self) -> bool:  # type: ignore[override]
        return self.inner.refits

    @property
    def ensembles(self) -> bool:  # type: ignore[override]
        return self.inner.ensembles

    @property
    def times(self) -> bool:  # type: ignore[override]
        return self.inner.times

    @property
    def task(self) -> Any:
        return self.inner.task

    @property
    def config(self) -> Any:
        return self.inner.config

    def __getattr__(self, name: str) -> Any:
        """What else the wrapped evaluator offers (a lookup's ``benchmark``, say)."""
        if name == "inner":  # not set yet: while unpickling
            raise AttributeError(name)
        return getattr(self.inner, name)

    def __getstate__(self) -> dict[str, Any]:
        """Sent to a worker by value: only the evaluator it wraps; reuse is decided where the study runs."""
        return {"inner": self.inner, "_first": {}, "_results": {}, "_wanted": set()}

    # -- deduplication ---------------------------------------------------------------------------

    def plan(self, archs: Sequence[Architecture], keys: Sequence[int]) -> dict[int, int]:
        sources: dict[int, int] = {}
        first_here: dict[str, int] = {}
        for index, (arch, key) in enumerate(zip(archs, keys, strict=True)):
            earlier = self._first.get(arch.hash)
            if earlier is not None and earlier < keys[0]:
                sources[index] = earlier
            elif arch.hash in first_here:
                sources[index] = first_here[arch.hash]
            else:
                first_here[arch.hash] = key
        self._wanted = {key for key in sources.values() if key >= keys[0]}
        return sources

    def remember(self, key: int, arch: Architecture, result: Result) -> None:
        kept = dataclasses.replace(result, seconds=0.0, attempts=1, weights=None)
        if result.status == "ok" and key < self._first.get(arch.hash, key + 1):
            self._first[arch.hash] = key
            self._results[key] = kept
        elif key in self._wanted:
            self._results[key] = kept

    def reused(self, key: int) -> Result:
        return dataclasses.replace(self._results[key])

    # -- everything else is the wrapped evaluator's ---------------------------------------------

    def evaluate(self, archs: Sequence[Architecture], seeds: Sequence[int]) -> Iterator[tuple[int, Result]]:
        return self.inner.evaluate(archs, seeds)

    @property
    def job_threads(self) -> int:
        return self.inner.job_threads

    def jobs(self, archs: Sequence[Architecture], seeds: Sequence[int]) -> list[list[int]]:
        return self.inner.jobs(archs, seeds)

    def run_job(
        self, members: Sequence[int], archs: Sequence[Architecture] | dict, seeds: Sequence[int] | dict
    ) -> Iterator[tuple[int, Result]]:
        return self.inner.run_job(members, archs, seeds)

    def close(self) -> None:
        self.inner.close()

    def to_config(self) -> dict[str, Any]:
        return self.inner.to_config()

    def refit(self, arch: Architecture, seed: int, epochs: int) -> Refit:
        return self.inner.refit(arch, seed, epochs)

    def retrain(self, arch: Architecture, seed: int) -> dict[str, torch.Tensor]:
        return self.inner.retrain(arch, seed)

    def model_test_score(self, model: torch.nn.Module) -> float | None:
        return self.inner.model_test_score(model)

    def validation_loss(self, arch: Architecture, weights: dict[str, torch.Tensor]) -> float | None:
        return self.inner.validation_loss(arch, weights)

    def model(self, arch: Architecture, weights: dict[str, torch.Tensor]) -> torch.nn.Module:
        return self.inner.model(arch, weights)

    def test_score(self, arch: Architecture, weights: dict[str, torch.Tensor] | None) -> float | None:
        return self.inner.test_score(arch, weights)

    def costs(self, arch: Architecture) -> dict[str, int | None]:
        return self.inner.costs(arch)

    def latency(self, arch: Architecture) -> tuple[float, float] | None:
        return self.inner.latency(arch)

"""Tabular benchmarks: the reward of an architecture is looked up, not trained.

A lookup costs microseconds, so strategies can be compared over many seeds in
seconds and only the strategy is measured. A benchmark is a table (a JSON object
mapping each code to its metrics) and a :class:`CodeSpace` describing the codes;
``docs/extending.md`` shows how to declare one (a package adds one to
:data:`TABULAR_BENCHMARKS` through an entry point), and :func:`nas_bench_macro` is the
built-in example. A code the table lacks is a trial with status ``missing``, or
takes the record the benchmark declares as its ``default``.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from archsearch.errors import ArchsearchError, short
from archsearch.evaluation._base import Evaluator
from archsearch.evaluation._result import Result
from archsearch.registry import Registry
from archsearch.space import Architecture, CodeArchitecture, CodeSpace, canonical_form


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True, eq=False)
class TabularBenchmark:
    """A table of architecture code -> metrics, and the space of its codes.

    ``metric`` names the value that becomes the reward (times ``scale``, to bring it
    into [0, 1]); ``runs`` names a list of per-run values, one of which is drawn when
    the lookup is noisy; ``test_metric`` names a value reported for the final pick and
    never used to choose it; ``params_key`` and ``flops_key`` name the parameter count and the FLOPs
    (each optional: a table gives the costs it holds). ``default`` is the
    record of every code the table lacks (without one, such a code is ``missing``).
    Every record is checked when the benchmark is made.
    """

    name: str
    space: CodeSpace
    records: dict[str, dict[str, Any]] = field(repr=False)
    metric: str
    runs: str | None = None
    scale: float = 1.0
    citation: str = ""
    test_metric: str | None = None
    params_key: str | None = None
    default: dict[str, Any] | None = None
    flops_key: str | None = None

    def __post_init__(self) -> None:
        problem = self._problem()
        if problem is not None:
            raise ArchsearchError(f"benchmark {self.name}: {problem}")

    @classmethod
    def from_json(cls, name: str, path: str | Path, space: CodeSpace, **options: Any) -> TabularBenchmark:
        """Read a table from a JSON object ``{code: {metric: value, ...}, ...}``."""
        try:
            records = json.loads(Path(path).read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
            raise ArchsearchError(f"{path}: cannot read the {name} table ({short(str(exc))})") from None
        try:
            return cls(name, space, records, **options)
        except ArchsearchError as exc:
            raise ArchsearchError(f"{path}: {exc}") from None

    def _problem(self) -> str | None:
        """What makes the table unusable, or ``None``."""
        if not _number(self.scale) or self.scale <= 0:
            return f"scale must be a positive number, got {short(repr(self.scale))}"
        if not isinstance(self.records, dict):
            return "the table must be a JSON object of code -> record"
        if not self.records:
            return f"the table has no usable code (need records such as {{code: {{{self.metric!r}: value}}}})"
        for code, record in self.records.items():
            if not isinstance(code, str):
                return f"record {short(repr(code))}: a code is text, as the keys of a JSON object are"
            try:
                self.space.encode(CodeArchitecture(self.space.benchmark, code))
            except ArchsearchError as exc:
                return f"record {short(code)!r}: {exc}"
            problem = self._record_problem(record)
            if problem is not None:
                return f"record {short(code)!r}: {problem}"
        problem = None if self.default is None else self._record_problem(self.default)
        return None if problem is None else f"default: {problem}"

    def _record_problem(self, record: Any) -> str | None:
        if not isinstance(record, dict):
            return "must be an object of metrics"
        for key in (self.metric, self.test_metric):
            if key is not None and not _number(record.get(key)):
                return f"{key!r} is not a finite number ({short(repr(record.get(key)))})"
        if self.runs is not None:
            runs = record.get(self.runs)
            if not isinstance(runs, list) or not runs or not all(_number(v) for v in runs):
                return f"{self.runs!r} is not a non-empty list of finite numbers"
        for key in (self.params_key, self.flops_key):
            if key is not None:
                count = record.get(key)
                if not isinstance(count, int) or isinstance(count, bool) or count < 0:
                    return f"{key!r} is not a non-negative integer ({short(repr(count))})"
        return None

    def costs(self, arch: Architecture) -> dict[str, int | None]:
        """The parameters and FLOPs the table holds for ``arch`` (``None`` where it holds none)."""
        record = self.record(arch)
        return {cost: None if record is None or key is None else int(record[key])
                for cost, key in (("params", self.params_key), ("flops", self.flops_key))}  # fmt: skip

    def record(self, arch: Architecture) -> dict[str, Any] | None:
        """The table's record of ``arch`` or of its canonical form, else the default (``None`` without one)."""
        if not isinstance(arch, CodeArchitecture) or arch.benchmark != self.space.benchmark:
            raise ArchsearchError(f"{self.name}: {arch} is not one of this benchmark's architectures")
        record = self.records.get(arch.code)
        if record is None:
            record = self.records.get(self.space.validate(arch).canonical().code)
        return self.default if record is None else record

    def value(self, arch: Architecture) -> float:
        """The metric behind the reward, in the table's own units."""
        record = self.record(arch)
        if record is None:
            raise ArchsearchError(f"{self.name}: no record for code {arch.code!r}")  # type: ignore[attr-defined]
        return float(record[self.metric])

    @functools.cached_property
    def best_value(self) -> float:
        return max(float(r[self.metric]) for r in self.records.values())

    @functools.cached_property
    def best_codes(self) -> tuple[str, ...]:
        return self.codes_within(0.0)

    def codes_within(self, tolerance: float) -> tuple[str, ...]:
        """The codes whose metric is within ``tolerance`` of the table's best, sorted."""
        return tuple(sorted(c for c, r in self.records.items() if float(r[self.metric]) >= self.best_value - tolerance))

    def summary(self, arch: Architecture) -> dict[str, Any]:
        """The table's view of a study's pick ``arch`` (a successful trial, so never missing): its value,
        its test value when the table declares a test metric, and the table's best."""
        summary: dict[str, Any] = {
            "name": self.name,
            "metric": self.metric,
            "value": self.value(arch),
            "best_value": self.best_value,
            "best_architectures": list(self.best_codes),
        }
        if self.test_metric is not None:
            summary["test_metric"] = self.test_metric
            summary["test_value"] = float(self.record(arch)[self.test_metric])  # type: ignore[index]
        return summary


@canonical_form
def nas_bench_macro_canonical(code: str) -> str:
    """Within layers 4-5 and within layers 7-8 an identity may sit first or second: put it second."""
    symbols = list(code)
    for first, second in ((3, 4), (6, 7)):
        if len(symbols) > second and symbols[first] == "0" and symbols[second] != "0":
            symbols[first], symbols[second] = symbols[second], symbols[first]
    return "".join(symbols)


@functools.cache
def nas_bench_macro() -> TabularBenchmark:
    """NAS-Bench-Macro on CIFAR-10 (Su et al., CVPR 2021), shipped with archsearch."""
    path = resources.files("archsearch") / "data" / "nas-bench-macro" / "nas-bench-macro_cifar10.json"
    return TabularBenchmark.from_json(
        "nas-bench-macro",
        str(path),
        CodeSpace("nas-bench-macro", 8, "012", canonical=nas_bench_macro_canonical),
        metric="mean_acc",
        runs="test_acc",
        params_key="params",
        flops_key="flops",
        scale=0.01,
        citation="X. Su et al. Prioritized Architecture Sampling with Monte-Carlo Tree Search. CVPR 2021.",
    )


#: benchmark name -> a function of no arguments that returns it; a plugin adds one through the
#: ``archsearch.benchmarks`` entry-point group
TABULAR_BENCHMARKS: Registry = Registry("benchmark", "benchmarks")
TABULAR_BENCHMARKS.register("nas-bench-macro", nas_bench_macro)


def get_benchmark(name: str) -> TabularBenchmark:
    benchmark = TABULAR_BENCHMARKS.lookup(name)()
    if not isinstance(benchmark, TabularBenchmark):
        made = type(benchmark).__name__
        raise ArchsearchError(f"benchmark {name!r}: its factory returned {made}, not a TabularBenchmark")
    return benchmark


class LookupEvaluator(Evaluator):
    """Rewards from a tabular benchmark: ``metric * scale``, or with ``noisy`` one recorded run,
    drawn by the trial's seed. A code the table lacks (and no default stands in for) is a result
    with status ``missing`` and reward 0."""

    name: ClassVar[str] = "lookup"
    times: ClassVar[bool] = False

    def __init__(self, benchmark: TabularBenchmark | str, noisy: bool = False) -> None:
        self.benchmark = get_benchmark(benchmark) if isinstance(benchmark, str) else benchmark
        self.noisy = bool(noisy)
        self.task = None
        if self.noisy and self.benchmark.runs is None:
            raise ArchsearchError(f"trainer.noisy: {self.benchmark.name} records no individual runs")

    def evaluate(self, archs: Sequence[Architecture], seeds: Sequence[int]) -> Iterator[tuple[int, Result]]:
        if len(archs) != len(seeds):
            raise ValueError(f"evaluate: {len(archs)} architectures but {len(seeds)} seeds")
        bench = self.benchmark
        for index, (arch, seed) in enumerate(zip(archs, seeds)):
            record = bench.record(arch)
            if record is None:
                yield index, Result.failure("missing", f"code {arch}: not in the {bench.name} table")
                continue
            if self.noisy:
                runs = record[bench.runs]
                value = float(runs[int(np.random.default_rng(int(seed)).integers(len(runs)))])
            else:
                value = float(record[bench.metric])
            reward = value * bench.scale
            params = int(record[bench.params_key]) if bench.params_key else 0
            yield index, Result(reward=reward, val_score=reward, val_curve=[reward], params=params)

    def to_config(self) -> dict[str, Any]:
        return {"name": self.name, "benchmark": self.benchmark.name, "noisy": self.noisy}

    def costs(self, arch: Architecture) -> dict[str, int | None]:
        return self.benchmark.costs(arch)

    def latency(self, arch: Architecture) -> tuple[float, float] | None:
        return None

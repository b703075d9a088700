"""Tabular benchmarks: the reward of an architecture is looked up, not trained.

A lookup costs microseconds, so strategies can be compared over many seeds in
seconds and only the strategy is measured. Adding a benchmark takes a table (a
JSON object mapping each code to its metrics), a :class:`CodeSpace` describing
the codes, and one line in :data:`TABULAR_BENCHMARKS`; see
:func:`nas_bench_macro` for a complete example.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from archsearch.errors import ArchsearchError
from archsearch.evaluation._base import Evaluator
from archsearch.evaluation._result import Result
from archsearch.space import Architecture
from archsearch.space._code import CANONICAL_FORMS, CodeArchitecture, CodeSpace


@dataclass(frozen=True, eq=False)
class TabularBenchmark:
    """A table of architecture code -> metrics, and the space of its codes.

    ``metric`` names the value that becomes the reward (times ``scale``, to bring it
    into [0, 1]); ``runs`` names a list of per-run values, one of which is drawn when
    the lookup is noisy.
    """

    name: str
    space: CodeSpace
    records: dict[str, dict[str, Any]] = field(repr=False)
    metric: str
    runs: str | None = None
    scale: float = 1.0
    citation: str = ""

    @classmethod
    def from_json(cls, name: str, path: str | Path, space: CodeSpace, **options: Any) -> TabularBenchmark:
        """Read a table from a JSON object ``{code: {metric: value, ...}, ...}``."""
        try:
            records = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ArchsearchError(f"{path}: cannot read the {name} table ({exc})") from None
        benchmark = cls(name, space, records, **options)
        missing = [code for code in list(records)[:10] if benchmark.metric not in records[code]]
        if missing:
            raise ArchsearchError(f"{path}: record {missing[0]!r} has no {benchmark.metric!r}")
        return benchmark

    def record(self, arch: Architecture) -> dict[str, Any]:
        if not isinstance(arch, CodeArchitecture) or arch.benchmark != self.name:
            raise ArchsearchError(f"{self.name}: {arch} is not one of this benchmark's architectures")
        try:
            return self.records[arch.code]
        except KeyError:
            raise ArchsearchError(f"{self.name}: no record for code {arch.code!r}") from None

    def value(self, arch: Architecture) -> float:
        """The metric behind the reward, in the table's own units."""
        return float(self.record(arch)[self.metric])

    @functools.cached_property
    def best_value(self) -> float:
        return max(float(r[self.metric]) for r in self.records.values())

    @functools.cached_property
    def best_codes(self) -> tuple[str, ...]:
        return tuple(sorted(c for c, r in self.records.items() if float(r[self.metric]) == self.best_value))


def _macro_canonical(code: str) -> str:
    """Within layers 4-5 and within layers 7-8 an identity may sit first or second: put it second."""
    symbols = list(code)
    for first, second in ((3, 4), (6, 7)):
        if len(symbols) > second and symbols[first] == "0" and symbols[second] != "0":
            symbols[first], symbols[second] = symbols[second], symbols[first]
    return "".join(symbols)


CANONICAL_FORMS["nas-bench-macro"] = _macro_canonical


@functools.cache
def nas_bench_macro() -> TabularBenchmark:
    """NAS-Bench-Macro on CIFAR-10 (Su et al., CVPR 2021), shipped with archsearch."""
    path = resources.files("archsearch") / "data" / "nas-bench-macro" / "nas-bench-macro_cifar10.json"
    return TabularBenchmark.from_json(
        "nas-bench-macro",
        str(path),
        CodeSpace("nas-bench-macro", 8, "012"),
        metric="mean_acc",
        runs="test_acc",
        scale=0.01,
        citation="X. Su et al. Prioritized Architecture Sampling with Monte-Carlo Tree Search. CVPR 2021.",
    )


TABULAR_BENCHMARKS: dict[str, Callable[[], TabularBenchmark]] = {"nas-bench-macro": nas_bench_macro}


def get_benchmark(name: str) -> TabularBenchmark:
    if name not in TABULAR_BENCHMARKS:
        raise ArchsearchError(f"benchmark: unknown benchmark {name!r} (known: {', '.join(sorted(TABULAR_BENCHMARKS))})")
    return TABULAR_BENCHMARKS[name]()


class LookupEvaluator(Evaluator):
    """Rewards from a tabular benchmark: ``metric * scale``, or with ``noisy`` one recorded run,
    drawn by the trial's seed."""

    name: ClassVar[str] = "lookup"

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
            if self.noisy:
                runs = record[bench.runs]
                value = float(runs[int(np.random.default_rng(int(seed)).integers(len(runs)))])
            else:
                value = float(record[bench.metric])
            reward = value * bench.scale
            yield (
                index,
                Result(reward=reward, val_score=reward, val_curve=[reward], params=int(record.get("params", 0))),
            )

    def to_config(self) -> dict[str, Any]:
        return {"name": self.name, "benchmark": self.benchmark.name, "noisy": self.noisy}

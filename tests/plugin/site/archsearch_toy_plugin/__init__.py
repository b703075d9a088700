"""A third-party package as a user would publish one: a tabular benchmark and the space of its codes,
declared through entry points (see ``archsearch_toy_plugin-0.1.dist-info/entry_points.txt``)."""

from __future__ import annotations

from pathlib import Path

from archsearch.evaluation import TabularBenchmark
from archsearch.space import CodeSpace


class ToySpace(CodeSpace):
    """The codes of the toy table: three positions of 'a' or 'b'. A space kind of its own, so that a
    study of it can only be reopened where this package is installed."""

    kind = "toy-code"


def toy_benchmark() -> TabularBenchmark:
    """Eight codes; 'bab' is the best."""
    table = Path(__file__).with_name("table.json")
    return TabularBenchmark.from_json("toy", table, ToySpace("toy", 3, "ab"), metric="accuracy", scale=0.01)

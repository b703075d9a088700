"""Shared helpers for the benchmark scripts: a table on the terminal and a JSON file beside it."""

from __future__ import annotations

import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    from archsearch.evaluation._batched import available_cores

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cores": available_cores(),
        "processor": platform.processor() or platform.machine(),
        "when": time.strftime("%Y-%m-%d %H:%M:%S"),
        "argv": sys.argv[1:],
    }


def report(name: str, title: str, columns: list[str], rows: list[list[Any]], data: dict[str, Any]) -> Path:
    """Print ``rows`` as a table and write ``data`` (plus the machine) to results/NAME.json."""
    table = Table(title=title)
    for column in columns:
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(
            *(
                f"{v:,.3f}"
                if isinstance(v, float) and abs(v) < 1000
                else f"{v:,.0f}"
                if isinstance(v, float)
                else str(v)
                for v in row
            )
        )
    Console().print(table)
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"machine": machine(), **data}, indent=2))
    print(f"written: {path}")
    return path


def best_of(repeats: int, fn) -> float:  # noqa: ANN001
    """Shortest wall time of ``repeats`` calls: the least disturbed by a shared machine."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)

"""The docs state what the code does: the limits page matches archsearch._limits, and every local link resolves.

The pages' Python blocks are run by the collector in the repository's conftest.py, not here.
"""

from __future__ import annotations

import argparse
import math
import re
from pathlib import Path

import pytest

from archsearch import _limits as limits
from archsearch._objectives import MAX_COUNT_LIMIT, MAX_LATENCY_MS
from archsearch.cli import build_parser
from archsearch.space import _formula as formula
from archsearch.space._cells import MAX_DAG_NODES, MAX_TREE_LEAVES
from archsearch.space._components import MAX_CHILD_LAYERS
from archsearch.strategies._population import MAX_CYCLES, MAX_PIECE_EPOCHS, MAX_POPULATION
from archsearch.study._population import MAX_PIECES
from archsearch.tasks._text import MAX_TEXT_BYTES

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
#: pages that other work packages add; a link to them is checked once they exist on the branch


def power(number: int) -> str:
    """A bound as the limits page writes it: 10^7 and 2^20 for large powers, plain digits otherwise."""
    for base, smallest in ((10, 4), (2, 16)):
        exponent = round(math.log(number, base))
        if exponent >= smallest and base**exponent == number:
            return f"{base}^{exponent}"
    return str(number)


def test_the_limits_page_states_the_bounds_the_code_enforces() -> None:
    text = (ROOT / "docs" / "limits.md").read_text()
    rows = dict(re.findall(r"^\| (.+?) \| (.+?) \|$", text, flags=re.MULTILINE)[1:])  # after the header
    assert limits.MAX_SEED == 2**63 - 1
    workers = f"{limits.WORKERS_PER_CORE} per core of this machine, and {limits.MAX_WORKERS}"
    rates = f"finite, at most {limits.plain(limits.MAX_RATE)}"
    expected = {
        "`--workers`, `--jobs` (processes)": workers,
        "`--threads`": f"the cores of this machine ({limits.MAX_THREADS} in a study file)",
        "`--max-layers`": f"{limits.MLP_MAX_LAYERS} for mlp, {limits.CNN_MAX_LAYERS} for cnn (with skips, layer i has "
        f"2^(i-1) skip sets); code spaces: {limits.CODE_MAX_LENGTH} symbols",
        "space choices": f"{limits.MAX_CHOICES} per decision; units up to {limits.MAX_UNITS}, filters "
        f"{limits.MAX_FILTERS}, kernels {limits.MAX_KERNEL}, strides {limits.MAX_STRIDE}",
        "`--steps`, `--children-per-step`": f"{power(limits.MAX_STEPS)}, {power(limits.MAX_CHILDREN_PER_STEP)}",
        "`--max-epochs`, `--patience`, `--batch-size`": f"{power(limits.MAX_EPOCHS)}, {power(limits.MAX_COUNT)}, "
        f"{power(limits.MAX_BATCH_SIZE)}",
        "`--lr`, `--weight-decay`, `--controller-lr`, `--entropy-weight`": rates,
        "`--time-limit`": f"finite, at most {power(limits.MAX_TIME_LIMIT)} seconds",
        "`--seed`, `--split-seed`": "0 to 2^63 - 1",
        "`--retries`": str(limits.MAX_RETRIES),
        "`--folds`, `--ensemble`": f"{limits.MAX_FOLDS}, {limits.MAX_ENSEMBLE}",
        "`--max-params`, `--max-flops`, `--max-latency-ms`, `--cost-target`, `--cost-weight`": f"{power(MAX_COUNT_LIMIT)}, "
        f"{power(MAX_COUNT_LIMIT)}, {power(MAX_LATENCY_MS)} ms; a target as its limit; the weight -10 to 0",
        "`--curriculum START,EVERY[,BY]`": "START within the space's layers; EVERY and BY "
        f"{power(limits.MAX_CURRICULUM)}",
        "`--seeds`, `--budget`, `--n`, `--top`": f"{power(limits.MAX_SEEDS)}, {power(limits.MAX_BUDGET)}, "
        f"{power(limits.MAX_BUDGET)}, {power(limits.MAX_COUNT)}",
        "`--device`": "`cpu`, `cuda` or `cuda:N`, and only one this machine has",
        "controller": f"hidden size {limits.MAX_HIDDEN_SIZE}, {limits.MAX_CONTROLLER_LAYERS} layers, rank window "
        f"{power(limits.MAX_COUNT)}",
        "`--controller-steps`, `--derive`, `--retrain`, `--warmup`": f"{power(limits.MAX_COUNT)} each, `--retrain` at most "
        f"`--derive`; a supernet {power(limits.MAX_SUPERNET_PARAMS)} parameters",
        "`--hidden` (cells), `--max-layers` (dag-cell nodes), tree leaves": f"{limits.MAX_HIDDEN_SIZE}; "
        f"{MAX_DAG_NODES}; a power of 2 up to {MAX_TREE_LEAVES}",
        "`--reward-words`, `--pass-words`": f"{power(limits.MAX_BATCH_SIZE)}; {power(limits.MAX_STEPS * 1000)}",
        "a PTB text file": f"{MAX_TEXT_BYTES >> 30} GiB",
        "a formula (`--activation`, `--update-rule`, a study's component architecture)": f"{formula.MAX_TEXT} characters, "
        f"{formula.MAX_DEPTH} levels deep, {formula.MAX_NODES} operations; a fixed child of {MAX_CHILD_LAYERS} layers",
        "`--strategy-settings` of miha and pbt": f"epochs of a piece (m, n, k, interval) {power(MAX_PIECE_EPOCHS)}; "
        f"pop_size, population_size {power(MAX_POPULATION)}; c, rounds {power(MAX_CYCLES)}; quantile above 0 to 0.5, "
        f"resample 0 to 1; a schedule file {power(MAX_PIECES)} pieces",
    }
    assert rows == expected


def anchors(page: Path) -> set[str]:
    """The anchors GitHub gives a page's headings: lower case, punctuation dropped, spaces as hyphens."""
    headings = re.findall(r"^#+ (.+)$", page.read_text(), flags=re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-") for heading in headings}


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_every_local_link_of_a_page_resolves(page: Path) -> None:
    links = re.findall(r"\]\(([^)\s#]*)(?:#([^)\s]*))?\)", page.read_text())
    broken = []
    for target, anchor in links:
        path = page.parent / target if target else page
        if "://" in target:
            continue
        if not path.exists() or (anchor and anchor not in anchors(path)):
            broken.append(f"{target}#{anchor}" if anchor else target)
    assert broken == []


def test_the_readme_stays_a_front_door() -> None:
    """At most about 150 lines, the two set-up commands first after the opening paragraph, and every command."""
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 150
    first_block = readme.split("```sh\n", 1)[1].split("```", 1)[0]
    assert [line.split()[:2] for line in first_block.splitlines()] == [["make", "run"], ["make", "test"]]
    commands = set(re.findall(r"^\| `archsearch (\w+)", readme, flags=re.MULTILINE))
    subcommands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    assert commands == set(subcommands.choices)  # every command of the parser has its row

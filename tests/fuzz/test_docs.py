"""docs/hostile-input.md states how many cases of each class the suite generates: it says what the settings do."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from . import test_data_files, test_interrupts, test_tampered
from .test_arguments import EXAMPLES

pytestmark = pytest.mark.fuzz

PAGE = Path(__file__).resolve().parents[2] / "docs" / "hostile-input.md"


def test_the_page_counts_the_cases_the_settings_generate() -> None:
    rows = dict(re.findall(r"^\| (.+?) \| \**(\d+)\** \|", PAGE.read_text(), flags=re.MULTILINE))
    expected = {f"`{command}` argument vectors": count for command, count in EXAMPLES.items()}
    expected["CSV data files (`search --data`)"] = test_data_files.EXAMPLES["csv"]
    expected["`.npz` data files (`search --data`)"] = test_data_files.EXAMPLES["npz"]
    expected["Tampered study files"] = test_tampered.EXAMPLES
    expected["Ctrl-C at a generated point of `search` and `resume`"] = test_interrupts.EXAMPLES
    expected["**Total**"] = sum(expected.values())
    assert {name: int(count) for name, count in rows.items()} == expected

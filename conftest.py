"""The Python code blocks of README.md and docs/ run as tests, so the examples cannot drift from the code.

pytest-markdown-docs' own ``--markdown-docs`` flag would also collect the docstrings of every module
under the test paths (importing each test module a second time); this collects the Markdown pages
only. A block marked ```` ```python notest ```` is shown, not run; its page says why nearby. Each block
runs in a fresh temporary folder, so an example may write ``moons.db`` without touching the checkout.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pytest_markdown_docs.plugin import MarkdownInlinePythonItem, MarkdownTextFile

ROOT = Path(__file__).resolve().parent
PAGES = (ROOT / "README.md", ROOT / "docs")


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    """README.md and the pages under docs/, unless ``--markdown-docs`` already collects them."""
    if parent.config.option.markdowndocs or file_path.suffix != ".md":
        return None
    if file_path == PAGES[0] or PAGES[1] in file_path.parents:
        return MarkdownTextFile.from_parent(parent, path=file_path)
    return None


@pytest.fixture(autouse=True)
def _examples_run_in_a_temporary_folder(request: pytest.FixtureRequest) -> None:
    """A documentation example starts in an empty folder of its own (other tests are left as they are)."""
    if isinstance(request.node, MarkdownInlinePythonItem):
        request.getfixturevalue("monkeypatch").chdir(request.getfixturevalue("tmp_path"))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Slow tests first: with the suite spread over the cores (``-n 2``), a long test started last would
    leave the other cores idle while it finishes."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)

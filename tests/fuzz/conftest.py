"""Fixtures of the fuzz suite: the studies built once per session, and a fresh folder per generated case."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ._harness import build_library


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "fuzz: generated hostile inputs (Hypothesis); part of the default run")


@pytest.fixture(scope="session")
def library(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Real studies (random MLP search, REINFORCE with saved children, a CSV study, a sample study)."""
    return build_library(tmp_path_factory.mktemp("fuzz-library"))


@pytest.fixture(scope="session")
def case_folder(tmp_path_factory: pytest.TempPathFactory) -> Callable[[], contextlib.AbstractContextManager[Path]]:
    """A context manager giving an empty folder per generated case, removed afterwards."""
    base = tmp_path_factory.mktemp("fuzz-cases")

    @contextlib.contextmanager
    def folder() -> Iterator[Path]:
        path = Path(tempfile.mkdtemp(dir=base))
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)

    return folder

"""Fixtures of the benchmark-suite tests: a real server, and the dashboard tests' browser."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

# the dashboard tests' headless Chromium, its pages, and their screenshots on failure
from dashboard.conftest import artifacts, browser, page, pytest_runtest_makereport

from tracker._server._runner import EmbeddedServer

__all__ = ["artifacts", "browser", "page", "pytest_runtest_makereport"]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[EmbeddedServer]:
    """A keyless server on loopback over a fresh SQLite file."""
    with EmbeddedServer(f"sqlite:///{tmp_path / 'tracker.db'}") as running:
        yield running

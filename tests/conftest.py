"""Shared fixtures: every test starts with no live run and leaves none behind."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tracker import _process


@pytest.fixture(autouse=True)
def _no_live_runs() -> Iterator[None]:
    """Finish runs a test left live, so one failure cannot spill into the next test."""
    yield
    for run in _process.live_runs():
        run.finish(quiet=True)
    _process.set_current(None)

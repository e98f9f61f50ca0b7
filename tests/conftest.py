"""Shared fixtures: every test starts with no live run and leaves none behind."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

import tracker
from tracker import _process
from tracker._server._runner import EmbeddedServer

# CI draws the same examples every run, so a submission is judged on what was tested;
# local runs keep exploring new ones.
settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI"):
    settings.load_profile("ci")


@pytest.fixture(autouse=True)
def _isolated_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No settings file or TRACKER_* variable of the machine reaches a test, and unless a
    test asks runs do not capture the console (pytest's own capture stays in charge),
    sample system metrics, nor store the checkout's git state and diff or the installed
    packages as run files."""
    for name in list(os.environ):
        if name.startswith("TRACKER_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("TRACKER_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("TRACKER_CONSOLE", "off")
    monkeypatch.setenv("TRACKER_DISABLE_STATS", "1")
    monkeypatch.setenv("TRACKER_DISABLE_GIT", "1")
    monkeypatch.setenv("TRACKER_SAVE_REQUIREMENTS", "0")


@pytest.fixture(autouse=True)
def _no_live_runs() -> Iterator[None]:
    """Finish runs a test left live, so one failure cannot spill into the next test."""
    yield
    for run in _process.live_runs():
        run.finish(quiet=True)
    _process.set_current(None)


@pytest.fixture
def offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., tracker.Run]:
    """Start a silent offline run under the test's folder, which is also the working
    directory: ``offline(**init_kwargs)``."""
    monkeypatch.chdir(tmp_path)

    def start(**kwargs: Any) -> tracker.Run:
        return tracker.init(project="tests", dir=tmp_path, settings={"silent": True}, **kwargs)

    return start


@pytest.fixture
def metadata_recorded() -> Callable[[tracker.Run], None]:
    """``metadata_recorded(run)`` waits until the run's metadata thread has appended its
    ``run`` record, which can otherwise land after a flush and be counted as queued."""

    def wait(run: tracker.Run) -> None:
        assert run._metadata is not None, "the run collects no metadata"
        assert run._metadata.wait(10.0), "the run's metadata took over 10 s"

    return wait


@pytest.fixture
def server(tmp_path: Path) -> Iterator[EmbeddedServer]:
    """A keyless server on loopback over a fresh SQLite file."""
    with EmbeddedServer(f"sqlite:///{tmp_path / 'tracker.db'}") as running:
        yield running

"""Fixtures of the dashboard tests: a real server, runs streamed into it, headless Chromium.

The browser is Debian's chromium (``apt-get install chromium``; `.ci/run` installs it),
driven by Playwright's Python package; Playwright's own browser downloads are not used.
When a browser test fails, a screenshot of its page is saved under an artifacts folder
whose path the test's output prints.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import tracker._init
from tracker._run import Run
from tracker._server._runner import EmbeddedServer

CHROMIUM = "/usr/bin/chromium"
ALICE_KEY = "alice-dashboard-key"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Keep each phase's report on the test item, so fixtures can tell that a test failed."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium per test module: Playwright's sync API runs an event loop on
    this thread while it is open, which asyncio tests of later modules could not share."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing: install it with `apt-get install -y chromium`")
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield launched
        launched.close()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """Where screenshots of failed browser tests go ($TRACKER_TEST_ARTIFACTS or a temp dir)."""
    folder = os.environ.get("TRACKER_TEST_ARTIFACTS") or tempfile.mkdtemp(
        prefix="tracker-dashboard-artifacts-"
    )
    path = Path(folder)
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
def page(browser: Any, artifacts: Path, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A fresh browser page (laptop-sized); script errors fail the test; screenshot on failure."""
    context = browser.new_context(viewport={"width": 1366, "height": 860})
    opened = context.new_page()
    opened.set_default_timeout(10_000)
    errors: list[str] = []
    opened.on("pageerror", lambda error: errors.append(str(error)))
    # "Failed to load resource" is Chromium noting an error status the page expects (a 404)
    opened.on(
        "console",
        lambda message: (
            errors.append(message.text)
            if message.type == "error" and not message.text.startswith("Failed to load resource")
            else None
        ),
    )
    yield opened
    failed = getattr(request.node, "report_call", None)
    if failed is not None and failed.failed:
        shot = artifacts / f"{request.node.name}.png"
        opened.screenshot(path=str(shot), full_page=True)
        print(f"dashboard test failed: screenshot at {shot}")
    context.close()
    assert not errors, f"the page logged errors: {errors}"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[EmbeddedServer]:
    """A keyless server on loopback over a fresh SQLite file."""
    with EmbeddedServer(f"sqlite:///{tmp_path / 'tracker.db'}") as running:
        yield running


@pytest.fixture
def alice_key() -> str:
    """The API key of the entity ``alice`` on `keyed_server`."""
    return ALICE_KEY


@pytest.fixture
def keyed_server(tmp_path: Path) -> Iterator[EmbeddedServer]:
    """A server that needs API keys; alice's is `alice_key`."""
    db = f"sqlite:///{tmp_path / 'tracker.db'}"
    with EmbeddedServer(db, api_keys=[f"alice:{ALICE_KEY}"]) as running:
        yield running


@pytest.fixture
def start_run(tmp_path: Path) -> Iterator[Callable[..., Run]]:
    """Start a run streaming to a server: ``start_run(server, project="p", **init_kwargs)``;
    ``settings={...}`` adds settings (``{"console": "auto"}`` captures what the test prints)."""
    runs: list[Run] = []

    def start(
        server: EmbeddedServer,
        api_key: str | None = None,
        settings: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> Run:
        settings = {"base_url": server.url, "silent": True, **(settings or {})}
        if api_key is not None:
            settings["api_key"] = api_key
        run = tracker._init.init(
            dir=tmp_path / "runs", reinit="create_new", settings=settings, **kwargs
        )
        runs.append(run)
        return run

    yield start
    for run in runs:
        run.finish(quiet=True)


@pytest.fixture
def system_sample() -> Callable[..., None]:
    """``system_sample(run, **metrics)`` appends one ``system`` record (``_timestamp``: now)
    to a live run as its system sampler does, for metrics no machine here has (GPUs) and
    exact values."""

    def sample(run: Run, **metrics: float) -> None:
        assert run._record_system({"_timestamp": time.time(), **metrics})

    return sample

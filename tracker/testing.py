"""Testing code that uses tracker: capture what its runs log, with no server and nothing
left behind (as structlog's ``testing`` module captures logs), or stream them to a server
that keeps everything in memory.

    from tracker.testing import capture_runs

    def test_training_logs_a_falling_loss():
        with capture_runs() as captured:
            train()  # calls tracker.init(), run.log(), run.finish()
        (run,) = captured.runs
        losses = [row["loss"] for row in run.history(keys=["loss"])]
        assert losses[-1] < losses[0]
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from tracker import _init
from tracker._api import Api
from tracker._reader import StoredRun, read_run

__all__ = ["CapturedRuns", "MemoryServer", "capture_runs", "memory_server"]


class CapturedRuns:
    """The runs started inside a `capture_runs` block, as they are stored."""

    def __init__(self, capture: _init.Capture, directory: Path) -> None:
        """Read the runs of ``capture``, kept under ``directory``."""
        self._capture = capture
        self.dir = directory
        """Where the captured runs are stored while the block is open."""
        self._stored: list[StoredRun] | None = None

    @property
    def runs(self) -> list[StoredRun]:
        """Every run started in the block, in start order, read back as `tracker.read_run`
        gives it (a live run first flushes what it logged, its metadata collected)."""
        if self._stored is not None:
            return list(self._stored)
        for run in self._capture.runs:
            if run._metadata is not None:  # collected after init() returned
                run._metadata.wait(run.settings.finish_timeout)
            run.flush(timeout=run.settings.finish_timeout)
        return [read_run(run.dir) for run in self._capture.runs if run.dir]

    def _close(self) -> None:
        """Finish what the block left running, and keep what the runs stored in memory."""
        for run in self._capture.runs:
            run.finish(quiet=True)
        self._stored = self.runs


@contextlib.contextmanager
def capture_runs(dir: str | os.PathLike[str] | None = None) -> Iterator[CapturedRuns]:
    """Make every `tracker.init()` inside the block an offline, silent run stored under
    ``dir`` (default: a temporary folder, removed at the end), whatever the settings and
    the environment say, and give access to what the runs logged.

    Runs still live at the end of the block are finished; ``captured.runs`` stays
    readable after it.
    """
    with contextlib.ExitStack() as stack:
        root = (
            Path(dir)
            if dir is not None
            else Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="tracker-capture-")))
        )
        capture = _init.Capture({"mode": "offline", "root_dir": str(root), "silent": True})
        captured = CapturedRuns(capture, root)
        _init.captures.append(capture)
        try:
            yield captured
        finally:
            _init.captures.remove(capture)
            captured._close()


class MemoryServer:
    """A tracker server on a free loopback port whose database is memory: the real client
    and server code, nothing on disk, everything gone when it stops."""

    def __init__(self, url: str) -> None:
        """Describe the running server at ``url``."""
        self.url = url
        """Pass it as ``settings={"base_url": server.url}`` (or ``TRACKER_BASE_URL``)."""

    def api(self) -> Api:
        """A `tracker.Api` reading from this server."""
        return Api(self.url)


@contextlib.contextmanager
def memory_server() -> Iterator[MemoryServer]:
    """Run a `MemoryServer` for the block: online runs stream to it over the real
    websocket and HTTP transports, and `MemoryServer.api` reads them back.

    Raises:
        UsageError: the server could not start.
    """
    from tracker._server._runner import EmbeddedServer
    from tracker._server.storage import MEMORY

    with EmbeddedServer(MEMORY) as server:
        yield MemoryServer(server.url)

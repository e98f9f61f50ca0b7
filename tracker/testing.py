"""Testing code that uses tracker: capture what its runs log, with no server and nothing
left behind (as structlog's ``testing`` module captures logs).

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
from tracker._reader import StoredRun, read_run

__all__ = ["CapturedRuns", "capture_runs"]


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
        gives it (a live run first flushes what it logged)."""
        if self._stored is not None:
            return list(self._stored)
        for run in self._capture.runs:
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

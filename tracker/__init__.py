"""tracker: async-native experiment tracking.

    run = tracker.init(project="mnist", config={"lr": 3e-4})
    run.log({"loss": 0.25})
    run.finish()

`run.log()` costs about a microsecond; a background thread writes every row to
the run log on disk. See docs/ for the guides and the reference.
"""

from __future__ import annotations

from typing import Any

from tracker import _process
from tracker._api import Api, ApiRun
from tracker._config import Config
from tracker._current import define_metric, log_code, save, unwatch, watch
from tracker._errors import AuthenticationError, CommError, Error, UsageError
from tracker._files import RunFile
from tracker._init import ainit, finish, init, log
from tracker._media import Audio, Histogram, Html, Image, Table, Video
from tracker._reader import StoredRun, read_run
from tracker._records.summary import Summary
from tracker._run import Run
from tracker._settings import Settings
from tracker._status import RunStatus
from tracker._sync import login

__all__ = [
    "Api",
    "ApiRun",
    "Audio",
    "AuthenticationError",
    "CommError",
    "Config",
    "Error",
    "Histogram",
    "Html",
    "Image",
    "Run",
    "RunFile",
    "RunStatus",
    "Settings",
    "StoredRun",
    "Summary",
    "Table",
    "UsageError",
    "Video",
    "ainit",
    "define_metric",
    "finish",
    "init",
    "log",
    "log_code",
    "login",
    "read_run",
    "save",
    "unwatch",
    "watch",
]

__version__ = "0.1.0"

for _public in (
    Api,
    ApiRun,
    Audio,
    AuthenticationError,
    CommError,
    Config,
    Error,
    Histogram,
    Html,
    Image,
    Run,
    RunFile,
    RunStatus,
    Settings,
    StoredRun,
    Summary,
    Table,
    UsageError,
    Video,
):
    _public.__module__ = "tracker"
del _public


class _NoRunError(UsageError, AttributeError):
    """`tracker.config` / `tracker.summary` with no current run (also an AttributeError,
    so ``hasattr`` works)."""


def __getattr__(name: str) -> Any:
    """`tracker.run` is the current run (or None); `tracker.config` and `tracker.summary`
    are the current run's."""
    if name == "run":
        return _process.current()
    if name in ("config", "summary"):
        run = _process.current()
        if run is None:
            raise _NoRunError(f"tracker.{name}: no active run; call tracker.init() first")
        return getattr(run, name)
    raise AttributeError(f"module 'tracker' has no attribute {name!r}")

"""Process hooks: finish open runs at exit, note how the process ends, reset after fork.

CPython joins non-daemon threads before atexit handlers run, so the "tracker-io"
thread is a daemon and still serves the final flush from here. The exit state
comes from `sys.excepthook` (an uncaught exception: failed; KeyboardInterrupt:
killed) and from `sys.exit` codes, which we note on the way through.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
import time
from types import TracebackType
from typing import TYPE_CHECKING, Any, NoReturn

from tracker._io._thread import io_thread, reset_after_fork
from tracker._lifecycle import exit_state
from tracker._metadata import reset_after_fork as forget_collections
from tracker._metadata import wait_for_collections

if TYPE_CHECKING:
    from tracker._run import Run

__all__ = ["current", "forget", "install", "live_runs", "remember", "set_current"]

_live: dict[int, Run] = {}
_current: Run | None = None
_installed = False
_install_lock = threading.Lock()
_uncaught: BaseException | None = None
_exit_code: int | None = None
_FORK_WAIT_SECONDS = 5.0
"""How long a fork waits, at most, for the I/O and metadata threads to finish their imports."""


def remember(run: Run, *, current: bool) -> None:
    """Track a new live run, finished at exit unless finished before; its `finish()`
    forgets it."""
    global _current
    install()
    _live[id(run)] = run
    run._on_finish.insert(0, lambda: forget(run))
    if current:
        _current = run


def forget(run: Run) -> None:
    """Stop tracking a finished run; it stops being `tracker.run`."""
    global _current
    _live.pop(id(run), None)
    if _current is run:
        _current = None


def current() -> Run | None:
    """The current run (`tracker.run`), or None."""
    return _current


def set_current(run: Run | None) -> None:
    """Make ``run`` the current run."""
    global _current
    _current = run


def live_runs() -> list[Run]:
    """Every run of this process that is not finished yet."""
    return list(_live.values())


def install() -> None:
    """Install the exit, exception and fork hooks once per process."""
    global _installed
    with _install_lock:
        if _installed:
            return
        _installed = True
        atexit.register(_finish_at_exit)
        previous_hook = sys.excepthook
        previous_exit = sys.exit

        def excepthook(
            kind: type[BaseException], value: BaseException, traceback: TracebackType | None
        ) -> Any:
            global _uncaught
            _uncaught = value
            return previous_hook(kind, value, traceback)

        def exit_noting_code(status: str | int | None = None) -> NoReturn:
            global _exit_code
            _exit_code = status if isinstance(status, int) else (0 if status is None else 1)
            previous_exit(status)

        sys.excepthook = excepthook
        sys.exit = exit_noting_code
        os.register_at_fork(before=_before_fork, after_in_child=_after_fork_in_child)


def _finish_at_exit() -> None:
    if _uncaught is not None:
        state, code = exit_state(_uncaught)
    elif _exit_code:
        state, code = "failed", _exit_code
    else:
        state, code = "finished", 0
    for run in live_runs():
        run._finish(state, code, None)
    io_thread().stop(timeout=1.0)


def _before_fork() -> None:
    # A thread importing a module holds that module's import lock; a child forked then
    # inherits the lock held by a thread it does not have, and its first import of the
    # module hangs. The I/O thread imports asyncio as it starts, aiohttp as the first
    # online run starts; a run's metadata thread imports what reads git's answers and the
    # installed packages. Let them finish first.
    deadline = time.monotonic() + _FORK_WAIT_SECONDS
    io_thread().wait_queued(_FORK_WAIT_SECONDS)
    wait_for_collections(max(0.0, deadline - time.monotonic()))


def _after_fork_in_child() -> None:
    global _current
    reset_after_fork()
    forget_collections()
    for run in live_runs():
        run._after_fork_in_child()
    _live.clear()
    _current = None

"""A run's lifecycle: the states a `Run` object goes through, and how an exit ends a run."""

from __future__ import annotations

import enum

__all__ = ["Lifecycle", "exit_state"]


class Lifecycle(enum.Enum):
    """Where a `Run` object is: logging, finishing, finished, or unusable in a forked child."""

    LIVE = "live"
    FINISHING = "finishing"
    FINISHED = "finished"
    FORKED = "inherited by a forked child"


def exit_state(exc: BaseException | None) -> tuple[str, int | None]:
    """The state and exit code a run ends with when ``exc`` escapes it (None: no error)."""
    if exc is None:
        return "finished", None
    if isinstance(exc, KeyboardInterrupt):
        return "killed", 255
    if isinstance(exc, SystemExit):
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        return ("finished" if code == 0 else "failed"), code
    return "failed", 1

"""What a run's records add up to: `RunState`, and the history rows a fold yields.

The client's `read_run`, a live run's summary, `tracker sync` and every server backend
fold the same records into the same `RunState` (`tracker._records.fold`), so a run
read from its directory equals the run read from the server.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from tracker._records.summary import Summary

__all__ = ["RecordError", "Rows", "RunState"]


class RecordError(ValueError):
    """A record that is not what the record spine defines; the message says what is wrong.

    ``index``: where the bad record is in what was being folded (records before it were
    applied, it and those after it were not), when a fold raised it.
    """

    def __init__(self, message: str, index: int | None = None) -> None:
        """Describe the problem (and where, for a fold)."""
        super().__init__(message)
        self.index = index


@dataclass
class RunState:
    """The run's state as its records leave it.

    ``metadata`` holds the ``run`` record fields that have no field of their own here;
    ``files`` the latest ``file`` record of each stored name.
    """

    name: str | None = None
    tags: list[str] = field(default_factory=list)
    group: str | None = None
    job_type: str | None = None
    notes: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    summary: Summary = field(default_factory=Summary)
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    state: str = "running"
    exit_code: int | None = None
    end_time: float | None = None
    created_at: float = 0.0
    last_step: int = -1
    runtime: float = 0.0
    session_start: float = 0.0
    runtime_offset: float = 0.0
    sessions: list[list[Any]] = field(default_factory=list)
    """``[first seq, session]`` of each writer session (`tracker._records.kinds.session_of`)."""


@dataclass
class Rows:
    """History rows as columns, in record order (steps may repeat or go back)."""

    steps: list[int] = field(default_factory=list)
    stamps: list[float] = field(default_factory=list)
    runtimes: list[float] = field(default_factory=list)
    datas: list[dict[str, Any]] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    """The rows' data exactly encoded, cut from their lines (when the fold was given them)."""
    streams: list[Sequence[Any]] = field(default_factory=list)
    """The checked records of stream kinds (`tracker._records.kinds.STREAMS`), in order."""

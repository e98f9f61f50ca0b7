"""The storage interface every backend implements (SQLite now, PostgreSQL next).

The web application speaks only this interface; SQL lives in the backends. Every
method is a coroutine: a backend runs blocking drivers in threads of its own.
Values are plain Python (decoded exactly: NaN, ±inf and big ints included).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = ["RunKey", "StartRequest", "StartResult", "Storage", "StorageError"]


@dataclass(frozen=True)
class RunKey:
    """Where a run lives: ``entity/project/run_id``."""

    entity: str
    project: str
    run_id: str


@dataclass(frozen=True)
class StartRequest:
    """A run handshake (docs/protocol.md, "Starting a run")."""

    key: RunKey
    log_id: str
    mode: str
    """new | allow | never | must | continue | fork | rewind"""
    fork_from: tuple[str, int] | None
    """(parent run id, step) for mode "fork"."""
    rewind_to: int | None
    """The step to rewind to for mode "rewind"."""
    heartbeat_interval: float
    now: float


@dataclass(frozen=True)
class StartResult:
    """The answer to a handshake."""

    resumed: bool
    last_step: int
    acked_seq: int
    run: dict[str, Any]
    """The run document (see `Storage.get_run`)."""


class StorageError(Exception):
    """A request the storage refuses; the app answers with ``status`` and the message."""

    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        """Describe the refusal: HTTP status, a stable code, and a message saying what to do."""
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.extra = extra


class Storage(Protocol):
    """What the server needs from a database."""

    async def start_run(self, request: StartRequest) -> StartResult:
        """Create, continue, replace, fork or rewind a run, per ``request.mode``.

        Raises:
            StorageError: 404 run_not_found, 409 run_exists, 409 bad_step.
        """

    async def ingest(
        self,
        key: RunKey,
        log_id: str,
        records: list[list[Any]],
        now: float,
        lines: Sequence[str] | None = None,
    ) -> int:
        """Apply decoded records (``[seq, kind, ..., payload]``, seq increasing by one) in one
        transaction, skipping those with seq <= the log's stored seq; return the new stored seq.
        ``lines``, the records' JSON lines as received, lets rows be stored as they came
        (`tracker._records.kinds.row_data_texts`) instead of encoded again.

        Raises:
            StorageError: 404 run_not_found (no handshake), 409 seq_gap (with ``acked_seq``).
        """

    async def heartbeat(self, key: RunKey, now: float) -> None:
        """Note that the run's client is alive."""

    async def sweep_crashed(self, now: float) -> int:
        """Mark running runs whose heartbeats stopped as crashed; return how many."""

    async def list_projects(self, entity: str) -> list[dict[str, Any]]:
        """The entity's projects: ``name``, ``runs`` (count), ``updated_at``."""

    async def list_runs(
        self,
        entity: str,
        project: str,
        filters: dict[str, Any],
        order: str,
        limit: int,
        offset: int,
    ) -> tuple[list[dict[str, Any]], int]:
        """One page of run documents matching ``filters``, and the total that match."""

    async def get_run(self, key: RunKey) -> dict[str, Any] | None:
        """The run document: id, name, entity, project, state, config, summary, tags, group,
        job_type, notes, created_at, updated_at, heartbeat_at, end_time, exit_code, last_step,
        parent ({"run_id", "step"} or None)."""

    async def history(
        self,
        key: RunKey,
        keys: list[str] | None,
        min_step: int | None,
        max_step: int | None,
        samples: int | None,
    ) -> list[dict[str, Any]]:
        """History rows in step order with _step, _timestamp, _runtime (docs/protocol.md)."""

    async def update_run(self, key: RunKey, changes: dict[str, Any], now: float) -> None:
        """Edit tags or notes of a run from the dashboard."""

    async def put_file(self, key: RunKey, name: str, content: bytes, now: float) -> None:
        """Store a file of the run (replacing one of the same name)."""

    async def list_files(self, key: RunKey) -> list[dict[str, Any]]:
        """The run's files: name, size, sha256, updated_at."""

    async def get_file(self, key: RunKey, name: str) -> bytes | None:
        """A file's bytes, or None."""

    async def add_api_key(self, entity: str, api_key: str) -> None:
        """Allow ``api_key`` (stored hashed) to act as ``entity``."""

    async def entity_for_key(self, api_key: str) -> str | None:
        """The entity an API key acts as, or None for an unknown key."""

    async def has_api_keys(self) -> bool:
        """Whether any API key is configured."""

    async def list_runs_sorted(
        self,
        entity: str,
        project: str,
        filters: dict[str, Any],
        sort: list[str],
        descending: bool,
        limit: int,
        offset: int,
    ) -> tuple[list[dict[str, Any]], int]:
        """Like `list_runs`, ordered by any column the dashboard's runs table sorts on.

        ``sort`` is ``[COLUMN]`` (name, created_at, updated_at, state, group, job_type,
        runtime, last_step) or ``["config" | "summary", KEY, ...]``, a path into nested
        dicts. Runs without a value come last in both directions.

        Raises:
            StorageError: 400 bad_filter, bad_order or bad_request.
        """

    async def chart_series(
        self, key: RunKey, keys: list[str] | None, min_step: int | None, samples: int
    ) -> dict[str, Any]:
        """The run's numeric history as chart columns, for the dashboard.

        Returns ``{"last_step": N, "series": {KEY: {"step", "value", "runtime",
        "timestamp"}}}``: per key (``keys``, default every key), lists of equal length over
        the rows with step >= ``min_step`` holding it, cut per key to about ``samples``
        points with each bucket's smallest and largest value kept (as history's
        ``samples``). Values are floats, NaN for non-numbers; keys holding no finite value
        there are left out. ``last_step`` is the run's last step in the same snapshot, so a
        reader asking again with ``min_step=last_step + 1`` misses nothing.

        Raises:
            StorageError: 400 bad_request, 404 run_not_found.
        """

    async def close(self) -> None:
        """Finish what is in flight and release the database."""

"""What the storage tests make and compare: records as a client sends them, handshakes."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from tracker._records.codec import encode_record
from tracker._records.kinds import decode_record
from tracker._server.storage import RunKey, StartRequest, StartResult, Store

KEY = RunKey("local", "mnist", "abc12345")
LOG = "6f1c0b1e9d3a4c7e8b2f5a0d4e6c8b1a"
LOG2 = "0" * 32
NOW = 1_800_000_000.0


def records(*items: tuple[Any, ...], seq: int = 0) -> list[list[Any]]:
    """Records ``(kind, *head, payload)`` as a client writes them and the server decodes them."""
    out = []
    for offset, (kind, *fields) in enumerate(items):
        *head, payload = fields
        line = encode_record((seq + offset, kind, *head), payload, kind)
        out.append(decode_record(line))
    return out


def rows(steps: Iterable[int], seq: int = 0, **extra: Any) -> list[list[Any]]:
    """Row records with ``{"loss": step / 10, **extra}`` at 1 s per step."""
    return records(
        *(("row", step, 1000.0 + step, {"loss": step / 10, **extra}) for step in steps), seq=seq
    )


def row_records(pairs: Iterable[tuple[int, dict[str, Any]]], seq: int = 0) -> list[list[Any]]:
    """Row records for (step, data) pairs at 1 s per step."""
    return records(*(("row", step, 1000.0 + step, data) for step, data in pairs), seq=seq)


async def put_bytes(store: Store, key: RunKey, name: str, content: bytes, now: float) -> None:
    """Store ``content`` as a run file, spooled as the server spools an upload."""
    with store.spool() as upload:
        upload.write(content)
        await store.put_file(key, name, upload, now)


async def start(
    store: Store,
    mode: str = "new",
    key: RunKey = KEY,
    log_id: str = LOG,
    fork_from: tuple[str, int] | None = None,
    rewind_to: int | None = None,
    now: float = NOW,
    interval: float = 10.0,
    sessions: list[list[Any]] | None = None,
) -> StartResult:
    """Handshake for ``key`` (telling the log's writer ``sessions``)."""
    return await store.start_run(
        StartRequest(key, log_id, mode, fork_from, rewind_to, interval, now, sessions or [])
    )


async def run_with_rows(store: Store, steps: range, key: RunKey = KEY) -> None:
    """A new run holding a run record, a config and rows at ``steps``."""
    await start(store, key=key)
    opening = records(
        ("run", {"name": "first", "start_time": 1000.0, "tags": ["a"]}), ("config", {"lr": 0.1})
    )
    await store.ingest(key, LOG, opening + rows(steps, seq=2), NOW)


async def stored_run(store: Store, pairs: list[tuple[int, dict[str, Any]]]) -> None:
    """A new run holding ``pairs`` as rows, with a session started at timestamp 1000."""
    await start(store)
    opening = records(("run", {"start_time": 1000.0}))
    await store.ingest(KEY, LOG, [*opening, *row_records(pairs, seq=1)], NOW)


async def history_steps(store: Store, key: RunKey = KEY) -> list[int]:
    """The steps of the run's stored rows."""
    return [row["_step"] for row in await store.history(key, None, None, None, None)]

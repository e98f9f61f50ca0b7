"""Every storage backend the conformance suite runs on: one factory each, by name.

A factory opens a fresh, empty backend for one test and removes what it made afterwards;
PostgreSQL's makes a database of its own on the machine's server and drops it
(`postgres_db`: skipped where there is none, failing in CI).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path

from postgres_db import fresh_database, postgres_missing

from tracker._server.storage.backend import Backend
from tracker._server.storage.memory import MemoryBackend
from tracker._server.storage.sqlite import SQLiteBackend


@contextlib.asynccontextmanager
async def _memory(tmp_path: Path) -> AsyncIterator[Backend]:
    yield MemoryBackend()


@contextlib.asynccontextmanager
async def _sqlite(tmp_path: Path) -> AsyncIterator[Backend]:
    backend = await SQLiteBackend.open(str(tmp_path / "db" / "tracker.db"))
    try:
        yield backend
    finally:
        await backend.close()


@contextlib.asynccontextmanager
async def _postgres(tmp_path: Path) -> AsyncIterator[Backend]:
    from tracker._server.storage.postgres import PostgresBackend

    async with fresh_database() as url:
        backend = await PostgresBackend.open(url)
        try:
            yield backend
        finally:
            await backend.close()


BACKENDS: dict[str, Callable[[Path], AbstractAsyncContextManager[Backend]]] = {
    "memory": _memory,
    "sqlite": _sqlite,
    "postgres": _postgres,
}
"""Every backend, by name: a fresh, empty one in a test's folder, for the ``with`` block."""


def runnable() -> list[str]:
    """The backends that can run here, by name (PostgreSQL only where it is reachable)."""
    return sorted(name for name in BACKENDS if name != "postgres" or postgres_missing() is None)

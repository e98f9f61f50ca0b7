"""Every storage backend the conformance suite runs on: one factory each, by name.

A factory opens a fresh, empty backend for one test and removes what it made afterwards;
PostgreSQL's makes a database of its own on the machine's server (`POSTGRES`, user
postgres, trust auth) and drops it. Where that server is not reachable the PostgreSQL
cases are skipped, except in CI (``CI`` set), where they fail.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from functools import cache
from pathlib import Path
from typing import Final

import pytest

from tracker._server.storage.backend import Backend
from tracker._server.storage.memory import MemoryBackend
from tracker._server.storage.sqlite import SQLiteBackend

POSTGRES: Final = os.environ.get("TRACKER_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432")
"""The PostgreSQL server the tests make their databases on (no database in the URL)."""


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


@cache
def postgres_missing() -> str | None:
    """Why the PostgreSQL cases cannot run here (None: they can); in CI, fail instead."""
    from urllib.parse import urlsplit

    parts = urlsplit(POSTGRES)
    address = (parts.hostname or "127.0.0.1", parts.port or 5432)
    try:
        import asyncpg  # noqa: F401
    except ModuleNotFoundError:
        reason = "asyncpg is not installed (pip install '.[test]')"
    else:
        try:
            socket.create_connection(address, timeout=2).close()
        except OSError as exc:
            reason = f"no PostgreSQL at {address[0]}:{address[1]} ({exc})"
        else:
            return None
    if os.environ.get("CI"):
        pytest.fail(f"CI runs the PostgreSQL conformance suite, but {reason}")
    return reason


@contextlib.asynccontextmanager
async def fresh_database() -> AsyncIterator[str]:
    """The URL of a new, empty PostgreSQL database, dropped afterwards (skips the test
    where there is no PostgreSQL). Its sessions commit without waiting for the disk
    (``synchronous_commit=off``): a test's database needs no durability, and a fresh one
    costs ~0.1 s instead of ~0.2 s."""
    missing = postgres_missing()
    if missing is not None:
        pytest.skip(missing)
    import asyncpg

    name = f"tracker_test_{secrets.token_hex(6)}"
    admin = await asyncpg.connect(f"{POSTGRES}/postgres?synchronous_commit=off")
    try:
        await admin.execute(f"CREATE DATABASE {name}")
        try:
            yield f"{POSTGRES}/{name}?synchronous_commit=off"
        finally:
            await admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
    finally:
        await admin.close()


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

"""The PostgreSQL the tests use: this machine's (`POSTGRES`, user postgres, trust auth),
a fresh database per test, dropped afterwards. Where it is not reachable the PostgreSQL
tests are skipped, except in CI (``CI`` set), where they fail saying why."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
from collections.abc import AsyncIterator, Iterator
from functools import cache
from typing import Final
from urllib.parse import urlsplit

import pytest

POSTGRES: Final = os.environ.get("TRACKER_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432")
"""The PostgreSQL server the tests make their databases on (no database in the URL)."""
TEST_SETTINGS: Final = "?synchronous_commit=off"
"""A test database's sessions commit without waiting for the disk: it needs no
durability, and a fresh one costs ~0.1 s instead of ~0.2 s."""


@cache
def postgres_missing() -> str | None:
    """Why the PostgreSQL tests cannot run here (None: they can); in CI, fail instead."""
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
        pytest.fail(f"CI runs the PostgreSQL tests, but {reason}")
    return reason


async def _admin(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(f"{POSTGRES}/postgres{TEST_SETTINGS}")
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def fresh_database() -> AsyncIterator[str]:
    """The URL of a new, empty database, dropped afterwards (skips the test where there is
    no PostgreSQL)."""
    missing = postgres_missing()
    if missing is not None:
        pytest.skip(missing)
    name = f"tracker_test_{secrets.token_hex(6)}"
    await _admin(f"CREATE DATABASE {name}")
    try:
        yield f"{POSTGRES}/{name}{TEST_SETTINGS}"
    finally:
        await _admin(f"DROP DATABASE {name} WITH (FORCE)")


@contextlib.contextmanager
def database() -> Iterator[str]:
    """`fresh_database` for a test without an event loop of its own."""
    missing = postgres_missing()
    if missing is not None:
        pytest.skip(missing)
    name = f"tracker_test_{secrets.token_hex(6)}"
    asyncio.run(_admin(f"CREATE DATABASE {name}"))
    try:
        yield f"{POSTGRES}/{name}{TEST_SETTINGS}"
    finally:
        asyncio.run(_admin(f"DROP DATABASE {name} WITH (FORCE)"))

"""Fixtures of the storage conformance suite: a `Store` on every backend.

`tests.storage.backends.BACKENDS` names a factory per backend; the ``store`` fixture runs
each test once per entry, so a new backend joins the suite with one entry.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tracker._server.storage import Store

from .backends import BACKENDS


@pytest.fixture
def anyio_backend() -> str:
    """asyncio: the SQLite backend runs its database threads through asyncio's executors,
    and asyncpg (PostgreSQL) is asyncio's."""
    return "asyncio"


@pytest.fixture(params=sorted(BACKENDS))
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """A store on a fresh database of each backend, closed after the test."""
    async with BACKENDS[request.param](tmp_path) as backend:
        opened = Store(backend)
        yield opened
        await opened.close()

"""Every storage backend the conformance suite runs on: one factory each, by name.

PostgreSQL joins with one entry (a factory making a fresh database of its own).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from tracker._server.storage.backend import Backend
from tracker._server.storage.memory import MemoryBackend
from tracker._server.storage.sqlite import SQLiteBackend


async def _memory(tmp_path: Path) -> Backend:
    return MemoryBackend()


async def _sqlite(tmp_path: Path) -> Backend:
    return await SQLiteBackend.open(str(tmp_path / "db" / "tracker.db"))


BACKENDS: dict[str, Callable[[Path], Awaitable[Backend]]] = {
    "memory": _memory,
    "sqlite": _sqlite,
}
"""Every backend, by name: a factory of a fresh, empty one in a test's folder."""

"""The server's storage: one `Store` that owns the rules, over a thin `Backend`.

The app, the dashboard and the auth middleware call only `Store`. It checks arguments
and applies every rule once (start modes, fork and rewind, exactly-once ingest under a
per-run lock, series maintenance, sampling, the filter language); a backend provides the
primitives of `tracker._server.storage.backend`, whose docstring is the contract
(transactions, order, what a backend may assume and must guarantee). Backends:

- `sqlite.SQLiteBackend`: one SQLite file, the embedded default (``sqlite:///PATH``);
- `postgres.PostgresBackend`: PostgreSQL through asyncpg, for teams and several server
  processes on one database (``postgresql://USER@HOST:PORT/DATABASE``, the extra
  ``tracker[postgres]``);
- `memory.MemoryBackend`: dicts, for tests (``memory:``; the conformance suite runs on all three,
  `tracker.testing.memory_server` serves it).

Errors (`errors`) carry a stable code and no HTTP status: the app maps them. Documents
(`document`) are typed. `series` is the chunk format of sampled reads, `filters` the
filter and sort language, `stored` the step between records' fold and stored fields.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Final

from tracker._errors import UsageError
from tracker._server.storage.document import Acked, RunDocument, RunKey
from tracker._server.storage.filters import RunSort, parse_order, parse_sort
from tracker._server.storage.migrations import Migrated
from tracker._server.storage.store import StartRequest, StartResult, Store

if TYPE_CHECKING:
    from tracker._server.storage.postgres import PostgresBackend
    from tracker._server.storage.sqlite import SQLiteBackend

__all__ = [
    "MEMORY",
    "Acked",
    "Migrated",
    "RunDocument",
    "RunKey",
    "RunSort",
    "StartRequest",
    "StartResult",
    "Store",
    "migrate_storage",
    "open_storage",
    "parse_order",
    "parse_sort",
]

_SQLITE: Final = "sqlite:///"
_POSTGRES: Final = ("postgresql://", "postgres://")
MEMORY: Final = "memory:"
"""The database URL of a server that keeps everything in memory (gone when it stops)."""


async def open_storage(db_url: str) -> Store:
    """Open the database named by ``db_url`` (applying its pending schema migrations).

    Raises:
        UsageError: the URL names no supported database, or a missing directory.
        StorageError: the database cannot be opened (not a database, schema too new).
    """
    if db_url == MEMORY:
        from tracker._server.storage.memory import MemoryBackend

        return Store(MemoryBackend())
    return Store(await _open_database(db_url))


async def migrate_storage(db_url: str) -> Migrated:
    """Apply the pending schema migrations of the database named by ``db_url``, then close
    it (``tracker server --migrate``); what was done.

    Raises:
        UsageError: as `open_storage`, and for ``memory:``, which has no schema.
        StorageError: as `open_storage`.
    """
    if db_url == MEMORY:
        raise UsageError("--migrate --db memory: keeps nothing, so has no schema to migrate")
    backend = await _open_database(db_url)
    await backend.close()
    return backend.migrated


async def _open_database(db_url: str) -> SQLiteBackend | PostgresBackend:
    """The database of ``db_url``, opened and migrated (see `open_storage`)."""
    if db_url.startswith(_SQLITE):
        path = db_url[len(_SQLITE) :]
        if not path:
            raise UsageError(f"--db {db_url!r} names no file; use sqlite:///PATH/TO/tracker.db")
        if path != ":memory:" and not Path(path).parent.is_dir():
            raise UsageError(
                f"--db {db_url!r}: the directory {str(Path(path).parent)!r} does not exist; "
                "create it first"
            )
        from tracker._server.storage.sqlite import SQLiteBackend

        return await SQLiteBackend.open(path)
    if db_url.startswith(_POSTGRES):
        try:
            from tracker._server.storage.postgres import PostgresBackend
        except ModuleNotFoundError as exc:
            if exc.name != "asyncpg":
                raise
            raise UsageError(
                "--db postgresql://...: PostgreSQL needs the asyncpg driver, which is not "
                "installed; pip install 'tracker[postgres]'"
            ) from None
        return await PostgresBackend.open(db_url)
    raise UsageError(
        f"--db {db_url!r} is not a database URL this server knows; use sqlite:///PATH "
        "(e.g. sqlite:///tracker.db, or sqlite:////abs/path/tracker.db), "
        "postgresql://USER@HOST:PORT/DATABASE, or memory: for a server that keeps nothing"
    )

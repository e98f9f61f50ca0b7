"""The server's storage: one `Store` that owns the rules, over a thin `Backend`.

The app, the dashboard and the auth middleware call only `Store`. It checks arguments
and applies every rule once (start modes, fork and rewind, exactly-once ingest under a
per-run lock, series maintenance, sampling, the filter language); a backend provides the
primitives of `tracker._server.storage.backend`, whose docstring is the contract
(transactions, order, what a backend may assume and must guarantee). Backends:

- `sqlite.SQLiteBackend`: one SQLite file, the embedded default (``sqlite:///PATH``);
- `memory.MemoryBackend`: dicts, for tests (``memory:``; the conformance suite runs on both,
  `tracker.testing.memory_server` serves it).

Errors (`errors`) carry a stable code and no HTTP status: the app maps them. Documents
(`document`) are typed. `series` is the chunk format of sampled reads, `filters` the
filter and sort language, `stored` the step between records' fold and stored fields.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from tracker._errors import UsageError
from tracker._server.storage.document import RunDocument, RunKey
from tracker._server.storage.filters import RunSort, parse_order, parse_sort
from tracker._server.storage.store import StartRequest, StartResult, Store

__all__ = [
    "MEMORY",
    "RunDocument",
    "RunKey",
    "RunSort",
    "StartRequest",
    "StartResult",
    "Store",
    "open_storage",
    "parse_order",
    "parse_sort",
]

_SQLITE: Final = "sqlite:///"
MEMORY: Final = "memory:"
"""The database URL of a server that keeps everything in memory (gone when it stops)."""


async def open_storage(db_url: str) -> Store:
    """Open the database named by ``db_url``.

    Raises:
        UsageError: the URL names no supported database, or a missing directory.
        StorageError: the database cannot be opened (not a database, schema too new).
    """
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

        return Store(await SQLiteBackend.open(path))
    if db_url == MEMORY:
        from tracker._server.storage.memory import MemoryBackend

        return Store(MemoryBackend())
    if db_url.startswith(("postgresql://", "postgres://")):
        raise UsageError(
            "--db postgresql://...: PostgreSQL support lands in a later release; "
            "use --db sqlite:///PATH for now"
        )
    raise UsageError(
        f"--db {db_url!r} is not a database URL this server knows; use sqlite:///PATH "
        "(e.g. sqlite:///tracker.db, or sqlite:////abs/path/tracker.db), or memory: for "
        "a server that keeps nothing"
    )

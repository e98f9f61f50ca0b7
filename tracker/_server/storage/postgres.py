"""`PostgresBackend`: the storage primitives on PostgreSQL through asyncpg, for teams.

``--db postgresql://USER@HOST:PORT/DATABASE`` (any libpq-style URL asyncpg takes; query
parameters it does not know become server settings, e.g. ``?search_path=tracker``). A pool
of connections serves every transaction: a write is one transaction on one connection
(read committed; `Session.load_run` locks the run's row, so several server processes on
one database serialize each run's writes), a read one ``REPEATABLE READ READ ONLY``
transaction (one snapshot). The schema is `postgres_schema`, migrated at open under an
advisory lock (replicas starting at once migrate once). Driver errors become
`tracker._server.storage.errors`: lock waits, deadlocks, serialization failures, a run
created by two replicas at once, a full server -> `StorageBusy` (retry); the rest ->
`StorageFailed`; a closed backend -> `StorageClosed`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable
from functools import partial
from typing import Any, Final
from urllib.parse import unquote, urlsplit

import asyncpg
import orjson

from tracker._server._tasks import cancel_and_wait
from tracker._server.storage.backend import BatchWrites, CompactWrites, LoggedBatch, StoredRun
from tracker._server.storage.document import RunKey
from tracker._server.storage.errors import (
    StorageBusy,
    StorageClosed,
    StorageError,
    StorageFailed,
)
from tracker._server.storage.migrations import Migrated, pending
from tracker._server.storage.postgres_queries import Session
from tracker._server.storage.postgres_schema import MIGRATIONS

__all__ = ["PostgresBackend"]

_logger = logging.getLogger(__name__)

POOL_SIZE: Final = 10
"""Connections per server process: writes of different runs and reads run at once."""
CONNECT_SECONDS: Final = 10.0
MIGRATION_LOCK: Final = 0x7472_6163_6B00_0002
"""The advisory lock key held while migrating: one process migrates at a time."""
CHANNEL: Final = "tracker_runs"
"""The NOTIFY channel of changed runs; a payload is ``[process, entity, project, run_id]``."""
LISTEN_RETRY_SECONDS: Final = 2.0
"""How long the listening connection waits before it connects again, once lost."""
_BUSY: Final = (
    asyncpg.exceptions.LockNotAvailableError,
    asyncpg.exceptions.DeadlockDetectedError,
    asyncpg.exceptions.SerializationError,
    asyncpg.exceptions.UniqueViolationError,
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.CannotConnectNowError,
)
"""Driver errors where nothing was changed and a retry can succeed."""
_DRIVER: Final = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, asyncio.TimeoutError)


class PostgresBackend:
    """The storage primitives on one PostgreSQL database; create it with `open`."""

    def __init__(self, pool: asyncpg.Pool, url: str) -> None:
        """Serve from ``pool``, the database at ``url``. `open` makes it."""
        self._pool = pool
        self._url = url
        self.where = describe(url)
        self.migrated = Migrated(0, 0)
        """What `open` did to the schema (`tracker._server.storage.migrations`)."""
        self._closed = False
        self._process = uuid.uuid4().hex
        """Names this process in its announcements, so it does not hear its own."""
        self._listener: asyncio.Task[None] | None = None
        self._hearing = False

    @classmethod
    async def open(cls, url: str) -> PostgresBackend:
        """Connect to the database at ``url`` and migrate its schema.

        Raises:
            StorageFailed: the database cannot be reached or logged into (the message names
                host, port and database and what to check).
            SchemaTooNew: it was written by a newer tracker.
        """
        where = describe(url)
        try:
            pool = await asyncpg.create_pool(
                url, min_size=1, max_size=POOL_SIZE, timeout=CONNECT_SECONDS
            )
        except (*_DRIVER, ValueError) as exc:
            raise StorageFailed(
                f"cannot connect to PostgreSQL {where}: {exc}. Check that PostgreSQL runs "
                f"there and accepts connections ({_reachable_check(url)}), that the "
                "database exists (createdb), and that pg_hba.conf lets this user in with the "
                "URL's password"
            ) from exc
        backend = cls(pool, url)
        try:
            async with backend._translated(), pool.acquire() as conn, conn.transaction():
                backend.migrated = await _migrate(conn, where)
        except BaseException:
            await backend.close()
            raise
        return backend

    @contextlib.asynccontextmanager
    async def _translated(self) -> AsyncIterator[None]:
        """Driver errors raised within become `tracker._server.storage.errors`."""
        try:
            yield
        except _DRIVER as exc:
            raise self._error(exc) from exc

    def _error(self, exc: BaseException) -> StorageError:
        if self._closed:
            return StorageClosed(f"the database {self.where} is closed; restart the server")
        if isinstance(exc, _BUSY):
            return StorageBusy(f"PostgreSQL {self.where} is busy ({exc}); retry the request")
        return StorageFailed(
            f"PostgreSQL {self.where} failed ({type(exc).__name__}: {exc}); check that the "
            "database server runs and the tracker server's log"
        )

    def _check_open(self) -> None:
        if self._closed:
            raise StorageClosed(f"the database {self.where} is closed; restart the server")

    def check(self) -> None:
        """See `Backend.check`: the database server keeps its own files."""

    @property
    def spool_dir(self) -> str:
        """See `Backend.spool_dir`: the system's temporary folder (the database is remote)."""
        return tempfile.gettempdir()

    @contextlib.asynccontextmanager
    async def write(self) -> AsyncIterator[Session]:
        """A write transaction (read committed) on a pooled connection."""
        self._check_open()
        async with self._translated(), self._pool.acquire() as conn, conn.transaction():
            yield Session(conn, writing=True)

    async def ingest_batch(
        self, key: RunKey, log_id: str, decide: Callable[[StoredRun | None], BatchWrites]
    ) -> BatchWrites:
        """See `Backend.ingest_batch`: the run's row locked, the decision made, the batch
        logged and committed in one transaction."""
        async with self.write() as tx:
            writes = decide(await tx.load_run(key, log_id))
            await tx.store_batch(writes, log_id)
            return writes

    async def compact(
        self,
        pk: int,
        budget: int,
        fold: Callable[[StoredRun, list[LoggedBatch]], CompactWrites],
    ) -> CompactWrites | None:
        """See `Backend.compact`: the run's row locked (a replica's ack or compaction of
        it waits), its first logged batches folded and stored in one transaction."""
        async with self.write() as tx:
            stored = await tx.load_run_at(pk)
            entries = [] if stored is None else await tx.log_entries(pk, budget)
            if stored is None or not entries:
                return None
            writes = fold(stored, entries)
            await tx.store_compaction(writes)
            return writes

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[Session]:
        """A read of one snapshot (``REPEATABLE READ READ ONLY``)."""
        self._check_open()
        async with (
            self._translated(),
            self._pool.acquire() as conn,
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            yield Session(conn, writing=False)

    @property
    def hearing(self) -> bool:
        """See `Notifier.hearing`: the listening connection is up."""
        return self._hearing

    async def announce(self, keys: list[RunKey]) -> None:
        """See `Notifier.announce`: one ``pg_notify`` per run, in one statement."""
        payloads = [
            orjson.dumps([self._process, key.entity, key.project, key.run_id]).decode()
            for key in keys
        ]
        self._check_open()
        async with self._translated(), self._pool.acquire() as conn:
            await conn.execute(
                "SELECT pg_notify($1, payload) FROM unnest($2::text[]) AS payload",
                CHANNEL,
                payloads,
            )

    async def listen(self, heard: Callable[[RunKey], None]) -> None:
        """See `Notifier.listen`: a connection of its own, outside the pool, LISTENs."""
        self._check_open()
        if self._listener is None:
            self._listener = asyncio.get_running_loop().create_task(
                self._listen_forever(heard), name="listen"
            )

    async def _listen_forever(self, heard: Callable[[RunKey], None]) -> None:
        def notified(conn: Any, pid: int, channel: str, payload: str) -> None:
            try:
                process, *names = orjson.loads(payload)
                key = RunKey(*names)
            except (orjson.JSONDecodeError, TypeError, ValueError):
                _logger.warning("ignored a %s notification that is not tracker's", CHANNEL)
                return
            if process != self._process:
                heard(key)

        while not self._closed:
            lost = asyncio.Event()
            try:
                conn = await asyncpg.connect(self._url, timeout=CONNECT_SECONDS)
                conn.add_termination_listener(partial(_set, lost))
                await conn.add_listener(CHANNEL, notified)
            except _DRIVER as exc:
                _logger.warning(
                    "cannot listen to PostgreSQL %s for changed runs (%s); live pages read "
                    "on a timer meanwhile, retrying in %.0f s",
                    self.where,
                    exc,
                    LISTEN_RETRY_SECONDS,
                )
                await asyncio.sleep(LISTEN_RETRY_SECONDS)
                continue
            self._hearing = True
            try:
                await lost.wait()
            finally:
                self._hearing = False
                with contextlib.suppress(*_DRIVER):
                    await conn.close(timeout=CONNECT_SECONDS)
            _logger.warning("the connection listening to PostgreSQL %s was lost", self.where)
            await asyncio.sleep(LISTEN_RETRY_SECONDS)

    async def close(self) -> None:
        """Stop listening, wait for the transactions in flight, then close every connection."""
        if self._closed:
            return
        self._closed = True
        await cancel_and_wait(self._listener)
        await self._pool.close()


def _set(event: asyncio.Event, *_: object) -> None:
    event.set()


def _parts(url: str) -> tuple[str, int, str, str | None] | None:
    """Host, port, database and user a URL names (libpq's defaults where it names none),
    or None when it cannot be parsed."""
    try:
        parts = urlsplit(url)
        host, port, user = parts.hostname, parts.port, parts.username
    except ValueError:
        return None
    user = unquote(user) if user else None
    return host or "localhost", port or 5432, unquote(parts.path.lstrip("/")) or user or "", user


def describe(url: str) -> str:
    """The database a URL names, for messages: host, port, database, user (no password)."""
    parts = _parts(url)
    if parts is None:
        return repr(url.rsplit("@", maxsplit=1)[-1])
    host, port, database, user = parts
    named = f"at {host}:{port}, database {database or '(the user name)'!r}"
    return named + (f" as user {user!r}" if user else "")


def _reachable_check(url: str) -> str:
    """The command telling whether the server of ``url`` accepts connections."""
    parts = _parts(url)
    return (
        "pg_isready -h HOST -p PORT" if parts is None else f"pg_isready -h {parts[0]} -p {parts[1]}"
    )


async def _migrate(conn: asyncpg.Connection, where: str) -> Migrated:
    await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
    await conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
    version = await conn.fetchval("SELECT version FROM schema_version")
    if version is None:
        await conn.execute("INSERT INTO schema_version (version) VALUES (0)")
        version = 0
    for number, script in pending(version, MIGRATIONS, f"the PostgreSQL database {where}"):
        await conn.execute(script)
        await conn.execute("UPDATE schema_version SET version = $1", number)
    return Migrated(version, len(MIGRATIONS))

"""`SQLiteBackend`: the storage primitives on one SQLite file, the embedded default.

One dedicated writer thread owns the only write connection, so write transactions run
one at a time and never contend; reads run on a few reader threads, each with its own
connection, and see committed snapshots (WAL). A checkpointer thread copies the WAL into
the database file (the only step that fsyncs under ``synchronous=NORMAL``), so a commit
never waits on the disk's fsync; should it fall behind, the writer checkpoints itself
once the WAL reaches `WAL_BACKSTOP_PAGES`.

Each primitive is one hop to a database thread (~50 µs on the project's machine): an
ingest batch (`SQLiteBackend.ingest_batch`) is one hop, in which the writer thread loads
the run, runs the store's fold and writes (a hop per primitive, four for a batch, took a
batch of 10 rows from ~0.6 to ~1.0 ms on the project's machine). The SQL is in
`tracker._server.storage.sqlite_queries`, the schema in `sqlite_schema`; the data model
is portable to PostgreSQL (TEXT, BIGINT, DOUBLE PRECISION, BLOB -> bytea; ``runs.pk`` an
identity column).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import tempfile
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Final, TypeVar

from tracker._server.storage.backend import BatchWrites, CompactWrites, LoggedBatch, StoredRun
from tracker._server.storage.document import RunKey
from tracker._server.storage.errors import (
    StorageBusy,
    StorageClosed,
    StorageError,
    StorageFailed,
    StorageLost,
)
from tracker._server.storage.migrations import Migrated, pending
from tracker._server.storage.sqlite_queries import (
    Job,
    Session,
    load_run,
    load_run_at,
    log_entries,
    store_batch,
    store_compaction,
)
from tracker._server.storage.sqlite_schema import MIGRATIONS

__all__ = ["SQLiteBackend"]

_logger = logging.getLogger(__name__)

T = TypeVar("T")

READER_THREADS: Final = 4
IDLE_READ_SECONDS: Final = 0.2
"""A reader thread left idle ends its read transaction after this long (`_Lane.end_read_soon`)."""
BUSY_TIMEOUT_SECONDS: Final = 10.0
CHECKPOINT_SECONDS: Final = 0.25
"""How often, at most, the checkpointer copies committed pages from the WAL into the file."""
WAL_BACKSTOP_PAGES: Final = 16384
"""If the checkpointer falls behind, the writer checkpoints itself at this WAL size (64 MB
of 4 KB pages), so the WAL stays bounded whatever the load."""


class _Lane:
    """One database thread with its own connection, opened in that thread on first use."""

    def __init__(self, connect: Callable[[], sqlite3.Connection], name: str) -> None:
        self._connect = connect
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=name)
        self._conn: sqlite3.Connection | None = None
        self._read_ends: asyncio.TimerHandle | None = None

    def end_read_soon(self) -> None:
        """End the lane's read transaction in the hop of its next job, or after
        `IDLE_READ_SECONDS` without one (an open read pins the WAL's snapshot). Ending it
        in a job of its own cost a runs page ~0.6 ms on the project's machine: the reader
        thread woke up while the event loop was encoding the answer."""
        self._read_ends = asyncio.get_running_loop().call_later(IDLE_READ_SECONDS, self._end_read)

    def _end_read(self) -> None:
        self._read_ends = None
        with contextlib.suppress(RuntimeError):  # shut down: closing ends every transaction
            self._executor.submit(self._do_quietly, _rollback)

    async def run(self, job: Job[T]) -> T:
        """``job(connection)`` on the lane's thread, driver errors translated."""
        loop = asyncio.get_running_loop()
        if self._read_ends is not None:
            self._read_ends.cancel()
            self._read_ends = None
            job = partial(_after_rollback, job)
        try:
            future = loop.run_in_executor(self._executor, self._do, job)
        except RuntimeError:  # the executor is shut down: the backend was closed meanwhile
            raise StorageClosed("the database is closed; restart the server") from None
        return await future

    def _do(self, job: Job[T]) -> T:
        try:
            if self._conn is None:
                self._conn = self._connect()
            return job(self._conn)
        except sqlite3.Error as exc:
            if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
                raise StorageBusy(f"the database is busy ({exc}); retry the request") from exc
            raise StorageFailed(
                f"the database failed ({exc}); check the server's disk and log"
            ) from exc

    def _do_quietly(self, job: Job[object]) -> None:
        try:
            self._do(job)
        except StorageError as exc:
            _logger.warning("a database cleanup failed: %s", exc)

    def shutdown(self) -> None:
        """Run what is queued, then stop the thread (its connection is closed by the owner)."""
        self._executor.shutdown(wait=True)


class SQLiteBackend:
    """The storage primitives on one SQLite file (WAL); create it with `open`."""

    def __init__(self, path: str) -> None:
        """Prepare the threads for the database at ``path``; `open` opens it."""
        self.path = path
        self.migrated = Migrated(0, 0)
        """What `open` did to the schema (`tracker._server.storage.migrations`)."""
        self._connections: list[sqlite3.Connection] = []
        self._connections_lock = threading.Lock()
        self._writer = _Lane(self._connect_writer, "tracker-db-writer")
        self._write_lock = asyncio.Lock()
        self._readers: asyncio.Queue[_Lane] = asyncio.Queue()
        self._all_readers = [
            _Lane(self._connect_reader, "tracker-db-reader") for _ in range(READER_THREADS)
        ]
        for lane in self._all_readers:
            self._readers.put_nowait(lane)
        self._closed = False
        self._identity: tuple[int, int] | None = None
        """The opened file's device and inode (None for ``:memory:``), see `check`."""
        self._lost: StorageLost | None = None
        self._committed = threading.Event()
        self._stopping = threading.Event()
        self._checkpointer = threading.Thread(
            target=self._checkpoint_forever, name="tracker-db-checkpoint", daemon=True
        )

    @classmethod
    async def open(cls, path: str) -> SQLiteBackend:
        """Open (creating it, and its directory, if needed) and migrate the database.

        Raises:
            StorageFailed: the file cannot be opened as a tracker database.
            SchemaTooNew: it was written by a newer tracker.
        """
        backend = cls(path)
        try:
            await backend._writer.run(backend._open_writer)
        except BaseException:
            await backend.close()
            raise
        backend._identity = _identity(path)
        return backend

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path,
            timeout=BUSY_TIMEOUT_SECONDS,
            isolation_level=None,  # transactions are explicit: BEGIN ... COMMIT
            check_same_thread=False,  # each connection is used by one thread at a time
        )
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA synchronous = NORMAL")
        with self._connections_lock:
            self._connections.append(conn)
        return conn

    def _connect_writer(self) -> sqlite3.Connection:
        directory = os.path.dirname(os.path.abspath(self.path))
        try:
            os.makedirs(directory, exist_ok=True)
        except OSError as exc:
            raise StorageFailed(f"cannot create the database directory {directory}: {exc}") from exc
        return self._connect()

    def _connect_reader(self) -> sqlite3.Connection:
        conn = self._connect()
        conn.execute("PRAGMA query_only = ON")
        return conn

    def _open_writer(self, conn: sqlite3.Connection) -> None:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(f"PRAGMA wal_autocheckpoint = {WAL_BACKSTOP_PAGES}")
        conn.execute("BEGIN IMMEDIATE")
        try:
            self.migrated = _migrate(conn, self.path)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        self._checkpointer.start()

    def _checkpoint_forever(self) -> None:
        """Checkpoint (PASSIVE: never blocks the writer or readers) after commits, at most
        every `CHECKPOINT_SECONDS`, until the backend closes; again after a checkpoint that
        an open read held back."""
        conn = self._connect()
        while True:
            self._committed.wait()
            if self._stopping.is_set():
                return
            self._committed.clear()
            try:
                _, frames, copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                if copied < frames:  # a read's snapshot held some back: try again soon
                    self._committed.set()
            except sqlite3.Error as exc:  # the writer's backstop checkpoint still bounds the WAL
                _logger.warning("cannot checkpoint the database %s: %s", self.path, exc)
            self._stopping.wait(CHECKPOINT_SECONDS)

    @property
    def spool_dir(self) -> str:
        """See `Backend.spool_dir`: the database's folder (the system's temporary folder for
        ``:memory:``)."""
        if self.path == ":memory:":
            return tempfile.gettempdir()
        return os.path.dirname(os.path.abspath(self.path))

    def _check_open(self) -> None:
        if self._closed:
            raise StorageClosed(f"the database {self.path} is closed; restart the server")

    def check(self) -> None:
        """See `Backend.check`: the file at the path must still be the one opened (its device
        and inode); the first time it is not, say so once on the log (ERROR)."""
        if self._lost is None and self._identity is not None:
            now = _identity(self.path)
            if now != self._identity:
                what = "was deleted" if now is None else "was replaced by another file"
                self._lost = StorageLost(
                    f"the database file {os.path.abspath(self.path)} {what} while the server "
                    "ran: writes are refused, nothing is stored into a file no one will open "
                    "again; put the file back at that path (or point --db at a copy) and "
                    "restart the server"
                )
                _logger.error("%s", self._lost.message)
        if self._lost is not None:
            raise self._lost

    def _check_writable(self) -> None:
        self._check_open()
        self.check()

    @contextlib.asynccontextmanager
    async def write(self) -> AsyncIterator[Session]:
        """A write transaction on the writer thread (BEGIN IMMEDIATE ... COMMIT)."""
        self._check_open()
        async with self._write_lock:
            self._check_writable()
            session = Session(self._writer, "BEGIN IMMEDIATE")
            try:
                yield session
            except BaseException:
                if session.begun:
                    await self._writer.run(_rollback)
                raise
            await session.flush(_commit)
            self._committed.set()

    async def ingest_batch(
        self, key: RunKey, log_id: str, decide: Callable[[StoredRun | None], BatchWrites]
    ) -> BatchWrites:
        """See `Backend.ingest_batch`: one hop to the writer thread, which also runs
        ``decide`` (the fold), so the event loop stays free meanwhile."""

        def job(conn: sqlite3.Connection) -> BatchWrites:
            conn.execute("BEGIN IMMEDIATE")
            try:
                writes = decide(load_run(conn, key, log_id))
                store_batch(conn, writes, log_id)
                conn.execute("COMMIT")
            except BaseException:
                _rollback(conn)
                raise
            return writes

        self._check_open()
        async with self._write_lock:
            self._check_writable()
            writes = await self._writer.run(job)
        self._committed.set()
        return writes

    async def compact(
        self,
        pk: int,
        budget: int,
        fold: Callable[[StoredRun, list[LoggedBatch]], CompactWrites],
    ) -> CompactWrites | None:
        """See `Backend.compact`: one hop to the writer thread, which also runs ``fold``."""

        def job(conn: sqlite3.Connection) -> CompactWrites | None:
            conn.execute("BEGIN IMMEDIATE")
            try:
                stored = load_run_at(conn, pk)
                entries = [] if stored is None else log_entries(conn, pk, budget)
                writes = None
                if stored is not None and entries:
                    writes = fold(stored, entries)
                    store_compaction(conn, writes)
                conn.execute("COMMIT")
            except BaseException:
                _rollback(conn)
                raise
            return writes

        self._check_open()
        async with self._write_lock:
            self._check_writable()
            writes = await self._writer.run(job)
        if writes is not None:
            self._committed.set()
        return writes

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[Session]:
        """A read transaction (one snapshot) on a reader thread of its own; refused too once
        the file is lost (`check`): a reader thread connecting then would create an empty
        database at the path."""
        self._check_writable()
        lane = await self._readers.get()
        session = Session(lane, "BEGIN")
        try:
            self._check_open()
            yield session
        finally:
            if session.begun:
                lane.end_read_soon()
            self._readers.put_nowait(lane)

    async def close(self) -> None:
        """Finish the transaction in flight, close every connection and stop the threads."""
        if self._closed:
            return
        self._closed = True
        async with self._write_lock:
            await asyncio.get_running_loop().run_in_executor(None, self._shutdown)

    def _shutdown(self) -> None:
        self._writer.shutdown()
        for lane in self._all_readers:
            lane.shutdown()
        self._stopping.set()
        self._committed.set()
        if self._checkpointer.is_alive():
            self._checkpointer.join()
        with self._connections_lock:
            connections, self._connections = self._connections, []
        for conn in connections:
            conn.close()


def _identity(path: str) -> tuple[int, int] | None:
    """The device and inode of the file at ``path``; None when there is none (or the
    database is ``:memory:``, which has no file)."""
    if path == ":memory:":
        return None
    try:
        found = os.stat(path)
    except FileNotFoundError:
        return None
    return found.st_dev, found.st_ino


def _commit(conn: sqlite3.Connection) -> None:
    conn.execute("COMMIT")


def _rollback(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:
        conn.execute("ROLLBACK")


def _after_rollback(job: Job[T], conn: sqlite3.Connection) -> T:
    _rollback(conn)
    return job(conn)


def _migrate(conn: sqlite3.Connection, path: str) -> Migrated:
    conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
    row = conn.execute("SELECT version FROM schema_version").fetchone()
    if row is None:
        conn.execute("INSERT INTO schema_version (version) VALUES (0)")
    version = 0 if row is None else int(row[0])
    for number, script in pending(version, MIGRATIONS, path):
        for statement in script.split(";"):
            if statement.strip():
                conn.execute(statement)
        conn.execute("UPDATE schema_version SET version = ?", (number,))
    return Migrated(version, len(MIGRATIONS))

"""`SQLiteBackend`: the storage primitives on one SQLite file, the embedded default.

One dedicated writer thread owns the only write connection, so write transactions run
one at a time and never contend; reads run on a few reader threads, each with its own
connection, and see committed snapshots (WAL). A checkpointer thread copies the WAL into
the database file (the only step that fsyncs under ``synchronous=NORMAL``), so a commit
never waits on the disk's fsync; should it fall behind, the writer checkpoints itself
once the WAL reaches `WAL_BACKSTOP_PAGES`.

Each primitive is one hop to a database thread (~50 µs on the project's machine), so
writes that return nothing are queued in the transaction and run in the hop of the next
read, or of the commit; an ingest batch (`SQLiteBackend.ingest_batch`) is one hop, in
which the writer thread loads the run, runs the store's fold and writes. History
rows go `ROWS_PER_INSERT` to a statement. The data model is portable to PostgreSQL (TEXT,
BIGINT, DOUBLE PRECISION, BLOB -> bytea; ``runs.pk`` an identity column); a few queries
use SQLite's own functions (``json_each`` on tags, ``json_extract``, ``instr``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from itertools import chain, repeat
from typing import Any, Final, TypeVar

import orjson

from tracker._records.codec import decode_value
from tracker._server.storage.backend import BatchWrites, RunFields, StoredRow, StoredRun
from tracker._server.storage.document import FileInfo, ProjectInfo, RunKey
from tracker._server.storage.errors import (
    SchemaTooNew,
    StorageBusy,
    StorageClosed,
    StorageError,
    StorageFailed,
)
from tracker._server.storage.filters import ColumnIs, HasTag, RunQuery, Search, ValueIs
from tracker._server.storage.series import (
    Chunk,
    appended_chunks,
    rebuild_range,
    rebuilt_chunks,
)
from tracker._server.storage.sqlite_schema import MIGRATIONS

__all__ = ["SQLiteBackend"]

_logger = logging.getLogger(__name__)

T = TypeVar("T")
Job = Callable[[sqlite3.Connection], T]

READER_THREADS: Final = 4
BUSY_TIMEOUT_SECONDS: Final = 10.0
CHECKPOINT_SECONDS: Final = 0.25
"""How often, at most, the checkpointer copies committed pages from the WAL into the file."""
WAL_BACKSTOP_PAGES: Final = 16384
"""If the checkpointer falls behind, the writer checkpoints itself at this WAL size (64 MB
of 4 KB pages), so the WAL stays bounded whatever the load."""
ROWS_PER_INSERT: Final = 199
"""History rows per INSERT statement (5 parameters each: under SQLite's oldest limit of 999).
One statement per row costs twice the CPU, and each statement releases and retakes the
GIL: with the event loop busy, every retake can wait a switch interval (5 ms)."""
_IN_CHUNK: Final = 500  # steps per ``IN (...)`` list when fetching rows by step

_COLUMNS: Final = {
    "name": "name",
    "state": "state",
    "config": "config",
    "summary": "summary",
    "summary_state": "summary_state",
    "metadata": "metadata",
    "tags": "tags",
    "group": "run_group",
    "job_type": "job_type",
    "notes": "notes",
    "created_at": "created_at",
    "updated_at": "updated_at",
    "heartbeat_at": "heartbeat_at",
    "heartbeat_interval": "heartbeat_interval",
    "end_time": "end_time",
    "exit_code": "exit_code",
    "last_step": "last_step",
    "runtime": "runtime",
    "session_start": "session_start",
    "runtime_offset": "runtime_offset",
    "parent_run_id": "parent_run_id",
    "parent_step": "parent_step",
}
"""`RunFields` names and the ``runs`` columns holding them."""
_SORTS: Final = {
    "name": "lower(COALESCE(name, run_id))",
    "created_at": "created_at",
    "updated_at": "updated_at",
    "state": "state",
    "group": "run_group",
    "job_type": "job_type",
    "runtime": "runtime",
    "last_step": "last_step",
}
_NULLABLE_SORTS: Final = frozenset({"group", "job_type"})
_FILTER_COLUMNS: Final = {
    "state": "state",
    "group": "run_group",
    "job_type": "job_type",
    "name": "name",
}


def _upsert_rows_sql(count: int) -> str:
    """The statement storing ``count`` history rows, a later row of a step replacing it."""
    values = ", ".join(["(?, ?, ?, ?, ?)"] * count)
    return (
        f"INSERT INTO history (run_pk, step, ts, runtime, data) VALUES {values} "
        "ON CONFLICT (run_pk, step) DO UPDATE SET "
        "ts = excluded.ts, runtime = excluded.runtime, data = excluded.data"
    )


_UPSERT_ROWS: Final = _upsert_rows_sql(ROWS_PER_INSERT)
_PUT_CHUNK: Final = (
    "INSERT INTO series (run_pk, key, first_step, last_step, steps, vals, extremes) "
    "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (run_pk, key, first_step) DO UPDATE SET "
    "last_step = excluded.last_step, steps = excluded.steps, vals = excluded.vals, "
    "extremes = excluded.extremes"
)
_LAST_CHUNKS: Final = (
    "SELECT s.key, s.first_step, s.last_step, s.steps, s.vals, s.extremes "
    "FROM json_each(?1) AS wanted CROSS JOIN series AS s "
    "ON s.run_pk = ?2 AND s.key = wanted.value AND s.first_step = "
    "(SELECT MAX(first_step) FROM series WHERE run_pk = ?2 AND key = wanted.value)"
)
"""Each given key's last series chunk in a run (``?1`` the keys as a JSON list, ``?2`` its pk)."""


class _Lane:
    """One database thread with its own connection, opened in that thread on first use."""

    def __init__(self, connect: Callable[[], sqlite3.Connection], name: str) -> None:
        self._connect = connect
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=name)
        self._conn: sqlite3.Connection | None = None

    async def run(self, job: Job[T]) -> T:
        """``job(connection)`` on the lane's thread, driver errors translated."""
        loop = asyncio.get_running_loop()
        try:
            future = loop.run_in_executor(self._executor, self._do, job)
        except RuntimeError:  # the executor is shut down: the backend was closed meanwhile
            raise StorageClosed("the database is closed; restart the server") from None
        return await future

    def post(self, job: Job[object]) -> None:
        """Queue ``job`` without waiting for it; the lane runs jobs in order."""
        with contextlib.suppress(RuntimeError):  # shut down: closing rolls everything back
            self._executor.submit(self._do_quietly, job)

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
            _migrate(conn, self.path)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        self._checkpointer.start()

    def _checkpoint_forever(self) -> None:
        """Checkpoint (PASSIVE: never blocks the writer or readers) after commits, at most
        every `CHECKPOINT_SECONDS`, until the backend closes."""
        conn = self._connect()
        while True:
            self._committed.wait()
            if self._stopping.is_set():
                return
            self._committed.clear()
            try:
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            except sqlite3.Error as exc:  # the writer's backstop checkpoint still bounds the WAL
                _logger.warning("cannot checkpoint the database %s: %s", self.path, exc)
            self._stopping.wait(CHECKPOINT_SECONDS)

    def _check_open(self) -> None:
        if self._closed:
            raise StorageClosed(f"the database {self.path} is closed; restart the server")

    @contextlib.asynccontextmanager
    async def write(self) -> AsyncIterator[_Session]:
        """A write transaction on the writer thread (BEGIN IMMEDIATE ... COMMIT)."""
        self._check_open()
        async with self._write_lock:
            self._check_open()
            session = _Session(self._writer, "BEGIN IMMEDIATE")
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
                writes = decide(_load_run(conn, key, log_id))
                _store_batch(conn, writes, log_id)
                conn.execute("COMMIT")
            except BaseException:
                _rollback(conn)
                raise
            return writes

        self._check_open()
        async with self._write_lock:
            self._check_open()
            writes = await self._writer.run(job)
        self._committed.set()
        return writes

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[_Session]:
        """A read transaction (one snapshot) on a reader thread of its own."""
        self._check_open()
        lane = await self._readers.get()
        session = _Session(lane, "BEGIN")
        try:
            self._check_open()
            yield session
        finally:
            if session.begun:
                lane.post(_rollback)  # runs before the lane's next job: no need to wait
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


def _commit(conn: sqlite3.Connection) -> None:
    conn.execute("COMMIT")


def _rollback(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:
        conn.execute("ROLLBACK")


def _migrate(conn: sqlite3.Connection, path: str) -> None:
    conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
    row = conn.execute("SELECT version FROM schema_version").fetchone()
    if row is None:
        conn.execute("INSERT INTO schema_version (version) VALUES (0)")
    version = 0 if row is None else int(row[0])
    if version > len(MIGRATIONS):
        raise SchemaTooNew(
            f"{path} has schema version {version}, newer than this tracker's "
            f"{len(MIGRATIONS)}; upgrade tracker to serve it"
        )
    for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
        for statement in script.split(";"):
            if statement.strip():
                conn.execute(statement)
        conn.execute("UPDATE schema_version SET version = ?", (number,))


class _Session:
    """The primitives within one transaction on one lane. Writes that return nothing wait
    in ``_pending`` and run, in order, in the hop of the next read or of the commit."""

    def __init__(self, lane: _Lane, begin: str) -> None:
        self._lane = lane
        self._begin = begin
        self.begun = False
        self._pending: list[Job[object]] = []

    async def flush(self, job: Job[T]) -> T:
        """Run the pending writes, then ``job``, in one hop (beginning the transaction)."""
        pending, self._pending = self._pending, []
        begin = None if self.begun else self._begin
        self.begun = True

        def hop(conn: sqlite3.Connection) -> T:
            if begin is not None:
                conn.execute(begin)
            for write in pending:
                write(conn)
            return job(conn)

        return await self._lane.run(hop)

    def _later(self, job: Job[object]) -> None:
        self._pending.append(job)

    # -- reads ---------------------------------------------------------------------------

    async def load_run(self, key: RunKey, log_id: str | None = None) -> StoredRun | None:
        """See `Reader.load_run`."""
        return await self.flush(lambda conn: _load_run(conn, key, log_id))

    async def read_rows(self, pk: int, low: int, high: int) -> list[StoredRow]:
        """See `Reader.read_rows`."""
        return await self.flush(
            lambda conn: list(
                map(
                    StoredRow._make,
                    conn.execute(
                        "SELECT step, ts, runtime, data FROM history "
                        "WHERE run_pk = ? AND step >= ? AND step <= ? ORDER BY step",
                        (pk, low, high),
                    ),
                )
            )
        )

    async def rows_at(self, pk: int, steps: Sequence[int], data: bool) -> list[StoredRow]:
        """See `Reader.rows_at`."""
        columns = "step, ts, runtime, data" if data else "step, ts, runtime, ''"
        query = f"SELECT {columns} FROM history WHERE run_pk = ? AND step IN ({{}})"

        def job(conn: sqlite3.Connection) -> list[StoredRow]:
            rows: list[StoredRow] = []
            for start in range(0, len(steps), _IN_CHUNK):
                part = list(steps[start : start + _IN_CHUNK])
                marks = ", ".join("?" * len(part))
                rows += map(StoredRow._make, conn.execute(query.format(marks), [pk, *part]))
            rows.sort(key=lambda row: row.step)
            return rows

        return await self.flush(job)

    async def count_rows(self, pk: int, low: int, high: int) -> int:
        """See `Reader.count_rows`."""
        return await self.flush(
            lambda conn: int(
                conn.execute(
                    "SELECT COUNT(*) FROM history WHERE run_pk = ? AND step >= ? AND step <= ?",
                    (pk, low, high),
                ).fetchone()[0]
            )
        )

    async def series_keys(self, pk: int) -> list[str]:
        """See `Reader.series_keys`."""
        return await self.flush(
            lambda conn: [
                str(key)
                for (key,) in conn.execute(
                    "SELECT DISTINCT key FROM series WHERE run_pk = ? ORDER BY key", (pk,)
                )
            ]
        )

    async def read_chunks(
        self, pk: int, keys: Sequence[str], low: int, high: int
    ) -> dict[str, list[Chunk]]:
        """See `Reader.read_chunks`."""

        def job(conn: sqlite3.Connection) -> dict[str, list[Chunk]]:
            out: dict[str, list[Chunk]] = {}
            for key in keys:
                stored = [
                    _chunk(*row)
                    for row in conn.execute(
                        "SELECT first_step, last_step, steps, vals, extremes FROM series "
                        "WHERE run_pk = ? AND key = ? AND last_step >= ? AND first_step <= ? "
                        "ORDER BY first_step",
                        (pk, key, low, high),
                    )
                ]
                if stored:
                    out[key] = stored
            return out

        return await self.flush(job)

    async def chunk_spans(self, pk: int, low: int, high: int) -> dict[str, tuple[int, int]]:
        """See `Reader.chunk_spans`."""
        return await self.flush(
            lambda conn: {
                key: (int(first), int(last))
                for key, first, last in conn.execute(
                    "SELECT key, MIN(first_step), MAX(last_step) FROM series "
                    "WHERE run_pk = ? AND last_step >= ? AND first_step <= ? GROUP BY key",
                    (pk, low, high),
                )
            }
        )

    async def page_runs(self, query: RunQuery) -> tuple[list[StoredRun], int]:
        """See `Reader.page_runs`: SQL checks every condition but ``config.KEY`` and
        ``summary.KEY``, which Python checks on the decoded documents."""
        where, params, checks = _where(query)
        ordering, order_params = _ordering(query)
        ordered_params = [*params, *order_params]

        def job(conn: sqlite3.Connection) -> tuple[list[StoredRun], int]:
            if not checks:
                total = conn.execute(f"SELECT COUNT(*) FROM runs WHERE {where}", params).fetchone()
                rows = conn.execute(
                    f"SELECT * FROM runs WHERE {where} ORDER BY {ordering} LIMIT ? OFFSET ?",
                    [*ordered_params, query.limit, query.offset],
                ).fetchall()
                return [_stored(row) for row in rows], int(total[0])
            columns = sorted({check.document for check in checks})
            matched: list[int] = []
            for row in conn.execute(
                f"SELECT pk, {', '.join(columns)} FROM runs WHERE {where} ORDER BY {ordering}",
                ordered_params,
            ):
                documents = {column: decode_value(row[column]) for column in columns}
                if all(check.holds(documents[check.document]) for check in checks):
                    matched.append(int(row["pk"]))
            page = matched[query.offset : query.offset + query.limit]
            by_pk: dict[int, StoredRun] = {}
            for start in range(0, len(page), _IN_CHUNK):
                part = page[start : start + _IN_CHUNK]
                marks = ", ".join("?" * len(part))
                for row in conn.execute(f"SELECT * FROM runs WHERE pk IN ({marks})", part):
                    by_pk[int(row["pk"])] = _stored(row)
            return [by_pk[pk] for pk in page], len(matched)

        return await self.flush(job)

    async def list_projects(self, entity: str) -> list[ProjectInfo]:
        """See `Reader.list_projects`."""
        return await self.flush(
            lambda conn: [
                {"name": str(name), "runs": int(runs), "updated_at": float(updated)}
                for name, runs, updated in conn.execute(
                    "SELECT project, COUNT(*), MAX(updated_at) FROM runs WHERE entity = ? "
                    "GROUP BY project ORDER BY project",
                    (entity,),
                )
            ]
        )

    async def list_files(self, pk: int) -> list[FileInfo]:
        """See `Reader.list_files`."""
        return await self.flush(
            lambda conn: [
                {"name": name, "size": size, "sha256": sha256, "updated_at": updated}
                for name, size, sha256, updated in conn.execute(
                    "SELECT name, size, sha256, updated_at FROM files WHERE run_pk = ? "
                    "ORDER BY name",
                    (pk,),
                )
            ]
        )

    async def read_file(self, pk: int, name: str) -> bytes | None:
        """See `Reader.read_file`."""

        def job(conn: sqlite3.Connection) -> bytes | None:
            row = conn.execute(
                "SELECT content FROM files WHERE run_pk = ? AND name = ?", (pk, name)
            ).fetchone()
            return None if row is None else bytes(row[0])

        return await self.flush(job)

    async def key_entity(self, digest: str) -> str | None:
        """See `Reader.key_entity`."""

        def job(conn: sqlite3.Connection) -> str | None:
            row = conn.execute("SELECT entity FROM api_keys WHERE hash = ?", (digest,)).fetchone()
            return None if row is None else str(row[0])

        return await self.flush(job)

    async def has_api_keys(self) -> bool:
        """See `Reader.has_api_keys`."""
        return await self.flush(
            lambda conn: conn.execute("SELECT 1 FROM api_keys LIMIT 1").fetchone() is not None
        )

    # -- writes --------------------------------------------------------------------------

    async def create_run(self, key: RunKey, fields: RunFields) -> int:
        """See `Writer.create_run`."""
        names = [_COLUMNS[name] for name in fields]
        values = [_column_value(name, value) for name, value in fields.items()]
        marks = ", ".join("?" * (3 + len(values)))

        def job(conn: sqlite3.Connection) -> int:
            conn.execute(
                "INSERT INTO projects (entity, name, created_at) VALUES (?, ?, ?) "
                "ON CONFLICT (entity, name) DO NOTHING",
                (key.entity, key.project, fields["created_at"]),
            )
            row = conn.execute(
                f"INSERT INTO runs (entity, project, run_id, {', '.join(names)}) "
                f"VALUES ({marks}) RETURNING pk",
                [key.entity, key.project, key.run_id, *values],
            ).fetchone()
            return int(row[0])

        return await self.flush(job)

    async def delete_run(self, pk: int) -> None:
        """See `Writer.delete_run` (rows, series, seqs and files go by ``ON DELETE CASCADE``)."""
        self._later(lambda conn: conn.execute("DELETE FROM runs WHERE pk = ?", (pk,)))

    async def update_run(self, pk: int, fields: RunFields) -> None:
        """See `Writer.update_run`."""
        self._later(lambda conn: _update_run(conn, pk, fields))

    async def rebuild_series(self, pk: int, low: int, high: int) -> None:
        """See `Writer.rebuild_series`."""
        self._later(lambda conn: _rebuild_series(conn, pk, low, high))

    async def copy_history(self, source: int, target: int, through_step: int) -> None:
        """See `Writer.copy_history`."""

        def job(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO history (run_pk, step, ts, runtime, data) "
                "SELECT ?, step, ts, runtime, data FROM history WHERE run_pk = ? AND step <= ?",
                (target, source, through_step),
            )
            conn.execute(
                "INSERT INTO series (run_pk, key, first_step, last_step, steps, vals, extremes) "
                "SELECT ?, key, first_step, last_step, steps, vals, extremes FROM series "
                "WHERE run_pk = ? AND last_step <= ?",
                (target, source, through_step),
            )

        self._later(job)

    async def move_history(self, source: int, target: int, after_step: int) -> None:
        """See `Writer.move_history`."""

        def job(conn: sqlite3.Connection) -> None:
            conn.execute(
                "UPDATE history SET run_pk = ? WHERE run_pk = ? AND step > ?",
                (target, source, after_step),
            )
            conn.execute(
                "UPDATE series SET run_pk = ? WHERE run_pk = ? AND first_step > ?",
                (target, source, after_step),
            )

        self._later(job)

    async def touch_heartbeat(self, key: RunKey, now: float) -> bool:
        """See `Writer.touch_heartbeat`."""
        return await self.flush(
            lambda conn: (
                conn.execute(
                    "UPDATE runs SET heartbeat_at = ?, "
                    "state = CASE WHEN state = 'crashed' THEN 'running' ELSE state END "
                    "WHERE entity = ? AND project = ? AND run_id = ?",
                    (now, key.entity, key.project, key.run_id),
                ).rowcount
                > 0
            )
        )

    async def mark_crashed(self, now: float, intervals: float, at_least: float) -> int:
        """See `Writer.mark_crashed`."""
        return await self.flush(
            lambda conn: int(
                conn.execute(
                    "UPDATE runs SET state = 'crashed', updated_at = ?1 WHERE state = 'running' "
                    "AND heartbeat_at < ?1 - CASE WHEN heartbeat_interval * ?2 > ?3 "
                    "THEN heartbeat_interval * ?2 ELSE ?3 END",
                    (now, intervals, at_least),
                ).rowcount
            )
        )

    async def put_file(self, pk: int, name: str, content: bytes, digest: str, now: float) -> None:
        """See `Writer.put_file`."""
        self._later(
            lambda conn: conn.execute(
                "INSERT INTO files (run_pk, name, content, size, sha256, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (run_pk, name) DO UPDATE SET "
                "content = excluded.content, size = excluded.size, sha256 = excluded.sha256, "
                "updated_at = excluded.updated_at",
                (pk, name, content, len(content), digest, now),
            )
        )

    async def put_api_key(self, digest: str, entity: str, now: float) -> None:
        """See `Writer.put_api_key`."""
        self._later(
            lambda conn: conn.execute(
                "INSERT INTO api_keys (hash, entity, created_at) VALUES (?, ?, ?) "
                "ON CONFLICT (hash) DO UPDATE SET entity = excluded.entity",
                (digest, entity, now),
            )
        )


def _load_run(conn: sqlite3.Connection, key: RunKey, log_id: str | None) -> StoredRun | None:
    row = conn.execute(
        "SELECT *, (SELECT acked_seq FROM streams WHERE run_pk = runs.pk AND log_id = ?) "
        "AS acked FROM runs WHERE entity = ? AND project = ? AND run_id = ?",
        (log_id, key.entity, key.project, key.run_id),
    ).fetchone()
    if row is None:
        return None
    stored = _stored(row)
    if row["acked"] is not None:
        stored.acked_seq = int(row["acked"])
    return stored


def _update_run(conn: sqlite3.Connection, pk: int, fields: RunFields) -> None:
    if fields:
        assignments = ", ".join(f"{_COLUMNS[name]} = ?" for name in fields)
        values = [_column_value(name, value) for name, value in fields.items()]
        conn.execute(f"UPDATE runs SET {assignments} WHERE pk = ?", [*values, pk])


def _store_batch(conn: sqlite3.Connection, writes: BatchWrites, log_id: str) -> None:
    """Store an ingest batch's rows, series, the log's seq and the run's fields."""
    pk = writes.pk
    if writes.steps:
        _upsert_rows(conn, pk, writes.steps, writes.stamps, writes.runtimes, writes.texts)
    if writes.appended:
        wanted = orjson.dumps(list(writes.appended)).decode()
        last = {key: _chunk(*chunk) for key, *chunk in conn.execute(_LAST_CHUNKS, (wanted, pk))}
        chunks = appended_chunks(last, writes.appended)
        conn.executemany(_PUT_CHUNK, [(pk, key, *chunk) for key, chunk in chunks])
    if writes.rebuild is not None:
        _rebuild_series(conn, pk, *writes.rebuild)
    conn.execute(
        "INSERT INTO streams (run_pk, log_id, acked_seq) VALUES (?, ?, ?) "
        "ON CONFLICT (run_pk, log_id) DO UPDATE SET acked_seq = excluded.acked_seq",
        (pk, log_id, writes.acked_seq),
    )
    _update_run(conn, pk, writes.fields)


def _upsert_rows(
    conn: sqlite3.Connection,
    pk: int,
    steps: Sequence[int],
    stamps: Sequence[float],
    runtimes: Sequence[float],
    texts: Sequence[str],
) -> None:
    """Store rows in order, `ROWS_PER_INSERT` to a statement."""
    values = list(chain.from_iterable(zip(repeat(pk), steps, stamps, runtimes, texts)))
    width = 5 * ROWS_PER_INSERT
    full = len(values) - len(values) % width
    conn.executemany(
        _UPSERT_ROWS, [values[start : start + width] for start in range(0, full, width)]
    )
    if full < len(values):
        conn.execute(_upsert_rows_sql((len(values) - full) // 5), values[full:])


def _rebuild_series(conn: sqlite3.Connection, pk: int, low: int, high: int) -> None:
    spans = {
        str(key): (int(first), int(last))
        for key, first, last in conn.execute(
            "SELECT key, MIN(first_step), MAX(last_step) FROM series "
            "WHERE run_pk = ? AND last_step >= ? AND first_step <= ? GROUP BY key",
            (pk, low, high),
        )
    }
    conn.execute(
        "DELETE FROM series WHERE run_pk = ? AND last_step >= ? AND first_step <= ?",
        (pk, low, high),
    )
    steps: list[int] = []
    datas: list[dict[str, Any]] = []
    for step, data in conn.execute(
        "SELECT step, data FROM history WHERE run_pk = ? AND step >= ? AND step <= ? ORDER BY step",
        (pk, *rebuild_range(spans, low, high)),
    ):
        steps.append(step)
        datas.append(decode_value(data))
    chunks = rebuilt_chunks(spans, steps, datas, low, high)
    conn.executemany(_PUT_CHUNK, [(pk, key, *chunk) for key, chunk in chunks])


def _column_value(name: str, value: Any) -> Any:
    return orjson.dumps(value).decode() if name == "tags" else value


def _chunk(first: int, last: int, steps: bytes, values: bytes, extremes: bytes) -> Chunk:
    return (int(first), int(last), bytes(steps), bytes(values), bytes(extremes))


def _stored(row: sqlite3.Row) -> StoredRun:
    return StoredRun(
        pk=row["pk"],
        entity=row["entity"],
        project=row["project"],
        run_id=row["run_id"],
        name=row["name"],
        state=row["state"],
        config=row["config"],
        summary=row["summary"],
        summary_state=row["summary_state"],
        metadata=row["metadata"],
        tags=orjson.loads(row["tags"]),
        group=row["run_group"],
        job_type=row["job_type"],
        notes=row["notes"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        heartbeat_at=row["heartbeat_at"],
        heartbeat_interval=row["heartbeat_interval"],
        end_time=row["end_time"],
        exit_code=row["exit_code"],
        last_step=row["last_step"],
        runtime=row["runtime"],
        session_start=row["session_start"],
        runtime_offset=row["runtime_offset"],
        parent_run_id=row["parent_run_id"],
        parent_step=row["parent_step"],
    )


def _where(query: RunQuery) -> tuple[str, list[Any], list[ValueIs]]:
    """SQL conditions for what SQL checks, and the checks left for Python."""
    clauses = ["entity = ?", "project = ?"]
    params: list[Any] = [query.entity, query.project]
    checks: list[ValueIs] = []
    for condition in query.conditions:
        if isinstance(condition, ColumnIs):
            column = _FILTER_COLUMNS[condition.column]
            if condition.value is None:
                clauses.append(f"{column} IS NULL")
            else:
                clauses.append(f"{column} = ?")
                params.append(condition.value)
        elif isinstance(condition, HasTag):
            clauses.append("EXISTS (SELECT 1 FROM json_each(runs.tags) WHERE value = ?)")
            params.append(condition.tag)
        elif isinstance(condition, Search):
            clauses.append(
                "(instr(lower(COALESCE(name, '')), lower(?)) > 0 OR "
                "instr(lower(run_id), lower(?)) > 0)"
            )
            params += [condition.text, condition.text]
        else:
            checks.append(condition)
    return " AND ".join(clauses), params, checks


def _ordering(query: RunQuery) -> tuple[str, list[Any]]:
    """The ORDER BY of a query, and its parameters: runs without a value last, then the
    run created first (``pk``), in the sort's direction."""
    sort = query.sort
    direction = "DESC" if sort.descending else "ASC"
    if not sort.path:
        expression = _SORTS[sort.column]
        if sort.column not in _NULLABLE_SORTS:  # keeps the (entity, project, created_at) index
            return f"{expression} {direction}, pk {direction}", []
        return f"{expression} IS NULL, {expression} {direction}, pk {direction}", []
    # values are stored exactly encoded, [document] or [document, specials]
    path = "$[0]" + "".join(f'."{part}"' for part in sort.path)
    expression = f"json_extract({sort.column}, ?)"
    return f"{expression} IS NULL, {expression} {direction}, pk {direction}", [path, path]

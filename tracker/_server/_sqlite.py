"""The SQLite storage backend: the embedded default of `tracker server`.

One dedicated writer thread owns the only write connection, so writes queue in
order and never contend; reads run on a small pool of threads, each with its own
connection, and see committed snapshots (WAL). Every method is a coroutine that
hands its work to those threads and never blocks the event loop. A checkpointer
thread copies the WAL into the database file (the only step that fsyncs under
``synchronous=NORMAL``), so a commit never waits on the disk's fsync.

The data model is portable to PostgreSQL (TEXT, BIGINT, DOUBLE PRECISION, BLOB ->
bytea; ``runs.pk`` becomes an identity column); user values are stored exactly
encoded (`tracker._records.codec.encode_value`) as JSON text. A few queries use SQLite's
own functions (``json_each`` on tags, ``instr``); the PostgreSQL backend has its own
SQL, and shares the pure-Python fold and sampling of `tracker._server._fold`.

History sampling does not parse stored rows: per run and key, the steps holding the
key and its values as floats are kept in ``series``, as chunks of packed arrays
appended on ingest and rebuilt from ``history`` for a step range whenever rows arrive
out of order or replace others, and when a run is rewound or forked. Parsing every
row's JSON in SQL (``json_extract``) takes about a second per million rows on the
project's machine; reading one key's series takes a few milliseconds.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import operator
import os
import sqlite3
import threading
import time
from array import array
from bisect import bisect_left
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from itertools import chain, repeat
from typing import Any, Final, TypeVar

import orjson

from tracker._errors import UsageError
from tracker._records import sampler
from tracker._records.codec import decode_value, encode_value
from tracker._records.fold import fold_records
from tracker._records.kinds import ROW
from tracker._records.state import RecordError, Rows, RunState
from tracker._records.summary import Summary
from tracker._server import _series
from tracker._server._storage import RunKey, StartRequest, StartResult, StorageError
from tracker._wire.limits import MAX_STEP

__all__ = ["SQLiteStorage", "open_sqlite"]

_logger = logging.getLogger(__name__)

T = TypeVar("T")

READER_THREADS: Final = 4
BUSY_TIMEOUT_SECONDS: Final = 10.0
CHECKPOINT_SECONDS: Final = 0.25
"""How often, at most, the checkpointer copies committed pages from the WAL into the file."""
WAL_BACKSTOP_PAGES: Final = 16384
"""If the checkpointer falls behind, the writer checkpoints itself at this WAL size (64 MB
of 4 KB pages), so the WAL stays bounded whatever the load."""
MODES: Final = ("new", "allow", "never", "must", "continue", "fork", "rewind")
_IN_CHUNK: Final = 500  # steps per ``IN (...)`` list when fetching rows by step
_LOWEST: Final = -(2**63)
_KIND: Final = operator.itemgetter(1)
_FLAT_ENOUGH: Final = 200
"""A stored row text with at most this many brackets cannot nest past the exact
encoding's depth limit (253 levels)."""

MIGRATIONS: Final = (
    """
    CREATE TABLE projects (
        entity TEXT NOT NULL,
        name TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (entity, name)
    );
    CREATE TABLE runs (
        pk INTEGER PRIMARY KEY,
        entity TEXT NOT NULL,
        project TEXT NOT NULL,
        run_id TEXT NOT NULL,
        name TEXT,
        state TEXT NOT NULL,
        config TEXT NOT NULL,
        summary TEXT NOT NULL,
        summary_state TEXT NOT NULL,
        metadata TEXT NOT NULL,
        tags TEXT NOT NULL,
        run_group TEXT,
        job_type TEXT,
        notes TEXT,
        created_at DOUBLE PRECISION NOT NULL,
        updated_at DOUBLE PRECISION NOT NULL,
        heartbeat_at DOUBLE PRECISION NOT NULL,
        heartbeat_interval DOUBLE PRECISION NOT NULL,
        end_time DOUBLE PRECISION,
        exit_code BIGINT,
        last_step BIGINT NOT NULL,
        runtime DOUBLE PRECISION NOT NULL,
        session_start DOUBLE PRECISION NOT NULL,
        runtime_offset DOUBLE PRECISION NOT NULL,
        parent_run_id TEXT,
        parent_step BIGINT,
        UNIQUE (entity, project, run_id),
        FOREIGN KEY (entity, project) REFERENCES projects (entity, name)
    );
    CREATE INDEX runs_by_created ON runs (entity, project, created_at);
    CREATE INDEX runs_by_state ON runs (state, heartbeat_at);
    CREATE TABLE streams (
        run_pk BIGINT NOT NULL REFERENCES runs (pk) ON DELETE CASCADE,
        log_id TEXT NOT NULL,
        acked_seq BIGINT NOT NULL,
        PRIMARY KEY (run_pk, log_id)
    );
    CREATE TABLE history (
        run_pk BIGINT NOT NULL REFERENCES runs (pk) ON DELETE CASCADE,
        step BIGINT NOT NULL,
        ts DOUBLE PRECISION NOT NULL,
        runtime DOUBLE PRECISION NOT NULL,
        data TEXT NOT NULL,
        PRIMARY KEY (run_pk, step)
    );
    CREATE TABLE series (
        run_pk BIGINT NOT NULL REFERENCES runs (pk) ON DELETE CASCADE,
        key TEXT NOT NULL,
        first_step BIGINT NOT NULL,
        last_step BIGINT NOT NULL,
        steps BLOB NOT NULL,
        vals BLOB NOT NULL,
        PRIMARY KEY (run_pk, key, first_step)
    );
    CREATE TABLE files (
        run_pk BIGINT NOT NULL REFERENCES runs (pk) ON DELETE CASCADE,
        name TEXT NOT NULL,
        content BLOB NOT NULL,
        size BIGINT NOT NULL,
        sha256 TEXT NOT NULL,
        updated_at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (run_pk, name)
    );
    CREATE TABLE api_keys (
        hash TEXT PRIMARY KEY,
        entity TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL
    )
    """,
    # each series chunk's block extremes (`_series.Chunk`); chunks stored before have none,
    # and are summarized when read
    "ALTER TABLE series ADD COLUMN extremes BLOB NOT NULL DEFAULT x''",
)
"""Schema migrations, applied in order at open; ``schema_version`` holds how many ran."""

_RUN_COLUMNS: Final = (
    "entity, project, run_id, name, state, config, summary, summary_state, metadata, tags, "
    "run_group, job_type, notes, created_at, updated_at, heartbeat_at, heartbeat_interval, "
    "end_time, exit_code, last_step, runtime, session_start, runtime_offset, parent_run_id, "
    "parent_step"
)
ROWS_PER_INSERT: Final = 199
"""History rows per INSERT statement (5 parameters each: under SQLite's oldest limit of 999).
One statement per row costs twice the CPU, and each statement releases and retakes the
GIL: with the event loop busy, every retake can wait a switch interval (5 ms)."""


def _upsert_rows_sql(count: int) -> str:
    """The statement storing ``count`` history rows, a later row of a step replacing it."""
    values = ", ".join(["(?, ?, ?, ?, ?)"] * count)
    return (
        f"INSERT INTO history (run_pk, step, ts, runtime, data) VALUES {values} "
        "ON CONFLICT (run_pk, step) DO UPDATE SET "
        "ts = excluded.ts, runtime = excluded.runtime, data = excluded.data"
    )


_UPSERT_ROWS: Final = _upsert_rows_sql(ROWS_PER_INSERT)
_INSERT_CHUNK: Final = (
    "INSERT INTO series (run_pk, key, first_step, last_step, steps, vals, extremes) "
    "VALUES (?, ?, ?, ?, ?, ?, ?)"
)
_LAST_CHUNKS: Final = (
    "SELECT s.key, s.first_step, s.last_step, s.steps, s.vals, s.extremes "
    "FROM json_each(?1) AS wanted CROSS JOIN series AS s "
    "ON s.run_pk = ?2 AND s.key = wanted.value AND s.first_step = "
    "(SELECT MAX(first_step) FROM series WHERE run_pk = ?2 AND key = wanted.value)"
)
"""Each given key's last series chunk in a run (``?1`` the keys as a JSON list, ``?2`` its pk)."""
_ORDERS: Final = {
    "created_at": "created_at ASC, pk ASC",
    "-created_at": "created_at DESC, pk DESC",
    "updated_at": "updated_at ASC, pk ASC",
    "-updated_at": "updated_at DESC, pk DESC",
    "name": "lower(COALESCE(name, run_id)) ASC, pk ASC",
    "-name": "lower(COALESCE(name, run_id)) DESC, pk DESC",
}
_EQUAL_FILTERS: Final = {
    "state": "state",
    "group": "run_group",
    "job_type": "job_type",
    "name": "name",
}
_EDITABLE: Final = ("tags", "notes")
_EMPTY_STATE: Final = encode_value(Summary().to_state(), "summary state")[:-1].decode()


async def open_sqlite(path: str) -> SQLiteStorage:
    """Open (creating it, and its directory, if needed) and migrate the database at ``path``.

    Raises:
        StorageError: the file cannot be opened as a tracker database.
    """
    storage = SQLiteStorage(path)
    try:
        await storage._submit(storage._writer, storage._open_writer)
    except BaseException:
        await storage.close()
        raise
    return storage


class SQLiteStorage:
    """`Storage` on one SQLite file (WAL): one writer thread, a few reader threads.

    Create it with `open_sqlite`; `close` it when done.
    """

    def __init__(self, path: str) -> None:
        """Prepare the threads for the database at ``path``; `open_sqlite` opens it."""
        self.path = path
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="tracker-db-writer")
        self._readers = ThreadPoolExecutor(READER_THREADS, thread_name_prefix="tracker-db-reader")
        self._write_conn: sqlite3.Connection | None = None
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._connections_lock = threading.Lock()
        self._closed = False
        self._committed = threading.Event()
        self._stopping = threading.Event()
        self._checkpointer = threading.Thread(
            target=self._checkpoint_forever, name="tracker-db-checkpoint", daemon=True
        )

    # -- plumbing ------------------------------------------------------------------------

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

    def _open_writer(self) -> None:
        directory = os.path.dirname(os.path.abspath(self.path))
        try:
            os.makedirs(directory, exist_ok=True)
        except OSError as exc:
            raise StorageError(
                500, "storage_error", f"cannot create the database directory {directory}: {exc}"
            ) from exc
        conn = self._connect()
        self._write_conn = conn
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
        every `CHECKPOINT_SECONDS`, until the storage closes."""
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

    def _reader(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            conn.execute("PRAGMA query_only = ON")
            self._local.conn = conn
        return conn

    async def _submit(self, executor: ThreadPoolExecutor, job: Callable[[], T]) -> T:
        if self._closed:
            raise StorageError(
                503, "storage_closed", f"the database {self.path} is closed; restart the server"
            )
        return await asyncio.get_running_loop().run_in_executor(executor, _translated, job)

    async def _write(self, job: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``job`` in one write transaction on the writer thread; roll back on any error."""
        return await self._submit(self._writer, partial(self._transaction, job))

    def _transaction(self, job: Callable[[sqlite3.Connection], T]) -> T:
        conn = self._write_conn
        assert conn is not None, "open_sqlite opens the write connection first"
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = job(conn)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        self._committed.set()
        return result

    async def _read(self, job: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``job`` on a reader thread, in one read transaction (a consistent snapshot)."""
        return await self._submit(self._readers, partial(self._snapshot, job))

    def _snapshot(self, job: Callable[[sqlite3.Connection], T]) -> T:
        conn = self._reader()
        conn.execute("BEGIN")
        try:
            return job(conn)
        finally:
            conn.execute("ROLLBACK")

    async def close(self) -> None:
        """Finish the queued writes, close every connection and stop the threads."""
        if self._closed:
            return
        self._closed = True
        await asyncio.get_running_loop().run_in_executor(None, self._shutdown)

    def _shutdown(self) -> None:
        self._writer.shutdown(wait=True)
        self._readers.shutdown(wait=True)
        self._stopping.set()
        self._committed.set()
        if self._checkpointer.is_alive():
            self._checkpointer.join()
        with self._connections_lock:
            connections, self._connections = self._connections, []
        for conn in connections:
            conn.close()

    # -- runs ----------------------------------------------------------------------------

    async def start_run(self, request: StartRequest) -> StartResult:
        """Create, continue, replace, fork or rewind a run, per ``request.mode``.

        Raises:
            StorageError: 400 bad_mode / bad_request / bad_step, 404 run_not_found,
                409 run_exists / bad_step.
        """
        if request.mode not in MODES:
            raise StorageError(
                400, "bad_mode", f"mode {request.mode!r} is not one of {', '.join(MODES)}"
            )
        interval = request.heartbeat_interval
        if (
            not isinstance(interval, (int, float))
            or isinstance(interval, bool)
            or not 0 < interval < math.inf
        ):
            raise StorageError(
                400,
                "bad_request",
                f"heartbeat_interval {interval!r} is not a positive number of seconds; "
                "pass e.g. 10.0",
            )
        return await self._write(partial(_start, request))

    async def ingest(
        self,
        key: RunKey,
        log_id: str,
        records: list[list[Any]],
        now: float,
        lines: Sequence[str] | None = None,
    ) -> int:
        """Apply decoded records in one transaction, skipping those already stored for
        ``log_id``; return the log's new stored seq. Rows are stored from ``lines`` when
        given (see `Storage.ingest`).

        Raises:
            StorageError: 404 run_not_found, 409 seq_gap (with ``acked_seq``), 400 bad_batch.
        """
        return await self._write(partial(_ingest, key, log_id, records, lines, now))

    async def heartbeat(self, key: RunKey, now: float) -> None:
        """Note that the run's client is alive (a crashed run is running again).

        Raises:
            StorageError: 404 run_not_found.
        """
        await self._write(partial(_heartbeat, key, now))

    async def sweep_crashed(self, now: float) -> int:
        """Mark running runs silent for three heartbeat intervals (at least 3 s) as crashed."""
        return await self._write(partial(_sweep, now))

    async def update_run(self, key: RunKey, changes: dict[str, Any], now: float) -> None:
        """Edit ``tags`` (a list of str) and/or ``notes`` (str or None) of a run.

        Raises:
            StorageError: 400 bad_request for other keys or types, 404 run_not_found.
        """
        for name, value in changes.items():
            if name not in _EDITABLE:
                raise StorageError(
                    400, "bad_request", f"run field {name!r} cannot be edited; edit tags or notes"
                )
            good = (
                isinstance(value, list) and all(isinstance(tag, str) for tag in value)
                if name == "tags"
                else value is None or isinstance(value, str)
            )
            if not good:
                want = "a list of strings" if name == "tags" else "a string or null"
                raise StorageError(400, "bad_request", f"{name} {value!r:.100} is not {want}")
        await self._write(partial(_update_run, key, dict(changes), now))

    async def get_run(self, key: RunKey) -> dict[str, Any] | None:
        """The run document (see `Storage.get_run`, plus ``runtime`` and ``metadata``), or None."""

        def job(conn: sqlite3.Connection) -> dict[str, Any] | None:
            row = _load_run(conn, key)
            return None if row is None else _document(row)

        return await self._read(job)

    async def list_projects(self, entity: str) -> list[dict[str, Any]]:
        """The entity's projects by name: ``name``, ``runs`` (count), ``updated_at``."""

        def job(conn: sqlite3.Connection) -> list[dict[str, Any]]:
            rows = conn.execute(
                "SELECT project, COUNT(*), MAX(updated_at) FROM runs WHERE entity = ? "
                "GROUP BY project ORDER BY project",
                (entity,),
            ).fetchall()
            return [{"name": row[0], "runs": row[1], "updated_at": row[2]} for row in rows]

        return await self._read(job)

    async def list_runs(
        self,
        entity: str,
        project: str,
        filters: dict[str, Any],
        order: str,
        limit: int,
        offset: int,
    ) -> tuple[list[dict[str, Any]], int]:
        """One page of run documents matching all ``filters``, and how many match in total.

        Filters: ``state``, ``group``, ``job_type``, ``name`` equal (None: unset); ``tags``
        a tag the run has; ``search`` a substring of the name or id (ASCII case ignored);
        ``"config.KEY"`` / ``"summary.KEY"`` equal (``KEY`` a top-level key, else a dotted
        path into nested dicts). ``order``: [-]created_at, [-]updated_at, [-]name.

        Raises:
            StorageError: 400 bad_filter / bad_order / bad_request.
        """
        if order not in _ORDERS:
            raise StorageError(
                400, "bad_order", f"order {order!r} is not one of {', '.join(_ORDERS)}"
            )
        for name, value in (("limit", limit), ("offset", offset)):
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**63:
                raise StorageError(
                    400, "bad_request", f"{name} {value!r} is not an integer >= 0; pass e.g. 100"
                )
        where, params, checks = _where(entity, project, filters)
        return await self._read(partial(_list_runs, where, params, checks, order, limit, offset))

    # -- history -------------------------------------------------------------------------

    async def history(
        self,
        key: RunKey,
        keys: list[str] | None,
        min_step: int | None,
        max_step: int | None,
        samples: int | None,
    ) -> list[dict[str, Any]]:
        """History rows in step order: ``{"_step", "_timestamp", "_runtime", **data}``, or with
        ``keys`` ``{"_step", **those keys}`` for rows holding one of them.

        ``samples=N``: at most about N rows, extremes kept
        (`tracker._records.sampler.sample_steps`).

        Raises:
            StorageError: 400 bad_request for bad arguments, 404 run_not_found.
        """
        if keys is not None and (
            not isinstance(keys, list) or not all(isinstance(k, str) for k in keys)
        ):
            raise StorageError(400, "bad_request", f"keys {keys!r:.100} is not a list of strings")
        for name, value in (("min_step", min_step), ("max_step", max_step)):
            if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
                raise StorageError(400, "bad_request", f"{name} {value!r} is not an integer")
        if samples is not None and (
            not isinstance(samples, int) or isinstance(samples, bool) or samples < 1
        ):
            raise StorageError(
                400, "bad_request", f"samples {samples!r} is not an integer >= 1; pass e.g. 1000"
            )
        low = _LOWEST if min_step is None else max(min_step, _LOWEST)
        high = MAX_STEP if max_step is None else min(max_step, MAX_STEP)
        return await self._read(partial(_history, key, keys, low, high, samples))

    # -- files ---------------------------------------------------------------------------

    async def put_file(self, key: RunKey, name: str, content: bytes, now: float) -> None:
        """Store a file of the run, replacing one of the same name.

        Raises:
            StorageError: 404 run_not_found.
        """
        content, digest = await self._submit(self._readers, partial(_with_digest, content))
        await self._write(partial(_put_file, key, name, content, digest, now))

    async def list_files(self, key: RunKey) -> list[dict[str, Any]]:
        """The run's files by name: ``name``, ``size``, ``sha256``, ``updated_at``.

        Raises:
            StorageError: 404 run_not_found.
        """

        def job(conn: sqlite3.Connection) -> list[dict[str, Any]]:
            pk = _run_pk(conn, key)
            rows = conn.execute(
                "SELECT name, size, sha256, updated_at FROM files WHERE run_pk = ? ORDER BY name",
                (pk,),
            ).fetchall()
            return [dict(row) for row in rows]

        return await self._read(job)

    async def get_file(self, key: RunKey, name: str) -> bytes | None:
        """A file's bytes, or None when the run has no such file.

        Raises:
            StorageError: 404 run_not_found.
        """

        def job(conn: sqlite3.Connection) -> bytes | None:
            pk = _run_pk(conn, key)
            row = conn.execute(
                "SELECT content FROM files WHERE run_pk = ? AND name = ?", (pk, name)
            ).fetchone()
            return None if row is None else bytes(row[0])

        return await self._read(job)

    # -- api keys ------------------------------------------------------------------------

    async def add_api_key(self, entity: str, api_key: str) -> None:
        """Allow ``api_key`` (stored as its SHA-256) to act as ``entity`` (replacing a binding)."""
        digest = _hash_key(api_key)

        def job(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO api_keys (hash, entity, created_at) VALUES (?, ?, ?) "
                "ON CONFLICT (hash) DO UPDATE SET entity = excluded.entity",
                (digest, entity, time.time()),
            )

        await self._write(job)

    async def entity_for_key(self, api_key: str) -> str | None:
        """The entity an API key acts as, or None for an unknown key."""
        digest = _hash_key(api_key)

        def job(conn: sqlite3.Connection) -> str | None:
            row = conn.execute("SELECT entity FROM api_keys WHERE hash = ?", (digest,)).fetchone()
            return None if row is None else str(row[0])

        return await self._read(job)

    async def has_api_keys(self) -> bool:
        """Whether any API key is configured."""
        return await self._read(
            lambda conn: conn.execute("SELECT 1 FROM api_keys LIMIT 1").fetchone() is not None
        )

    # -- dashboard reads -----------------------------------------------------------------

    async def list_runs_sorted(
        self,
        entity: str,
        project: str,
        filters: dict[str, Any],
        sort: list[str],
        descending: bool,
        limit: int,
        offset: int,
    ) -> tuple[list[dict[str, Any]], int]:
        """Like `list_runs`, ordered by a column, or a config or summary value (see
        `Storage.list_runs_sorted`); runs without a value come last.

        Raises:
            StorageError: 400 bad_filter / bad_order / bad_request.
        """
        for name, value in (("limit", limit), ("offset", offset)):
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**63:
                raise StorageError(
                    400, "bad_request", f"{name} {value!r} is not an integer >= 0; pass e.g. 100"
                )
        expression, sort_params = _sort_expression(sort)
        direction = "DESC" if descending else "ASC"
        ordering = f"({expression}) IS NULL, {expression} {direction}, pk {direction}"
        where, params, checks = _where(entity, project, filters)
        return await self._read(
            partial(
                _list_runs_sorted,
                where,
                params,
                checks,
                ordering,
                sort_params * 2,
                limit,
                offset,
            )
        )

    async def chart_series(
        self, key: RunKey, keys: list[str] | None, min_step: int | None, samples: int
    ) -> dict[str, Any]:
        """Per numeric key, the run's points as chart columns (see `Storage.chart_series`);
        read from the per-key series, so no stored row is parsed.

        Raises:
            StorageError: 400 bad_request, 404 run_not_found.
        """
        if keys is not None and (
            not isinstance(keys, list) or not all(isinstance(k, str) for k in keys)
        ):
            raise StorageError(400, "bad_request", f"keys {keys!r:.100} is not a list of strings")
        if min_step is not None and (not isinstance(min_step, int) or isinstance(min_step, bool)):
            raise StorageError(400, "bad_request", f"min_step {min_step!r} is not an integer")
        if not isinstance(samples, int) or isinstance(samples, bool) or samples < 2:
            raise StorageError(
                400, "bad_request", f"samples {samples!r} is not an integer >= 2; pass e.g. 1000"
            )
        low = _LOWEST if min_step is None else max(min_step, _LOWEST)
        return await self._read(partial(_chart_series, key, keys, low, samples))


# -- helpers run on the database threads ---------------------------------------------------


def _translated(job: Callable[[], T]) -> T:
    """Run ``job``, turning driver errors into StorageError (503 when the file is busy)."""
    try:
        return job()
    except sqlite3.Error as exc:
        if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
            raise StorageError(
                503, "storage_busy", f"the database is busy ({exc}); retry the request"
            ) from exc
        raise StorageError(
            500, "storage_error", f"the database failed ({exc}); check the server's disk and log"
        ) from exc


def _migrate(conn: sqlite3.Connection, path: str) -> None:
    conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
    row = conn.execute("SELECT version FROM schema_version").fetchone()
    if row is None:
        conn.execute("INSERT INTO schema_version (version) VALUES (0)")
    version = 0 if row is None else int(row[0])
    if version > len(MIGRATIONS):
        raise StorageError(
            500,
            "schema_too_new",
            f"{path} has schema version {version}, newer than this tracker's "
            f"{len(MIGRATIONS)}; upgrade tracker to serve it",
        )
    for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
        for statement in script.split(";"):
            if statement.strip():
                conn.execute(statement)
        conn.execute("UPDATE schema_version SET version = ?", (number,))


def _encode(value: Any, what: str) -> str:
    """``value`` exactly encoded as JSON text (`encode_value` without its newline)."""
    try:
        return encode_value(value, what)[:-1].decode()
    except UsageError as exc:
        raise StorageError(400, "bad_batch", str(exc)) from None


def _encode_rows(steps: list[int], datas: list[dict[str, Any]]) -> list[str]:
    """`_encode` of history rows' data, with `encode_record`'s fast path done for the whole
    batch at C speed: plain orjson output is the exact encoding when it holds no ``null``."""
    try:
        # Decode each result at once: orjson's bytes sit in ~4 KB blocks (FIELD-NOTES).
        texts = list(map(bytes.decode, map(orjson.dumps, zip(datas))))  # each row as [data]
    except TypeError:  # an int beyond 64 bits: every row takes the exact path
        texts = ["null"] * len(datas)
    if any(map(operator.contains, texts, repeat("null"))):
        for index, text in enumerate(texts):
            if "null" in text:
                texts[index] = _encode(datas[index], f"history row at step {steps[index]}")
    return texts


def _upsert_rows(
    conn: sqlite3.Connection,
    pk: int,
    steps: list[int],
    stamps: list[float],
    runtimes: list[float],
    texts: list[str],
) -> None:
    """Store history rows in order, `ROWS_PER_INSERT` to a statement."""
    values = list(chain.from_iterable(zip(repeat(pk), steps, stamps, runtimes, texts)))
    width = 5 * ROWS_PER_INSERT
    full = len(values) - len(values) % width
    conn.executemany(
        _UPSERT_ROWS, [values[start : start + width] for start in range(0, full, width)]
    )
    if full < len(values):
        conn.execute(_upsert_rows_sql((len(values) - full) // 5), values[full:])


def _checked_texts(rows: Rows) -> list[str]:
    """The rows' texts as received, refusing (400) a row nested deeper than the exact
    encoding allows, as encoding it again would: reads would fail on it. Only rows with
    enough brackets to be that deep are encoded to check."""
    texts = rows.texts
    brackets = list(
        map(operator.add, map(str.count, texts, repeat("{")), map(str.count, texts, repeat("[")))
    )
    if brackets and max(brackets) > _FLAT_ENOUGH:
        for index, count in enumerate(brackets):
            if count > _FLAT_ENOUGH:
                _encode(rows.datas[index], f"history row at step {rows.steps[index]}")
    return texts


def _load_run(conn: sqlite3.Connection, key: RunKey) -> sqlite3.Row | None:
    row: sqlite3.Row | None = conn.execute(
        "SELECT * FROM runs WHERE entity = ? AND project = ? AND run_id = ?",
        (key.entity, key.project, key.run_id),
    ).fetchone()
    return row


def _missing(key: RunKey, hint: str = "start it first (POST /api/v1/runs/start)") -> StorageError:
    return StorageError(
        404,
        "run_not_found",
        f"run {key.run_id} does not exist in {key.entity}/{key.project}; {hint}",
    )


def _run_pk(conn: sqlite3.Connection, key: RunKey) -> int:
    row = conn.execute(
        "SELECT pk FROM runs WHERE entity = ? AND project = ? AND run_id = ?",
        (key.entity, key.project, key.run_id),
    ).fetchone()
    if row is None:
        raise _missing(key)
    return int(row[0])


def _document(row: sqlite3.Row) -> dict[str, Any]:
    """The run document of a ``runs`` row (the app adds ``url``)."""
    parent = None
    if row["parent_run_id"] is not None:
        parent = {"run_id": row["parent_run_id"], "step": row["parent_step"]}
    return {
        "id": row["run_id"],
        "name": row["name"],
        "entity": row["entity"],
        "project": row["project"],
        "state": row["state"],
        "config": decode_value(row["config"]),
        "summary": decode_value(row["summary"]),
        "tags": orjson.loads(row["tags"]),
        "group": row["run_group"],
        "job_type": row["job_type"],
        "notes": row["notes"],
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
        "heartbeat_at": row["heartbeat_at"],
        "end_time": row["end_time"],
        "exit_code": row["exit_code"],
        "last_step": row["last_step"],
        "parent": parent,
        "runtime": row["runtime"],
        "metadata": decode_value(row["metadata"]),
    }


def _fold_of(row: sqlite3.Row, rows_only: bool = False) -> RunState:
    """The fold state of a ``runs`` row. With ``rows_only`` (for a batch of rows alone) the
    fields rows never change (names, tags, config, metadata) stay at their defaults,
    unread, and `_store_fold` with ``rows_only`` leaves them alone: a big config costs
    nothing per batch."""
    run = RunState(
        summary=Summary.from_state(decode_value(row["summary_state"])),
        state=row["state"],
        exit_code=row["exit_code"],
        end_time=row["end_time"],
        created_at=row["created_at"],
        last_step=row["last_step"],
        runtime=row["runtime"],
        session_start=row["session_start"],
        runtime_offset=row["runtime_offset"],
    )
    if not rows_only:
        run.name, run.group = row["name"], row["run_group"]
        run.job_type, run.notes = row["job_type"], row["notes"]
        run.tags = orjson.loads(row["tags"])
        run.metadata = decode_value(row["metadata"])
        run.config = decode_value(row["config"])
    return run


def _store_fold(
    conn: sqlite3.Connection, pk: int, run: RunState, now: float, rows_only: bool = False
) -> None:
    """Write a fold back (with ``rows_only``, only what rows change; see `_fold_of`)."""
    summary = _encode(run.summary.as_dict(), "summary")
    summary_state = _encode(run.summary.to_state(), "summary state")
    if rows_only:
        conn.execute(
            "UPDATE runs SET summary = ?, summary_state = ?, state = ?, last_step = ?, "
            "runtime = ?, updated_at = ?, heartbeat_at = ? WHERE pk = ?",
            (summary, summary_state, run.state, run.last_step, run.runtime, now, now, pk),
        )
        return
    conn.execute(
        "UPDATE runs SET name = ?, tags = ?, run_group = ?, job_type = ?, notes = ?, "
        "metadata = ?, config = ?, summary = ?, summary_state = ?, state = ?, exit_code = ?, "
        "end_time = ?, created_at = ?, last_step = ?, runtime = ?, session_start = ?, "
        "runtime_offset = ?, updated_at = ?, heartbeat_at = ? WHERE pk = ?",
        (
            run.name,
            orjson.dumps(run.tags).decode(),
            run.group,
            run.job_type,
            run.notes,
            _encode(run.metadata, "run metadata"),
            _encode(run.config, "config"),
            summary,
            summary_state,
            run.state,
            run.exit_code,
            run.end_time,
            run.created_at,
            run.last_step,
            run.runtime,
            run.session_start,
            run.runtime_offset,
            now,
            now,
            pk,
        ),
    )


def _create(
    conn: sqlite3.Connection,
    key: RunKey,
    now: float,
    heartbeat_interval: float,
    parent: tuple[str, int] | None = None,
) -> int:
    conn.execute(
        "INSERT INTO projects (entity, name, created_at) VALUES (?, ?, ?) "
        "ON CONFLICT (entity, name) DO NOTHING",
        (key.entity, key.project, now),
    )
    row = conn.execute(
        f"INSERT INTO runs ({_RUN_COLUMNS}) VALUES "
        "(?, ?, ?, NULL, 'running', ?, ?, ?, ?, '[]', NULL, NULL, NULL, ?, ?, ?, ?, NULL, NULL, "
        "-1, 0.0, 0.0, 0.0, ?, ?) RETURNING pk",
        (
            key.entity,
            key.project,
            key.run_id,
            _encode({}, "config"),
            _encode({}, "summary"),
            _EMPTY_STATE,
            _encode({}, "run metadata"),
            now,
            now,
            now,
            heartbeat_interval,
            None if parent is None else parent[0],
            None if parent is None else parent[1],
        ),
    ).fetchone()
    return int(row[0])


def _start(request: StartRequest, conn: sqlite3.Connection) -> StartResult:
    key, mode, now = request.key, request.mode, request.now
    row = _load_run(conn, key)
    interval = float(request.heartbeat_interval)
    resumed = row is not None and mode in ("allow", "continue", "must", "rewind")
    if mode == "never" and row is not None:
        raise StorageError(
            409,
            "run_exists",
            f"run {key.run_id} already exists in {key.entity}/{key.project}; pick another id "
            "or resume it (resume='allow' or 'must')",
        )
    if mode in ("must", "rewind") and row is None:
        raise _missing(key, "check the id, or start it without resume='must' / resume_from")
    if mode == "fork":
        if row is not None:
            raise StorageError(
                409,
                "run_exists",
                f"run {key.run_id} already exists in {key.entity}/{key.project}; "
                "a fork needs a new id",
            )
        pk = _fork(conn, key, request.fork_from, now, interval)
    elif row is None or mode == "new":
        if row is not None:
            conn.execute("DELETE FROM runs WHERE pk = ?", (row["pk"],))
        pk = _create(conn, key, now, interval)
    else:
        pk = int(row["pk"])
        if mode == "rewind":
            _rewind(conn, row, request.rewind_to, now)
    state = "state" if mode == "continue" else "'running'"  # a sync must not revive a done run
    ended = "end_time" if mode == "continue" else "NULL"
    code = "exit_code" if mode == "continue" else "NULL"
    conn.execute(
        f"UPDATE runs SET state = {state}, end_time = {ended}, exit_code = {code}, "
        "heartbeat_at = ?, heartbeat_interval = ?, updated_at = ? WHERE pk = ?",
        (now, interval, now, pk),
    )
    acked = conn.execute(
        "SELECT acked_seq FROM streams WHERE run_pk = ? AND log_id = ?", (pk, request.log_id)
    ).fetchone()
    run = conn.execute("SELECT * FROM runs WHERE pk = ?", (pk,)).fetchone()
    return StartResult(
        resumed=resumed,
        last_step=int(run["last_step"]),
        acked_seq=-1 if acked is None else int(acked[0]),
        run=_document(run),
    )


def _check_step(step: Any, what: str) -> int:
    if not isinstance(step, int) or isinstance(step, bool) or not 0 <= step <= MAX_STEP:
        raise StorageError(400, "bad_step", f"{what} {step!r} is not a step (an integer >= 0)")
    return step


def _fork(
    conn: sqlite3.Connection,
    key: RunKey,
    fork_from: tuple[str, int] | None,
    now: float,
    interval: float,
) -> int:
    if fork_from is None:
        raise StorageError(
            400, "bad_request", "mode 'fork' needs fork_from: {'run_id': PARENT, 'step': N}"
        )
    parent_id, step = fork_from
    step = _check_step(step, "fork_from step")
    parent = _load_run(conn, RunKey(key.entity, key.project, parent_id))
    if parent is None:
        raise _missing(
            RunKey(key.entity, key.project, parent_id), "check fork_from's run id and project"
        )
    if step > parent["last_step"]:
        raise StorageError(
            409,
            "bad_step",
            f"fork_from step {step} is beyond run {parent_id}'s last step "
            f"{parent['last_step']}; fork at a step it has",
        )
    pk = _create(conn, key, now, interval, parent=(parent_id, step))
    parent_pk = int(parent["pk"])
    conn.execute(
        "INSERT INTO history (run_pk, step, ts, runtime, data) "
        "SELECT ?, step, ts, runtime, data FROM history WHERE run_pk = ? AND step <= ?",
        (pk, parent_pk, step),
    )
    conn.execute(
        "INSERT INTO series (run_pk, key, first_step, last_step, steps, vals, extremes) "
        "SELECT ?, key, first_step, last_step, steps, vals, extremes FROM series "
        "WHERE run_pk = ? AND last_step <= ?",
        (pk, parent_pk, step),
    )
    straddling = conn.execute(
        "SELECT MIN(first_step) FROM series WHERE run_pk = ? AND first_step <= ? AND last_step > ?",
        (parent_pk, step, step),
    ).fetchone()[0]
    if straddling is not None:
        _rebuild_series(conn, pk, int(straddling), step)
    conn.execute("UPDATE runs SET config = ? WHERE pk = ?", (parent["config"], pk))
    _refold(conn, pk, parent["summary_state"], step)
    return pk


def _rewind(conn: sqlite3.Connection, row: sqlite3.Row, rewind_to: int | None, now: float) -> None:
    if rewind_to is None:
        raise StorageError(400, "bad_request", "mode 'rewind' needs rewind_to: a step")
    step = _check_step(rewind_to, "rewind_to")
    pk, run_id = int(row["pk"]), str(row["run_id"])
    if step > row["last_step"]:
        raise StorageError(
            409,
            "bad_step",
            f"rewind_to {step} is beyond run {run_id}'s last step {row['last_step']}; "
            "rewind to a step it has",
        )
    later = conn.execute(
        "SELECT 1 FROM history WHERE run_pk = ? AND step > ? LIMIT 1", (pk, step)
    ).fetchone()
    if later is not None:
        archive = f"{run_id}-rewind-{int(now)}"
        number = 1
        while _load_run(conn, RunKey(row["entity"], row["project"], archive)) is not None:
            number += 1
            archive = f"{run_id}-rewind-{int(now)}-{number}"
        archive_pk = conn.execute(
            f"INSERT INTO runs ({_RUN_COLUMNS}) SELECT entity, project, ?, name, "
            "CASE WHEN state = 'running' THEN 'crashed' ELSE state END, config, summary, "
            "summary_state, metadata, tags, run_group, job_type, notes, created_at, ?, "
            "heartbeat_at, heartbeat_interval, end_time, exit_code, last_step, runtime, "
            "session_start, runtime_offset, ?, ? FROM runs WHERE pk = ? RETURNING pk",
            (archive, now, run_id, step, pk),
        ).fetchone()[0]
        low, high = conn.execute(
            "SELECT MIN(first_step), MAX(last_step) FROM series "
            "WHERE run_pk = ? AND first_step <= ? AND last_step > ?",
            (pk, step, step),
        ).fetchone()
        conn.execute(
            "UPDATE history SET run_pk = ? WHERE run_pk = ? AND step > ?", (archive_pk, pk, step)
        )
        conn.execute(
            "UPDATE series SET run_pk = ? WHERE run_pk = ? AND first_step > ?",
            (archive_pk, pk, step),
        )
        if low is not None:
            _rebuild_series(conn, pk, int(low), int(high))
            _rebuild_series(conn, int(archive_pk), int(low), int(high))
        _refold(conn, pk, row["summary_state"], step)
    conn.execute("UPDATE runs SET last_step = ? WHERE pk = ?", (step, pk))


def _refold(conn: sqlite3.Connection, pk: int, state_text: str, last_step: int) -> None:
    """Recompute a run's summary from its stored rows, keeping the `define_metric` rules of
    ``state_text`` (explicit sets are dropped: which step they belonged to is not stored)."""
    rules = decode_value(state_text)["rules"]
    summary = Summary.from_state({"last": {}, "explicit": {}, "stats": {}, "rules": rules})
    runtime = 0.0
    for row_runtime, data in conn.execute(
        "SELECT runtime, data FROM history WHERE run_pk = ? ORDER BY step", (pk,)
    ):
        summary.observe(decode_value(data))
        runtime = row_runtime
    conn.execute(
        "UPDATE runs SET summary = ?, summary_state = ?, last_step = ?, runtime = ? WHERE pk = ?",
        (
            _encode(summary.as_dict(), "summary"),
            _encode(summary.to_state(), "summary state"),
            last_step,
            runtime,
            pk,
        ),
    )


def _check_batch(records: Sequence[Any]) -> None:
    """Records are ``[seq, kind, ...]`` lists with sequence numbers increasing by one."""
    if not records:
        return
    if set(map(type, records)) != {list} or min(map(len, records)) < 2:
        raise StorageError(400, "bad_batch", "a record of the batch is not a [seq, kind, ...] list")
    seqs = [record[0] for record in records]
    first = seqs[0]
    if set(map(type, seqs)) != {int} or seqs != list(range(first, first + len(seqs))):
        raise StorageError(
            400,
            "bad_batch",
            f"the batch's sequence numbers {seqs[:3]!r:.60}... are not integers increasing "
            "by one; send records as read from the run log",
        )


def _ingest(
    key: RunKey,
    log_id: str,
    records: list[list[Any]],
    lines: Sequence[str] | None,
    now: float,
    conn: sqlite3.Connection,
) -> int:
    _check_batch(records)
    row = _load_run(conn, key)
    if row is None:
        raise _missing(key)
    pk = int(row["pk"])
    stored = conn.execute(
        "SELECT acked_seq FROM streams WHERE run_pk = ? AND log_id = ?", (pk, log_id)
    ).fetchone()
    acked = -1 if stored is None else int(stored[0])
    skip = max(0, acked + 1 - records[0][0]) if records else 0
    fresh = records[skip:]
    if not fresh:
        conn.execute("UPDATE runs SET heartbeat_at = ? WHERE pk = ?", (now, pk))
        return acked
    if fresh[0][0] != acked + 1:
        raise StorageError(
            409,
            "seq_gap",
            f"log {log_id} of run {key.run_id}: the batch starts at seq {fresh[0][0]} but "
            f"seq {acked} is the last stored; resend from seq {acked + 1}",
            acked_seq=acked,
        )
    rows_only = list(map(_KIND, fresh)).count(ROW) == len(fresh)
    run = _fold_of(row, rows_only)
    if run.state == "crashed":
        run.state = "running"  # records mean the client is alive after all
    prior_last = run.last_step
    try:
        rows = fold_records(run, fresh, None if lines is None else lines[skip:])
    except RecordError as exc:
        raise StorageError(400, "bad_batch", str(exc)) from None
    if rows.steps:
        texts = _checked_texts(rows) if lines is not None else _encode_rows(rows.steps, rows.datas)
        _upsert_rows(conn, pk, rows.steps, rows.stamps, rows.runtimes, texts)
        steps, datas, dirty = _series.split_appendable(rows.steps, rows.datas, prior_last)
        if steps:
            _append_series(conn, pk, sampler.series_of(steps, datas))
        if dirty is not None:
            _rebuild_series(conn, pk, *dirty)
    acked = int(fresh[-1][0])
    conn.execute(
        "INSERT INTO streams (run_pk, log_id, acked_seq) VALUES (?, ?, ?) "
        "ON CONFLICT (run_pk, log_id) DO UPDATE SET acked_seq = excluded.acked_seq",
        (pk, log_id, acked),
    )
    _store_fold(conn, pk, run, now, rows_only)
    return acked


def _append_series(
    conn: sqlite3.Connection, pk: int, columns: dict[str, tuple[array[int], array[float]]]
) -> None:
    """Append entries (above every stored step) to each key's open chunk, then new chunks:
    three statements per batch whatever the number of keys."""
    last_chunks: dict[str, _series.Chunk] = {
        key: tuple(chunk)
        for key, *chunk in conn.execute(_LAST_CHUNKS, (orjson.dumps(list(columns)).decode(), pk))
    }
    updates: list[tuple[Any, ...]] = []
    inserts: list[tuple[Any, ...]] = []
    for key, (steps, values) in columns.items():
        start = 0
        last = last_chunks.get(key)
        if last is not None and len(last[3]) // 8 < _series.OPEN_CHUNK:
            start = _series.OPEN_CHUNK - len(last[3]) // 8
            _, last_step, steps_blob, values_blob, extremes = _series.extend_chunk(
                last, steps[:start], values[:start]
            )
            updates.append((last_step, steps_blob, values_blob, extremes, pk, key, last[0]))
        inserts += _chunk_rows(pk, key, steps[start:], values[start:])
    conn.executemany(
        "UPDATE series SET last_step = ?, steps = ?, vals = ?, extremes = ? "
        "WHERE run_pk = ? AND key = ? AND first_step = ?",
        updates,
    )
    conn.executemany(_INSERT_CHUNK, inserts)


def _chunk_rows(
    pk: int, key: str, steps: array[int], values: array[float]
) -> list[tuple[Any, ...]]:
    """`_INSERT_CHUNK` parameters storing a key's entries as new chunks."""
    return [(pk, key, *chunk) for chunk in _series.chunks(steps, values, _series.MAX_CHUNK)]


def _rebuild_series(conn: sqlite3.Connection, pk: int, low: int, high: int) -> None:
    """Recompute from ``history`` every series entry in ``[low, high]`` (and the whole of
    each chunk overlapping it), after rows there were replaced, added or moved."""
    spans = {
        key: (first, last)
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
    read_low = min([low, *(first for first, _ in spans.values())])
    read_high = max([high, *(last for _, last in spans.values())])
    steps: list[int] = []
    datas: list[dict[str, Any]] = []
    for step, data in conn.execute(
        "SELECT step, data FROM history WHERE run_pk = ? AND step >= ? AND step <= ? ORDER BY step",
        (pk, read_low, read_high),
    ):
        steps.append(step)
        datas.append(decode_value(data))
    for key, (key_steps, values) in sampler.series_of(steps, datas).items():
        first, last = spans.get(key, (low, high))
        kept_steps, kept_values = sampler.clip(key_steps, values, min(first, low), max(last, high))
        conn.executemany(_INSERT_CHUNK, _chunk_rows(pk, key, kept_steps, kept_values))


def _heartbeat(key: RunKey, now: float, conn: sqlite3.Connection) -> None:
    cursor = conn.execute(
        "UPDATE runs SET heartbeat_at = ?, "
        "state = CASE WHEN state = 'crashed' THEN 'running' ELSE state END "
        "WHERE entity = ? AND project = ? AND run_id = ?",
        (now, key.entity, key.project, key.run_id),
    )
    if cursor.rowcount == 0:
        raise _missing(key)


def _sweep(now: float, conn: sqlite3.Connection) -> int:
    cursor = conn.execute(
        "UPDATE runs SET state = 'crashed', updated_at = ? WHERE state = 'running' AND "
        "heartbeat_at < ? - CASE WHEN heartbeat_interval * 3 > 3 "
        "THEN heartbeat_interval * 3 ELSE 3 END",
        (now, now),
    )
    return int(cursor.rowcount)


def _update_run(key: RunKey, changes: dict[str, Any], now: float, conn: sqlite3.Connection) -> None:
    pk = _run_pk(conn, key)
    if "tags" in changes:
        conn.execute(
            "UPDATE runs SET tags = ? WHERE pk = ?", (orjson.dumps(changes["tags"]).decode(), pk)
        )
    if "notes" in changes:
        conn.execute("UPDATE runs SET notes = ? WHERE pk = ?", (changes["notes"], pk))
    conn.execute("UPDATE runs SET updated_at = ? WHERE pk = ?", (now, pk))


def _put_file(
    key: RunKey, name: str, content: bytes, digest: str, now: float, conn: sqlite3.Connection
) -> None:
    pk = _run_pk(conn, key)
    conn.execute(
        "INSERT INTO files (run_pk, name, content, size, sha256, updated_at) "
        "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (run_pk, name) DO UPDATE SET "
        "content = excluded.content, size = excluded.size, sha256 = excluded.sha256, "
        "updated_at = excluded.updated_at",
        (pk, name, content, len(content), digest, now),
    )


def _with_digest(content: bytes) -> tuple[bytes, str]:
    """The bytes (copied only when given a bytearray or memoryview) and their SHA-256 hex."""
    data = bytes(content)
    return data, hashlib.sha256(data).hexdigest()


def _hash_key(api_key: str) -> str:
    return hashlib.sha256(api_key.encode("utf-8")).hexdigest()


# -- reads ---------------------------------------------------------------------------------

_Check = tuple[str, str, Any]  # column (config or summary), key path, expected value


def _where(
    entity: str, project: str, filters: dict[str, Any]
) -> tuple[str, list[Any], list[_Check]]:
    """SQL conditions for the filters SQL can check, and the checks left for Python."""
    if not isinstance(filters, dict):
        raise StorageError(400, "bad_filter", f"filters {filters!r:.100} is not a JSON object")
    clauses = ["entity = ?", "project = ?"]
    params: list[Any] = [entity, project]
    checks: list[_Check] = []
    for name, value in filters.items():
        column = _EQUAL_FILTERS.get(name)
        prefix, _, path = name.partition(".")
        if column is not None:
            if value is None:
                clauses.append(f"{column} IS NULL")
                continue
            _check_text_filter(name, value)
            clauses.append(f"{column} = ?")
            params.append(value)
        elif name == "tags":
            _check_text_filter(name, value)
            clauses.append("EXISTS (SELECT 1 FROM json_each(runs.tags) WHERE value = ?)")
            params.append(value)
        elif name == "search":
            _check_text_filter(name, value)
            clauses.append(
                "(instr(lower(COALESCE(name, '')), lower(?)) > 0 OR "
                "instr(lower(run_id), lower(?)) > 0)"
            )
            params += [value, value]
        elif prefix in ("config", "summary") and path:
            checks.append((prefix, path, value))
        else:
            raise StorageError(
                400,
                "bad_filter",
                f"filter {name!r} is unknown; use state, group, job_type, name, tags, search, "
                "config.KEY or summary.KEY",
            )
    return " AND ".join(clauses), params, checks


def _check_text_filter(name: str, value: Any) -> None:
    if not isinstance(value, str):
        raise StorageError(
            400, "bad_filter", f"filter {name!r} value {value!r:.100} is not a string"
        )


def _list_runs(
    where: str,
    params: list[Any],
    checks: list[_Check],
    order: str,
    limit: int,
    offset: int,
    conn: sqlite3.Connection,
) -> tuple[list[dict[str, Any]], int]:
    ordering = _ORDERS[order]
    if not checks:
        total = conn.execute(f"SELECT COUNT(*) FROM runs WHERE {where}", params).fetchone()[0]
        rows = conn.execute(
            f"SELECT * FROM runs WHERE {where} ORDER BY {ordering} LIMIT ? OFFSET ?",
            [*params, limit, offset],
        ).fetchall()
        return [_document(row) for row in rows], int(total)
    columns = sorted({column for column, _, _ in checks})
    return _page_checked(
        conn, f"WHERE {where} ORDER BY {ordering}", params, columns, checks, offset, limit
    )


def _page_checked(
    conn: sqlite3.Connection,
    clauses: str,
    params: Sequence[Any],
    columns: list[str],
    checks: Sequence[tuple[str, Any, Any]],
    offset: int,
    limit: int,
) -> tuple[list[dict[str, Any]], int]:
    """Runs selected by ``clauses`` whose decoded ``columns`` pass every check of a
    ``config.KEY`` / ``summary.KEY`` filter: one page of documents, and how many passed."""
    matched: list[int] = []
    for row in conn.execute(f"SELECT pk, {', '.join(columns)} FROM runs {clauses}", params):
        documents = {column: decode_value(row[column]) for column in columns}
        if all(_holds(documents[column], path, value) for column, path, value in checks):
            matched.append(int(row["pk"]))
    page = matched[offset : offset + limit]
    rows = _rows_by(conn, "SELECT * FROM runs WHERE pk IN ({})", [], page)
    by_pk = {int(row["pk"]): row for row in rows}
    return [_document(by_pk[pk]) for pk in page], len(matched)


def _holds(document: Any, path: str, expected: Any) -> bool:
    """Whether ``document[path]`` (a top-level key, else a dotted path) equals ``expected``."""
    missing = object()
    value: Any = document.get(path, missing) if isinstance(document, dict) else missing
    if value is missing:
        value = document
        for part in path.split("."):
            if not isinstance(value, dict) or part not in value:
                return False
            value = value[part]
    if isinstance(value, bool) or isinstance(expected, bool):
        return value is expected
    return bool(value == expected)


def _rows_by(
    conn: sqlite3.Connection, query: str, params: list[Any], values: Sequence[int]
) -> list[sqlite3.Row]:
    """Run ``query`` (its ``IN ({})`` filled with placeholders) over ``values`` in slices."""
    rows: list[sqlite3.Row] = []
    for start in range(0, len(values), _IN_CHUNK):
        part = list(values[start : start + _IN_CHUNK])
        marks = ", ".join("?" * len(part))
        rows += conn.execute(query.format(marks), [*params, *part]).fetchall()
    return rows


def _history(
    key: RunKey,
    keys: list[str] | None,
    low: int,
    high: int,
    samples: int | None,
    conn: sqlite3.Connection,
) -> list[dict[str, Any]]:
    pk = _run_pk(conn, key)
    if keys == []:
        return []
    range_query = (
        "SELECT step, ts, runtime, data FROM history "
        "WHERE run_pk = ? AND step >= ? AND step <= ? ORDER BY step"
    )
    if samples is None:
        return _shape(conn.execute(range_query, (pk, low, high)), keys)
    if keys is None:
        count = conn.execute(
            "SELECT COUNT(*) FROM history WHERE run_pk = ? AND step >= ? AND step <= ?",
            (pk, low, high),
        ).fetchone()[0]
        if count <= samples:
            return _shape(conn.execute(range_query, (pk, low, high)), keys)
        wanted = [
            row[0]
            for row in conn.execute("SELECT DISTINCT key FROM series WHERE run_pk = ?", (pk,))
        ]
    else:
        wanted = list(dict.fromkeys(keys))
    series = [_load_series(conn, pk, name, low, high) for name in wanted]
    union = sampler.union_steps([one.steps for one in series])
    steps = sampler.sample_steps(union, series, samples)
    rows = _rows_by(
        conn,
        "SELECT step, ts, runtime, data FROM history WHERE run_pk = ? AND step IN ({})",
        [pk],
        steps,
    )
    rows.sort(key=lambda row: int(row[0]))
    return _shape(rows, keys)


def _load_series(
    conn: sqlite3.Connection, pk: int, key: str, low: int, high: int
) -> sampler.Series:
    stored = conn.execute(
        "SELECT first_step, last_step, steps, vals, extremes FROM series "
        "WHERE run_pk = ? AND key = ? AND last_step >= ? AND first_step <= ? ORDER BY first_step",
        (pk, key, low, high),
    ).fetchall()
    return _series.unpack_series([tuple(chunk) for chunk in stored]).clip(low, high)


def _shape(rows: Any, keys: list[str] | None) -> list[dict[str, Any]]:
    """History rows as the API returns them (as `tracker._reader.StoredRun.history` does)."""
    out: list[dict[str, Any]] = []
    if keys is None:
        for step, stamp, runtime, data in rows:
            out.append(
                {"_step": step, "_timestamp": stamp, "_runtime": runtime, **decode_value(data)}
            )
        return out
    for step, _, _, data in rows:
        values = decode_value(data)
        picked = {name: values[name] for name in keys if name in values}
        if picked:
            out.append({"_step": step, **picked})
    return out


# -- dashboard reads -----------------------------------------------------------------------

_SORT_COLUMNS: Final = {
    "name": "lower(COALESCE(name, run_id))",
    "created_at": "created_at",
    "updated_at": "updated_at",
    "state": "state",
    "group": "run_group",
    "job_type": "job_type",
    "runtime": "runtime",
    "last_step": "last_step",
}


def _sort_expression(sort: list[str]) -> tuple[str, list[str]]:
    """The SQL value runs are sorted by, and its parameters (a JSON path, bound)."""
    if (
        not isinstance(sort, list)
        or not sort
        or not all(isinstance(part, str) and part for part in sort)
    ):
        raise StorageError(
            400, "bad_order", f"sort {sort!r:.100} is not a non-empty list of non-empty strings"
        )
    column, *path = sort
    if column in _SORT_COLUMNS and not path:
        return _SORT_COLUMNS[column], []
    if column in ("config", "summary") and path:
        if any('"' in part for part in path):
            raise StorageError(
                400, "bad_order", f"sort key {path!r:.100} holds a '\"'; sort by another key"
            )
        # values are stored exactly encoded, [document] or [document, specials]
        return f"json_extract({column}, ?)", ["$[0]" + "".join(f'."{part}"' for part in path)]
    raise StorageError(
        400,
        "bad_order",
        f"sort {sort!r:.100} is unknown; use [COLUMN] with COLUMN one of "
        f"{', '.join(_SORT_COLUMNS)}, or ['config' or 'summary', KEY, ...]",
    )


def _list_runs_sorted(
    where: str,
    params: list[Any],
    checks: list[_Check],
    ordering: str,
    order_params: list[str],
    limit: int,
    offset: int,
    conn: sqlite3.Connection,
) -> tuple[list[dict[str, Any]], int]:
    if not checks:
        total = conn.execute(f"SELECT COUNT(*) FROM runs WHERE {where}", params).fetchone()[0]
        rows = conn.execute(
            f"SELECT * FROM runs WHERE {where} ORDER BY {ordering} LIMIT ? OFFSET ?",
            [*params, *order_params, limit, offset],
        ).fetchall()
        return [_document(row) for row in rows], int(total)
    columns = sorted({column for column, _, _ in checks})
    return _page_checked(
        conn,
        f"WHERE {where} ORDER BY {ordering}",
        [*params, *order_params],
        columns,
        checks,
        offset,
        limit,
    )


def _chart_series(
    key: RunKey, keys: list[str] | None, low: int, samples: int, conn: sqlite3.Connection
) -> dict[str, Any]:
    row = conn.execute(
        "SELECT pk, last_step FROM runs WHERE entity = ? AND project = ? AND run_id = ?",
        (key.entity, key.project, key.run_id),
    ).fetchone()
    if row is None:
        raise _missing(key)
    pk, last_step = int(row[0]), int(row[1])
    if keys is None:
        names = [
            str(name)
            for (name,) in conn.execute(
                "SELECT DISTINCT key FROM series WHERE run_pk = ? ORDER BY key", (pk,)
            )
        ]
    else:
        names = list(dict.fromkeys(keys))
    picked: dict[str, tuple[list[int], list[float]]] = {}
    for name in names:
        loaded = _load_series(conn, pk, name, low, MAX_STEP)
        steps, values = loaded.steps, loaded.values
        if len(steps) > samples:
            chosen = sampler.sample_steps(steps, [loaded], samples)
            kept = [values[bisect_left(steps, step)] for step in chosen]
        else:
            chosen, kept = list(steps), values.tolist()
        if any(map(math.isfinite, kept)):
            picked[name] = (chosen, kept)
    wanted = sorted(set().union(*(steps for steps, _ in picked.values())))
    times = {
        int(step): (stamp, runtime)
        for step, stamp, runtime in _rows_by(
            conn,
            "SELECT step, ts, runtime FROM history WHERE run_pk = ? AND step IN ({})",
            [pk],
            wanted,
        )
    }
    series = {
        name: {
            "step": steps,
            "value": values,
            "runtime": [times[step][1] for step in steps],
            "timestamp": [times[step][0] for step in steps],
        }
        for name, (steps, values) in picked.items()
    }
    return {"last_step": last_step, "series": series}

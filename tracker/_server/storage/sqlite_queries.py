"""The SQL of the SQLite backend's primitives: `Session`, the primitives of one
transaction on one database thread, and the statements of an ingest batch.

Writes that return nothing wait in the session and run, in order, in the hop of the next
read or of the commit (each hop to a database thread costs ~50 µs on the project's
machine). User values are stored exactly encoded as JSON text; history rows go
`ROWS_PER_INSERT` to a statement. A few queries use SQLite's own functions (``json_each``
on tags, ``json_extract``, ``instr``).
"""

from __future__ import annotations

import operator
import sqlite3
from collections.abc import Awaitable, Callable, Sequence
from itertools import chain, repeat
from typing import Any, Final, Protocol, TypeVar

import orjson

from tracker._records.codec import decode_value
from tracker._server.storage.backend import (
    BatchWrites,
    CompactWrites,
    LoggedBatch,
    RunFields,
    StoredRow,
    StoredRun,
    StreamAppend,
    StreamEntry,
    StreamSpan,
)
from tracker._server.storage.document import FileInfo, ProjectInfo, RunDocument, RunKey
from tracker._server.storage.filters import ColumnIs, HasTag, RunQuery, Search, ValueIs
from tracker._server.storage.series import (
    Chunk,
    appended_chunks,
    rebuild_range,
    rebuilt_chunks,
)
from tracker._server.storage.spool import SpooledFile
from tracker._server.storage.stored import run_document

__all__ = [
    "ROWS_PER_INSERT",
    "Job",
    "Lane",
    "Session",
    "load_run",
    "load_run_at",
    "log_entries",
    "store_batch",
    "store_compaction",
]

T = TypeVar("T")
Job = Callable[[sqlite3.Connection], T]


class Lane(Protocol):
    """A database thread with its connection (`tracker._server.storage.sqlite`)."""

    def run(self, job: Job[T]) -> Awaitable[T]:
        """``job(connection)`` on the thread."""


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
_STORED_KEYS: Final = ("pk", "entity", "project", "run_id", *_COLUMNS)
_RUN_SELECT: Final = ", ".join(["pk", "entity", "project", "run_id", *_COLUMNS.values()])
"""The ``runs`` columns of a `StoredRun`, in the order of `_STORED_KEYS`."""
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


class Session:
    """The primitives within one transaction on one lane. Writes that return nothing wait
    in ``_pending`` and run, in order, in the hop of the next read or of the commit."""

    def __init__(self, lane: Lane, begin: str) -> None:
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
        return await self.flush(lambda conn: load_run(conn, key, log_id))

    async def read_rows(self, pk: int, low: int, high: int) -> list[StoredRow]:
        """See `Reader.read_rows`."""
        return await self.flush(
            lambda conn: _tuples(
                conn,
                "SELECT step, ts, runtime, data FROM history "
                "WHERE run_pk = ? AND step >= ? AND step <= ? ORDER BY step",
                (pk, low, high),
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
                rows += _tuples(conn, query.format(", ".join("?" * len(part))), [pk, *part])
            rows.sort(key=operator.itemgetter(0))
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

    async def read_log(self, pk: int) -> list[LoggedBatch]:
        """See `Reader.read_log`."""
        return await self.flush(lambda conn: log_entries(conn, pk, None))

    async def logged_runs(self) -> list[tuple[int, RunKey]]:
        """See `Reader.logged_runs`."""
        return await self.flush(
            lambda conn: [
                (int(pk), RunKey(entity, project, run_id))
                for pk, entity, project, run_id in conn.execute(
                    "SELECT runs.pk, runs.entity, runs.project, runs.run_id FROM runs JOIN "
                    "(SELECT run_pk, MIN(entry) AS first FROM row_log WHERE failed IS NULL "
                    "GROUP BY run_pk) AS logged ON logged.run_pk = runs.pk ORDER BY logged.first"
                )
            ]
        )

    async def page_runs(self, query: RunQuery) -> tuple[list[RunDocument], int]:
        """See `Reader.page_runs`: SQL checks every condition but ``config.KEY`` and
        ``summary.KEY``, which Python checks on the decoded documents."""
        where, params, checks = _where(query)
        ordering, order_params = _ordering(query)
        ordered_params = [*params, *order_params]

        def job(conn: sqlite3.Connection) -> tuple[list[RunDocument], int]:
            if not checks:
                total = conn.execute(f"SELECT COUNT(*) FROM runs WHERE {where}", params).fetchone()
                rows = _tuples(
                    conn,
                    f"SELECT {_RUN_SELECT} FROM runs WHERE {where} ORDER BY {ordering} "
                    "LIMIT ? OFFSET ?",
                    [*ordered_params, query.limit, query.offset],
                )
                return [run_document(_stored(row)) for row in rows], int(total[0])
            columns = sorted({check.document for check in checks})
            matched: list[int] = []
            for pk, *texts in _tuples(
                conn,
                f"SELECT pk, {', '.join(columns)} FROM runs WHERE {where} ORDER BY {ordering}",
                ordered_params,
            ):
                documents = dict(zip(columns, map(decode_value, texts), strict=True))
                if all(check.holds(documents[check.document]) for check in checks):
                    matched.append(int(pk))
            page = matched[query.offset : query.offset + query.limit]
            by_pk: dict[int, RunDocument] = {}
            for start in range(0, len(page), _IN_CHUNK):
                part = page[start : start + _IN_CHUNK]
                marks = ", ".join("?" * len(part))
                for row in _tuples(
                    conn, f"SELECT {_RUN_SELECT} FROM runs WHERE pk IN ({marks})", part
                ):
                    by_pk[int(row[0])] = run_document(_stored(row))
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

    async def read_stream(self, pk: int, stream: str, span: StreamSpan) -> list[StreamEntry]:
        """See `Reader.read_stream`."""
        order = "DESC" if span.newest else "ASC"
        query = (
            "SELECT seq, ts, data FROM stream_records WHERE run_pk = ? AND stream = ? "
            f"AND seq > ? AND seq < ? AND ts >= ? AND ts <= ? ORDER BY seq {order} LIMIT ?"
        )
        params = (pk, stream, span.after, span.before, span.start, span.end, span.limit)

        def job(conn: sqlite3.Connection) -> list[StreamEntry]:
            found: list[StreamEntry] = _tuples(conn, query, params)
            return found[::-1] if span.newest else found

        return await self.flush(job)

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

    async def read_file(
        self, pk: int, name: str, first: int, count: int
    ) -> tuple[FileInfo, list[bytes]] | None:
        """See `Reader.read_file`."""

        def job(conn: sqlite3.Connection) -> tuple[FileInfo, list[bytes]] | None:
            row = conn.execute(
                "SELECT size, sha256, updated_at FROM files WHERE run_pk = ? AND name = ?",
                (pk, name),
            ).fetchone()
            if row is None:
                return None
            size, sha256, updated = row
            info: FileInfo = {"name": name, "size": size, "sha256": sha256, "updated_at": updated}
            chunks = conn.execute(
                "SELECT data FROM file_chunks WHERE run_pk = ? AND name = ? AND idx >= ? "
                "AND idx < ? ORDER BY idx",
                (pk, name, first, first + count),
            )
            return info, [bytes(data) for (data,) in chunks]

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
                    "THEN heartbeat_interval * ?2 ELSE ?3 END AND NOT EXISTS "
                    "(SELECT 1 FROM row_log WHERE run_pk = runs.pk AND failed IS NULL)",
                    (now, intervals, at_least),
                ).rowcount
            )
        )

    async def put_file(self, pk: int, name: str, content: SpooledFile, now: float) -> None:
        """See `Writer.put_file`: a row per chunk, read from the spool on the writer thread."""

        def job(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO files (run_pk, name, size, sha256, updated_at) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (run_pk, name) DO UPDATE SET "
                "size = excluded.size, sha256 = excluded.sha256, updated_at = excluded.updated_at",
                (pk, name, content.size, content.sha256, now),
            )
            conn.execute("DELETE FROM file_chunks WHERE run_pk = ? AND name = ?", (pk, name))
            conn.executemany(
                "INSERT INTO file_chunks (run_pk, name, idx, data) VALUES (?, ?, ?, ?)",
                ((pk, name, index, chunk) for index, chunk in enumerate(content.chunks())),
            )

        self._later(job)

    async def put_api_key(self, digest: str, entity: str, now: float) -> None:
        """See `Writer.put_api_key`."""
        self._later(
            lambda conn: conn.execute(
                "INSERT INTO api_keys (hash, entity, created_at) VALUES (?, ?, ?) "
                "ON CONFLICT (hash) DO UPDATE SET entity = excluded.entity",
                (digest, entity, now),
            )
        )


def load_run(conn: sqlite3.Connection, key: RunKey, log_id: str | None) -> StoredRun | None:
    rows = _tuples(
        conn,
        f"SELECT {_RUN_SELECT}, streams.acked_seq, streams.sessions FROM runs LEFT JOIN "
        "streams ON streams.run_pk = runs.pk AND streams.log_id = ? "
        "WHERE entity = ? AND project = ? AND run_id = ?",
        (log_id, key.entity, key.project, key.run_id),
    )
    if not rows:
        return None
    *values, acked, sessions = rows[0]
    stored = _stored(values)
    if acked is not None:
        stored["acked_seq"] = int(acked)
        stored["sessions"] = orjson.loads(sessions)
    return stored


def load_run_at(conn: sqlite3.Connection, pk: int) -> StoredRun | None:
    """The run ``pk`` (without a log's seq), or None."""
    rows = _tuples(conn, f"SELECT {_RUN_SELECT} FROM runs WHERE pk = ?", (pk,))
    return _stored(rows[0]) if rows else None


def log_entries(conn: sqlite3.Connection, pk: int, budget: int | None) -> list[LoggedBatch]:
    """The run's logged batches not compacted nor set aside, in ack order: all of them,
    or as many as hold ``budget`` bytes (at least one)."""
    entries: list[LoggedBatch] = []
    total = 0
    for entry, first, last, body, received in conn.execute(
        "SELECT entry, first_seq, last_seq, substr(body, done + 1), received_at FROM row_log "
        "WHERE run_pk = ? AND failed IS NULL ORDER BY entry",
        (pk,),
    ):
        entries.append(LoggedBatch(int(first), int(last), bytes(body), float(received), entry))
        total += len(body)
        if budget is not None and total >= budget:
            break
    return entries


def _update_run(conn: sqlite3.Connection, pk: int, fields: RunFields) -> None:
    if fields:
        assignments = ", ".join(f"{_COLUMNS[name]} = ?" for name in fields)
        values = [_column_value(name, value) for name, value in fields.items()]
        conn.execute(f"UPDATE runs SET {assignments} WHERE pk = ?", [*values, pk])


def store_batch(conn: sqlite3.Connection, writes: BatchWrites, log_id: str) -> None:
    """Store an ack: the batch appended to the row log, the log's seq, the run's fields."""
    pk = writes.pk
    conn.executemany(
        "INSERT INTO row_log (run_pk, log_id, first_seq, last_seq, body, received_at) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        [
            (pk, log_id, piece.first_seq, piece.last_seq, piece.body, piece.received_at)
            for piece in writes.logged
        ],
    )
    if writes.streams:
        _append_streams(conn, pk, writes.streams)
    conn.execute(
        "INSERT INTO streams (run_pk, log_id, acked_seq, sessions) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (run_pk, log_id) DO UPDATE SET acked_seq = excluded.acked_seq"
        + ("" if writes.sessions is None else ", sessions = excluded.sessions"),
        (pk, log_id, writes.acked_seq, orjson.dumps(writes.sessions or []).decode()),
    )
    _update_run(conn, pk, writes.fields)


def store_compaction(conn: sqlite3.Connection, writes: CompactWrites) -> None:
    """Store a compaction step's rows, series and fields, and advance the row log."""
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
    _update_run(conn, pk, writes.fields)
    conn.executemany("DELETE FROM row_log WHERE entry = ?", [(entry,) for entry in writes.done])
    if writes.advanced is not None:
        entry, first_seq, folded = writes.advanced
        conn.execute(
            "UPDATE row_log SET first_seq = ?, done = done + ? WHERE entry = ?",
            (first_seq, folded, entry),
        )
    conn.executemany(
        "UPDATE row_log SET failed = ? WHERE entry = ?",
        [(reason, entry) for entry, reason in writes.failed],
    )


def _append_streams(conn: sqlite3.Connection, pk: int, appends: Sequence[StreamAppend]) -> None:
    """Store stream records in order, each at its stream's next seq."""
    next_seq: dict[str, int] = {}
    for stream in dict.fromkeys(stream for stream, _, _ in appends):
        last = conn.execute(
            "SELECT MAX(seq) FROM stream_records WHERE run_pk = ? AND stream = ?", (pk, stream)
        ).fetchone()[0]
        next_seq[stream] = 0 if last is None else int(last) + 1
    values = []
    for stream, stamp, text in appends:
        values.append((pk, stream, next_seq[stream], stamp, text))
        next_seq[stream] += 1
    conn.executemany(
        "INSERT INTO stream_records (run_pk, stream, seq, ts, data) VALUES (?, ?, ?, ?, ?)", values
    )


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


def _tuples(conn: sqlite3.Connection, query: str, params: Sequence[Any]) -> list[Any]:
    """The rows of ``query`` as plain tuples, not `sqlite3.Row` objects (a third of the
    time of reading a long history went to making those)."""
    cursor = conn.cursor()
    cursor.row_factory = None
    return cursor.execute(query, params).fetchall()


def _column_value(name: str, value: Any) -> Any:
    return orjson.dumps(value).decode() if name == "tags" else value


def _chunk(first: int, last: int, steps: bytes, values: bytes, extremes: bytes) -> Chunk:
    return (int(first), int(last), bytes(steps), bytes(values), bytes(extremes))


def _stored(values: Sequence[Any]) -> StoredRun:
    """The stored run of a row of `_RUN_SELECT`."""
    stored: Any = dict(zip(_STORED_KEYS, values, strict=True))
    stored["tags"] = orjson.loads(stored["tags"])
    stored["acked_seq"] = -1
    stored["sessions"] = []
    return stored  # type: ignore[no-any-return]


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

"""The SQL of the PostgreSQL backend's primitives: `Session`, the primitives of one
transaction on one pooled connection, and the statements of an ingest batch.

Every primitive is one statement (or a few) awaited on the connection; history rows and
series chunks go in one statement per batch through ``unnest`` of binary arrays, a later
row of a step replacing an earlier one. Inside a write, `Session.load_run` locks the
run's row (``SELECT ... FOR UPDATE``): write transactions on one run exclude each other
across server processes, as the contract asks. The texts of the queries mirror
`tracker._server.storage.sqlite_queries`, so both engines answer alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import asyncpg
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

__all__ = ["SWEEP_LOCK", "Session"]

SWEEP_LOCK: Final = 0x7472_6163_6B00_0001
"""The advisory lock key of the crashed-run sweep: one replica sweeps at a time."""

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
_RUN_SELECT: Final = ", ".join(
    f"runs.{column}" for column in ["pk", "entity", "project", "run_id", *_COLUMNS.values()]
)
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
_UPSERT_ROWS: Final = (
    "INSERT INTO history (run_pk, step, ts, runtime, data) "
    "SELECT $1, * FROM unnest($2::bigint[], $3::float8[], $4::float8[], $5::text[]) "
    "ON CONFLICT (run_pk, step) DO UPDATE SET "
    "ts = excluded.ts, runtime = excluded.runtime, data = excluded.data"
)
_PUT_CHUNKS: Final = (
    "INSERT INTO series (run_pk, key, first_step, last_step, steps, vals, extremes) "
    "SELECT $1, * FROM unnest($2::text[], $3::bigint[], $4::bigint[], $5::bytea[], "
    "$6::bytea[], $7::bytea[]) ON CONFLICT (run_pk, key, first_step) DO UPDATE SET "
    "last_step = excluded.last_step, steps = excluded.steps, vals = excluded.vals, "
    "extremes = excluded.extremes"
)
_LAST_CHUNKS: Final = (
    "SELECT DISTINCT ON (key) key, first_step, last_step, steps, vals, extremes FROM series "
    "WHERE run_pk = $1 AND key = ANY($2::text[]) ORDER BY key, first_step DESC"
)
_SPANS: Final = (
    "SELECT key, MIN(first_step), MAX(last_step) FROM series "
    "WHERE run_pk = $1 AND last_step >= $2 AND first_step <= $3 GROUP BY key"
)


class Session:
    """The primitives within one transaction on one connection (``writing``: a write
    transaction, whose `load_run` locks the run's row)."""

    def __init__(self, conn: asyncpg.Connection, writing: bool) -> None:
        self._conn = conn
        self._writing = writing

    # -- reads ---------------------------------------------------------------------------

    async def load_run(self, key: RunKey, log_id: str | None = None) -> StoredRun | None:
        """See `Reader.load_run`; inside a write, the run's row is locked first
        (``FOR UPDATE``) and then read in a statement of its own.

        One ``SELECT ... JOIN streams ... FOR UPDATE OF runs`` would not do: under read
        committed, a statement that waited for the lock re-reads the locked row but keeps
        its snapshot's ``streams`` row, so it would see the summary another replica just
        stored with the ``acked_seq`` from before it, and apply that batch again."""
        if self._writing:
            await self._conn.execute(
                "SELECT 1 FROM runs WHERE entity = $1 AND project = $2 AND run_id = $3 FOR UPDATE",
                key.entity,
                key.project,
                key.run_id,
            )
        row = await self._conn.fetchrow(
            f"SELECT {_RUN_SELECT}, streams.acked_seq, streams.sessions FROM runs "
            "LEFT JOIN streams ON streams.run_pk = runs.pk AND streams.log_id = $1 "
            "WHERE entity = $2 AND project = $3 AND run_id = $4",
            log_id,
            key.entity,
            key.project,
            key.run_id,
        )
        if row is None:
            return None
        *values, acked, sessions = row
        stored = _stored(values)
        if acked is not None:
            stored["acked_seq"] = int(acked)
            stored["sessions"] = orjson.loads(sessions)
        return stored

    async def load_run_at(self, pk: int) -> StoredRun | None:
        """The run ``pk`` (without a log's seq), its row locked inside a write, or None."""
        lock = " FOR UPDATE" if self._writing else ""
        row = await self._conn.fetchrow(f"SELECT {_RUN_SELECT} FROM runs WHERE pk = $1{lock}", pk)
        return None if row is None else _stored(row)

    async def log_entries(self, pk: int, budget: int | None) -> list[LoggedBatch]:
        """The run's logged batches not compacted nor set aside, in ack order: all of
        them, or as many as hold ``budget`` bytes (at least one)."""
        entries: list[LoggedBatch] = []
        total = 0
        async for entry, first, last, body, received in self._conn.cursor(
            "SELECT entry, first_seq, last_seq, substring(body FROM (done + 1)::int), received_at "
            "FROM row_log WHERE run_pk = $1 AND failed IS NULL ORDER BY entry",
            pk,
            prefetch=4,
        ):
            entries.append(LoggedBatch(int(first), int(last), bytes(body), received, entry))
            total += len(body)
            if budget is not None and total >= budget:
                break
        return entries

    async def read_log(self, pk: int) -> list[LoggedBatch]:
        """See `Reader.read_log`."""
        return await self.log_entries(pk, None)

    async def logged_runs(self) -> list[tuple[int, RunKey]]:
        """See `Reader.logged_runs`."""
        return [
            (int(pk), RunKey(entity, project, run_id))
            for pk, entity, project, run_id in await self._conn.fetch(
                "SELECT runs.pk, runs.entity, runs.project, runs.run_id FROM runs JOIN "
                "(SELECT run_pk, MIN(entry) AS first FROM row_log WHERE failed IS NULL "
                "GROUP BY run_pk) AS logged ON logged.run_pk = runs.pk ORDER BY logged.first"
            )
        ]

    async def read_rows(self, pk: int, low: int, high: int) -> list[StoredRow]:
        """See `Reader.read_rows`."""
        rows = await self._conn.fetch(
            "SELECT step, ts, runtime, data FROM history "
            "WHERE run_pk = $1 AND step >= $2 AND step <= $3 ORDER BY step",
            pk,
            low,
            high,
        )
        return [tuple(row) for row in rows]

    async def rows_at(self, pk: int, steps: Sequence[int], data: bool) -> list[StoredRow]:
        """See `Reader.rows_at`."""
        columns = "step, ts, runtime, data" if data else "step, ts, runtime, ''"
        rows = await self._conn.fetch(
            f"SELECT {columns} FROM history WHERE run_pk = $1 AND step = ANY($2::bigint[]) "
            "ORDER BY step",
            pk,
            list(steps),
        )
        return [tuple(row) for row in rows]

    async def count_rows(self, pk: int, low: int, high: int) -> int:
        """See `Reader.count_rows`."""
        count = await self._conn.fetchval(
            "SELECT COUNT(*) FROM history WHERE run_pk = $1 AND step >= $2 AND step <= $3",
            pk,
            low,
            high,
        )
        return int(count)

    async def series_keys(self, pk: int) -> list[str]:
        """See `Reader.series_keys`."""
        rows = await self._conn.fetch(
            "SELECT DISTINCT key FROM series WHERE run_pk = $1 ORDER BY key", pk
        )
        return [str(row[0]) for row in rows]

    async def read_chunks(
        self, pk: int, keys: Sequence[str], low: int, high: int
    ) -> dict[str, list[Chunk]]:
        """See `Reader.read_chunks`."""
        found: dict[str, list[Chunk]] = {}
        for key, *chunk in await self._conn.fetch(
            "SELECT key, first_step, last_step, steps, vals, extremes FROM series "
            "WHERE run_pk = $1 AND key = ANY($2::text[]) AND last_step >= $3 "
            "AND first_step <= $4 ORDER BY key, first_step",
            pk,
            list(keys),
            low,
            high,
        ):
            found.setdefault(key, []).append(_chunk(*chunk))
        return {key: found[key] for key in keys if key in found}

    async def chunk_spans(self, pk: int, low: int, high: int) -> dict[str, tuple[int, int]]:
        """See `Reader.chunk_spans`."""
        return await _spans(self._conn, pk, low, high)

    async def page_runs(self, query: RunQuery) -> tuple[list[RunDocument], int]:
        """See `Reader.page_runs`: SQL checks every condition but ``config.KEY`` and
        ``summary.KEY``, which Python checks on the decoded documents."""
        params: list[Any] = []
        where, checks = _where(query, params)
        counted = list(params)
        ordering = _ordering(query, params)
        conn = self._conn
        if not checks:
            total = await conn.fetchval(f"SELECT COUNT(*) FROM runs WHERE {where}", *counted)
            limit, offset = _mark(params, query.limit), _mark(params, query.offset)
            rows = await conn.fetch(
                f"SELECT {_RUN_SELECT} FROM runs WHERE {where} ORDER BY {ordering} "
                f"LIMIT {limit} OFFSET {offset}",
                *params,
            )
            return [run_document(_stored(row)) for row in rows], int(total)
        columns = sorted({check.document for check in checks})
        matched: list[int] = []
        for pk, *texts in await conn.fetch(
            f"SELECT pk, {', '.join(columns)} FROM runs WHERE {where} ORDER BY {ordering}",
            *params,
        ):
            documents = dict(zip(columns, map(decode_value, texts), strict=True))
            if all(check.holds(documents[check.document]) for check in checks):
                matched.append(int(pk))
        page = matched[query.offset : query.offset + query.limit]
        by_pk = {
            int(row[0]): run_document(_stored(row))
            for row in await conn.fetch(
                f"SELECT {_RUN_SELECT} FROM runs WHERE pk = ANY($1::bigint[])", page
            )
        }
        return [by_pk[pk] for pk in page], len(matched)

    async def read_stream(self, pk: int, stream: str, span: StreamSpan) -> list[StreamEntry]:
        """See `Reader.read_stream`."""
        rows = await self._conn.fetch(
            "SELECT seq, ts, data FROM stream_records WHERE run_pk = $1 AND stream = $2 "
            "AND seq > $3 AND seq < $4 AND ts >= $5 AND ts <= $6 "
            f"ORDER BY seq {'DESC' if span.newest else 'ASC'} LIMIT $7",
            pk,
            stream,
            span.after,
            span.before,
            span.start,
            span.end,
            span.limit,
        )
        found: list[StreamEntry] = [tuple(row) for row in rows]
        return found[::-1] if span.newest else found

    async def list_projects(self, entity: str) -> list[ProjectInfo]:
        """See `Reader.list_projects`."""
        return [
            {"name": str(name), "runs": int(runs), "updated_at": float(updated)}
            for name, runs, updated in await self._conn.fetch(
                "SELECT project, COUNT(*), MAX(updated_at) FROM runs WHERE entity = $1 "
                "GROUP BY project ORDER BY project",
                entity,
            )
        ]

    async def list_files(self, pk: int) -> list[FileInfo]:
        """See `Reader.list_files`."""
        return [
            {"name": name, "size": int(size), "sha256": sha256, "updated_at": updated}
            for name, size, sha256, updated in await self._conn.fetch(
                "SELECT name, size, sha256, updated_at FROM files WHERE run_pk = $1 ORDER BY name",
                pk,
            )
        ]

    async def read_file(
        self, pk: int, name: str, first: int, count: int
    ) -> tuple[FileInfo, list[bytes]] | None:
        """See `Reader.read_file`."""
        row = await self._conn.fetchrow(
            "SELECT size, sha256, updated_at FROM files WHERE run_pk = $1 AND name = $2", pk, name
        )
        if row is None:
            return None
        size, sha256, updated = row
        info: FileInfo = {"name": name, "size": int(size), "sha256": sha256, "updated_at": updated}
        chunks = await self._conn.fetch(
            "SELECT data FROM file_chunks WHERE run_pk = $1 AND name = $2 AND idx >= $3 "
            "AND idx < $4 ORDER BY idx",
            pk,
            name,
            first,
            first + count,
        )
        return info, [bytes(data) for (data,) in chunks]

    async def key_entity(self, digest: str) -> str | None:
        """See `Reader.key_entity`."""
        entity = await self._conn.fetchval("SELECT entity FROM api_keys WHERE hash = $1", digest)
        return None if entity is None else str(entity)

    async def has_api_keys(self) -> bool:
        """See `Reader.has_api_keys`."""
        return await self._conn.fetchval("SELECT 1 FROM api_keys LIMIT 1") is not None

    # -- writes --------------------------------------------------------------------------

    async def create_run(self, key: RunKey, fields: RunFields) -> int:
        """See `Writer.create_run`."""
        names = [_COLUMNS[name] for name in fields]
        marks = ", ".join(f"${number}" for number in range(1, 4 + len(names)))
        await self._conn.execute(
            "INSERT INTO projects (entity, name, created_at) VALUES ($1, $2, $3) "
            "ON CONFLICT (entity, name) DO NOTHING",
            key.entity,
            key.project,
            fields["created_at"],
        )
        pk = await self._conn.fetchval(
            f"INSERT INTO runs (entity, project, run_id, {', '.join(names)}) "
            f"VALUES ({marks}) RETURNING pk",
            key.entity,
            key.project,
            key.run_id,
            *fields.values(),
        )
        return int(pk)

    async def delete_run(self, pk: int) -> None:
        """See `Writer.delete_run` (rows, series, seqs and files go by ``ON DELETE CASCADE``)."""
        await self._conn.execute("DELETE FROM runs WHERE pk = $1", pk)

    async def update_run(self, pk: int, fields: RunFields) -> None:
        """See `Writer.update_run`."""
        await _update_run(self._conn, pk, fields)

    async def rebuild_series(self, pk: int, low: int, high: int) -> None:
        """See `Writer.rebuild_series`."""
        await _rebuild_series(self._conn, pk, low, high)

    async def copy_history(self, source: int, target: int, through_step: int) -> None:
        """See `Writer.copy_history`."""
        await self._conn.execute(
            "INSERT INTO history (run_pk, step, ts, runtime, data) "
            "SELECT $1, step, ts, runtime, data FROM history WHERE run_pk = $2 AND step <= $3",
            target,
            source,
            through_step,
        )
        await self._conn.execute(
            "INSERT INTO series (run_pk, key, first_step, last_step, steps, vals, extremes) "
            "SELECT $1, key, first_step, last_step, steps, vals, extremes FROM series "
            "WHERE run_pk = $2 AND last_step <= $3",
            target,
            source,
            through_step,
        )

    async def move_history(self, source: int, target: int, after_step: int) -> None:
        """See `Writer.move_history`."""
        await self._conn.execute(
            "UPDATE history SET run_pk = $1 WHERE run_pk = $2 AND step > $3",
            target,
            source,
            after_step,
        )
        await self._conn.execute(
            "UPDATE series SET run_pk = $1 WHERE run_pk = $2 AND first_step > $3",
            target,
            source,
            after_step,
        )

    async def touch_heartbeat(self, key: RunKey, now: float) -> bool:
        """See `Writer.touch_heartbeat`."""
        status = await self._conn.execute(
            "UPDATE runs SET heartbeat_at = $1, "
            "state = CASE WHEN state = 'crashed' THEN 'running' ELSE state END "
            "WHERE entity = $2 AND project = $3 AND run_id = $4",
            now,
            key.entity,
            key.project,
            key.run_id,
        )
        return _count(status) > 0

    async def mark_crashed(self, now: float, intervals: float, at_least: float) -> int:
        """See `Writer.mark_crashed`: one replica sweeps at a time (the others find the
        advisory lock `SWEEP_LOCK` taken and mark nothing), and runs whose row a write holds
        are left to the next sweep (``SKIP LOCKED``: their client is writing)."""
        if not await self._conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", SWEEP_LOCK):
            return 0
        status = await self._conn.execute(
            "WITH silent AS (SELECT pk FROM runs WHERE state = 'running' "
            "AND heartbeat_at < $1 - GREATEST(heartbeat_interval * $2, $3) AND NOT EXISTS "
            "(SELECT 1 FROM row_log WHERE run_pk = runs.pk AND failed IS NULL) "
            "FOR UPDATE SKIP LOCKED) "
            "UPDATE runs SET state = 'crashed', updated_at = $1 FROM silent "
            "WHERE runs.pk = silent.pk",
            now,
            intervals,
            at_least,
        )
        return _count(status)

    async def put_file(self, pk: int, name: str, content: SpooledFile, now: float) -> None:
        """See `Writer.put_file`: a row per chunk, read from the spool as they are sent."""
        await self._conn.execute(
            "INSERT INTO files (run_pk, name, size, sha256, updated_at) "
            "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (run_pk, name) DO UPDATE SET "
            "size = excluded.size, sha256 = excluded.sha256, updated_at = excluded.updated_at",
            pk,
            name,
            content.size,
            content.sha256,
            now,
        )
        await self._conn.execute(
            "DELETE FROM file_chunks WHERE run_pk = $1 AND name = $2", pk, name
        )
        for index, chunk in enumerate(content.chunks()):
            await self._conn.execute(
                "INSERT INTO file_chunks (run_pk, name, idx, data) VALUES ($1, $2, $3, $4)",
                pk,
                name,
                index,
                chunk,
            )

    async def put_api_key(self, digest: str, entity: str, now: float) -> None:
        """See `Writer.put_api_key`."""
        await self._conn.execute(
            "INSERT INTO api_keys (hash, entity, created_at) VALUES ($1, $2, $3) "
            "ON CONFLICT (hash) DO UPDATE SET entity = excluded.entity",
            digest,
            entity,
            now,
        )

    async def store_batch(self, writes: BatchWrites, log_id: str) -> None:
        """Store an ack: the batch appended to the row log, its stream records, the log's
        seq and the run's fields."""
        conn, pk = self._conn, writes.pk
        pieces = writes.logged
        if pieces:
            await conn.execute(
                "INSERT INTO row_log (run_pk, log_id, first_seq, last_seq, body, received_at) "
                "SELECT $1, $2, first, last, body, received FROM unnest($3::bigint[], "
                "$4::bigint[], $5::bytea[], $6::float8[]) WITH ORDINALITY "
                "AS pieces (first, last, body, received, place) ORDER BY place",
                pk,
                log_id,
                [piece.first_seq for piece in pieces],
                [piece.last_seq for piece in pieces],
                [piece.body for piece in pieces],
                [piece.received_at for piece in pieces],
            )
        if writes.streams:
            await _append_streams(conn, pk, writes.streams)
        await conn.execute(
            "INSERT INTO streams (run_pk, log_id, acked_seq, sessions) VALUES ($1, $2, $3, $4) "
            "ON CONFLICT (run_pk, log_id) DO UPDATE SET acked_seq = excluded.acked_seq"
            + ("" if writes.sessions is None else ", sessions = excluded.sessions"),
            pk,
            log_id,
            writes.acked_seq,
            orjson.dumps(writes.sessions or []).decode(),
        )
        await _update_run(conn, pk, writes.fields)

    async def store_compaction(self, writes: CompactWrites) -> None:
        """Store a compaction step's rows, series and fields, and advance the row log."""
        conn, pk = self._conn, writes.pk
        if writes.steps:
            rows = {
                step: (stamp, runtime, text)
                for step, stamp, runtime, text in zip(
                    writes.steps, writes.stamps, writes.runtimes, writes.texts, strict=True
                )
            }
            stamps, runtimes, texts = zip(*rows.values(), strict=True)
            await conn.execute(_UPSERT_ROWS, pk, list(rows), stamps, runtimes, texts)
        if writes.appended:
            last = {
                key: _chunk(*chunk)
                for key, *chunk in await conn.fetch(_LAST_CHUNKS, pk, list(writes.appended))
            }
            await _put_chunks(conn, pk, appended_chunks(last, writes.appended))
        if writes.rebuild is not None:
            await _rebuild_series(conn, pk, *writes.rebuild)
        await _update_run(conn, pk, writes.fields)
        if writes.done:
            await conn.execute(
                "DELETE FROM row_log WHERE run_pk = $1 AND entry = ANY($2::bigint[])",
                pk,
                writes.done,
            )
        if writes.advanced is not None:
            entry, first_seq, folded = writes.advanced
            await conn.execute(
                "UPDATE row_log SET first_seq = $3, done = done + $4 "
                "WHERE run_pk = $1 AND entry = $2",
                pk,
                entry,
                first_seq,
                folded,
            )
        for entry, reason in writes.failed:
            await conn.execute(
                "UPDATE row_log SET failed = $3 WHERE run_pk = $1 AND entry = $2",
                pk,
                entry,
                reason,
            )


async def _append_streams(
    conn: asyncpg.Connection, pk: int, appends: Sequence[StreamAppend]
) -> None:
    """Store stream records in order, each at its stream's next seq, in one statement."""
    names = list(dict.fromkeys(stream for stream, _, _ in appends))
    next_seq = dict.fromkeys(names, 0)
    for stream, last in await conn.fetch(
        "SELECT stream, MAX(seq) FROM stream_records WHERE run_pk = $1 "
        "AND stream = ANY($2::text[]) GROUP BY stream",
        pk,
        names,
    ):
        next_seq[stream] = int(last) + 1
    seqs = []
    for stream, _, _ in appends:
        seqs.append(next_seq[stream])
        next_seq[stream] += 1
    streams, stamps, texts = zip(*appends, strict=True)
    await conn.execute(
        "INSERT INTO stream_records (run_pk, stream, seq, ts, data) "
        "SELECT $1, * FROM unnest($2::text[], $3::bigint[], $4::float8[], $5::text[])",
        pk,
        streams,
        seqs,
        stamps,
        texts,
    )


async def _update_run(conn: asyncpg.Connection, pk: int, fields: RunFields) -> None:
    if fields:
        assignments = ", ".join(
            f"{_COLUMNS[name]} = ${number}" for number, name in enumerate(fields, start=2)
        )
        await conn.execute(f"UPDATE runs SET {assignments} WHERE pk = $1", pk, *fields.values())


async def _put_chunks(
    conn: asyncpg.Connection, pk: int, chunks: Sequence[tuple[str, Chunk]]
) -> None:
    """Store chunks in one statement, a later chunk of a key and first step replacing it."""
    if not chunks:
        return
    latest = {(key, chunk[0]): chunk for key, chunk in chunks}
    columns: list[list[Any]] = [[], [], [], [], [], []]
    for (key, _), chunk in latest.items():
        for column, value in zip(columns, (key, *chunk), strict=True):
            column.append(value)
    await conn.execute(_PUT_CHUNKS, pk, *columns)


async def _spans(
    conn: asyncpg.Connection, pk: int, low: int, high: int
) -> dict[str, tuple[int, int]]:
    return {
        str(key): (int(first), int(last))
        for key, first, last in await conn.fetch(_SPANS, pk, low, high)
    }


async def _rebuild_series(conn: asyncpg.Connection, pk: int, low: int, high: int) -> None:
    spans = await _spans(conn, pk, low, high)
    await conn.execute(
        "DELETE FROM series WHERE run_pk = $1 AND last_step >= $2 AND first_step <= $3",
        pk,
        low,
        high,
    )
    read_low, read_high = rebuild_range(spans, low, high)
    steps: list[int] = []
    datas: list[dict[str, Any]] = []
    for step, data in await conn.fetch(
        "SELECT step, data FROM history WHERE run_pk = $1 AND step >= $2 AND step <= $3 "
        "ORDER BY step",
        pk,
        read_low,
        read_high,
    ):
        steps.append(step)
        datas.append(decode_value(data))
    await _put_chunks(conn, pk, rebuilt_chunks(spans, steps, datas, low, high))


def _count(status: str) -> int:
    """The row count of a command's status (``UPDATE 3``)."""
    return int(status.rsplit(" ", 1)[-1])


def _chunk(first: int, last: int, steps: bytes, values: bytes, extremes: bytes) -> Chunk:
    return (int(first), int(last), bytes(steps), bytes(values), bytes(extremes))


def _stored(values: Sequence[Any]) -> StoredRun:
    """The stored run of a row of `_RUN_SELECT`."""
    stored: Any = dict(zip(_STORED_KEYS, values, strict=True))
    stored["tags"] = list(stored["tags"])
    stored["acked_seq"] = -1
    stored["sessions"] = []
    return stored  # type: ignore[no-any-return]


def _mark(params: list[Any], value: Any) -> str:
    """Add ``value`` to a query's parameters; the placeholder naming it."""
    params.append(value)
    return f"${len(params)}"


def _where(query: RunQuery, params: list[Any]) -> tuple[str, list[ValueIs]]:
    """SQL conditions for what SQL checks (their values added to ``params``), and the
    checks left for Python."""
    clauses = [
        f"entity = {_mark(params, query.entity)}",
        f"project = {_mark(params, query.project)}",
    ]
    checks: list[ValueIs] = []
    for condition in query.conditions:
        if isinstance(condition, ColumnIs):
            column = _FILTER_COLUMNS[condition.column]
            if condition.value is None:
                clauses.append(f"{column} IS NULL")
            else:
                clauses.append(f"{column} = {_mark(params, condition.value)}")
        elif isinstance(condition, HasTag):
            clauses.append(f"{_mark(params, condition.tag)} = ANY(tags)")
        elif isinstance(condition, Search):
            text = f'lower({_mark(params, condition.text)}::text COLLATE "C")'
            clauses.append(
                f"(strpos(lower(COALESCE(name, '')), {text}) > 0 OR "
                f"strpos(lower(run_id), {text}) > 0)"
            )
        else:
            checks.append(condition)
    return " AND ".join(clauses), checks


def _ordering(query: RunQuery, params: list[Any]) -> str:
    """The ORDER BY of a query (its values added to ``params``): runs without a value last,
    then the run created first (``pk``), in the sort's direction; a document's value
    orders as SQLite's ``json_extract`` does (numbers and booleans before texts, texts by
    code point, JSON null and a missing key as no value)."""
    sort = query.sort
    direction = "DESC" if sort.descending else "ASC"
    if not sort.path:
        expression = _SORTS[sort.column]
        if sort.column not in _NULLABLE_SORTS:  # keeps the (entity, project, created_at) index
            return f"{expression} {direction}, pk {direction}"
        return f"{expression} IS NULL, {expression} {direction}, pk {direction}"
    # values are stored exactly encoded, [document] or [document, specials]
    value = f"(({sort.column}::json -> 0) #> {_mark(params, list(sort.path))}::text[])"
    kind = f"json_typeof({value})"
    rank = (
        f"CASE {kind} WHEN 'number' THEN 0 WHEN 'boolean' THEN 0 "
        "WHEN 'string' THEN 1 WHEN 'object' THEN 1 WHEN 'array' THEN 1 END"
    )
    number = (
        f"CASE {kind} WHEN 'number' THEN ({value} #>> '{{}}')::numeric "
        f"WHEN 'boolean' THEN CASE WHEN {value}::text = 'true' THEN 1 ELSE 0 END END"
    )
    text = (
        f"(CASE {kind} WHEN 'string' THEN {value} #>> '{{}}' "
        f"WHEN 'object' THEN {value}::text WHEN 'array' THEN {value}::text END) COLLATE \"C\""
    )
    return (
        f"{rank} IS NULL, {rank} {direction}, {number} {direction}, {text} {direction}, "
        f"pk {direction}"
    )

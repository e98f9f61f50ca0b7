"""`MemoryBackend`: the storage primitives on Python dicts, for fast tests.

It keeps what the SQLite backend keeps, in the same exact text, and answers every
primitive as SQLite does (orders, ``NULL`` placement, ASCII-only case folding), so the
conformance suite (tests/storage) holds on both. A write transaction applies its writes
at once and keeps an undo log, rolled back when the transaction raises; one lock admits
one transaction or read at a time, so reads never see a write in progress.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import tempfile
from collections.abc import AsyncIterator, Callable, MutableMapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

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
from tracker._server.storage.errors import StorageClosed
from tracker._server.storage.filters import (
    ColumnIs,
    HasTag,
    RunQuery,
    RunSort,
    Search,
    ValueIs,
    ascii_lower,
)
from tracker._server.storage.series import (
    Chunk,
    appended_chunks,
    rebuild_range,
    rebuilt_chunks,
)
from tracker._server.storage.spool import FILE_CHUNK_BYTES, SpooledFile
from tracker._server.storage.stored import run_document

__all__ = ["MemoryBackend"]

K = TypeVar("K")
V = TypeVar("V")
_MISSING: Any = object()


@dataclass
class _Run:
    stored: StoredRun
    rows: dict[int, StoredRow] = field(default_factory=dict)
    chunks: dict[str, dict[int, Chunk]] = field(default_factory=dict)
    """Per key, its chunks by first step."""
    streams: dict[str, int] = field(default_factory=dict)
    sessions: dict[str, list[list[Any]]] = field(default_factory=dict)
    files: dict[str, tuple[bytes, FileInfo]] = field(default_factory=dict)
    log: dict[int, LoggedBatch] = field(default_factory=dict)
    """The row log's entries not yet compacted, by entry."""
    set_aside: dict[int, tuple[LoggedBatch, str]] = field(default_factory=dict)
    """Entries that could not be folded, with the reason."""
    stream_records: dict[str, list[StreamEntry]] = field(default_factory=dict)
    """Per stream name, its records in seq order (a record's seq is its index)."""


@dataclass
class _Data:
    runs: dict[int, _Run] = field(default_factory=dict)
    by_key: dict[RunKey, int] = field(default_factory=dict)
    projects: dict[tuple[str, str], float] = field(default_factory=dict)
    api_keys: dict[str, str] = field(default_factory=dict)
    next_pk: int = 1
    next_entry: int = 1


class MemoryBackend:
    """The storage primitives in memory; nothing outlives the object."""

    def __init__(self) -> None:
        """An empty database."""
        self._data = _Data()
        self._lock = asyncio.Lock()
        self._closed = False

    @contextlib.asynccontextmanager
    async def write(self) -> AsyncIterator[_Session]:
        """A write transaction: undone when the block raises."""
        async with self._access() as data:
            session = _Session(data, writing=True)
            try:
                yield session
            except BaseException:
                session.undo()
                raise

    async def ingest_batch(
        self, key: RunKey, log_id: str, decide: Callable[[StoredRun | None], BatchWrites]
    ) -> BatchWrites:
        """See `Backend.ingest_batch`."""
        async with self.write() as tx:
            writes = decide(await tx.load_run(key, log_id))
            tx.store_batch(writes, log_id)
            return writes

    async def compact(
        self,
        pk: int,
        budget: int,
        fold: Callable[[StoredRun, list[LoggedBatch]], CompactWrites],
    ) -> CompactWrites | None:
        """See `Backend.compact`."""
        async with self.write() as tx:
            run = self._data.runs.get(pk)
            if run is None or not run.log:
                return None
            entries: list[LoggedBatch] = []
            total = 0
            for entry in sorted(run.log):
                entries.append(run.log[entry])
                total += len(run.log[entry].body)
                if total >= budget:
                    break
            writes = fold(_copy(run.stored), entries)
            tx.store_compaction(writes)
            return writes

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[_Session]:
        """A read; no write runs meanwhile."""
        async with self._access() as data:
            yield _Session(data, writing=False)

    @contextlib.asynccontextmanager
    async def _access(self) -> AsyncIterator[_Data]:
        self._check_open()
        async with self._lock:
            self._check_open()
            yield self._data

    def _check_open(self) -> None:
        if self._closed:
            raise StorageClosed("the in-memory database is closed; make a new one")

    def check(self) -> None:
        """See `Backend.check`: there is no file to lose."""

    @property
    def spool_dir(self) -> str:
        """See `Backend.spool_dir`: the system's temporary folder (there is no database file)."""
        return tempfile.gettempdir()

    async def close(self) -> None:
        """Drop everything; later calls raise `StorageClosed`."""
        async with self._lock:
            self._closed = True
            self._data = _Data()


class _Session:
    """The primitives over the dicts; writes note how to undo themselves."""

    def __init__(self, data: _Data, writing: bool) -> None:
        self._data = data
        self._writing = writing
        self._undo: list[Callable[[], None]] = []

    def undo(self) -> None:
        """Undo every write of the transaction, last first."""
        for step in reversed(self._undo):
            step()
        self._undo.clear()

    def _set(self, mapping: MutableMapping[K, V], key: K, value: V) -> None:
        old = mapping.get(key, _MISSING)
        mapping[key] = value
        self._undo.append(lambda: _restore(mapping, key, old))

    def _pop(self, mapping: MutableMapping[K, V], key: K) -> V:
        old = mapping.pop(key)
        self._undo.append(lambda: _restore(mapping, key, old))
        return old

    def _run(self, pk: int) -> _Run:
        return self._data.runs[pk]

    # -- reads ---------------------------------------------------------------------------

    async def load_run(self, key: RunKey, log_id: str | None = None) -> StoredRun | None:
        """See `Reader.load_run`."""
        pk = self._data.by_key.get(key)
        if pk is None:
            return None
        run = self._run(pk)
        stored = _copy(run.stored)
        stored["acked_seq"] = -1 if log_id is None else run.streams.get(log_id, -1)
        stored["sessions"] = [] if log_id is None else list(run.sessions.get(log_id, []))
        return stored

    async def read_rows(self, pk: int, low: int, high: int) -> list[StoredRow]:
        """See `Reader.read_rows`."""
        rows = self._run(pk).rows
        return [rows[step] for step in sorted(rows) if low <= step <= high]

    async def rows_at(self, pk: int, steps: Sequence[int], data: bool) -> list[StoredRow]:
        """See `Reader.rows_at`."""
        rows = self._run(pk).rows
        found = [rows[step] for step in sorted(set(steps)) if step in rows]
        return found if data else [(step, stamp, runtime, "") for step, stamp, runtime, _ in found]

    async def count_rows(self, pk: int, low: int, high: int) -> int:
        """See `Reader.count_rows`."""
        return sum(1 for step in self._run(pk).rows if low <= step <= high)

    async def series_keys(self, pk: int) -> list[str]:
        """See `Reader.series_keys`."""
        return sorted(key for key, chunks in self._run(pk).chunks.items() if chunks)

    async def read_chunks(
        self, pk: int, keys: Sequence[str], low: int, high: int
    ) -> dict[str, list[Chunk]]:
        """See `Reader.read_chunks`."""
        out: dict[str, list[Chunk]] = {}
        for key in keys:
            chunks = self._run(pk).chunks.get(key, {})
            found = [
                chunks[first] for first in sorted(chunks) if _overlaps(chunks[first], low, high)
            ]
            if found:
                out[key] = found
        return out

    async def chunk_spans(self, pk: int, low: int, high: int) -> dict[str, tuple[int, int]]:
        """See `Reader.chunk_spans`."""
        out: dict[str, tuple[int, int]] = {}
        for key, chunks in self._run(pk).chunks.items():
            found = [chunk for chunk in chunks.values() if _overlaps(chunk, low, high)]
            if found:
                out[key] = (min(chunk[0] for chunk in found), max(chunk[1] for chunk in found))
        return out

    async def read_log(self, pk: int) -> list[LoggedBatch]:
        """See `Reader.read_log`."""
        log = self._run(pk).log
        return [log[entry] for entry in sorted(log)]

    async def logged_runs(self) -> list[tuple[int, RunKey]]:
        """See `Reader.logged_runs`."""
        firsts = sorted((min(run.log), pk) for pk, run in self._data.runs.items() if run.log)
        return [(pk, _key(self._run(pk).stored)) for _, pk in firsts]

    async def page_runs(self, query: RunQuery) -> tuple[list[RunDocument], int]:
        """See `Reader.page_runs`."""
        runs = [
            run.stored
            for run in self._data.runs.values()
            if (run.stored["entity"], run.stored["project"]) == (query.entity, query.project)
            and all(_holds(condition, run.stored) for condition in query.conditions)
        ]
        ordered = _ordered(runs, query.sort)
        page = ordered[query.offset : query.offset + query.limit]
        return [run_document(stored) for stored in page], len(ordered)

    async def read_stream(self, pk: int, stream: str, span: StreamSpan) -> list[StreamEntry]:
        """See `Reader.read_stream`."""
        entries = self._run(pk).stream_records.get(stream, [])
        found = [
            entry
            for entry in entries[max(span.after + 1, 0) : max(span.before, 0)]
            if span.start <= entry[1] <= span.end
        ]
        return found[-span.limit :] if span.newest and span.limit else found[: span.limit]

    async def list_projects(self, entity: str) -> list[ProjectInfo]:
        """See `Reader.list_projects`."""
        projects: dict[str, ProjectInfo] = {}
        for run in self._data.runs.values():
            stored = run.stored
            if stored["entity"] != entity:
                continue
            info = projects.setdefault(
                stored["project"],
                {"name": stored["project"], "runs": 0, "updated_at": stored["updated_at"]},
            )
            info["runs"] += 1
            info["updated_at"] = max(info["updated_at"], stored["updated_at"])
        return [projects[name] for name in sorted(projects)]

    async def list_files(self, pk: int) -> list[FileInfo]:
        """See `Reader.list_files`."""
        files = self._run(pk).files
        return [dict(files[name][1]) for name in sorted(files)]  # type: ignore[misc]

    async def read_file(
        self, pk: int, name: str, first: int, count: int
    ) -> tuple[FileInfo, list[bytes]] | None:
        """See `Reader.read_file`: slices of the bytes kept."""
        stored = self._run(pk).files.get(name)
        if stored is None:
            return None
        content, info = stored
        starts = range(first * FILE_CHUNK_BYTES, len(content), FILE_CHUNK_BYTES)[:count]
        return info.copy(), [content[start : start + FILE_CHUNK_BYTES] for start in starts]

    async def key_entity(self, digest: str) -> str | None:
        """See `Reader.key_entity`."""
        return self._data.api_keys.get(digest)

    async def has_api_keys(self) -> bool:
        """See `Reader.has_api_keys`."""
        return bool(self._data.api_keys)

    # -- writes --------------------------------------------------------------------------

    async def create_run(self, key: RunKey, fields: RunFields) -> int:
        """See `Writer.create_run`."""
        data = self._data
        pk = data.next_pk
        data.next_pk += 1
        stored: StoredRun = {
            **_copied(fields),  # type: ignore[typeddict-item]
            "pk": pk,
            "entity": key.entity,
            "project": key.project,
            "run_id": key.run_id,
            "acked_seq": -1,
            "sessions": [],
        }
        if (key.entity, key.project) not in data.projects:
            self._set(data.projects, (key.entity, key.project), fields["created_at"])
        self._set(data.runs, pk, _Run(stored))
        self._set(data.by_key, key, pk)
        return pk

    async def delete_run(self, pk: int) -> None:
        """See `Writer.delete_run`."""
        run = self._pop(self._data.runs, pk)
        stored = run.stored
        self._pop(self._data.by_key, RunKey(stored["entity"], stored["project"], stored["run_id"]))

    async def update_run(self, pk: int, fields: RunFields) -> None:
        """See `Writer.update_run`."""
        self._update(pk, fields)

    def _update(self, pk: int, fields: RunFields) -> None:
        stored = self._run(pk).stored
        old = {name: stored[name] for name in fields}  # type: ignore[literal-required]
        stored.update(_copied(fields))  # type: ignore[typeddict-item]
        self._undo.append(lambda: _assign(stored, old))

    def store_batch(self, writes: BatchWrites, log_id: str) -> None:
        """Store an ack: the batch appended to the row log, the log's seq, the run's fields."""
        run = self._run(writes.pk)
        for piece in writes.logged:
            entry = self._data.next_entry
            self._data.next_entry += 1
            self._set(run.log, entry, dataclasses.replace(piece, entry=entry))
        if writes.streams:
            self._append_streams(run, writes.streams)
        self._set(run.streams, log_id, writes.acked_seq)
        if writes.sessions is not None:
            self._set(run.sessions, log_id, writes.sessions)
        self._update(writes.pk, writes.fields)

    def store_compaction(self, writes: CompactWrites) -> None:
        """Store a compaction step's rows, series and fields, and advance the row log."""
        run = self._run(writes.pk)
        for row in zip(writes.steps, writes.stamps, writes.runtimes, writes.texts, strict=True):
            self._set(run.rows, row[0], row)
        if writes.appended:
            chunks = run.chunks
            last = {
                key: chunks[key][max(chunks[key])] for key in writes.appended if chunks.get(key)
            }
            self._put_chunks(writes.pk, appended_chunks(last, writes.appended))
        if writes.rebuild is not None:
            self._rebuild(writes.pk, *writes.rebuild)
        self._update(writes.pk, writes.fields)
        for entry in writes.done:
            self._pop(run.log, entry)
        if writes.advanced is not None:
            entry, first_seq, folded = writes.advanced
            old = run.log[entry]
            new = dataclasses.replace(old, first_seq=first_seq, body=old.body[folded:])
            self._set(run.log, entry, new)
        for entry, reason in writes.failed:
            self._set(run.set_aside, entry, (self._pop(run.log, entry), reason))

    def _append_streams(self, run: _Run, appends: Sequence[StreamAppend]) -> None:
        for stream, stamp, text in appends:
            if stream not in run.stream_records:
                self._set(run.stream_records, stream, [])
            entries = run.stream_records[stream]
            entries.append((len(entries), stamp, text))
            self._undo.append(partial(_drop_last, entries))

    def _put_chunks(self, pk: int, chunks: Sequence[tuple[str, Chunk]]) -> None:
        by_key = self._run(pk).chunks
        for key, chunk in chunks:
            if key not in by_key:
                self._set(by_key, key, {})
            self._set(by_key[key], chunk[0], chunk)

    def _rebuild(self, pk: int, low: int, high: int) -> None:
        run = self._run(pk)
        spans: dict[str, tuple[int, int]] = {}
        for key, chunks in run.chunks.items():
            for first in [first for first, chunk in chunks.items() if _overlaps(chunk, low, high)]:
                chunk = self._pop(chunks, first)
                old = spans.get(key, (chunk[0], chunk[1]))
                spans[key] = (min(old[0], chunk[0]), max(old[1], chunk[1]))
        read_low, read_high = rebuild_range(spans, low, high)
        steps = sorted(step for step in run.rows if read_low <= step <= read_high)
        datas = [decode_value(run.rows[step][3]) for step in steps]
        self._put_chunks(pk, rebuilt_chunks(spans, steps, datas, low, high))

    async def rebuild_series(self, pk: int, low: int, high: int) -> None:
        """See `Writer.rebuild_series`."""
        self._rebuild(pk, low, high)

    async def copy_history(self, source: int, target: int, through_step: int) -> None:
        """See `Writer.copy_history`."""
        origin, copy = self._run(source), self._run(target)
        for step, row in origin.rows.items():
            if step <= through_step:
                self._set(copy.rows, step, row)
        self._put_chunks(
            target,
            [
                (key, chunk)
                for key, chunks in origin.chunks.items()
                for chunk in chunks.values()
                if chunk[1] <= through_step
            ],
        )

    async def move_history(self, source: int, target: int, after_step: int) -> None:
        """See `Writer.move_history`."""
        origin, archive = self._run(source), self._run(target)
        for step in [step for step in origin.rows if step > after_step]:
            self._set(archive.rows, step, self._pop(origin.rows, step))
        moved: list[tuple[str, Chunk]] = []
        for key, chunks in origin.chunks.items():
            moved += [
                (key, self._pop(chunks, first)) for first in list(chunks) if first > after_step
            ]
        self._put_chunks(target, moved)

    async def touch_heartbeat(self, key: RunKey, now: float) -> bool:
        """See `Writer.touch_heartbeat`."""
        pk = self._data.by_key.get(key)
        if pk is None:
            return False
        state = self._run(pk).stored["state"]
        await self.update_run(
            pk, {"heartbeat_at": now, "state": "running" if state == "crashed" else state}
        )
        return True

    async def mark_crashed(self, now: float, intervals: float, at_least: float) -> int:
        """See `Writer.mark_crashed`."""
        silent = [
            pk
            for pk, run in self._data.runs.items()
            if run.stored["state"] == "running"
            and not run.log
            and run.stored["heartbeat_at"]
            < now - max(run.stored["heartbeat_interval"] * intervals, at_least)
        ]
        for pk in silent:
            await self.update_run(pk, {"state": "crashed", "updated_at": now})
        return len(silent)

    async def put_file(self, pk: int, name: str, content: SpooledFile, now: float) -> None:
        """See `Writer.put_file`: the bytes kept whole, as everything here is."""
        data = b"".join(content.chunks())
        info: FileInfo = {
            "name": name,
            "size": len(data),
            "sha256": content.sha256,
            "updated_at": now,
        }
        self._set(self._run(pk).files, name, (data, info))

    async def put_api_key(self, digest: str, entity: str, now: float) -> None:
        """See `Writer.put_api_key`."""
        self._set(self._data.api_keys, digest, entity)


def _restore(mapping: MutableMapping[Any, Any], key: Any, old: Any) -> None:
    if old is _MISSING:
        mapping.pop(key, None)
    else:
        mapping[key] = old


def _assign(stored: StoredRun, values: dict[str, Any]) -> None:
    stored.update(values)  # type: ignore[typeddict-item]


def _copied(fields: RunFields) -> dict[str, Any]:
    """The fields, with the one mutable value (tags) copied so no caller shares it."""
    values: dict[str, Any] = dict(fields)
    if "tags" in values:
        values["tags"] = list(values["tags"])
    return values


def _key(stored: StoredRun) -> RunKey:
    return RunKey(stored["entity"], stored["project"], stored["run_id"])


def _copy(stored: StoredRun) -> StoredRun:
    return {**stored, "tags": list(stored["tags"])}


def _overlaps(chunk: Chunk, low: int, high: int) -> bool:
    return chunk[1] >= low and chunk[0] <= high


def _holds(condition: ColumnIs | HasTag | Search | ValueIs, stored: StoredRun) -> bool:
    if isinstance(condition, ColumnIs):
        value = stored[condition.column]
        return value is None if condition.value is None else bool(value == condition.value)
    if isinstance(condition, HasTag):
        return condition.tag in stored["tags"]
    if isinstance(condition, Search):
        return condition.matches(stored["name"], stored["run_id"])
    text = stored["config"] if condition.document == "config" else stored["summary"]
    return condition.holds(decode_value(text))


def _ordered(runs: list[StoredRun], sort: RunSort) -> list[StoredRun]:
    """``runs`` in the sort's order: those without a value last, then by pk, both ways."""
    keyed = [(_sort_value(stored, sort), stored["pk"], stored) for stored in runs]
    present = [item for item in keyed if item[0] is not None]
    absent = [item for item in keyed if item[0] is None]
    present.sort(key=lambda item: (item[0], item[1]), reverse=sort.descending)
    absent.sort(key=lambda item: item[1], reverse=sort.descending)
    return [stored for _, _, stored in present + absent]


def _sort_value(stored: StoredRun, sort: RunSort) -> Any:
    """What a run sorts by, as SQL orders it: None (``NULL``), ``(0, number)`` or
    ``(1, text)`` (numbers before texts, texts by code point)."""
    if not sort.path:
        if sort.column == "name":
            return (1, ascii_lower(stored["name"] or stored["run_id"]))
        value = stored[sort.column]  # type: ignore[literal-required]
        return None if value is None else (1 if isinstance(value, str) else 0, value)
    # like json_extract on the exact text: NaN and ±inf are null there, big ints strings
    found: Any = orjson.loads(stored["config"] if sort.column == "config" else stored["summary"])[0]
    for part in sort.path:
        if not isinstance(found, dict) or part not in found:
            return None
        found = found[part]
    if found is None:
        return None
    if isinstance(found, bool | int | float):
        return (0, int(found) if isinstance(found, bool) else found)
    return (1, found if isinstance(found, str) else orjson.dumps(found).decode())


def _drop_last(entries: list[StreamEntry]) -> None:
    entries.pop()

"""`Store`: the one object the server calls for runs, and the owner of every storage rule.

Start modes, fork and rewind (with `starts`), the exactly-once ingest rule (with
`ingest`), the row log's compaction and merged reads (with `rowlog` and `compactor`),
series maintenance, sampling, the filter language and argument checks are here, once; a
`Backend` provides primitives (`tracker._server.storage.backend`, whose docstring holds
the contract). Writes of one run, compaction steps included, go through a per-run lock,
in call order.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import math
import time
from bisect import bisect_left
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Final, TypeVar

from tracker._records import sampler
from tracker._records.batch import parse_batch
from tracker._records.codec import decode_value
from tracker._records.history import shape_row
from tracker._records.kinds import STREAMS
from tracker._server.storage import series
from tracker._server.storage.backend import (
    Backend,
    Notifier,
    Reader,
    RunFields,
    StoredRow,
    StreamSpan,
)
from tracker._server.storage.changes import RunChanges
from tracker._server.storage.compactor import Compactor
from tracker._server.storage.document import (
    Acked,
    ChartAnswer,
    ChartColumns,
    FileInfo,
    ProjectInfo,
    RunDocument,
    RunKey,
)
from tracker._server.storage.errors import BadRequest, FileReplaced, RunExists
from tracker._server.storage.filters import RunQuery, RunSort, check_page, parse_filters
from tracker._server.storage.ingest import (
    check_batch,
    check_sessions,
    checked_lines,
    decide,
    refuse_past_run_keys,
    row_keys,
)
from tracker._server.storage.rowlog import COMPACT_BYTES, Merged, compact_fold, read_tail
from tracker._server.storage.spool import FILE_CHUNK_BYTES, SpooledFile
from tracker._server.storage.starts import LOWEST, check_start, fork, missing, rewind
from tracker._server.storage.stored import (
    new_run_fields,
    run_document,
)
from tracker._wire.limits import MAX_EDITED_TAG_CHARS, MAX_RUN_KEYS, MAX_STEP, MAX_STREAM_PAGE

__all__ = ["StartRequest", "StartResult", "Store", "check_stream"]

T = TypeVar("T")

CRASH_INTERVALS: Final = 3.0
"""A running run whose client is silent for this many heartbeat intervals has crashed..."""
CRASH_AT_LEAST_SECONDS: Final = 3.0
"""...and for at least this long."""
EDITABLE: Final = ("tags", "notes")
_THREAD_RECORDS: Final = 2000
"""Reads of more rows than this are decoded in a worker thread, so the event loop keeps
serving while they take milliseconds."""
_CHUNKS_PER_READ: Final = 4
"""File chunks (`FILE_CHUNK_BYTES` each) a download reads per snapshot."""
_RESUMING: Final = ("allow", "continue", "must", "rewind")
_UNFOLDED_SORTS: Final = frozenset({"created_at", "updated_at"})
"""Run sorts on columns an ack sets itself: a listing sorted so needs no compaction."""
_KNOWN_KEYS_RUNS: Final = 1024
"""Runs whose keys the store keeps in memory (the most recently ingested), to check the
run key limit without reading them."""


@dataclass(frozen=True)
class StartRequest:
    """A run handshake (docs/protocol.md, "Starting a run")."""

    key: RunKey
    log_id: str
    mode: str
    """new | allow | never | must | continue | fork | rewind"""
    fork_from: tuple[str, int] | None
    """(parent run id, step) for mode "fork"."""
    rewind_to: int | None
    """The step to rewind to for mode "rewind"."""
    heartbeat_interval: float
    now: float
    sessions: list[list[Any]] = field(default_factory=list)
    """The client's log's writer sessions, ``[first seq, session]`` (empty: none told)."""


@dataclass(frozen=True)
class StartResult:
    """The answer to a handshake."""

    resumed: bool
    last_step: int
    acked_seq: int
    run: RunDocument


class _RunLocks:
    """One FIFO lock per run, kept only while someone holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[RunKey, tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, key: RunKey) -> AsyncIterator[None]:
        """Hold the run's lock; waiters get it in the order they asked."""
        lock, users = self._locks.get(key, (None, 0))
        lock = lock or asyncio.Lock()
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)


class Store:
    """Runs, history, files and API keys over a `Backend`; `close` it when done."""

    def __init__(self, backend: Backend) -> None:
        """Serve from ``backend`` (opened by the caller, closed by `close`)."""
        self.backend = backend
        self._notifier = backend if isinstance(backend, Notifier) else None
        self.changes = RunChanges(None if self._notifier is None else self._notifier.announce)
        """Which runs change, for the live streams (`RunChanges`)."""
        self._locks = _RunLocks()
        self._compactor = Compactor(self._compact_step, self._logged_runs)
        self._known_keys: OrderedDict[RunKey, set[str]] = OrderedDict()

    def check(self) -> None:
        """Raise `StorageLost` when the database is no longer the one opened
        (`Backend.check`)."""
        self.backend.check()

    async def close(self) -> None:
        """Stop compacting (what is left stays logged), finish what is in flight and
        release the database."""
        await self._compactor.close()
        await self.changes.close()
        await self.backend.close()

    def start_compactor(self) -> None:
        """Start folding the row log in the background (the server calls this at start,
        so batches logged before a restart are compacted; an ack starts it too)."""
        self._compactor.start()

    async def listen(self) -> None:
        """Hear the runs other server processes on the database change, where the backend
        tells them (`Notifier`; the server calls this at start)."""
        if self._notifier is not None:
            await self._notifier.listen(self.changes.heard)

    @property
    def hears_others(self) -> bool:
        """Whether the changes other server processes make reach `changes` now (else a live
        stream reads on a timer)."""
        return self._notifier is not None and self._notifier.hearing

    async def rescan_log(self) -> None:
        """Compact every run the database's row log holds, not only those acked here: with
        several servers on one database, what a replica acknowledged and died before
        compacting is taken up by another (the server calls this every few seconds)."""
        await self._compactor.rescan()

    async def compacted(self) -> None:
        """Wait until every batch acknowledged so far is compacted (tests, benchmarks)."""
        await self._compactor.idle()

    async def _logged_runs(self) -> list[tuple[int, RunKey]]:
        async with self.backend.read() as snap:
            return await snap.logged_runs()

    async def _compact_step(self, pk: int, key: RunKey) -> bool:
        """One compaction step of the run, under its lock; False when nothing was left."""
        async with self._locks.hold(key):
            compacted = await self.backend.compact(pk, COMPACT_BYTES, _FOLD) is not None
        if compacted:
            self.changes.changed(key)
        return compacted

    async def _compact_all(self, key: RunKey) -> None:
        """Compact the run's whole row log (the caller holds the run's lock)."""
        async with self.backend.read() as snap:
            stored = await snap.load_run(key)
        if stored is not None:
            while await self.backend.compact(stored["pk"], COMPACT_BYTES, _FOLD) is not None:
                pass

    # -- runs ----------------------------------------------------------------------------

    async def start_run(self, request: StartRequest) -> StartResult:
        """Create, continue, replace, fork or rewind a run, per ``request.mode``.

        Raises:
            BadRequest: ``bad_request`` for an unknown mode, a heartbeat interval that is
                not seconds, a step that is no step, fork_from / rewind_to missing or
                given to another mode.
            RunNotFound: mode must or rewind of a missing run, a fork of a missing parent.
            RunExists: mode never, or a fork, onto an existing run.
            BadStep: a fork or rewind step beyond the run's last step.
        """
        check_start(request)
        key = request.key
        if request.fork_from is not None and request.fork_from[0] != key.run_id:
            parent = RunKey(key.entity, key.project, request.fork_from[0])
            async with self._locks.hold(parent):
                await self._compact_all(parent)  # a fork copies compacted history
        async with self._locks.hold(key):
            self._known_keys.pop(key, None)
            await self._compact_all(key)  # what the handshake changes comes after the log
            started = await self._started(request)
        self.changes.changed(key)
        return started

    async def _started(self, request: StartRequest) -> StartResult:
        """`start_run` in one write transaction (the caller holds the run's lock)."""
        key, mode = request.key, request.mode
        async with self.backend.write() as tx:
            stored = await tx.load_run(key)
            if stored is not None and mode in ("never", "fork"):
                raise RunExists(
                    f"run {key.run_id} already exists in {key.entity}/{key.project}; "
                    + (
                        "a fork needs a new id"
                        if mode == "fork"
                        else "pick another id or resume it (resume='allow' or 'must')"
                    )
                )
            if stored is None and mode in ("must", "rewind"):
                raise missing(key, "check the id, or start it without resume='must' / resume_from")
            interval = float(request.heartbeat_interval)
            if mode == "fork":
                assert request.fork_from is not None, "check_start requires it"
                pk = await fork(tx, key, request.fork_from, request.now, interval)
            elif stored is None or mode == "new":
                if stored is not None:
                    await tx.delete_run(stored["pk"])
                pk = await tx.create_run(key, new_run_fields(request.now, interval, None))
            else:
                pk = stored["pk"]
                if mode == "rewind":
                    assert request.rewind_to is not None, "check_start requires it"
                    await rewind(tx, stored, request.rewind_to, request.now)
            session: RunFields = {
                "heartbeat_at": request.now,
                "heartbeat_interval": interval,
                "updated_at": request.now,
            }
            if mode != "continue":  # a sync must not revive a finished run
                session.update({"state": "running", "end_time": None, "exit_code": None})
            await tx.update_run(pk, session)
            loaded = await tx.load_run(key, request.log_id)
            assert loaded is not None, "created or continued above"
            check_sessions(
                key, request.log_id, loaded["sessions"], loaded["acked_seq"], request.sessions
            )
            started = loaded
        return StartResult(
            resumed=stored is not None and mode in _RESUMING,
            last_step=started["last_step"],
            acked_seq=started["acked_seq"],
            run=run_document(started),
        )

    async def ingest(
        self,
        key: RunKey,
        log_id: str,
        records: list[list[Any]],
        now: float,
        lines: Sequence[str] | None = None,
    ) -> Acked:
        """Log decoded records (``[seq, kind, ..., payload]``, seq increasing by one) in
        one transaction, skipping those with seq <= the log's stored seq; return the log's
        new stored seq, and why rows were refused when rows past `MAX_RUN_KEYS` were (each
        stored as a gap, counted in the run's ``rows_refused``, the rest stored).
        ``lines``, the records' JSON lines as received, are logged as they came (else the
        records are encoded again). The compactor folds them later; every read sees them
        at once.

        Raises:
            BadRequest: ``bad_batch``, a malformed batch or record; ``too_many_keys``, a
                row over `MAX_ROW_KEYS` (nothing is stored).
            RunNotFound: the run had no handshake.
            SeqGap: the first new record is past the stored seq + 1.
            LogConflict: a copy of the run's log resumed apart.
        """
        check_batch(records)
        kept = checked_lines(records, lines)
        added = row_keys(records)
        refused = None
        with self._compactor.acking():
            async with self._locks.hold(key):
                if added:
                    known = await self._run_keys(key)
                    if len(added - known) + len(known) > MAX_RUN_KEYS:
                        records, kept, refused = refuse_past_run_keys(key, known, records, kept)
                        added = row_keys(records)
                decision = partial(decide, key, log_id, records, kept, now)
                writes = await self.backend.ingest_batch(key, log_id, decision)
                if added:
                    known |= added
        if writes.logged:
            self._compactor.logged(writes.pk, key, sum(len(piece.body) for piece in writes.logged))
        self.changes.changed(key)
        return Acked(writes.acked_seq, refused)

    async def _run_keys(self, key: RunKey) -> set[str]:
        """The run's keys, to keep it within `MAX_RUN_KEYS`: read (stored series and logged
        rows) at its first batch since this process started or handshook it, then kept in
        memory with each batch's (so keys another replica adds meanwhile count from the
        run's next handshake here). The caller holds the run's lock."""
        known = self._known_keys.get(key)
        if known is None:
            async with self.backend.read() as snap:
                stored = await snap.load_run(key)
                if stored is None:
                    raise missing(key)
                known = set(await snap.series_keys(stored["pk"]))
                for entry in await snap.read_log(stored["pk"]):
                    known |= row_keys(parse_batch(entry.body)[0])
            self._known_keys[key] = known
            if len(self._known_keys) > _KNOWN_KEYS_RUNS:
                self._known_keys.popitem(last=False)
        self._known_keys.move_to_end(key)
        return known

    async def heartbeat(self, key: RunKey, now: float) -> None:
        """Note that the run's client is alive (a crashed run is running again).

        Raises:
            RunNotFound: the run does not exist.
        """
        async with self._locks.hold(key), self.backend.write() as tx:
            if not await tx.touch_heartbeat(key, now):
                raise missing(key)

    async def sweep_crashed(self, now: float) -> int:
        """Mark running runs silent for three heartbeat intervals (at least 3 s) as crashed;
        return how many."""
        async with self.backend.write() as tx:
            return await tx.mark_crashed(now, CRASH_INTERVALS, CRASH_AT_LEAST_SECONDS)

    async def update_run(self, key: RunKey, changes: dict[str, Any], now: float) -> None:
        """Edit ``tags`` (a list of str, duplicates dropped) and/or ``notes`` (str or None).

        Raises:
            BadRequest: ``bad_request`` for no change, other fields or bad values.
            RunNotFound: the run does not exist.
        """
        fields = _edits(changes)
        fields["updated_at"] = now
        async with self._locks.hold(key):
            await self._compact_all(key)  # an edit comes after the records acked before it
            async with self.backend.write() as tx:
                stored = await tx.load_run(key)
                if stored is None:
                    raise missing(key)
                await tx.update_run(stored["pk"], fields)
        self.changes.changed(key)

    async def get_run(self, key: RunKey) -> RunDocument | None:
        """The run document (its logged tail folded in), or None."""
        async with self.backend.read() as snap:
            stored = await snap.load_run(key)
            if stored is None:
                return None
            return run_document((await read_tail(snap, stored)).stored)

    async def list_projects(self, entity: str) -> list[ProjectInfo]:
        """The entity's projects by name, with their run counts and latest updates."""
        async with self.backend.read() as snap:
            return await snap.list_projects(entity)

    async def list_runs(
        self,
        entity: str,
        project: str,
        filters: object,
        sort: RunSort,
        limit: int,
        offset: int,
    ) -> tuple[list[RunDocument], int]:
        """One page of the documents of the project's runs matching all ``filters``, in the
        order of ``sort`` (`parse_order`, `parse_sort`), and how many match in total.

        Raises:
            BadRequest: ``bad_filter`` (`tracker._server.storage.filters`), ``bad_request``
                for a limit or offset that is not an integer >= 0.
        """
        conditions = parse_filters(filters)
        limit, offset = check_page(limit, offset)
        query = RunQuery(entity, project, conditions, sort, limit, offset)
        if conditions or sort.path or sort.column not in _UNFOLDED_SORTS:
            await self._compact_project(entity, project)  # filters and sorts see it all
        async with self.backend.read() as snap:
            documents, total = await snap.page_runs(query)
            logged = {key for _, key in await snap.logged_runs()}
            for index, document in enumerate(documents):
                key = RunKey(document["entity"], document["project"], document["id"])
                stored = await snap.load_run(key) if key in logged else None
                if stored is not None:
                    documents[index] = run_document((await read_tail(snap, stored)).stored)
        return documents, total

    async def _compact_project(self, entity: str, project: str) -> None:
        """Compact the whole row log of the project's runs, each under its lock."""
        async with self.backend.read() as snap:
            logged = await snap.logged_runs()
        for _, key in logged:
            if (key.entity, key.project) == (entity, project):
                async with self._locks.hold(key):
                    await self._compact_all(key)

    # -- history -------------------------------------------------------------------------

    async def history(
        self,
        key: RunKey,
        keys: list[str] | None,
        min_step: int | None,
        max_step: int | None,
        samples: int | None,
    ) -> list[dict[str, Any]]:
        """History rows in step order: ``{"_step", "_timestamp", "_runtime", **data}``, or
        with ``keys`` ``{"_step", **those keys}`` for the rows holding one of them.
        ``samples=N``: at most about N rows, each key's extremes kept
        (`tracker._records.sampler.sample_steps`).

        Raises:
            BadRequest: ``bad_request`` for bad arguments.
            RunNotFound: the run does not exist.
        """
        _check_keys(keys)
        _check_integer("min_step", min_step)
        _check_integer("max_step", max_step)
        if samples is not None:
            _check_samples(samples, 1)
        low = LOWEST if min_step is None else max(min_step, LOWEST)
        high = MAX_STEP if max_step is None else min(max_step, MAX_STEP)
        async with self.backend.read() as snap:
            view = await _merged(snap, key)
            if keys == []:
                return []
            stored = await _sampled_rows(view, keys, low, high, samples)
        return await _off_loop(len(stored), lambda: _shape(stored, keys))

    async def chart_series(
        self, key: RunKey, keys: list[str] | None, min_step: int | None, samples: int
    ) -> ChartAnswer:
        """The run's numeric history as chart columns, for the dashboard.

        Per key (``keys``, default every key), columns over the rows with step >=
        ``min_step`` holding it, cut to about ``samples`` points with each bucket's
        smallest and largest value kept (as history's ``samples``). Values are floats, NaN
        for non-numbers; keys holding no finite value there are left out. ``last_step`` is
        the run's last step in the same snapshot, so a reader asking again with
        ``min_step=last_step + 1`` misses nothing.

        Raises:
            BadRequest: ``bad_request`` for bad arguments.
            RunNotFound: the run does not exist.
        """
        _check_keys(keys)
        _check_integer("min_step", min_step)
        _check_samples(samples, 2)
        low = LOWEST if min_step is None else max(min_step, LOWEST)
        async with self.backend.read() as snap:
            view = await _merged(snap, key)
            stored = view.stored
            names = await view.series_keys() if keys is None else _unique(keys)
            chunks = await view.read_chunks(names, low, MAX_STEP)
            picked = _chart_points(names, chunks, low, samples)
            wanted = sorted(set().union(*(steps for steps, _ in picked.values())))
            times = {row[0]: row for row in await view.rows_at(wanted, data=False)}
        columns: dict[str, ChartColumns] = {
            name: {
                "step": steps,
                "value": values,
                "runtime": [times[step][2] for step in steps],
                "timestamp": [times[step][1] for step in steps],
            }
            for name, (steps, values) in picked.items()
        }
        return {"last_step": stored["last_step"], "series": columns}

    async def stream(
        self,
        key: RunKey,
        stream: str,
        after: int = -1,
        limit: int = MAX_STREAM_PAGE,
        start: float | None = None,
        end: float | None = None,
        newest: bool = False,
    ) -> list[dict[str, Any]]:
        """Records of one of the run's streams (`tracker._records.kinds.STREAMS`) as
        ``{"seq", "time", "data"}`` in seq order: those with seq > ``after`` and time from
        ``start`` through ``end``, the first ``limit`` of them (the last with ``newest``).
        A reader following a live stream asks again with ``after`` the last seq it got.

        Raises:
            BadRequest: ``unknown_stream`` for a stream no record kind declares,
                ``bad_request`` for bad arguments.
            RunNotFound: the run does not exist.
        """
        check_stream(stream)
        _check_integer("after", after)
        if type(limit) is not int or not 1 <= limit <= MAX_STREAM_PAGE:
            raise BadRequest(
                "bad_request", f"limit {limit!r:.40} is not an integer from 1 to {MAX_STREAM_PAGE}"
            )
        for name, value in (("start", start), ("end", end)):
            if value is not None and not (isinstance(value, int | float) and math.isfinite(value)):
                raise BadRequest("bad_request", f"{name} {value!r:.40} is not unix seconds")
        span = StreamSpan(
            limit,
            after=max(after, -1),
            start=-math.inf if start is None else float(start),
            end=math.inf if end is None else float(end),
            newest=newest,
        )
        async with self.backend.read() as snap:
            entries = await snap.read_stream(await _pk(snap, key), stream, span)
        return await _off_loop(
            len(entries),
            lambda: [
                {"seq": seq, "time": stamp, "data": decode_value(text)}
                for seq, stamp, text in entries
            ],
        )

    # -- files and keys ------------------------------------------------------------------

    def spool(self) -> SpooledFile:
        """An empty spool for an upload, in the backend's `Backend.spool_dir`; close it."""
        return SpooledFile(self.backend.spool_dir)

    async def put_file(self, key: RunKey, name: str, content: SpooledFile, now: float) -> None:
        """Store the spooled ``content`` as a file of the run, replacing one of the same name
        (the app refused it as it arrived if it is over `tracker._wire.limits.MAX_FILE_BYTES`).

        Raises:
            RunNotFound: the run does not exist.
        """
        async with self.backend.write() as tx:
            await tx.put_file(await _pk(tx, key), name, content, now)

    async def list_files(self, key: RunKey) -> list[FileInfo]:
        """The run's files by name: ``name``, ``size``, ``sha256``, ``updated_at``.

        Raises:
            RunNotFound: the run does not exist.
        """
        async with self.backend.read() as snap:
            return await snap.list_files(await _pk(snap, key))

    async def open_file(
        self, key: RunKey, name: str
    ) -> tuple[FileInfo, AsyncIterator[bytes]] | None:
        """A file's info and its bytes in chunks, each read in a snapshot of its own (a slow
        download holds no read open), or None when the run has no such file. Iterating
        raises `FileReplaced` if the file changes meanwhile.

        Raises:
            RunNotFound: the run does not exist.
        """
        async with self.backend.read() as snap:
            found = await snap.read_file(await _pk(snap, key), name, 0, _CHUNKS_PER_READ)
        if found is None:
            return None
        info, first = found
        return info, self._chunks(key, info, first)

    async def _chunks(
        self, key: RunKey, info: FileInfo, first: list[bytes]
    ) -> AsyncIterator[bytes]:
        chunks, done = first, 0
        while True:
            for chunk in chunks:
                yield chunk
            done += len(chunks)
            if done * FILE_CHUNK_BYTES >= info["size"]:
                return
            async with self.backend.read() as snap:
                pk = await _pk(snap, key)
                found = await snap.read_file(pk, info["name"], done, _CHUNKS_PER_READ)
            if found is None or found[0]["sha256"] != info["sha256"] or not found[1]:
                raise FileReplaced(
                    f"file {info['name']!r} of run {key.run_id} was replaced or deleted while "
                    "it was read; download it again"
                )
            chunks = found[1]

    async def get_file(self, key: RunKey, name: str) -> bytes | None:
        """A (small) file's bytes whole, or None when the run has no such file.

        Raises:
            RunNotFound: the run does not exist.
        """
        found = await self.open_file(key, name)
        if found is None:
            return None
        return b"".join([chunk async for chunk in found[1]])

    async def add_api_key(self, entity: str, api_key: str) -> None:
        """Allow ``api_key`` (stored as its SHA-256) to act as ``entity`` (replacing a binding)."""
        async with self.backend.write() as tx:
            await tx.put_api_key(_hash_key(api_key), entity, time.time())

    async def entity_for_key(self, api_key: str) -> str | None:
        """The entity an API key acts as, or None for an unknown key."""
        async with self.backend.read() as snap:
            return await snap.key_entity(_hash_key(api_key))

    async def has_api_keys(self) -> bool:
        """Whether any API key is configured."""
        async with self.backend.read() as snap:
            return await snap.has_api_keys()


# -- reads ---------------------------------------------------------------------------------


async def _merged(snap: Reader, key: RunKey) -> Merged:
    """The run as reads see it, its logged tail over its stored data.

    Raises:
        RunNotFound: the run does not exist.
    """
    stored = await snap.load_run(key)
    if stored is None:
        raise missing(key)
    return await read_tail(snap, stored)


async def _sampled_rows(
    view: Merged, keys: list[str] | None, low: int, high: int, samples: int | None
) -> list[StoredRow]:
    """The stored rows a history read returns (before shaping)."""
    if samples is None:
        return await view.read_rows(low, high)
    if keys is None:
        if await view.count_rows(low, high) <= samples:
            return await view.read_rows(low, high)
        wanted = await view.series_keys()
    else:
        wanted = _unique(keys)
    chunks = await view.read_chunks(wanted, low, high)
    loaded = [series.unpack_series(chunks.get(name, [])).clip(low, high) for name in wanted]
    union = sampler.union_steps([one.steps for one in loaded])
    return await view.rows_at(sampler.sample_steps(union, loaded, samples), data=True)


def _shape(stored: list[StoredRow], keys: list[str] | None) -> list[dict[str, Any]]:
    shaped = (
        shape_row(step, stamp, runtime, decode_value(data), keys)
        for step, stamp, runtime, data in stored
    )
    return [row for row in shaped if row is not None]


def _chart_points(
    names: list[str], chunks: dict[str, list[series.Chunk]], low: int, samples: int
) -> dict[str, tuple[list[int], list[float]]]:
    """Per key holding a finite value, its sampled steps and values."""
    picked: dict[str, tuple[list[int], list[float]]] = {}
    for name in names:
        loaded = series.unpack_series(chunks.get(name, [])).clip(low, MAX_STEP)
        steps, values = loaded.steps, loaded.values
        if len(steps) > samples:
            chosen = sampler.sample_steps(steps, [loaded], samples)
            kept = [values[bisect_left(steps, step)] for step in chosen]
        else:
            chosen, kept = list(steps), values.tolist()
        if any(map(math.isfinite, kept)):
            picked[name] = (chosen, kept)
    return picked


# -- checks and small helpers ----------------------------------------------------------------


_FOLD: Final = partial(compact_fold, COMPACT_BYTES)


def _edits(changes: dict[str, Any]) -> RunFields:
    """The fields a run edit sets (tags deduplicated), checked."""
    unknown = sorted(set(changes) - set(EDITABLE))
    if unknown or not changes:
        raise BadRequest(
            "bad_request",
            f"a run update takes 'tags' and/or 'notes'; got {unknown or changes!r:.120}",
        )
    fields: RunFields = {}
    if "tags" in changes:
        tags = changes["tags"]
        if not isinstance(tags, list) or not all(
            isinstance(tag, str) and 0 < len(tag) <= MAX_EDITED_TAG_CHARS for tag in tags
        ):
            raise BadRequest(
                "bad_request",
                f"tags must be a list of str of 1 to {MAX_EDITED_TAG_CHARS} characters",
            )
        fields["tags"] = list(dict.fromkeys(tags))
    if "notes" in changes:
        notes = changes["notes"]
        if notes is not None and not isinstance(notes, str):
            raise BadRequest("bad_request", "notes must be a str or null")
        fields["notes"] = notes
    return fields


def check_stream(stream: object) -> None:
    """Refuse a stream name no record kind declares.

    Raises:
        BadRequest: ``unknown_stream``, naming the streams there are.
    """
    if not isinstance(stream, str) or stream not in STREAMS:
        raise BadRequest(
            "unknown_stream",
            f"there is no stream {stream!r:.60}; the streams are {', '.join(sorted(STREAMS))}",
        )


def _check_keys(keys: object) -> None:
    if keys is not None and (
        not isinstance(keys, list) or not all(isinstance(key, str) for key in keys)
    ):
        raise BadRequest("bad_request", f"keys {keys!r:.100} is not a list of strings")


def _check_integer(name: str, value: object) -> None:
    if value is not None and type(value) is not int:
        raise BadRequest("bad_request", f"{name} {value!r:.40} is not an integer")


def _check_samples(samples: object, least: int) -> None:
    if type(samples) is not int or samples < least:
        raise BadRequest(
            "bad_request",
            f"samples {samples!r:.40} is not an integer >= {least}; pass e.g. 1000",
        )


def _unique(keys: list[str]) -> list[str]:
    return list(dict.fromkeys(keys))


async def _pk(reader: Reader, key: RunKey) -> int:
    stored = await reader.load_run(key)
    if stored is None:
        raise missing(key)
    return stored["pk"]


async def _off_loop(size: int, job: Callable[[], T]) -> T:
    """``job()``, in a worker thread when ``size`` (rows, KiB) is above `_THREAD_RECORDS`."""
    if size > _THREAD_RECORDS:
        return await asyncio.to_thread(job)
    return job()


def _hash_key(api_key: str) -> str:
    return hashlib.sha256(api_key.encode("utf-8")).hexdigest()

"""The row log's second half: folding logged batches (compaction) and merging a run's
logged tail into reads.

An ack only appends a batch to the run's row log (`tracker._server.storage.ingest`). A
compaction step (`compact_fold`, run by `tracker._server.storage.compactor.Compactor`
through `Backend.compact`) parses about `COMPACT_BYTES` of a run's first logged batches,
folds them into the run's state (`tracker._records.fold`) and returns the history rows,
series entries and fields they store. Reads fold the tail not yet compacted the same
way (`read_tail`) and see the run through `Merged`: the stored rows, series and fields
with the tail's over them, so a read right after an ack sees everything acknowledged.
"""

from __future__ import annotations

import asyncio
import logging
import operator
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from tracker._errors import UsageError
from tracker._records import sampler
from tracker._records.batch import BatchTooLarge, parse_batch
from tracker._records.fold import fold_records
from tracker._records.kinds import ROW, last_seq
from tracker._records.state import RecordError, Rows, RunState
from tracker._server.storage import series
from tracker._server.storage.backend import (
    CompactWrites,
    LoggedBatch,
    Reader,
    RunFields,
    StoredRow,
    StoredRun,
)
from tracker._server.storage.errors import BadRequest
from tracker._server.storage.stored import checked_row_texts, fold_fields, fold_state

__all__ = ["COMPACT_BYTES", "Folded", "Merged", "compact_fold", "fold_log", "read_tail"]

_logger = logging.getLogger(__name__)

COMPACT_BYTES: Final = 192 * 1024
"""Batch bytes one compaction step folds (and the size of the row log's pieces): ~5 ms
of the writer on the project's machine for rows of ten keys, ~100 ms for one row of
9,000, so an ack waiting behind a step waits little."""
_THREAD_BYTES: Final = 64 * 1024
"""A tail of more bytes than this is folded for a read in a worker thread."""
_STEP_OF: Final = operator.itemgetter(0)
_ACK_FIELDS: Final = ("heartbeat_at", "updated_at")
"""Fields the ack sets itself (a later heartbeat or edit must not be set back)."""


@dataclass
class Folded:
    """Logged batches folded into a run's state: what they store, and what they were."""

    run: RunState
    rows: Rows
    fields: RunFields
    done: list[int] = field(default_factory=list)
    advanced: tuple[int, int, int] | None = None
    failed: list[tuple[int, str]] = field(default_factory=list)


@dataclass
class _Part:
    """The part of a logged batch one fold takes."""

    entry: LoggedBatch
    cut: int
    """Bytes of its body taken (all of it, or up to a line's end)."""


def fold_log(stored: StoredRun, entries: Sequence[LoggedBatch], budget: int) -> Folded:
    """Fold about ``budget`` bytes of ``entries`` (at least one line) into the state of
    ``stored``; a batch that cannot be folded is reported failed when it is the first,
    else left for the next fold (which then reports it)."""
    parts: list[_Part] = []
    total = 0
    for entry in entries:
        body = entry.body
        cut = len(body)
        if total + cut > budget:
            end = body.find(b"\n", max(budget - total, 1) - 1)
            cut = len(body) if end < 0 else end + 1
        parts.append(_Part(entry, cut))
        total += cut
        if total >= budget:
            break
    return _fold_parts(stored, parts)


def _fold_parts(stored: StoredRun, parts: list[_Part]) -> Folded:
    """`fold_log` of the batches' parts, retried without the first that fails."""
    parsed = []
    for index, part in enumerate(parts):
        try:
            parsed.append(parse_batch(part.entry.body[: part.cut]))
        except (RecordError, BatchTooLarge) as exc:
            return _failed_at(stored, parts, index, str(exc))
    rows_only = all(record[1] == ROW for records, _ in parsed for record in records)
    run = fold_state(stored, rows_only)
    rows = Rows()
    folded = Folded(run, rows, {})
    for index, ((records, lines), part) in enumerate(zip(parsed, parts, strict=True)):
        try:
            fold_records(run, records, lines, rows)
        except (RecordError, UsageError) as exc:
            return _failed_at(stored, parts, index, str(exc))
        entry = part.entry
        if part.cut == len(entry.body):
            folded.done.append(entry.entry)
        else:
            folded.advanced = (entry.entry, last_seq(records[-1]) + 1, part.cut)
    try:
        if rows.steps:
            rows.texts = checked_row_texts(rows)
        folded.fields = fold_fields(run, parts[-1].entry.received_at, rows_only)
    except BadRequest as exc:
        return _failed_at(stored, parts, len(parts) - 1, exc.message)
    for name in _ACK_FIELDS:
        folded.fields.pop(name, None)  # type: ignore[misc]
    if rows_only:
        folded.fields.pop("state", None)
    return folded


def _failed_at(stored: StoredRun, parts: list[_Part], index: int, reason: str) -> Folded:
    """The fold of the parts before ``index``, or, when it is the first, that batch set
    aside with ``reason``."""
    if index:
        return _fold_parts(stored, parts[:index])
    entry = parts[0].entry
    _logger.error(
        "run %s: the logged batch of seqs %d-%d cannot be folded (%s); it is set aside in "
        "the row log, its records are not in the run's history",
        stored["run_id"],
        entry.first_seq,
        entry.last_seq,
        reason,
    )
    return Folded(fold_state(stored, True), Rows(), {}, failed=[(entry.entry, reason)])


def compact_fold(budget: int, stored: StoredRun, entries: list[LoggedBatch]) -> CompactWrites:
    """What one compaction step stores (`Backend.compact`'s ``fold``): about ``budget``
    bytes of the run's first logged batches folded, their rows and series entries
    (appended above the stored steps, or a range rebuilt)."""
    folded = fold_log(stored, entries, budget)
    rows = folded.rows
    writes = CompactWrites(
        stored["pk"],
        folded.fields,
        done=folded.done,
        advanced=folded.advanced,
        failed=folded.failed,
    )
    if rows.steps:
        writes.steps, writes.stamps, writes.runtimes = rows.steps, rows.stamps, rows.runtimes
        writes.texts = rows.texts
        steps, datas, writes.rebuild = series.split_appendable(
            rows.steps, rows.datas, stored["last_step"]
        )
        if steps:
            writes.appended = sampler.series_of(steps, datas)
    return writes


async def read_tail(reader: Reader, stored: StoredRun) -> Merged:
    """The run as reads see it: ``stored`` with its logged tail folded over it."""
    entries = await reader.read_log(stored["pk"])
    if not entries:
        return Merged(reader, stored, None)
    size = sum(len(entry.body) for entry in entries)
    if size > _THREAD_BYTES:  # milliseconds of folding: the event loop keeps serving
        folded = await asyncio.to_thread(fold_log, stored, entries, size)
    else:
        folded = fold_log(stored, entries, size)
    merged: StoredRun = {**stored, **folded.fields}
    return Merged(reader, merged, folded, stored["last_step"])


class Merged:
    """A run's stored rows and series with its logged tail's over them (a later row of a
    step replaces it): the reads of history and charts go through this."""

    def __init__(
        self, reader: Reader, stored: StoredRun, tail: Folded | None, compacted_last: int = -1
    ) -> None:
        """``stored``: the run with the tail's fields; ``tail`` the tail folded (None: empty)."""
        self.reader = reader
        self.stored = stored
        self._compacted_last = compacted_last
        self._rows: dict[int, StoredRow] = {}
        self._datas: dict[int, dict[str, Any]] = {}
        if tail is not None:
            rows = tail.rows
            for step, stamp, runtime, text, data in zip(
                rows.steps, rows.stamps, rows.runtimes, rows.texts, rows.datas, strict=True
            ):
                self._rows[step] = (step, stamp, runtime, text)
                self._datas[step] = data
        self._steps = sorted(self._rows)
        self._series: dict[str, tuple[array[int], array[float]]] | None = None

    @property
    def pk(self) -> int:
        """The run's pk."""
        return self.stored["pk"]

    def _tail_series(self) -> dict[str, tuple[array[int], array[float]]]:
        if self._series is None:
            self._series = sampler.series_of(self._steps, [self._datas[s] for s in self._steps])
        return self._series

    def _in(self, low: int, high: int) -> list[int]:
        return [step for step in self._steps if low <= step <= high]

    async def read_rows(self, low: int, high: int) -> list[StoredRow]:
        """The rows with ``low <= step <= high``, in step order."""
        base = await self.reader.read_rows(self.pk, low, high)
        if not self._rows:
            return base
        ours = self._in(low, high)
        kept = [row for row in base if row[0] not in self._rows]
        return sorted([*kept, *(self._rows[step] for step in ours)], key=_STEP_OF)

    async def rows_at(self, steps: Sequence[int], data: bool) -> list[StoredRow]:
        """The rows at ``steps`` (those that exist), in step order; ``data`` or not."""
        if not self._rows:
            return await self.reader.rows_at(self.pk, steps, data)
        base = await self.reader.rows_at(
            self.pk, [step for step in steps if step not in self._rows], data
        )
        ours = [self._rows[step] for step in set(steps) if step in self._rows]
        if not data:
            ours = [(step, stamp, runtime, "") for step, stamp, runtime, _ in ours]
        return sorted([*base, *ours], key=_STEP_OF)

    async def count_rows(self, low: int, high: int) -> int:
        """How many rows have ``low <= step <= high``."""
        count = await self.reader.count_rows(self.pk, low, high)
        ours = self._in(low, high)
        if not ours:
            return count
        stored = await self.reader.rows_at(self.pk, ours, data=False)
        return count + len(ours) - len(stored)

    async def series_keys(self) -> list[str]:
        """The keys the run's series hold, sorted."""
        keys = await self.reader.series_keys(self.pk)
        if not self._rows:
            return keys
        return sorted(set(keys).union(self._tail_series()))

    async def read_chunks(
        self, keys: Sequence[str], low: int, high: int
    ) -> dict[str, list[series.Chunk]]:
        """Per key, chunks holding its series over ``[low, high]`` (at least), in step order."""
        base = await self.reader.read_chunks(self.pk, keys, low, high)
        if not self._rows:
            return base
        tail = self._tail_series()
        appended = self._steps[0] > self._compacted_last
        out: dict[str, list[series.Chunk]] = {}
        for key in keys:
            stored = base.get(key, [])
            steps, values = sampler.clip(*tail.get(key, (array("q"), array("d"))), low, high)
            if appended:
                merged = stored + series.chunks(steps, values, series.MAX_CHUNK)
            else:
                merged = _rechunked(stored, self._rows, steps, values)
            if merged:
                out[key] = merged
        return out


def _rechunked(
    stored: list[series.Chunk],
    replaced: dict[int, StoredRow],
    steps: Sequence[int],
    values: Sequence[float],
) -> list[series.Chunk]:
    """A key's stored chunks without the steps the tail's rows replace, merged with the
    tail's entries, cut into chunks again."""
    old_steps, old_values = series.unpack_chunks(stored)
    pairs = [(s, v) for s, v in zip(old_steps, old_values, strict=True) if s not in replaced]
    pairs += zip(steps, values, strict=True)
    pairs.sort(key=_STEP_OF)
    merged_steps = array("q", [s for s, _ in pairs])
    merged_values = array("d", [v for _, v in pairs])
    return series.chunks(merged_steps, merged_values, series.MAX_CHUNK)

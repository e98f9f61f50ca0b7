"""What a batch of run-log records does to a stored run, in pure Python (no SQL).

A storage backend loads a run's state, folds a batch into it here and writes the
result back: the fold `tracker._reader` applies to a run log, so a run read from
the server equals the run read from its directory. Here too: the per-key numeric
*series* (the steps holding a key, and its values as float64) that history
sampling reads instead of parsing every stored row, and the sampling itself.
"""

from __future__ import annotations

import math
import operator
import sys
from array import array
from bisect import bisect_left, bisect_right
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from operator import itemgetter
from typing import Any, Final, NamedTuple

from tracker import _encoding as kinds
from tracker._errors import UsageError
from tracker._reader import apply_to_summary
from tracker._server._storage import StorageError
from tracker._summary import Summary

__all__ = [
    "BLOCK",
    "EXIT_STATES",
    "MAX_CHUNK",
    "MAX_STEP",
    "OPEN_CHUNK",
    "Chunk",
    "Extremes",
    "Rows",
    "RunFold",
    "Series",
    "chunks",
    "clip",
    "extend_chunk",
    "fold_batch",
    "sample_steps",
    "series_of",
    "split_appendable",
    "union_steps",
    "unpack_chunks",
    "unpack_series",
]

MAX_STEP: Final = 2**63 - 1
"""The largest step a row may have (a 64-bit signed integer in the database)."""
OPEN_CHUNK: Final = 256
"""A key's last series chunk holding fewer entries takes the next ones (small batches)."""
MAX_CHUNK: Final = 8192
"""Entries per series chunk at most (big batches make big chunks)."""
BLOCK: Final = 64
"""Entries per block of a chunk's stored extremes (a stored format: changing it would
misread the blocks of chunks already stored)."""
EXIT_STATES: Final = frozenset({"finished", "failed", "killed", "crashed"})
"""The states an ``exit`` record may set."""

_INT64 = range(-(2**63), 2**63)
_FLOAT_MAX: Final = int(sys.float_info.max)
_KIND = itemgetter(1)
_STEP = itemgetter(2)
_STAMP = itemgetter(3)
_DATA = itemgetter(4)
_COLUMN_TEXT: Final = ("name", "group", "job_type", "notes")
_SUMMARY_KINDS: Final = (kinds.SUMMARY_SET, kinds.SUMMARY_DELETE, kinds.METRIC)
_SWAP: Final = sys.byteorder == "big"  # series blobs are little-endian on every machine
_PAIR: Final = 16  # bytes of one block's extremes: two float64


@dataclass
class RunFold:
    """The part of a stored run that records change; a backend loads it, folds, stores it.

    ``metadata`` holds the ``run`` record fields that have no field of their own here.
    """

    name: str | None = None
    tags: list[str] = field(default_factory=list)
    group: str | None = None
    job_type: str | None = None
    notes: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    summary: Summary = field(default_factory=Summary)
    state: str = "running"
    exit_code: int | None = None
    end_time: float | None = None
    created_at: float = 0.0
    last_step: int = -1
    runtime: float = 0.0
    session_start: float = 0.0
    runtime_offset: float = 0.0


@dataclass
class Rows:
    """History rows as columns, in record order (steps may repeat or go back)."""

    steps: list[int] = field(default_factory=list)
    stamps: list[float] = field(default_factory=list)
    runtimes: list[float] = field(default_factory=list)
    datas: list[dict[str, Any]] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    """The rows' data exactly encoded, cut from their lines (when the fold was given them)."""


def fold_batch(
    run: RunFold, records: Sequence[Sequence[Any]], lines: Sequence[str] | None = None
) -> Rows:
    """Apply decoded records in order to ``run``; return the history rows they add (with
    their data's text when ``lines``, the records' lines as received, are given).

    Unknown kinds are skipped (newer clients); ``file`` records are skipped too (a
    file's metadata comes with its bytes).

    Raises:
        StorageError: 400 bad_batch, a record of a known kind is malformed (``run`` may
            then be half updated: discard it).
    """
    rows = Rows()
    others = [index for index, kind in enumerate(map(_KIND, records)) if kind != kinds.ROW]
    start = 0
    for index in [*others, len(records)]:
        if index > start:
            _fold_rows(run, records[start:index], rows)
            if lines is not None:
                rows.texts += kinds.row_data_texts(lines[start:index])
        if index < len(records):
            _apply_other(run, records[index])
        start = index + 1
    return rows


def _fold_rows(run: RunFold, records: Sequence[Sequence[Any]], rows: Rows) -> None:
    """Fold consecutive row records, checking and computing column by column (the hot path)."""
    if set(map(len, records)) != {5}:
        raise _bad_rows(records)
    steps: list[int] = list(map(_STEP, records))
    stamps: list[float] = list(map(_STAMP, records))
    datas: list[dict[str, Any]] = list(map(_DATA, records))
    stamp_types = set(map(type, stamps))
    if (
        set(map(type, steps)) != {int}
        or set(map(type, datas)) != {dict}
        or not stamp_types <= {float, int}
        or min(steps) < 0
        or max(steps) > MAX_STEP
    ):
        raise _bad_rows(records)
    if int in stamp_types:
        if not all(map(_finite, stamps)):
            raise _bad_rows(records)
        stamps = list(map(float, stamps))
    elif not all(map(math.isfinite, stamps)):
        raise _bad_rows(records)
    offset, start = run.runtime_offset, run.session_start
    runtimes = [offset + stamp - start for stamp in stamps]  # as tracker._reader computes it
    deque(map(run.summary.observe, datas), maxlen=0)  # only a metric record replaces observe
    run.last_step = max(run.last_step, *steps)
    run.runtime = runtimes[-1]
    rows.steps += steps
    rows.stamps += stamps
    rows.runtimes += runtimes
    rows.datas += datas


def _bad_rows(records: Sequence[Sequence[Any]]) -> StorageError:
    """The error naming the first malformed row record of ``records``."""
    for record in records:
        if len(record) != 5:
            return _bad(record, "a row record is [seq, 'row', step, timestamp, data]")
        step, stamp, data = record[2], record[3], record[4]
        if type(step) is not int or not 0 <= step <= MAX_STEP:
            return _bad(record, f"step {step!r} is not an integer from 0 to 2**63-1")
        if type(data) is not dict:
            return _bad(record, f"data is a {type(data).__name__}, not an object")
        if not _finite(stamp):
            return _bad(record, f"timestamp {stamp!r} is not a finite number")
    raise AssertionError("_bad_rows called on well-formed rows")


def _apply_other(run: RunFold, record: Sequence[Any]) -> None:
    """Apply one record that is not a row."""
    kind = record[1]
    if len(record) != 3 and kind in (*_SUMMARY_KINDS, kinds.RUN, kinds.CONFIG, kinds.EXIT):
        raise _bad(record, f"a {kind!r} record is [seq, {kind!r}, payload]")
    if kind == kinds.RUN:
        _apply_run(run, record)
    elif kind == kinds.CONFIG:
        if type(record[2]) is not dict:
            raise _bad(record, "the payload is not an object of config keys")
        run.config.update(record[2])
    elif kind in _SUMMARY_KINDS:
        _apply_summary(run.summary, record)
    elif kind == kinds.EXIT:
        _apply_exit(run, record)
    elif not isinstance(kind, str):
        raise _bad(record, f"kind {kind!r} is not a string")


def _apply_run(run: RunFold, record: Sequence[Any]) -> None:
    payload = record[2]
    if type(payload) is not dict:
        raise _bad(record, "the payload is not an object of run metadata")
    for name in _COLUMN_TEXT:
        if name in payload and payload[name] is not None and type(payload[name]) is not str:
            raise _bad(record, f"{name} {payload[name]!r} is not a string or null")
    if "tags" in payload:
        tags = payload["tags"]
        if type(tags) is not list or not all(type(tag) is str for tag in tags):
            raise _bad(record, f"tags {tags!r:.100} is not a list of strings")
    for name in ("start_time", "runtime_offset", "created_at"):
        if name in payload and not _finite(payload[name]):
            raise _bad(record, f"{name} {payload[name]!r} is not a finite number")
    rest = dict(payload)
    for name in _COLUMN_TEXT:
        if name in rest:
            setattr(run, name, rest.pop(name))
    if "tags" in rest:
        run.tags = list(rest.pop("tags"))
    if "created_at" in rest:
        run.created_at = float(rest.pop("created_at"))
    if "start_time" in payload:
        run.session_start = float(payload["start_time"])
        run.runtime_offset = float(payload.get("runtime_offset", 0.0))
        run.state, run.exit_code, run.end_time = "running", None, None
    run.metadata.update(rest)


def _apply_summary(summary: Summary, record: Sequence[Any]) -> None:
    kind, payload = record[1], record[2]
    if kind == kinds.SUMMARY_SET and type(payload) is not dict:
        raise _bad(record, "the payload is not an object of summary keys")
    if kind == kinds.SUMMARY_DELETE and (
        type(payload) is not list or not all(type(key) is str for key in payload)
    ):
        raise _bad(record, "the payload is not a list of summary keys")
    try:
        apply_to_summary(summary, kind, payload, with_rules=True)
    except UsageError as exc:
        raise _bad(record, str(exc)) from None


def _apply_exit(run: RunFold, record: Sequence[Any]) -> None:
    payload = record[2]
    if type(payload) is not dict:
        raise _bad(record, "the payload is not an object")
    state = payload.get("state")
    if not isinstance(state, str) or state not in EXIT_STATES:
        raise _bad(record, f"state {state!r} is not one of {', '.join(sorted(EXIT_STATES))}")
    code = payload.get("exit_code")
    if code is not None and (type(code) is not int or code not in _INT64):
        raise _bad(record, f"exit_code {code!r} is not a 64-bit integer or null")
    end = payload.get("end_time")
    if end is not None and not _finite(end):
        raise _bad(record, f"end_time {end!r} is not a finite number or null")
    if "runtime" in payload and not _finite(payload["runtime"]):
        raise _bad(record, f"runtime {payload['runtime']!r} is not a finite number")
    run.state, run.exit_code = state, code
    run.end_time = None if end is None else float(end)
    run.runtime = float(payload.get("runtime", run.runtime))


def _finite(value: Any) -> bool:
    """Whether ``value`` is an int or float and finite (an int beyond the floats is not)."""
    if type(value) is int:
        return -_FLOAT_MAX <= value <= _FLOAT_MAX
    return type(value) is float and math.isfinite(value)


def _bad(record: Sequence[Any], what: str) -> StorageError:
    return StorageError(
        400,
        "bad_batch",
        f"record {record[0]} ({record[1]!r}): {what}; send records as the tracker client "
        "writes them to its run log (docs/run-log.md)",
    )


# -- series -----------------------------------------------------------------------------


def split_appendable(
    steps: list[int], datas: list[dict[str, Any]], last_step: int
) -> tuple[list[int], list[dict[str, Any]], tuple[int, int] | None]:
    """The rows extending every series in step order (each step above all before it), and
    the step range of the others, whose series must be rebuilt from the stored rows."""
    if steps and steps[0] > last_step and all(map(operator.lt, steps, steps[1:])):
        return steps, datas, None
    kept_steps: list[int] = []
    kept_datas: list[dict[str, Any]] = []
    dirty: list[int] = []
    top = last_step
    for step, data in zip(steps, datas, strict=True):
        if step > top:
            top = step
            kept_steps.append(step)
            kept_datas.append(data)
        else:
            dirty.append(step)
    return kept_steps, kept_datas, ((min(dirty), max(dirty)) if dirty else None)


def series_of(
    steps: Sequence[int], datas: Sequence[dict[str, Any]]
) -> dict[str, tuple[array[int], array[float]]]:
    """Per key of the rows (in step order): the steps holding it, and its values as floats
    (NaN for what is not a number: str, bool, None, lists, dicts, NaN itself)."""
    if not datas:
        return {}
    keys: set[str] = set().union(*datas)
    uniform = set(map(len, datas)) == {len(keys)}  # every row holds every key
    all_steps = array("q", steps)
    out: dict[str, tuple[array[int], array[float]]] = {}
    for key in keys:
        if uniform:
            out[key] = (all_steps, _floats(list(map(itemgetter(key), datas))))
            continue
        held = [(step, data[key]) for step, data in zip(steps, datas, strict=True) if key in data]
        out[key] = (array("q", [step for step, _ in held]), _floats([value for _, value in held]))
    return out


def _floats(values: list[Any]) -> array[float]:
    types = set(map(type, values))
    if types <= {float, int}:
        try:
            return array("d", values)
        except OverflowError:
            pass  # an int beyond the float range: convert one by one below
    return array("d", [_as_float(value) for value in values])


def _as_float(value: Any) -> float:
    if type(value) is float:
        return value
    if type(value) is int:
        try:
            return float(value)
        except OverflowError:
            return math.inf if value > 0 else -math.inf
    return math.nan


Chunk = tuple[int, int, bytes, bytes, bytes]
"""A stored piece of one key's series: first step, last step, steps blob, values blob,
extremes blob (`_block_extremes` of its values)."""


def chunks(steps: array[int], values: array[float], size: int) -> list[Chunk]:
    """A series (steps strictly increasing) cut into chunks of at most ``size`` entries.

    Blobs are little-endian int64 / float64; contiguous steps (one row per step, the
    usual) store an empty steps blob, as ``first..last`` says them all.
    """
    out: list[Chunk] = []
    for start in range(0, len(steps), size):
        part = steps[start : start + size]
        first, last = part[0], part[-1]
        steps_blob = b"" if last - first == len(part) - 1 else _pack(part)
        kept = values[start : start + size]
        out.append((first, last, steps_blob, _pack(kept), _block_extremes(kept)))
    return out


def extend_chunk(chunk: Chunk, steps: array[int], values: array[float]) -> Chunk:
    """``chunk`` with entries (``steps`` above its last) appended; without unpacking it
    when its steps and the new ones run without gaps (the usual case)."""
    first, last, steps_blob, values_blob, extremes_blob = chunk
    if not steps_blob and steps[0] == last + 1 and steps[-1] - steps[0] == len(steps) - 1:
        extremes_blob += _more_extremes(values_blob, extremes_blob, values)
        return (first, steps[-1], b"", values_blob + _pack(values), extremes_blob)
    old_steps, old_values = unpack_chunks([chunk])
    (extended,) = chunks(old_steps + steps, old_values + values, len(old_steps) + len(steps))
    return extended


def _block_extremes(values: array[float]) -> bytes:
    """The smallest and the largest number of each whole block of `BLOCK` values, packed
    as float64 pairs (NaN, NaN for a block holding none); a partial last block is left for
    the reader. Sampling compares these instead of every value."""
    pairs: array[float] = array("d")
    for start in range(0, len(values) - BLOCK + 1, BLOCK):
        pairs.extend(_low_high(values[start : start + BLOCK]))
    return _pack(pairs)


def _more_extremes(values_blob: bytes, extremes_blob: bytes, values: array[float]) -> bytes:
    """The extremes of the blocks that ``values``, appended to a chunk, complete."""
    summarized = len(extremes_blob) // _PAIR * BLOCK
    if len(values_blob) // 8 - summarized + len(values) < BLOCK:
        return b""
    pending = _floats_of(values_blob[summarized * 8 :])
    pending.extend(values)
    return _block_extremes(pending)


def _low_high(part: Sequence[float]) -> tuple[float, float]:
    """The smallest and the largest number of ``part``, NaN when it holds none."""
    return _extreme(min, part), _extreme(max, part)


def _extreme(pick: Callable[[Sequence[float]], float], part: Sequence[float]) -> float:
    """``pick`` (min or max) of the numbers of ``part``, NaN when it holds none.

    ``min`` and ``max`` keep their first item until a later one compares past it, and
    every comparison with NaN is false: they step over a NaN unless it comes first,
    where it sticks. Only then are the NaN taken out (no pass looking for NaN first:
    ingest runs this over every value).
    """
    if not part:
        return math.nan
    value = pick(part)
    if math.isnan(value):
        numbers = [item for item in part if not math.isnan(item)]
        return pick(numbers) if numbers else math.nan
    return value


def unpack_chunks(stored: Sequence[Chunk]) -> tuple[array[int], array[float]]:
    """The series held by consecutive chunks (the inverse of `chunks`)."""
    steps: array[int] = array("q")
    for first, last, steps_blob, _, _ in stored:
        if steps_blob:
            part = array("q")
            part.frombytes(steps_blob)
            if _SWAP:
                part.byteswap()
            steps.extend(part)
        else:
            steps.extend(range(first, last + 1))
    return steps, _floats_of(*(chunk[3] for chunk in stored))


@dataclass(frozen=True)
class Extremes:
    """A series' values cut into blocks, with each block's smallest and largest number
    (NaN when it holds none): sampling a bucket compares the extremes of the blocks inside
    it and the values of the two partial blocks at its edges, not every value."""

    starts: Sequence[int]
    """Block ``i`` holds ``values[starts[i]:starts[i + 1]]``; the last entry is ``len(values)``."""
    lows: array[float]
    highs: array[float]

    @classmethod
    def of_chunks(cls, stored: Sequence[Chunk], values: array[float]) -> Extremes:
        """The blocks of consecutive chunks holding ``values``: each chunk's stored ones,
        then its values past them (a partial block, or a chunk stored without) summarized."""
        counts = [len(chunk[3]) // 8 for chunk in stored]
        pairs = _floats_of(*(chunk[4] for chunk in stored))
        summarized = (len(chunk[4]) // _PAIR * BLOCK for chunk in stored)
        if all(map(operator.eq, summarized, counts)):
            # every chunk holds whole blocks, all summarized (a live run's chunks)
            return cls(range(0, len(values) + 1, BLOCK), pairs[0::2], pairs[1::2])
        builder = _BlockBuilder(values)
        offset = taken = 0
        for chunk, count in zip(stored, counts, strict=True):
            blocks = len(chunk[4]) // _PAIR
            builder.starts.extend(range(offset, offset + blocks * BLOCK, BLOCK))
            builder.lows.extend(pairs[taken : taken + 2 * blocks : 2])
            builder.highs.extend(pairs[taken + 1 : taken + 2 * blocks : 2])
            builder.summarize(offset + blocks * BLOCK, offset + count)
            offset, taken = offset + count, taken + 2 * blocks
        return builder.extremes(offset)

    def cut(self, values: array[float], start: int, stop: int) -> Extremes:
        """The blocks of ``values[start:stop]``: those wholly inside, and the partial
        ones at its ends summarized from ``values``."""
        first, last = self._inside(start, stop)
        builder = _BlockBuilder(values)
        if first >= last:
            builder.summarize(start, stop)
        else:
            builder.summarize(start, self.starts[first])
            builder.starts.extend(self.starts[first:last])
            builder.lows.extend(self.lows[first:last])
            builder.highs.extend(self.highs[first:last])
            builder.summarize(self.starts[last], stop)
        cut = builder.extremes(stop)
        return Extremes(array("q", [begin - start for begin in cut.starts]), cut.lows, cut.highs)

    def first_extremes(self, values: array[float], start: int, stop: int) -> tuple[int, int] | None:
        """Where the first smallest and the first largest number of ``values[start:stop]``
        are, or None when it holds no number."""
        first, last = self._inside(start, stop)
        if first >= last:  # no whole block inside: compare the values themselves
            low, high = _low_high(values[start:stop])
            if math.isnan(low):
                return None
            return values.index(low, start, stop), values.index(high, start, stop)
        smallest = self._first(values, min, self.lows, start, first, last, stop)
        largest = self._first(values, max, self.highs, start, first, last, stop)
        if smallest is None or largest is None:
            return None
        return smallest, largest

    def _inside(self, start: int, stop: int) -> tuple[int, int]:
        """The blocks wholly inside ``[start, stop)``: ``range(first, last)``."""
        return bisect_left(self.starts, start), bisect_right(self.starts, stop) - 1

    def _first(
        self,
        values: array[float],
        pick: Callable[[Sequence[float]], float],
        blocks: array[float],
        start: int,
        first: int,
        last: int,
        stop: int,
    ) -> int | None:
        """Where the first of the numbers' ``pick`` (min or max) is. Its value is the
        ``pick`` of the head's values, the whole blocks' and the tail's values; the
        first of the three holding it holds its first occurrence."""
        head_stop, tail_start = self.starts[first], self.starts[last]
        found = [
            _extreme(pick, values[start:head_stop]),
            _extreme(pick, blocks[first:last]),
            _extreme(pick, values[tail_start:stop]),
        ]
        numbers = [value for value in found if not math.isnan(value)]
        if not numbers:
            return None
        chosen = pick(numbers)
        if found[0] == chosen:
            return values.index(chosen, start, head_stop)
        if found[1] == chosen:
            block = blocks.index(chosen, first, last)
            return values.index(chosen, self.starts[block], self.starts[block + 1])
        return values.index(chosen, tail_start, stop)


class _BlockBuilder:
    """Collects blocks for an `Extremes` over ``values``."""

    def __init__(self, values: array[float]) -> None:
        self.values = values
        self.starts: array[int] = array("q")
        self.lows: array[float] = array("d")
        self.highs: array[float] = array("d")

    def summarize(self, start: int, stop: int) -> None:
        """Add ``values[start:stop]`` as blocks of `BLOCK` (the last one shorter)."""
        for begin in range(start, stop, BLOCK):
            low, high = _low_high(self.values[begin : min(begin + BLOCK, stop)])
            self.starts.append(begin)
            self.lows.append(low)
            self.highs.append(high)

    def extremes(self, end: int) -> Extremes:
        """The blocks collected, the last one ending at ``end``."""
        self.starts.append(end)
        return Extremes(self.starts, self.lows, self.highs)


class Series(NamedTuple):
    """One key's numbers over a step range, as sampling reads them."""

    steps: Sequence[int]
    values: array[float]
    extremes: Extremes

    def clip(self, low: int, high: int) -> Series:
        """The entries with ``low <= step <= high``."""
        start, stop = _span(self.steps, low, high)
        if start == 0 and stop == len(self.steps):
            return self
        return Series(
            self.steps[start:stop],
            self.values[start:stop],
            self.extremes.cut(self.values, start, stop),
        )


def unpack_series(stored: Sequence[Chunk]) -> Series:
    """The series held by consecutive chunks, for reading: its steps are a ``range`` when
    they run without gaps (the usual case), which bisects and indexes without building a
    million-entry array; the values come from one ``frombytes`` per chunk."""
    contiguous = all(not chunk[2] for chunk in stored) and all(
        later[0] == earlier[1] + 1 for earlier, later in pairwise(stored)
    )
    steps: Sequence[int]
    if stored and contiguous:
        steps = range(stored[0][0], stored[-1][1] + 1)
        values = _floats_of(*(chunk[3] for chunk in stored))
    else:
        steps, values = unpack_chunks(stored)
    return Series(steps, values, Extremes.of_chunks(stored, values))


def _floats_of(*blobs: bytes) -> array[float]:
    """Packed little-endian float64s, from one blob or several in a row. Several are not
    joined first: that copy of megabytes would take fresh pages from the OS, each one a
    page fault (6-14 ms for the 8 MB of a million-step series on the project's machine)."""
    values: array[float] = array("d")
    for blob in blobs:
        values.frombytes(blob)
    if _SWAP:
        values.byteswap()
    return values


def _pack(values: array[Any]) -> bytes:
    if _SWAP:
        values = array(values.typecode, values)
        values.byteswap()
    return values.tobytes()


def clip(
    steps: array[int], values: array[float], low: int, high: int
) -> tuple[array[int], array[float]]:
    """The entries of a series with ``low <= step <= high``."""
    start, stop = _span(steps, low, high)
    if start == 0 and stop == len(steps):
        return steps, values
    return steps[start:stop], values[start:stop]


def _span(steps: Sequence[int], low: int, high: int) -> tuple[int, int]:
    """The index range of the entries with ``low <= step <= high``."""
    return bisect_left(steps, low), bisect_right(steps, high)


def union_steps(step_arrays: Sequence[Sequence[int]]) -> Sequence[int]:
    """The sorted steps holding at least one of the series."""
    if not step_arrays:
        return array("q")
    first = step_arrays[0]
    if all(steps == first for steps in step_arrays[1:]):
        return first
    largest = max(step_arrays, key=len)
    others = [steps for steps in step_arrays if steps is not largest]
    # A sparse key (validation every 100 steps) is usually logged at steps the dense one
    # has: check that by bisection when cheaper than building a set of the dense steps.
    if sum(map(len, others)) * 16 < len(largest) and all(
        _has(largest, step) for steps in others for step in steps
    ):
        return largest
    return array("q", sorted(set().union(*step_arrays)))


def _has(steps: Sequence[int], step: int) -> bool:
    index = bisect_left(steps, step)
    return index < len(steps) and steps[index] == step


def sample_steps(union: Sequence[int], series: Sequence[Series], samples: int) -> list[int]:
    """The steps a ``samples=N`` history read returns, in order.

    ``union`` holds the rows' steps (each holding a requested key), ``series`` the
    requested keys' series over the same step range. With more than N rows, they are
    cut by row index into N // 2 buckets; each bucket keeps, per key, the rows holding
    its smallest and its largest number (NaN and non-numbers are skipped; ties keep
    the earliest step), and the first and last rows are kept too.
    """
    count = len(union)
    if count <= samples:
        return list(union)
    buckets = max(1, samples // 2)
    picked = {union[0], union[-1]}
    firsts = [union[(index * count + buckets - 1) // buckets] for index in range(buckets)]
    for steps, values, extremes in series:
        bounds = [bisect_left(steps, step) for step in firsts]
        bounds.append(len(steps))
        for start, stop in pairwise(bounds):
            found = extremes.first_extremes(values, start, stop) if start < stop else None
            if found is not None:
                picked.add(steps[found[0]])
                picked.add(steps[found[1]])
    return sorted(picked)

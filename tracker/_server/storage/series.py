"""A run's series: the chunk format, and keeping the chunks in step with the rows.

Per run and key, the steps holding the key and its values as float64 are kept as chunks
(`Chunk`), appended as rows arrive in step order (`appended_chunks`) and rebuilt for a step
range from the stored rows (`rebuilt_chunks`) when rows arrive out of order, replace
others, or a run is rewound or forked. Each chunk keeps the smallest and largest value of
each block of `tracker._records.sampler.BLOCK` values, which sampling compares instead of
every value. Blobs are little-endian on every machine. Sampling reads series without
parsing a stored row: parsing every row's JSON takes about a second per million rows on
the project's machine, reading one key's series a few milliseconds.
"""

from __future__ import annotations

import operator
import sys
from array import array
from collections.abc import Sequence
from itertools import pairwise
from typing import Any, Final, TypeAlias

from tracker._records import sampler
from tracker._records.sampler import BlockBuilder, Extremes, Series, low_high

__all__ = [
    "MAX_CHUNK",
    "OPEN_CHUNK",
    "Chunk",
    "SeriesColumns",
    "appended_chunks",
    "chunks",
    "extend_chunk",
    "extremes_of_chunks",
    "rebuild_range",
    "rebuilt_chunks",
    "split_appendable",
    "unpack_chunks",
    "unpack_series",
]

OPEN_CHUNK: Final = 256
"""A key's last series chunk holding fewer entries takes the next ones (small batches)."""
MAX_CHUNK: Final = 8192
"""Entries per series chunk at most (big batches make big chunks)."""

_SWAP: Final = sys.byteorder == "big"
_PAIR: Final = 16  # bytes of one block's extremes: two float64


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


SeriesColumns: TypeAlias = "dict[str, tuple[array[int], array[float]]]"
"""Per key, entries to store: their steps (increasing) and values."""
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
    """The smallest and the largest number of each whole block of `sampler.BLOCK` values, packed
    as float64 pairs (NaN, NaN for a block holding none); a partial last block is left for
    the reader. Sampling compares these instead of every value."""
    pairs: array[float] = array("d")
    for start in range(0, len(values) - sampler.BLOCK + 1, sampler.BLOCK):
        pairs.extend(low_high(values[start : start + sampler.BLOCK]))
    return _pack(pairs)


def _more_extremes(values_blob: bytes, extremes_blob: bytes, values: array[float]) -> bytes:
    """The extremes of the blocks that ``values``, appended to a chunk, complete."""
    summarized = len(extremes_blob) // _PAIR * sampler.BLOCK
    if len(values_blob) // 8 - summarized + len(values) < sampler.BLOCK:
        return b""
    pending = _floats_of(values_blob[summarized * 8 :])
    pending.extend(values)
    return _block_extremes(pending)


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
    return Series(steps, values, extremes_of_chunks(stored, values))


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


def extremes_of_chunks(stored: Sequence[Chunk], values: array[float]) -> Extremes:
    """The blocks of consecutive chunks holding ``values``: each chunk's stored ones,
    then its values past them (a partial block, or a chunk stored without) summarized."""
    counts = [len(chunk[3]) // 8 for chunk in stored]
    pairs = _floats_of(*(chunk[4] for chunk in stored))
    summarized = (len(chunk[4]) // _PAIR * sampler.BLOCK for chunk in stored)
    if all(map(operator.eq, summarized, counts)):
        # every chunk holds whole blocks, all summarized (a live run's chunks)
        return Extremes(range(0, len(values) + 1, sampler.BLOCK), pairs[0::2], pairs[1::2])
    builder = BlockBuilder(values)
    offset = taken = 0
    for chunk, count in zip(stored, counts, strict=True):
        blocks = len(chunk[4]) // _PAIR
        builder.starts.extend(range(offset, offset + blocks * sampler.BLOCK, sampler.BLOCK))
        builder.lows.extend(pairs[taken : taken + 2 * blocks : 2])
        builder.highs.extend(pairs[taken + 1 : taken + 2 * blocks : 2])
        builder.summarize(offset + blocks * sampler.BLOCK, offset + count)
        offset, taken = offset + count, taken + 2 * blocks
    return builder.extremes(offset)


def appended_chunks(
    last_chunks: dict[str, Chunk], columns: SeriesColumns
) -> list[tuple[str, Chunk]]:
    """The chunks storing entries (above every stored step) appended to each key's series:
    its last chunk (in ``last_chunks``) extended while it is open, then new chunks."""
    out: list[tuple[str, Chunk]] = []
    for key, (steps, values) in columns.items():
        start = 0
        last = last_chunks.get(key)
        if last is not None and len(last[3]) // 8 < OPEN_CHUNK:
            start = OPEN_CHUNK - len(last[3]) // 8
            out.append((key, extend_chunk(last, steps[:start], values[:start])))
        out += [(key, chunk) for chunk in chunks(steps[start:], values[start:], MAX_CHUNK)]
    return out


def rebuilt_chunks(
    spans: dict[str, tuple[int, int]],
    steps: Sequence[int],
    datas: Sequence[dict[str, Any]],
    low: int,
    high: int,
) -> list[tuple[str, Chunk]]:
    """The chunks replacing, after rows in ``[low, high]`` were replaced, added or moved,
    those overlapping it: ``spans`` holds the first and last step of each key's chunks
    overlapping it, ``steps`` and ``datas`` the stored rows (decoded) of the range those
    spans and ``[low, high]`` cover."""
    out: list[tuple[str, Chunk]] = []
    for key, (key_steps, values) in sampler.series_of(steps, datas).items():
        first, last = spans.get(key, (low, high))
        kept_steps, kept_values = sampler.clip(key_steps, values, min(first, low), max(last, high))
        out += [(key, chunk) for chunk in chunks(kept_steps, kept_values, MAX_CHUNK)]
    return out


def rebuild_range(spans: dict[str, tuple[int, int]], low: int, high: int) -> tuple[int, int]:
    """The steps whose rows a rebuild of ``[low, high]`` reads: the range and every chunk
    overlapping it."""
    return (
        min([low, *(first for first, _ in spans.values())]),
        max([high, *(last for _, last in spans.values())]),
    )

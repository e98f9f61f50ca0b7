"""Batches on the wire: JSON lines of run-log records, decoded and checked as they arrive.

A batch is what a client streams (a websocket message, an HTTP body, `tracker sync`):
records as its run log holds them, sequence numbers increasing by one. `parse_batch`
refuses anything else naming the first bad line, so no backend ever sees it.
"""

from __future__ import annotations

import math
from operator import itemgetter
from typing import Any

import orjson

from tracker._records.kinds import ROW, check_record, last_seq, restore_record
from tracker._records.state import RecordError
from tracker._wire.limits import MAX_BATCH_BYTES, MAX_BATCH_RECORDS, MAX_STEP

__all__ = ["BatchTooLarge", "ParsedBatch", "parse_batch"]

ParsedBatch = tuple[list[list[Any]], list[str]]
"""A batch's records, and their lines as received (rows are stored as they came)."""

_SEQ = itemgetter(0)
_KIND = itemgetter(1)
_STEP = itemgetter(2)
_STAMP = itemgetter(3)
_DATA = itemgetter(4)


class BatchTooLarge(ValueError):
    """A batch over `MAX_BATCH_BYTES` or `MAX_BATCH_RECORDS`; the message says to split it."""


def parse_batch(body: bytes) -> ParsedBatch:
    """Decode a batch and check every record (sequence numbers increase by one: a ``lost``
    record stands for the span it names); return the records and their lines.

    Raises:
        RecordError: a line that is not a well-formed record (the message names it).
        BatchTooLarge: too many bytes or records for one batch.
    """
    if len(body) > MAX_BATCH_BYTES:
        raise BatchTooLarge(
            f"the batch has {len(body)} bytes; the limit is {MAX_BATCH_BYTES} bytes: "
            "send less at once"
        )
    try:
        text = body.decode()
    except UnicodeDecodeError as exc:
        line = body.count(b"\n", 0, exc.start) + 1
        raise RecordError(f"line {line} is not UTF-8 text") from None
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    if not lines:
        raise RecordError("the batch holds no records; send JSON lines [seq, kind, ...]")
    if len(lines) > MAX_BATCH_RECORDS:
        raise BatchTooLarge(
            f"the batch holds {len(lines)} records; at most {MAX_BATCH_RECORDS} fit in one "
            "batch: split it"
        )
    try:
        records: list[Any] | None = list(map(orjson.loads, lines))
    except orjson.JSONDecodeError:
        records = None  # _checked_records names the line
    if records is None or not _plain_rows(records):
        records = _checked_records(lines, records)
    return records, lines


def _plain_rows(records: list[Any]) -> bool:
    """Whether every record is a well-formed row without special values, numbered by one:
    the usual batch, checked column by column at C speed instead of record by record."""
    if set(map(type, records)) != {list} or set(map(len, records)) != {5}:
        return False
    seqs = list(map(_SEQ, records))
    steps = list(map(_STEP, records))
    stamps = list(map(_STAMP, records))
    first = seqs[0]
    return (
        list(map(_KIND, records)).count(ROW) == len(records)  # kinds may be unhashable
        and set(map(type, seqs)) == {int}
        and first >= 0
        and seqs[-1] <= MAX_STEP
        and seqs == list(range(first, first + len(seqs)))
        and set(map(type, steps)) == {int}
        and min(steps) >= 0
        and max(steps) <= MAX_STEP
        and set(map(type, stamps)) == {float}
        and all(map(math.isfinite, stamps))
        and set(map(type, map(_DATA, records))) == {dict}
    )


def _checked_records(lines: list[str], parsed: list[Any] | None) -> list[list[Any]]:
    """Restore and check the records one by one (``parsed`` if every line decoded),
    raising the error that names the first bad line."""
    records: list[list[Any]] = []
    expected: int | None = None
    for number, line in enumerate(lines, 1):
        try:
            record = restore_record(orjson.loads(line) if parsed is None else parsed[number - 1])
        except ValueError as exc:  # orjson.JSONDecodeError is a ValueError
            raise RecordError(f"line {number} is not a tracker record ({exc!s:.120})") from None
        except (TypeError, KeyError, IndexError):
            raise RecordError(
                f"line {number} is not a tracker record (a JSON array [seq, kind, ...] with "
                "a well-formed special-values list)"
            ) from None
        seq = record[0]
        if type(seq) is not int or not 0 <= seq <= MAX_STEP:
            raise RecordError(f"line {number}: the sequence number {seq!r:.60} is no int >= 0")
        if expected is not None and seq != expected:
            raise RecordError(
                f"line {number}: sequence number {seq} follows {expected - 1}; sequence "
                "numbers in a batch must increase by one"
            )
        try:
            check_record(record)
        except RecordError as exc:
            raise RecordError(f"line {number}: {exc}") from None
        expected = last_seq(record) + 1
        records.append(record)
    return records

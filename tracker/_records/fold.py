"""The one fold: records, in order, into a `RunState`, yielding the history rows they add.

`read_run`, a live run's summary, and every server backend call `fold_records`; rows
(nearly every record) are checked and folded column by column at C speed, the rare
other kinds one by one through `tracker._records.kinds.KINDS`.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from operator import itemgetter
from typing import Any

from tracker._records.kinds import (
    ROW,
    STREAMS,
    apply_record,
    check_record,
    is_finite_number,
    row_data_texts,
)
from tracker._records.state import RecordError, Rows, RunState
from tracker._wire.limits import MAX_STEP

__all__ = ["check_records", "fold_records", "record_error"]

_KIND = itemgetter(1)
_STEP = itemgetter(2)
_STAMP = itemgetter(3)
_DATA = itemgetter(4)
_STREAM_KINDS = frozenset(kind.name for kind in STREAMS.values())


def fold_records(
    state: RunState,
    records: Sequence[Sequence[Any]],
    lines: Sequence[str] | None = None,
    rows: Rows | None = None,
) -> Rows:
    """Check and apply ``records`` in order to ``state``; return the history rows they add
    (with their data's text when ``lines``, the records' lines as received, are given) and
    the records of stream kinds, appended to ``rows`` when given (they hold what was
    applied even when this raises).

    Raises:
        RecordError: a record is malformed; the message names its sequence number and
            kind, ``index`` its position (the records before it are applied, not it).
    """
    rows = Rows() if rows is None else rows
    others = [index for index, kind in enumerate(map(_KIND, records)) if kind != ROW]
    start = 0
    for index in [*others, len(records)]:
        if index > start:
            _fold_rows(state, records[start:index], rows, start)
            if lines is not None:
                rows.texts += row_data_texts(lines[start:index])
        if index < len(records):
            record = records[index]
            try:
                check_record(record)
            except RecordError as exc:
                raise record_error(record, str(exc), index) from None
            apply_record(state, record)
            if record[1] in _STREAM_KINDS:
                rows.streams.append(record)
        start = index + 1
    return rows


def check_records(records: Sequence[Sequence[Any]]) -> None:
    """Check ``records`` as `fold_records` does, applying nothing: what a server checks
    before it acknowledges a batch that its compactor folds later.

    Raises:
        RecordError: as `fold_records`.
    """
    others = [index for index, kind in enumerate(map(_KIND, records)) if kind != ROW]
    start = 0
    for index in [*others, len(records)]:
        if index > start:
            _checked_rows(records[start:index], start)
        if index < len(records):
            try:
                check_record(records[index])
            except RecordError as exc:
                raise record_error(records[index], str(exc), index) from None
        start = index + 1


def record_error(record: Sequence[Any], problem: str, index: int) -> RecordError:
    """The error naming ``record`` (by sequence number and kind, at ``index``) and its
    ``problem``."""
    return RecordError(
        f"record {record[0]!r:.30} ({record[1]!r:.30}): {problem}; send records as the "
        "tracker client writes them to its run log (docs/run-log.md)",
        index,
    )


def _fold_rows(state: RunState, records: Sequence[Sequence[Any]], rows: Rows, first: int) -> None:
    """Fold consecutive row records (``first`` the index of the first), checking and
    computing column by column; nothing is applied when one is malformed."""
    steps, stamps, datas = _checked_rows(records, first)
    offset, start = state.runtime_offset, state.session_start
    runtimes = [offset + stamp - start for stamp in stamps]
    deque(map(state.summary.observe, datas), maxlen=0)  # only a metric record replaces observe
    state.last_step = max(state.last_step, *steps)
    state.runtime = runtimes[-1]
    rows.steps += steps
    rows.stamps += stamps
    rows.runtimes += runtimes
    rows.datas += datas


def _checked_rows(
    records: Sequence[Sequence[Any]], first: int
) -> tuple[list[int], list[float], list[dict[str, Any]]]:
    """The steps, timestamps (as floats) and data of consecutive row records, checked
    column by column (``first`` the index of the first, for the error)."""
    if set(map(len, records)) != {5}:
        raise _bad_rows(records, first)
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
        raise _bad_rows(records, first)
    if int in stamp_types:
        if not all(map(is_finite_number, stamps)):
            raise _bad_rows(records, first)
        stamps = list(map(float, stamps))
    elif not all(map(math.isfinite, stamps)):
        raise _bad_rows(records, first)
    return steps, stamps, datas


def _bad_rows(records: Sequence[Sequence[Any]], first: int) -> RecordError:
    """The error naming the first malformed row record of ``records``."""
    for index, record in enumerate(records, first):
        try:
            check_record(record)
        except RecordError as exc:
            return record_error(record, str(exc), index)
    raise AssertionError("_bad_rows called on well-formed rows")

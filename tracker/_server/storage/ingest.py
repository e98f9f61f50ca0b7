"""The exactly-once ingest rule: which records of a batch are new, and what they store.

`decide` is pure: given the run as stored, it skips the records already stored for the
log, refuses a gap, folds the rest into the run's state (`tracker._records.fold`) and
returns the writes; a backend runs it inside its ingest transaction
(`tracker._server.storage.backend.Backend.ingest_batch`).
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import Any, Final

from tracker._errors import UsageError
from tracker._records import sampler
from tracker._records.fold import fold_records
from tracker._records.kinds import (
    LOST,
    ROW,
    RUN,
    last_seq,
    session_of,
    stream_of,
    stream_stamp,
)
from tracker._records.state import RecordError
from tracker._server.storage import series
from tracker._server.storage.backend import BatchWrites, StoredRun, StreamAppend
from tracker._server.storage.document import RunKey
from tracker._server.storage.errors import BadRequest, LogConflict, SeqGap
from tracker._server.storage.starts import missing
from tracker._server.storage.stored import (
    checked_row_texts,
    exact,
    fold_fields,
    fold_state,
    row_texts,
)

__all__ = ["check_batch", "check_sessions", "decide"]

_KIND: Final = operator.itemgetter(1)


def check_batch(records: Sequence[Any]) -> None:
    """Records are ``[seq, kind, ...]`` lists with sequence numbers increasing by one."""
    if not records:
        return
    if set(map(type, records)) != {list} or min(map(len, records)) < 2:
        raise BadRequest("bad_batch", "a record of the batch is not a [seq, kind, ...] list")
    seqs = [record[0] for record in records]
    first = seqs[0]
    if set(map(type, seqs)) != {int} or (
        seqs != list(range(first, first + len(seqs)))
        if LOST not in map(_KIND, records)
        else any(
            seq != last_seq(record) + 1 for record, seq in zip(records, seqs[1:], strict=False)
        )
    ):
        raise BadRequest(
            "bad_batch",
            f"the batch's sequence numbers {seqs[:3]!r:.60}... are not integers increasing "
            "by one; send records as read from the run log",
        )


def decide(
    key: RunKey,
    log_id: str,
    records: list[list[Any]],
    lines: Sequence[str] | None,
    now: float,
    stored: StoredRun | None,
) -> BatchWrites:
    """What a batch stores, given the run as stored: records already stored for the log
    skipped, a gap refused, the rest folded into the run's state. Raises before anything
    is written (`RunNotFound`, `SeqGap`, `BadRequest` ``bad_batch``)."""
    if stored is None:
        raise missing(key)
    acked = stored["acked_seq"]
    sessions = _sessions_after(key, log_id, stored, records) if RUN in map(_KIND, records) else None
    if LOST not in map(_KIND, records):
        skip = max(0, acked + 1 - records[0][0]) if records else 0
    else:
        skip = 0
        while skip < len(records) and last_seq(records[skip]) <= acked:
            skip += 1
    fresh = records[skip:]
    if not fresh:
        return BatchWrites(stored["pk"], acked, {"heartbeat_at": now}, sessions=sessions)
    if fresh[0][0] != acked + 1:
        raise SeqGap(
            f"log {log_id} of run {key.run_id}: the batch starts at seq {fresh[0][0]} "
            f"but seq {acked} is the last stored; resend from seq {acked + 1}",
            acked,
        )
    rows_only = list(map(_KIND, fresh)).count(ROW) == len(fresh)
    run = fold_state(stored, rows_only)
    if stored["state"] == "crashed":
        run.state = "running"  # records mean the client is alive after all
    prior_last = run.last_step
    kept_lines = None if lines is None else lines[skip:]
    try:
        rows = fold_records(run, fresh, kept_lines)
    except (RecordError, UsageError) as exc:
        raise BadRequest("bad_batch", str(exc)) from None
    texts: list[str] = []
    if rows.steps:  # checked first, so a bad row is named as such, not by the summary
        texts = (
            checked_row_texts(rows) if kept_lines is not None else row_texts(rows.steps, rows.datas)
        )
    writes = BatchWrites(stored["pk"], last_seq(fresh[-1]), fold_fields(run, now, rows_only))
    writes.sessions = sessions
    if rows.streams:
        writes.streams = _stream_appends(rows.streams)
    if rows.steps:
        writes.steps, writes.stamps, writes.runtimes = rows.steps, rows.stamps, rows.runtimes
        writes.texts = texts
        steps, datas, writes.rebuild = series.split_appendable(rows.steps, rows.datas, prior_last)
        if steps:
            writes.appended = sampler.series_of(steps, datas)
    return writes


def _stream_appends(records: Sequence[Any]) -> list[StreamAppend]:
    """Checked records of stream kinds, as the stream storage keeps them."""
    return [
        (stream_of(record), stream_stamp(record), exact(record[2], f"a {record[1]} record"))
        for record in records
    ]


def check_sessions(
    key: RunKey, log_id: str, stored: list[list[Any]], acked: int, given: list[list[Any]]
) -> None:
    """Refuse a client whose log had other writer sessions up to ``acked`` than the log the
    server stored (``stored``; empty: none known, as before the server kept them). A client
    that tells none (``given`` empty: a live run, whose log is its own) is not checked.

    Raises:
        LogConflict: a copy of the run directory was resumed apart from the one stored.
    """
    if not stored or not given:
        return
    mine = [pair for pair in stored if pair[0] <= acked]
    theirs = [pair for pair in given if pair[0] <= acked]
    if mine != theirs:
        raise _conflict(key, log_id, mine, theirs)


def _sessions_after(
    key: RunKey, log_id: str, stored: StoredRun, records: Sequence[Any]
) -> list[list[Any]] | None:
    """The log's sessions once the batch's session-opening records are stored (None: no
    new one); a batch reopening, at a seq already stored, another resumed session than the
    one stored there comes from another copy of the log (copies share the first session).

    Raises:
        LogConflict: such a record.
    """
    known = stored["sessions"]
    acked = stored["acked_seq"]
    added = []
    for record in records:
        opened = session_of(record)
        if opened is None:
            continue
        if opened[0] > acked:
            added.append(opened)
        elif opened[0] > 0 and known and opened not in known:  # a resume, not the start
            raise _conflict(key, log_id, known, [opened])
    return [*known, *added] if added else None


def _conflict(
    key: RunKey, log_id: str, stored: list[list[Any]], given: list[list[Any]]
) -> LogConflict:
    return LogConflict(
        f"log {log_id} of run {key.run_id} was resumed in two places: the server stored the "
        f"sessions (first seq, start time) {stored!r:.200} of it, this copy has "
        f"{given!r:.200}; one copy's records cannot be stored as the other's. Upload this "
        "copy as a run of its own: tracker sync DIR --run-id NEW_ID"
    )

"""The exactly-once ingest rule: which records of a batch are new, and what an ack stores.

`checked_lines` refuses, before anything is stored, what the compactor could not fold
(`tracker._records.fold.check_records`, rows nested too deep, rows and runs with too
many keys) and returns the lines to log. `decide` is pure: given the run as stored, it
skips the records already stored for the log, refuses a gap and returns the batch's new
lines for the row log (`tracker._server.storage.backend.LoggedBatch`); a backend runs it
inside its ingest transaction (`tracker._server.storage.backend.Backend.ingest_batch`).
Folding them is the compactor's (`tracker._server.storage.rowlog`), off the ack path.
"""

from __future__ import annotations

import operator
from bisect import bisect_left
from collections.abc import Sequence
from itertools import accumulate, pairwise, repeat
from typing import Any, Final

from tracker._errors import UsageError
from tracker._records.codec import encode_record
from tracker._records.fold import check_records
from tracker._records.kinds import (
    LOST,
    ROW,
    RUN,
    STREAMS,
    last_seq,
    session_of,
    stream_of,
    stream_stamp,
)
from tracker._records.state import RecordError
from tracker._server.storage.backend import (
    BatchWrites,
    LoggedBatch,
    RunFields,
    StoredRun,
    StreamAppend,
)
from tracker._server.storage.document import RunKey
from tracker._server.storage.errors import BadRequest, LogConflict, SeqGap
from tracker._server.storage.rowlog import COMPACT_BYTES
from tracker._server.storage.starts import missing
from tracker._server.storage.stored import exact
from tracker._wire.limits import MAX_ROW_KEYS, MAX_RUN_KEYS

__all__ = [
    "check_batch",
    "check_sessions",
    "checked_lines",
    "decide",
    "refuse_past_run_keys",
    "row_keys",
]

_KIND: Final = operator.itemgetter(1)
_DATA: Final = operator.itemgetter(4)
_STREAM_KINDS: Final = frozenset(kind.name for kind in STREAMS.values())
_FLAT_ENOUGH: Final = 200
"""A row line with at most this many brackets cannot nest past the exact encoding's
depth limit (253 levels)."""


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


def checked_lines(records: list[list[Any]], lines: Sequence[str] | None) -> list[str]:
    """The lines to log for checked ``records`` (``lines``, as received, or the records
    encoded again when not given), once every record is known to fold: checked as the
    fold checks them, payloads that encode exactly (rows no deeper than the exact
    encoding allows; other records, rare, encoded to check), rows of at most
    `MAX_ROW_KEYS` keys.

    Raises:
        BadRequest: ``bad_batch``, a record that would not fold; ``too_many_keys``, a row
            over the limit.
    """
    try:
        check_records(records)
    except RecordError as exc:
        raise BadRequest("bad_batch", str(exc)) from None
    rows = [record for record in records if record[1] == ROW]
    if len(rows) < len(records):  # the fold stores these payloads exactly: they must encode
        for record in records:
            if record[1] != ROW:
                exact(record[-1], f"record {record[0]} ({record[1]!r:.30})")
    if rows:
        widest = max(map(len, map(_DATA, rows)))
        if widest > MAX_ROW_KEYS:
            at = next(record for record in rows if len(record[4]) == widest)
            raise BadRequest(
                "too_many_keys",
                f"the row at step {at[2]} (seq {at[0]}) has {widest} keys; a row holds at "
                f"most {MAX_ROW_KEYS}: log fewer keys per step, or nest related values in "
                "one key (a list or a table)",
            )
    if lines is None:
        try:
            return [
                encode_record(tuple(record[:-1]), record[-1], f"record {record[0]}")[:-1].decode()
                for record in records
            ]
        except UsageError as exc:
            raise BadRequest("bad_batch", str(exc)) from None
    if lines and max(map(len, lines)) > 2 * _FLAT_ENOUGH:  # every bracket opened closes
        brackets = map(
            operator.add, map(str.count, lines, repeat("{")), map(str.count, lines, repeat("["))
        )
        for index, count in enumerate(brackets):
            if count > _FLAT_ENOUGH and records[index][1] == ROW:
                exact(records[index][4], f"history row at step {records[index][2]}")
    return list(lines)


def row_keys(records: Sequence[Sequence[Any]]) -> set[str]:
    """The keys of the batch's rows."""
    return set().union(*(record[4] for record in records if record[1] == ROW))


def refuse_past_run_keys(
    key: RunKey, known: set[str], records: list[list[Any]], lines: list[str]
) -> tuple[list[list[Any]], list[str], str | None]:
    """The batch with each row that would take the run past `MAX_RUN_KEYS` keys (``known``:
    its keys so far, which grow by the rows kept) turned into a ``lost`` record marked
    ``refused``: stored as a gap the acks move past and counted, so the rows after it, and
    the run's known keys, still go in. The records, their lines, and why rows were refused
    (None: all kept)."""
    refused: list[tuple[int, str]] = []
    kept_keys = set(known)
    for index, record in enumerate(records):
        if record[1] != ROW:
            continue
        new = record[4].keys() - kept_keys
        if len(kept_keys) + len(new) <= MAX_RUN_KEYS:
            kept_keys |= new
            continue
        if not refused:
            records, lines = list(records), list(lines)
        refused.append((record[2], sorted(new)[0]))
        gap = [record[0], LOST, {"through": record[0], "offset": None, "refused": "too_many_keys"}]
        records[index] = gap
        lines[index] = encode_record((record[0], LOST), gap[2], "a refused row")[:-1].decode()
    if not refused:
        return records, lines, None
    (step, example), count = refused[0], len(refused)
    message = (
        f"run {key.run_id} holds at most {MAX_RUN_KEYS} keys: {count} row(s) adding more, "
        f"from step {step} (e.g. key {example!r:.60}), were refused and not stored, the "
        "others were; reuse keys across steps, or nest related values in one key (a list "
        "or a table)"
    )
    return records, lines, message


def decide(
    key: RunKey,
    log_id: str,
    records: list[list[Any]],
    lines: Sequence[str],
    now: float,
    stored: StoredRun | None,
) -> BatchWrites:
    """What an ack stores, given the run as stored: records already stored for the log
    skipped, a gap refused, the rest (their ``lines``) for the row log and those of
    stream kinds for their streams (stored with the ack: no fold needed). Raises before
    anything is written (`RunNotFound`, `SeqGap`, `LogConflict`)."""
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
    fields: RunFields = {"heartbeat_at": now}
    if not fresh:
        return BatchWrites(stored["pk"], acked, fields, sessions=sessions)
    if fresh[0][0] != acked + 1:
        raise SeqGap(
            f"log {log_id} of run {key.run_id}: the batch starts at seq {fresh[0][0]} "
            f"but seq {acked} is the last stored; resend from seq {acked + 1}",
            acked,
        )
    fields["updated_at"] = now
    if stored["state"] == "crashed":
        fields["state"] = "running"  # records mean the client is alive after all
    kept = lines[skip:] if skip else lines
    streamed = [record for record in fresh if record[1] in _STREAM_KINDS]
    return BatchWrites(
        stored["pk"],
        last_seq(fresh[-1]),
        fields,
        _pieces(fresh, kept, now),
        sessions,
        _stream_appends(streamed),
    )


def _pieces(records: Sequence[Any], lines: Sequence[str], now: float) -> list[LoggedBatch]:
    """The row log entries of new records: their lines, cut between lines into pieces of
    about `COMPACT_BYTES` (a compaction step then reads each piece once, whole)."""
    ends = list(accumulate(map(len, lines), lambda total, size: total + size + 1, initial=0))
    cuts = [0]
    while cuts[-1] < len(lines):
        cuts.append(max(cuts[-1] + 1, bisect_left(ends, ends[cuts[-1]] + COMPACT_BYTES)))
        cuts[-1] = min(cuts[-1], len(lines))
    return [
        LoggedBatch(
            records[start][0],
            last_seq(records[stop - 1]),
            ("\n".join(lines[start:stop]) + "\n").encode(),
            now,
        )
        for start, stop in pairwise(cuts)
    ]


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

"""Every record kind, defined once: its name, its fields, its check and how it folds.

A record is ``[seq, kind, *head, payload]``, or ``[seq, kind, *head, payload, specials]``
when the payload holds NaN, ±inf or big ints (`tracker._records.codec`). Adding a kind is
one `RecordKind` in `KINDS` plus the code that emits it: readers and every server backend
fold records through this table (`tracker._records.fold`), and skip kinds they do not
know, so older readers keep working. docs/run-log.md describes each kind.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import orjson

from tracker._errors import UsageError
from tracker._records.codec import restore_payload
from tracker._records.state import RecordError, RunState
from tracker._records.summary import MetricRule
from tracker._wire.limits import MAX_STEP

__all__ = [
    "CONFIG",
    "CONSOLE",
    "CONSOLE_STREAMS",
    "EXIT",
    "EXIT_STATES",
    "FILE",
    "KINDS",
    "LOST",
    "METRIC",
    "RESERVED_KEYS",
    "ROW",
    "RUN",
    "STREAMS",
    "SUMMARY_DELETE",
    "SUMMARY_SET",
    "SYSTEM",
    "RecordKind",
    "apply_record",
    "check_record",
    "decode_record",
    "is_finite_number",
    "last_seq",
    "payload_index",
    "restore_record",
    "row_data_texts",
    "session_of",
    "stream_of",
    "stream_stamp",
]

Record = Sequence[Any]

RESERVED_KEYS: Final = ("_step", "_timestamp", "_runtime")
"""The keys every history row carries; no logged key may use them."""
EXIT_STATES: Final = frozenset({"finished", "failed", "killed", "crashed"})
"""The states an ``exit`` record may set."""

_INT64 = range(-(2**63), 2**63)
_FLOAT_MAX: Final = int(sys.float_info.max)
CONSOLE_STREAMS: Final = ("stdout", "stderr")
"""The console streams a ``console`` record may be of."""
_TEXT_FIELDS: Final = ("name", "group", "job_type", "notes")
_NUMBER_FIELDS: Final = ("start_time", "runtime_offset", "created_at")


@dataclass(frozen=True)
class RecordKind:
    """One kind of record: ``[seq, name, *head, payload]``.

    ``check`` raises `RecordError` saying what is wrong with a record of this kind;
    ``apply`` folds a checked record into a `RunState`.
    """

    name: str
    head: tuple[str, ...]
    payload: str
    """What the payload is, in words (for messages and docs)."""
    check: Callable[[Record], None]
    apply: Callable[[RunState, Record], None]
    spans: Callable[[Record], int] | None = None
    """The last sequence number a record of this kind stands for, when that is not its
    own (a ``lost`` record stands for the records a damaged run log lost)."""
    stream: str | None = None
    """The run's stream a record of this kind belongs to (None: it folds into the run): its
    records never touch the history or ``_step``; the server keeps them per run and stream
    (`tracker._server.storage.backend.StreamEntry`), readers read them with
    ``history(stream=...)``. Its payload is a dict holding its time at ``stamp_key``."""
    stamp_key: str = "_timestamp"
    """Where a stream kind's payload holds its time, unix seconds."""

    @property
    def payload_index(self) -> int:
        """Where the payload sits in a record of this kind."""
        return 2 + len(self.head)


def is_finite_number(value: Any) -> bool:
    """Whether ``value`` is an int or float and finite (an int beyond the floats is not)."""
    if type(value) is int:
        return -_FLOAT_MAX <= value <= _FLOAT_MAX
    return type(value) is float and math.isfinite(value)


def _dict_payload(what: str) -> Callable[[Record], None]:
    def check(record: Record) -> None:
        if type(record[2]) is not dict:
            raise RecordError(f"the payload is not a dict (a JSON object) of {what}")

    return check


def _check_row(record: Record) -> None:
    step, stamp, data = record[2], record[3], record[4]
    if type(step) is not int or not 0 <= step <= MAX_STEP:
        raise RecordError(f"step {step!r:.60} is not an integer from 0 to 2**63-1")
    if not is_finite_number(stamp):
        raise RecordError(f"timestamp {stamp!r:.60} is not a finite number")
    if type(data) is not dict:
        raise RecordError(f"data is a {type(data).__name__}, not a dict (a JSON object)")


def _apply_row(state: RunState, record: Record) -> None:
    """One row (the fold takes runs of rows column by column: `tracker._records.fold`)."""
    step, stamp, data = record[2], float(record[3]), record[4]
    state.summary.observe(data)
    state.last_step = max(state.last_step, step)
    state.runtime = state.runtime_offset + stamp - state.session_start


def _check_run(record: Record) -> None:
    payload = record[2]
    if type(payload) is not dict:
        raise RecordError("the payload is not a dict (a JSON object) of run metadata")
    for name in _TEXT_FIELDS:
        if payload.get(name) is not None and type(payload[name]) is not str:
            raise RecordError(f"{name} {payload[name]!r:.60} is not a string or null")
    if "tags" in payload:
        tags = payload["tags"]
        if type(tags) is not list or not all(type(tag) is str for tag in tags):
            raise RecordError(f"tags {tags!r:.100} is not a list of strings")
    for name in _NUMBER_FIELDS:
        if name in payload and not is_finite_number(payload[name]):
            raise RecordError(f"{name} {payload[name]!r:.60} is not a finite number")


def _apply_run(state: RunState, record: Record) -> None:
    """Merge run metadata; a payload with ``start_time`` opens a session (started or resumed)."""
    rest = dict(record[2])
    for name in _TEXT_FIELDS:
        if name in rest:
            setattr(state, name, rest.pop(name))
    if "tags" in rest:
        state.tags = list(rest.pop("tags"))
    if "created_at" in rest:
        state.created_at = float(rest.pop("created_at"))
    if "start_time" in rest:
        state.session_start = float(rest["start_time"])
        state.runtime_offset = float(rest.get("runtime_offset", 0.0))
        state.state, state.exit_code, state.end_time = "running", None, None
        state.sessions.append([record[0], _session(rest["start_time"])])
    state.metadata.update(rest)


def _session(start_time: float) -> str:
    return repr(float(start_time))


def session_of(record: Record) -> list[Any] | None:
    """``[seq, session]`` when ``record`` opens a writer session (a ``run`` record with
    ``start_time``): the session is its start time, unique to the process that started or
    resumed the run, so two copies of a run log resumed apart differ there."""
    payload = record[2] if record[1] == RUN else None
    if type(payload) is dict and is_finite_number(payload.get("start_time")):
        return [record[0], _session(payload["start_time"])]
    return None


def _apply_config(state: RunState, record: Record) -> None:
    state.config.update(record[2])


def _apply_summary_set(state: RunState, record: Record) -> None:
    state.summary.apply_set(record[2])


def _check_summary_delete(record: Record) -> None:
    payload = record[2]
    if type(payload) is not list or not all(type(key) is str for key in payload):
        raise RecordError("the payload is not a list of summary keys")


def _apply_summary_delete(state: RunState, record: Record) -> None:
    state.summary.apply_delete(record[2])


def _check_metric(record: Record) -> None:
    try:
        MetricRule.from_record(record[2])
    except UsageError as exc:
        raise RecordError(str(exc)) from None


def _apply_metric(state: RunState, record: Record) -> None:
    state.summary.define(MetricRule.from_record(record[2]))


def _check_file(record: Record) -> None:
    payload = record[2]
    if type(payload) is not dict or type(payload.get("name")) is not str:
        raise RecordError("the payload is not a dict (a JSON object) with the file name")


def _apply_file(state: RunState, record: Record) -> None:
    state.files[record[2]["name"]] = record[2]


def _check_exit(record: Record) -> None:
    payload = record[2]
    if type(payload) is not dict:
        raise RecordError("the payload is not a dict (a JSON object)")
    state = payload.get("state")
    if not isinstance(state, str) or state not in EXIT_STATES:
        raise RecordError(f"state {state!r:.60} is not one of {', '.join(sorted(EXIT_STATES))}")
    code = payload.get("exit_code")
    if code is not None and (type(code) is not int or code not in _INT64):
        raise RecordError(f"exit_code {code!r:.60} is not a 64-bit integer or null")
    end = payload.get("end_time")
    if end is not None and not is_finite_number(end):
        raise RecordError(f"end_time {end!r:.60} is not a finite number or null")
    if "runtime" in payload and not is_finite_number(payload["runtime"]):
        raise RecordError(f"runtime {payload['runtime']!r:.60} is not a finite number")


def _check_lost(record: Record) -> None:
    payload = record[2]
    through = payload.get("through") if type(payload) is dict else None
    if type(through) is not int or not record[0] <= through <= MAX_STEP:
        raise RecordError(
            f"the payload's through {through!r:.60} is not the sequence number of the last "
            "lost record (an int at least this record's)"
        )
    offset = payload.get("offset")
    if offset is not None and (type(offset) is not int or offset < 0):
        raise RecordError(f"offset {offset!r:.60} is not a byte offset (an int >= 0) or null")


def _apply_lost(state: RunState, record: Record) -> None:
    lost = record[2]["through"] - record[0] + 1
    counted = "rows_refused" if "refused" in record[2] else "records_lost"
    state.metadata[counted] = state.metadata.get(counted, 0) + lost


def _lost_through(record: Record) -> int:
    payload = record[2]
    through = payload.get("through") if type(payload) is dict else None
    # a malformed one stands for itself: the fold's check names what is wrong with it
    return through if type(through) is int and through >= record[0] else int(record[0])


def _check_console(record: Record) -> None:
    payload = record[2]
    if type(payload) is not dict:
        raise RecordError("the payload is not a dict (a JSON object) of console text")
    if not is_finite_number(payload.get("time")):
        raise RecordError(f"time {payload.get('time')!r:.60} is not a finite number (unix seconds)")
    if payload.get("stream") not in CONSOLE_STREAMS:
        raise RecordError(f"stream {payload.get('stream')!r:.60} is not stdout or stderr")
    if type(payload.get("text")) is not str:
        raise RecordError(f"text {payload.get('text')!r:.60} is not a string")


def _check_system(record: Record) -> None:
    payload = record[2]
    if type(payload) is not dict:
        raise RecordError("the payload is not a dict (a JSON object) of system metrics")
    for name, value in payload.items():
        if not is_finite_number(value):
            raise RecordError(f"system metric {name!r:.60} is {value!r:.60}, not a finite number")
    if "_timestamp" not in payload:
        raise RecordError("the payload lacks _timestamp, the sample's time in unix seconds")


def _apply_stream(state: RunState, record: Record) -> None:
    """Stream records leave the run's state alone: they are read as a stream of their own."""


def stream_of(record: Record) -> str:
    """The stream a checked record of a stream kind belongs to."""
    return str(KINDS[record[1]].stream)


def stream_stamp(record: Record) -> float:
    """The time of a checked record of a stream kind, unix seconds."""
    return float(record[2][KINDS[record[1]].stamp_key])


def _apply_exit(state: RunState, record: Record) -> None:
    payload = record[2]
    end = payload.get("end_time")
    state.state, state.exit_code = payload["state"], payload.get("exit_code")
    state.end_time = None if end is None else float(end)
    state.runtime = float(payload.get("runtime", state.runtime))


ROW: Final = "row"
RUN: Final = "run"
CONFIG: Final = "config"
SUMMARY_SET: Final = "summary"
SUMMARY_DELETE: Final = "summary_delete"
METRIC: Final = "metric"
FILE: Final = "file"
EXIT: Final = "exit"
LOST: Final = "lost"
SYSTEM: Final = "system"
CONSOLE: Final = "console"

KINDS: Final[dict[str, RecordKind]] = {
    kind.name: kind
    for kind in (
        RecordKind(ROW, ("step", "timestamp"), "the logged dict", _check_row, _apply_row),
        RecordKind(RUN, (), "run metadata; with start_time, a session", _check_run, _apply_run),
        RecordKind(CONFIG, (), "changed config keys", _dict_payload("config keys"), _apply_config),
        RecordKind(
            SUMMARY_SET,
            (),
            "summary keys set explicitly",
            _dict_payload("summary keys"),
            _apply_summary_set,
        ),
        RecordKind(
            SUMMARY_DELETE,
            (),
            "summary keys deleted",
            _check_summary_delete,
            _apply_summary_delete,
        ),
        RecordKind(METRIC, (), "a define_metric rule", _check_metric, _apply_metric),
        RecordKind(FILE, (), "a file stored with the run", _check_file, _apply_file),
        RecordKind(EXIT, (), "the end of a session", _check_exit, _apply_exit),
        # Never in a run log: the sender puts one where a damaged stretch of its run log
        # held records, so the server learns they are lost instead of waiting for them;
        # the server stores one (marked "refused") for a row it refuses past the key limit.
        RecordKind(
            LOST,
            (),
            "records lost to a damaged run log (or refused), through a sequence number",
            _check_lost,
            _apply_lost,
            _lost_through,
        ),
        RecordKind(
            SYSTEM,
            (),
            "one sample of system metrics (docs/run-log.md)",
            _check_system,
            _apply_stream,
            stream=SYSTEM,
        ),
        RecordKind(
            CONSOLE,
            (),
            "console text: time, stream (stdout or stderr), whole lines (docs/run-log.md)",
            _check_console,
            _apply_stream,
            stream=CONSOLE,
            stamp_key="time",
        ),
    )
}
"""The record kinds this version knows, by name."""
STREAMS: Final[dict[str, RecordKind]] = {
    kind.stream: kind for kind in KINDS.values() if kind.stream is not None
}
"""The kinds whose records are streams of their own, by stream name."""


def last_seq(record: Record) -> int:
    """The last sequence number ``record`` stands for: its own, but a ``lost`` record's span."""
    known = KINDS.get(record[1]) if isinstance(record[1], str) else None
    return record[0] if known is None or known.spans is None else known.spans(record)


def payload_index(kind: str) -> int:
    """Position of the payload in a record of this kind (2 for kinds this version lacks)."""
    known = KINDS.get(kind)
    return 2 if known is None else known.payload_index


def check_record(record: Record) -> None:
    """Check a record of a known kind (unknown kinds pass: newer clients add some).

    Raises:
        RecordError: the kind is not a string, or the record is not what its kind defines.
    """
    kind = record[1]
    if not isinstance(kind, str):
        raise RecordError(f"the record kind {kind!r:.60} is not a string")
    known = KINDS.get(kind)
    if known is None:
        return
    if len(record) != known.payload_index + 1:
        fields = ", ".join(("seq", repr(kind), *known.head, "payload"))
        raise RecordError(f"a {kind!r} record is [{fields}]")
    known.check(record)


def apply_record(state: RunState, record: Record) -> None:
    """Fold one checked record into ``state``; kinds this version does not know are skipped."""
    known = KINDS.get(record[1])
    if known is not None:
        known.apply(state, record)


def decode_record(line: bytes | memoryview | str) -> list[Any]:
    """Decode one record line and restore its special values; the sidecar is removed."""
    return restore_record(orjson.loads(line))


def restore_record(record: Any) -> list[Any]:
    """A parsed record line with its special values restored and its sidecar removed.

    Raises:
        ValueError: ``record`` is not a tracker record.
        TypeError, KeyError, IndexError: its sidecar is malformed.
    """
    if not isinstance(record, list) or len(record) < 2 or not isinstance(record[0], int):
        raise ValueError("not a tracker record")
    index = payload_index(record[1]) if isinstance(record[1], str) else 2
    if len(record) == index + 2:
        record[index] = restore_payload(record[index], record.pop())
    elif len(record) != index + 1:
        raise ValueError(f"a {record[1]!r} record has {len(record)} fields")
    return record


def row_data_texts(lines: Iterable[str]) -> list[str]:
    """The exact encodings (`encode_value`) of row records' data, cut from the records'
    lines: ``[seq,"row",step,ts,DATA]`` gives ``[DATA]``, and with a sidecar
    ``[seq,"row",step,ts,DATA,SPECIALS]`` gives ``[DATA,SPECIALS]`` (sidecar paths are
    relative to the payload in both). Only for lines that decode to row records with a
    dict as data: no ``{`` comes before the data's."""
    return ["[" + line[line.index("{") :] for line in lines]

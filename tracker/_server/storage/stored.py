"""Between a run's records and its stored fields: exact text, fold states, documents.

The store folds records into a `tracker._records.state.RunState` and stores it as
`RunFields` of exact JSON text; it reads `StoredRun`s back as fold states (to continue
the fold) and as `RunDocument`s (to answer). Values that cannot be stored exactly (a row
nested deeper than the exact encoding allows) are refused before anything is written.
"""

from __future__ import annotations

import operator
from itertools import repeat
from typing import Any, Final

from tracker._errors import UsageError
from tracker._records.codec import decode_value, encode_value
from tracker._records.state import Rows, RunState
from tracker._records.summary import Summary
from tracker._server.storage.backend import RunFields, StoredRun
from tracker._server.storage.document import Parent, RunDocument, RunKey
from tracker._server.storage.errors import BadRequest

__all__ = [
    "EMPTY_OBJECT",
    "checked_row_texts",
    "copied_fields",
    "exact",
    "fold_fields",
    "fold_state",
    "key_of",
    "new_run_fields",
    "run_document",
]

_IDENTITY: Final = frozenset({"pk", "entity", "project", "run_id", "acked_seq", "sessions"})
"""The `StoredRun` keys that are not `RunFields`."""
_FLAT_ENOUGH: Final = 200
"""A stored row text with at most this many brackets cannot nest past the exact
encoding's depth limit (253 levels)."""


def exact(value: Any, what: str) -> str:
    """``value`` exactly encoded as JSON text (`encode_value` without its newline).

    Raises:
        BadRequest: ``bad_batch``, a value that cannot be stored exactly.
    """
    try:
        return encode_value(value, what)[:-1].decode()
    except UsageError as exc:
        raise BadRequest("bad_batch", str(exc)) from None


EMPTY_OBJECT: Final = exact({}, "an empty object")
_EMPTY_STATE: Final = exact(Summary().to_state(), "summary state")


def checked_row_texts(rows: Rows) -> list[str]:
    """The rows' texts as received, refusing a row nested deeper than the exact encoding
    allows, as encoding it again would: reads would fail on it. Only rows with enough
    brackets to be that deep are encoded to check."""
    texts = rows.texts
    brackets = list(
        map(operator.add, map(str.count, texts, repeat("{")), map(str.count, texts, repeat("[")))
    )
    if brackets and max(brackets) > _FLAT_ENOUGH:
        for index, count in enumerate(brackets):
            if count > _FLAT_ENOUGH:
                exact(rows.datas[index], f"history row at step {rows.steps[index]}")
    return texts


def new_run_fields(now: float, interval: float, parent: tuple[str, int] | None) -> RunFields:
    """Every field of a run just created: running, empty, heard from at ``now``."""
    return {
        "name": None,
        "state": "running",
        "config": EMPTY_OBJECT,
        "summary": EMPTY_OBJECT,
        "summary_state": _EMPTY_STATE,
        "metadata": EMPTY_OBJECT,
        "tags": [],
        "group": None,
        "job_type": None,
        "notes": None,
        "created_at": now,
        "updated_at": now,
        "heartbeat_at": now,
        "heartbeat_interval": interval,
        "end_time": None,
        "exit_code": None,
        "last_step": -1,
        "runtime": 0.0,
        "session_start": 0.0,
        "runtime_offset": 0.0,
        "parent_run_id": None if parent is None else parent[0],
        "parent_step": None if parent is None else parent[1],
    }


def fold_state(stored: StoredRun, rows_only: bool) -> RunState:
    """The fold state of a stored run. With ``rows_only`` (for a batch of rows alone) the
    fields rows never change (names, tags, config, metadata) stay at their defaults,
    undecoded, and `fold_fields` with ``rows_only`` leaves them alone: a big config costs
    nothing per batch."""
    run = RunState(
        summary=Summary.from_state(decode_value(stored["summary_state"])),
        state=stored["state"],
        exit_code=stored["exit_code"],
        end_time=stored["end_time"],
        created_at=stored["created_at"],
        last_step=stored["last_step"],
        runtime=stored["runtime"],
        session_start=stored["session_start"],
        runtime_offset=stored["runtime_offset"],
    )
    if not rows_only:
        run.name, run.group = stored["name"], stored["group"]
        run.job_type, run.notes = stored["job_type"], stored["notes"]
        run.tags = list(stored["tags"])
        run.metadata = decode_value(stored["metadata"])
        run.config = decode_value(stored["config"])
    return run


def fold_fields(run: RunState, now: float, rows_only: bool) -> RunFields:
    """The fields storing a fold state (with ``rows_only``, only what rows change).

    Raises:
        BadRequest: ``bad_batch``, a value that cannot be stored exactly.
    """
    fields: RunFields = {
        "summary": exact(run.summary.as_dict(), "summary"),
        "summary_state": exact(run.summary.to_state(), "summary state"),
        "state": run.state,
        "last_step": run.last_step,
        "runtime": run.runtime,
        "updated_at": now,
        "heartbeat_at": now,
    }
    if not rows_only:
        fields.update(
            {
                "name": run.name,
                "tags": list(run.tags),
                "group": run.group,
                "job_type": run.job_type,
                "notes": run.notes,
                "metadata": exact(run.metadata, "run metadata"),
                "config": exact(run.config, "config"),
                "exit_code": run.exit_code,
                "end_time": run.end_time,
                "created_at": run.created_at,
                "session_start": run.session_start,
                "runtime_offset": run.runtime_offset,
            }
        )
    return fields


def copied_fields(stored: StoredRun) -> RunFields:
    """Every field of ``stored``, to create a copy of it (under another key)."""
    fields = {name: value for name, value in stored.items() if name not in _IDENTITY}
    fields["tags"] = list(stored["tags"])
    return fields  # type: ignore[return-value]


def run_document(stored: StoredRun) -> RunDocument:
    """The document of a stored run (the app adds ``url``)."""
    parent: Parent | None = None
    if stored["parent_run_id"] is not None and stored["parent_step"] is not None:
        parent = {"run_id": stored["parent_run_id"], "step": stored["parent_step"]}
    return {
        "id": stored["run_id"],
        "name": stored["name"],
        "entity": stored["entity"],
        "project": stored["project"],
        "state": stored["state"],
        "config": decode_value(stored["config"]),
        "summary": decode_value(stored["summary"]),
        "tags": list(stored["tags"]),
        "group": stored["group"],
        "job_type": stored["job_type"],
        "notes": stored["notes"],
        "created_at": stored["created_at"],
        "updated_at": stored["updated_at"],
        "heartbeat_at": stored["heartbeat_at"],
        "end_time": stored["end_time"],
        "exit_code": stored["exit_code"],
        "last_step": stored["last_step"],
        "parent": parent,
        "runtime": stored["runtime"],
        "metadata": decode_value(stored["metadata"]),
    }


def key_of(stored: StoredRun) -> RunKey:
    """Where a stored run lives."""
    return RunKey(stored["entity"], stored["project"], stored["run_id"])

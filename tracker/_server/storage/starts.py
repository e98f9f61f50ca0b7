"""How a handshake starts a run: its checks, and forks and rewinds (docs/protocol.md,
"Starting a run"). `tracker._server.storage.store.Store.start_run` applies the modes."""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from tracker._records.codec import decode_value
from tracker._records.summary import Summary
from tracker._server.storage.backend import StoredRun, Writer
from tracker._server.storage.document import RunKey
from tracker._server.storage.errors import BadRequest, BadStep, RunNotFound
from tracker._server.storage.stored import copied_fields, exact, key_of, new_run_fields
from tracker._wire.limits import MAX_HEARTBEAT_SECONDS, MAX_STEP
from tracker._wire.protocol import MODES

if TYPE_CHECKING:
    from tracker._server.storage.store import StartRequest

__all__ = ["LOWEST", "check_start", "fork", "missing", "rewind"]

LOWEST: Final = -(2**63)
"""The lowest step a read may name (steps are signed 64-bit integers)."""


def missing(key: RunKey, hint: str = "start it first (POST /api/v1/runs/start)") -> RunNotFound:
    """The error for a run that does not exist, with what to do."""
    return RunNotFound(f"run {key.run_id} does not exist in {key.entity}/{key.project}; {hint}")


def check_start(request: StartRequest) -> None:
    """Refuse a handshake whose arguments are malformed, before anything is read."""
    mode = request.mode
    if mode not in MODES:
        raise BadRequest("bad_request", f"mode={mode!r:.100} is not one of {', '.join(MODES)}")
    interval = request.heartbeat_interval
    if type(interval) not in (int, float) or not 0 < interval <= MAX_HEARTBEAT_SECONDS:
        raise BadRequest(
            "bad_request",
            f"heartbeat_interval={interval!r:.40} must be seconds, a number in "
            f"(0, {MAX_HEARTBEAT_SECONDS:.0f}]",
        )
    for name, value, wanted in (
        ("fork_from", request.fork_from, "fork"),
        ("rewind_to", request.rewind_to, "rewind"),
    ):
        if mode != wanted and value is not None:
            raise BadRequest("bad_request", f"{name} is only for mode {wanted!r}, not {mode!r}")
    if mode == "fork":
        if request.fork_from is None:
            raise BadRequest(
                "bad_request", 'mode "fork" needs fork_from: {"run_id": "PARENT", "step": N}'
            )
        _check_step(request.fork_from[1], "fork_from.step")
    if mode == "rewind":
        if request.rewind_to is None:
            raise BadRequest("bad_request", "mode 'rewind' needs rewind_to: a step")
        _check_step(request.rewind_to, "rewind_to")


def _check_step(step: object, what: str) -> None:
    if type(step) is not int or not 0 <= step <= MAX_STEP:
        raise BadRequest("bad_request", f"{what}={step!r:.40} must be an int >= 0")


async def fork(
    tx: Writer, key: RunKey, fork_from: tuple[str, int], now: float, interval: float
) -> int:
    """Create ``key`` as a copy of the parent's rows with step <= N and its config."""
    parent_id, step = fork_from
    parent_key = RunKey(key.entity, key.project, parent_id)
    parent = await tx.load_run(parent_key)
    if parent is None:
        raise missing(parent_key, "check fork_from's run id and project")
    if step > parent["last_step"]:
        raise BadStep(
            f"fork_from step {step} is beyond run {parent_id}'s last step "
            f"{parent['last_step']}; fork at a step it has"
        )
    pk = await tx.create_run(key, new_run_fields(now, interval, (parent_id, step)))
    straddling = [
        first
        for first, last in (await tx.chunk_spans(parent["pk"], step, step)).values()
        if last > step
    ]
    await tx.copy_history(parent["pk"], pk, step)
    if straddling:
        await tx.rebuild_series(pk, min(straddling), step)
    await tx.update_run(pk, {"config": parent["config"]})
    await _refold(tx, pk, parent["summary_state"], step)
    return pk


async def rewind(tx: Writer, stored: StoredRun, step: int, now: float) -> None:
    """Move the run's rows after ``step`` to an archived fork ``RUNID-rewind-<time>``."""
    key = key_of(stored)
    if step > stored["last_step"]:
        raise BadStep(
            f"rewind_to {step} is beyond run {key.run_id}'s last step {stored['last_step']}; "
            "rewind to a step it has"
        )
    if step < MAX_STEP and await tx.count_rows(stored["pk"], step + 1, MAX_STEP):
        archive = RunKey(key.entity, key.project, f"{key.run_id}-rewind-{int(now)}")
        number = 1
        while await tx.load_run(archive) is not None:
            number += 1
            archive = RunKey(key.entity, key.project, f"{key.run_id}-rewind-{int(now)}-{number}")
        fields = copied_fields(stored)
        fields.update({"updated_at": now, "parent_run_id": key.run_id, "parent_step": step})
        if stored["state"] == "running":
            fields["state"] = "crashed"
        archive_pk = await tx.create_run(archive, fields)
        spans = [
            (first, last)
            for first, last in (await tx.chunk_spans(stored["pk"], step, step)).values()
            if last > step
        ]
        await tx.move_history(stored["pk"], archive_pk, step)
        if spans:
            low, high = min(first for first, _ in spans), max(last for _, last in spans)
            await tx.rebuild_series(stored["pk"], low, high)
            await tx.rebuild_series(archive_pk, low, high)
        await _refold(tx, stored["pk"], stored["summary_state"], step)
    await tx.update_run(stored["pk"], {"last_step": step})


async def _refold(tx: Writer, pk: int, state_text: str, last_step: int) -> None:
    """Recompute a run's summary from its stored rows, keeping the `define_metric` rules of
    ``state_text`` (explicit sets are dropped: which step they belonged to is not stored)."""
    rules = decode_value(state_text)["rules"]
    summary = Summary.from_state({"last": {}, "explicit": {}, "stats": {}, "rules": rules})
    runtime = 0.0
    for row in await tx.read_rows(pk, LOWEST, MAX_STEP):
        summary.observe(decode_value(row[3]))
        runtime = row[2]
    await tx.update_run(
        pk,
        {
            "summary": exact(summary.as_dict(), "summary"),
            "summary_state": exact(summary.to_state(), "summary state"),
            "last_step": last_step,
            "runtime": runtime,
        },
    )

"""Handshakes on every backend: each start mode, forks and rewinds, and their refusals."""

from __future__ import annotations

import math

import pytest

from tracker._server.storage import RunKey, Store, parse_order
from tracker._server.storage.errors import BadRequest, BadStep, RunExists, RunNotFound

from .making import (
    KEY,
    LOG,
    LOG2,
    NOW,
    history_steps,
    put_bytes,
    records,
    rows,
    run_with_rows,
    start,
)

pytestmark = pytest.mark.anyio


async def test_new_run_starts_running_and_empty(store: Store) -> None:
    """mode new creates a running run with nothing stored and nothing acknowledged."""
    result = await start(store)
    assert (result.resumed, result.last_step, result.acked_seq) == (False, -1, -1)
    run = result.run
    assert (run["id"], run["entity"], run["project"], run["state"]) == (
        "abc12345",
        "local",
        "mnist",
        "running",
    )
    assert (run["config"], run["summary"], run["tags"], run["parent"]) == ({}, {}, [], None)
    assert run["created_at"] == run["heartbeat_at"] == NOW


async def test_new_replaces_an_existing_runs_data(store: Store) -> None:
    """mode new on an existing id deletes its history, config, summary, files and streams."""
    await run_with_rows(store, range(5))
    await put_bytes(store, KEY, "model.pt", b"weights", NOW)
    result = await start(store, "new", now=NOW + 1)
    assert (result.resumed, result.last_step, result.acked_seq) == (False, -1, -1)
    assert (result.run["config"], result.run["summary"], result.run["name"]) == ({}, {}, None)
    assert await history_steps(store) == []
    assert await store.list_files(KEY) == []


@pytest.mark.parametrize("mode", ["allow", "continue", "must"])
async def test_resume_modes_continue_an_existing_run(store: Store, mode: str) -> None:
    """allow, continue and must resume a run with its config, summary, last step and acks."""
    await run_with_rows(store, range(5))
    result = await start(store, mode)
    assert (result.resumed, result.last_step, result.acked_seq) == (True, 4, 6)
    assert result.run["config"] == {"lr": 0.1}
    assert result.run["summary"] == {"loss": 0.4}
    assert result.run["tags"] == ["a"]
    other_log = await start(store, mode, log_id=LOG2)
    assert other_log.acked_seq == -1


@pytest.mark.parametrize("mode", ["allow", "continue", "never"])
async def test_creating_modes_create_a_missing_run(store: Store, mode: str) -> None:
    """allow, continue and never create the run when it does not exist."""
    result = await start(store, mode)
    assert (result.resumed, result.last_step, result.run["state"]) == (False, -1, "running")


async def test_never_refuses_an_existing_run(store: Store) -> None:
    """mode never on an existing id is 409 run_exists."""
    await start(store)
    with pytest.raises(RunExists):
        await start(store, "never")


@pytest.mark.parametrize("mode", ["must", "rewind"])
async def test_must_and_rewind_refuse_a_missing_run(store: Store, mode: str) -> None:
    """mode must (and rewind) on an unknown id is RunNotFound."""
    with pytest.raises(RunNotFound):
        await start(store, mode, rewind_to=0 if mode == "rewind" else None)


async def test_continue_does_not_revive_a_finished_run(store: Store) -> None:
    """A `tracker sync` of a finished run (mode continue) leaves its state and exit code."""
    await start(store)
    await store.ingest(KEY, LOG, records(("exit", {"state": "finished", "exit_code": 0})), NOW)
    result = await start(store, "continue")
    assert (result.run["state"], result.run["exit_code"], result.resumed) == ("finished", 0, True)
    resumed = await start(store, "allow")
    assert (resumed.run["state"], resumed.run["exit_code"]) == ("running", None)


async def test_fork_copies_rows_up_to_the_step_and_the_config(store: Store) -> None:
    """A fork holds the parent's rows with step <= N, its config, a parent link, and a summary
    folded from those rows; the parent is unchanged."""
    await run_with_rows(store, range(10))
    child = RunKey("local", "mnist", "child")
    result = await start(store, "fork", key=child, fork_from=("abc12345", 4))
    assert (result.resumed, result.last_step) == (False, 4)
    assert result.run["parent"] == {"run_id": "abc12345", "step": 4}
    assert result.run["config"] == {"lr": 0.1}
    assert result.run["summary"] == {"loss": 0.4}
    assert await history_steps(store, child) == [0, 1, 2, 3, 4]
    assert await history_steps(store) == list(range(10))
    await store.ingest(child, LOG2, rows([5], child=True), NOW)
    assert (await store.get_run(child) or {})["summary"] == {"loss": 0.5, "child": True}


@pytest.mark.parametrize(
    ("fork_from", "error"),
    [
        (("missing", 0), RunNotFound),
        (("abc12345", 10), BadStep),
        (("abc12345", -1), BadRequest),
        (None, BadRequest),
    ],
)
async def test_fork_refuses_bad_parents_and_steps(
    store: Store, fork_from: tuple[str, int] | None, error: type[Exception]
) -> None:
    """A fork of a missing parent, beyond its last step, or without fork_from is refused."""
    await run_with_rows(store, range(10))
    child = RunKey("local", "mnist", "child")
    with pytest.raises(error):
        await start(store, "fork", key=child, fork_from=fork_from)
    assert await store.get_run(child) is None


async def test_fork_refuses_an_existing_run(store: Store) -> None:
    """A fork onto an id that exists is 409 run_exists."""
    await run_with_rows(store, range(3))
    with pytest.raises(RunExists):
        await start(store, "fork", fork_from=("abc12345", 1))


async def test_rewind_moves_later_rows_to_an_archived_fork(store: Store) -> None:
    """Rewinding to N keeps rows <= N and re-folds the summary; rows > N move to
    RUNID-rewind-<time>, a copy with config, metadata and a parent link at N."""
    await run_with_rows(store, range(10))
    await store.ingest(KEY, LOG, records(("exit", {"state": "finished"}), seq=12), NOW)
    result = await start(store, "rewind", rewind_to=6, now=NOW + 5)
    assert (result.resumed, result.last_step, result.run["state"]) == (True, 6, "running")
    assert result.run["summary"] == {"loss": 0.6}
    assert await history_steps(store) == list(range(7))
    archive = RunKey("local", "mnist", f"abc12345-rewind-{int(NOW + 5)}")
    stored = await store.get_run(archive)
    assert stored is not None
    assert await history_steps(store, archive) == [7, 8, 9]
    assert stored["parent"] == {"run_id": "abc12345", "step": 6}
    assert (stored["config"], stored["name"], stored["state"]) == ({"lr": 0.1}, "first", "finished")
    assert stored["summary"] == {"loss": 0.9}
    again = await start(store, "rewind", rewind_to=2, now=NOW + 5)
    assert again.last_step == 2
    assert await store.get_run(RunKey("local", "mnist", f"{archive.run_id}-2")) is not None


async def test_rewind_to_the_last_step_archives_nothing(store: Store) -> None:
    """Rewinding to the last step moves no rows and creates no archive."""
    await run_with_rows(store, range(3))
    result = await start(store, "rewind", rewind_to=2)
    assert result.last_step == 2
    _, total = await store.list_runs("local", "mnist", {}, parse_order("created_at"), 10, 0)
    assert total == 1


@pytest.mark.parametrize(
    ("rewind_to", "error"), [(3, BadStep), (None, BadRequest), (-1, BadRequest)]
)
async def test_rewind_refuses_bad_steps(
    store: Store, rewind_to: int | None, error: type[Exception]
) -> None:
    """Rewinding beyond the last step, below 0 or to no step is refused; nothing changes."""
    await run_with_rows(store, range(3))
    with pytest.raises(error):
        await start(store, "rewind", rewind_to=rewind_to)
    assert await history_steps(store) == [0, 1, 2]


@pytest.mark.parametrize(
    ("mode", "interval", "words"),
    [
        ("resume", 10.0, "mode"),
        ("new", 0.0, "heartbeat_interval"),
        ("new", math.nan, "heartbeat_interval"),
        ("new", 86_401.0, "heartbeat_interval"),
        ("new", True, "heartbeat_interval"),
    ],
)
async def test_start_refuses_bad_modes_and_intervals(
    store: Store, mode: str, interval: float, words: str
) -> None:
    """An unknown mode, or a heartbeat interval that is not seconds in (0, 86400], is
    BadRequest bad_request naming it; nothing is created."""
    with pytest.raises(BadRequest, match=words) as caught:
        await start(store, mode, interval=interval)
    assert caught.value.code == "bad_request"
    assert await store.get_run(KEY) is None


@pytest.mark.parametrize(
    ("mode", "fork_from", "rewind_to", "words"),
    [
        ("new", ("abc12345", 1), None, "fork_from"),
        ("allow", None, 2, "rewind_to"),
        ("rewind", None, None, "rewind_to"),
        ("fork", None, None, "fork_from"),
    ],
)
async def test_fork_from_and_rewind_to_belong_to_their_modes(
    store: Store, mode: str, fork_from: tuple[str, int] | None, rewind_to: int | None, words: str
) -> None:
    """fork_from is for mode fork only and needed there; rewind_to likewise for rewind."""
    await run_with_rows(store, range(3))
    with pytest.raises(BadRequest, match=words):
        await start(store, mode, fork_from=fork_from, rewind_to=rewind_to)
    assert await history_steps(store) == [0, 1, 2]

"""Tests for the SQLite storage backend: handshake modes, exactly-once ingest, the record
fold, crash sweeping, run listing, files, API keys, and reopening, on real database files."""

from __future__ import annotations

import hashlib
import math
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

import anyio
import pytest

from tracker._init import init
from tracker._reader import read_run
from tracker._records.codec import encode_record
from tracker._records.kinds import decode_record
from tracker._records.summary import make_rule
from tracker._rundir import LOG_NAME
from tracker._runlog import read_records
from tracker._server._sqlite import SQLiteStorage, open_sqlite
from tracker._server._storage import RunKey, StartRequest, StartResult, Storage, StorageError

pytestmark = pytest.mark.anyio  # on asyncio (conftest): the storage uses its executors

KEY = RunKey("local", "mnist", "abc12345")
LOG = "6f1c0b1e9d3a4c7e8b2f5a0d4e6c8b1a"
LOG2 = "0" * 32
NOW = 1_800_000_000.0


@pytest.fixture
async def storage(tmp_path: Path) -> AsyncIterator[SQLiteStorage]:
    """A storage on a fresh database file, closed after the test."""
    store = await open_sqlite(str(tmp_path / "db" / "tracker.db"))
    yield store
    await store.close()


def records(*items: tuple[Any, ...], seq: int = 0) -> list[list[Any]]:
    """Records ``(kind, *head, payload)`` as a client writes them and the server decodes them."""
    out = []
    for offset, (kind, *fields) in enumerate(items):
        *head, payload = fields
        line = encode_record((seq + offset, kind, *head), payload, kind)
        out.append(decode_record(line))
    return out


def rows(steps: Iterable[int], seq: int = 0, **extra: Any) -> list[list[Any]]:
    """Row records with ``{"loss": step / 10, **extra}`` at 1 s per step."""
    return records(
        *(("row", step, 1000.0 + step, {"loss": step / 10, **extra}) for step in steps), seq=seq
    )


async def start(
    storage: Storage,
    mode: str = "new",
    key: RunKey = KEY,
    log_id: str = LOG,
    fork_from: tuple[str, int] | None = None,
    rewind_to: int | None = None,
    now: float = NOW,
    interval: float = 10.0,
) -> StartResult:
    """Handshake for ``key``."""
    return await storage.start_run(
        StartRequest(key, log_id, mode, fork_from, rewind_to, interval, now)
    )


async def run_with_rows(storage: Storage, steps: range, key: RunKey = KEY) -> None:
    """A new run holding a run record, a config and rows at ``steps``."""
    await start(storage, key=key)
    opening = records(
        ("run", {"name": "first", "start_time": 1000.0, "tags": ["a"]}), ("config", {"lr": 0.1})
    )
    await storage.ingest(key, LOG, opening + rows(steps, seq=2), NOW)


async def history_steps(storage: Storage, key: RunKey = KEY) -> list[int]:
    """The steps of the run's stored rows."""
    return [row["_step"] for row in await storage.history(key, None, None, None, None)]


def same(a: Any, b: Any) -> bool:
    """Equality where NaN equals NaN and types must match (1 is not 1.0, True is not 1)."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


# -- handshake -----------------------------------------------------------------------------


async def test_new_run_starts_running_and_empty(storage: SQLiteStorage) -> None:
    """mode new creates a running run with nothing stored and nothing acknowledged."""
    result = await start(storage)
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


async def test_new_replaces_an_existing_runs_data(storage: SQLiteStorage) -> None:
    """mode new on an existing id deletes its history, config, summary, files and streams."""
    await run_with_rows(storage, range(5))
    await storage.put_file(KEY, "model.pt", b"weights", NOW)
    result = await start(storage, "new", now=NOW + 1)
    assert (result.resumed, result.last_step, result.acked_seq) == (False, -1, -1)
    assert (result.run["config"], result.run["summary"], result.run["name"]) == ({}, {}, None)
    assert await history_steps(storage) == []
    assert await storage.list_files(KEY) == []


@pytest.mark.parametrize("mode", ["allow", "continue", "must"])
async def test_resume_modes_continue_an_existing_run(storage: SQLiteStorage, mode: str) -> None:
    """allow, continue and must resume a run with its config, summary, last step and acks."""
    await run_with_rows(storage, range(5))
    result = await start(storage, mode)
    assert (result.resumed, result.last_step, result.acked_seq) == (True, 4, 6)
    assert result.run["config"] == {"lr": 0.1}
    assert result.run["summary"] == {"loss": 0.4}
    assert result.run["tags"] == ["a"]
    other_log = await start(storage, mode, log_id=LOG2)
    assert other_log.acked_seq == -1


@pytest.mark.parametrize("mode", ["allow", "continue", "never"])
async def test_creating_modes_create_a_missing_run(storage: SQLiteStorage, mode: str) -> None:
    """allow, continue and never create the run when it does not exist."""
    result = await start(storage, mode)
    assert (result.resumed, result.last_step, result.run["state"]) == (False, -1, "running")


async def test_never_refuses_an_existing_run(storage: SQLiteStorage) -> None:
    """mode never on an existing id is 409 run_exists."""
    await start(storage)
    with pytest.raises(StorageError) as caught:
        await start(storage, "never")
    assert (caught.value.status, caught.value.code) == (409, "run_exists")


@pytest.mark.parametrize("mode", ["must", "rewind"])
async def test_must_and_rewind_refuse_a_missing_run(storage: SQLiteStorage, mode: str) -> None:
    """mode must (and rewind) on an unknown id is 404 run_not_found."""
    with pytest.raises(StorageError) as caught:
        await start(storage, mode, rewind_to=0)
    assert (caught.value.status, caught.value.code) == (404, "run_not_found")


async def test_continue_does_not_revive_a_finished_run(storage: SQLiteStorage) -> None:
    """A `tracker sync` of a finished run (mode continue) leaves its state and exit code."""
    await start(storage)
    await storage.ingest(KEY, LOG, records(("exit", {"state": "finished", "exit_code": 0})), NOW)
    result = await start(storage, "continue")
    assert (result.run["state"], result.run["exit_code"], result.resumed) == ("finished", 0, True)
    resumed = await start(storage, "allow")
    assert (resumed.run["state"], resumed.run["exit_code"]) == ("running", None)


async def test_fork_copies_rows_up_to_the_step_and_the_config(storage: SQLiteStorage) -> None:
    """A fork holds the parent's rows with step <= N, its config, a parent link, and a summary
    folded from those rows; the parent is unchanged."""
    await run_with_rows(storage, range(10))
    child = RunKey("local", "mnist", "child")
    result = await start(storage, "fork", key=child, fork_from=("abc12345", 4))
    assert (result.resumed, result.last_step) == (False, 4)
    assert result.run["parent"] == {"run_id": "abc12345", "step": 4}
    assert result.run["config"] == {"lr": 0.1}
    assert result.run["summary"] == {"loss": 0.4}
    assert await history_steps(storage, child) == [0, 1, 2, 3, 4]
    assert await history_steps(storage) == list(range(10))
    await storage.ingest(child, LOG2, rows([5], child=True), NOW)
    assert (await storage.get_run(child) or {})["summary"] == {"loss": 0.5, "child": True}


@pytest.mark.parametrize(
    ("fork_from", "status", "code"),
    [
        (("missing", 0), 404, "run_not_found"),
        (("abc12345", 10), 409, "bad_step"),
        (("abc12345", -1), 400, "bad_step"),
        (None, 400, "bad_request"),
    ],
)
async def test_fork_refuses_bad_parents_and_steps(
    storage: SQLiteStorage, fork_from: tuple[str, int] | None, status: int, code: str
) -> None:
    """A fork of a missing parent, beyond its last step, or without fork_from is refused."""
    await run_with_rows(storage, range(10))
    child = RunKey("local", "mnist", "child")
    with pytest.raises(StorageError) as caught:
        await start(storage, "fork", key=child, fork_from=fork_from)
    assert (caught.value.status, caught.value.code) == (status, code)
    assert await storage.get_run(child) is None


async def test_fork_refuses_an_existing_run(storage: SQLiteStorage) -> None:
    """A fork onto an id that exists is 409 run_exists."""
    await run_with_rows(storage, range(3))
    with pytest.raises(StorageError) as caught:
        await start(storage, "fork", fork_from=("abc12345", 1))
    assert (caught.value.status, caught.value.code) == (409, "run_exists")


async def test_rewind_moves_later_rows_to_an_archived_fork(storage: SQLiteStorage) -> None:
    """Rewinding to N keeps rows <= N and re-folds the summary; rows > N move to
    RUNID-rewind-<time>, a copy with config, metadata and a parent link at N."""
    await run_with_rows(storage, range(10))
    await storage.ingest(KEY, LOG, records(("exit", {"state": "finished"}), seq=12), NOW)
    result = await start(storage, "rewind", rewind_to=6, now=NOW + 5)
    assert (result.resumed, result.last_step, result.run["state"]) == (True, 6, "running")
    assert result.run["summary"] == {"loss": 0.6}
    assert await history_steps(storage) == list(range(7))
    archive = RunKey("local", "mnist", f"abc12345-rewind-{int(NOW + 5)}")
    stored = await storage.get_run(archive)
    assert stored is not None
    assert await history_steps(storage, archive) == [7, 8, 9]
    assert stored["parent"] == {"run_id": "abc12345", "step": 6}
    assert (stored["config"], stored["name"], stored["state"]) == ({"lr": 0.1}, "first", "finished")
    assert stored["summary"] == {"loss": 0.9}
    again = await start(storage, "rewind", rewind_to=2, now=NOW + 5)
    assert again.last_step == 2
    assert await storage.get_run(RunKey("local", "mnist", f"{archive.run_id}-2")) is not None


async def test_rewind_to_the_last_step_archives_nothing(storage: SQLiteStorage) -> None:
    """Rewinding to the last step moves no rows and creates no archive."""
    await run_with_rows(storage, range(3))
    result = await start(storage, "rewind", rewind_to=2)
    assert result.last_step == 2
    _, total = await storage.list_runs("local", "mnist", {}, "created_at", 10, 0)
    assert total == 1


@pytest.mark.parametrize(
    ("rewind_to", "status", "code"),
    [(3, 409, "bad_step"), (None, 400, "bad_request"), (-1, 400, "bad_step")],
)
async def test_rewind_refuses_bad_steps(
    storage: SQLiteStorage, rewind_to: int | None, status: int, code: str
) -> None:
    """Rewinding beyond the last step, below 0 or to no step is refused; nothing changes."""
    await run_with_rows(storage, range(3))
    with pytest.raises(StorageError) as caught:
        await start(storage, "rewind", rewind_to=rewind_to)
    assert (caught.value.status, caught.value.code) == (status, code)
    assert await history_steps(storage) == [0, 1, 2]


@pytest.mark.parametrize(
    ("mode", "interval", "code"),
    [("resume", 10.0, "bad_mode"), ("new", 0.0, "bad_request"), ("new", math.nan, "bad_request")],
)
async def test_start_refuses_bad_modes_and_intervals(
    storage: SQLiteStorage, mode: str, interval: float, code: str
) -> None:
    """An unknown mode or a heartbeat interval that is not a positive number is 400."""
    with pytest.raises(StorageError) as caught:
        await start(storage, mode, interval=interval)
    assert (caught.value.status, caught.value.code) == (400, code)


# -- ingest --------------------------------------------------------------------------------


async def test_resending_a_batch_stores_nothing_twice(storage: SQLiteStorage) -> None:
    """A batch sent again is skipped: same acked seq, same rows, same summary."""
    await start(storage)
    batch = records(("summary", {"count": 1})) + rows(range(3), seq=1)
    assert await storage.ingest(KEY, LOG, batch, NOW) == 3
    before = await storage.get_run(KEY)
    assert await storage.ingest(KEY, LOG, batch, NOW) == 3
    assert await history_steps(storage) == [0, 1, 2]
    after = await storage.get_run(KEY)
    assert before is not None
    assert after is not None
    assert after["summary"] == before["summary"] == {"count": 1, "loss": 0.2}


async def test_an_overlapping_batch_applies_only_new_records(storage: SQLiteStorage) -> None:
    """Records at or below the acked seq are skipped, the rest applied once."""
    await start(storage)
    await storage.ingest(KEY, LOG, rows(range(5)), NOW)
    overlap = records(*(("row", step, 0.0, {"again": step}) for step in range(3, 8)), seq=3)
    assert await storage.ingest(KEY, LOG, overlap, NOW) == 7
    history = await storage.history(KEY, None, None, None, None)
    assert [row.get("again") for row in history] == [None, None, None, None, None, 5, 6, 7]


async def test_a_seq_gap_is_refused_and_changes_nothing(storage: SQLiteStorage) -> None:
    """A batch starting beyond acked_seq + 1 is 409 seq_gap with the acked seq; nothing stored."""
    await start(storage)
    await storage.ingest(KEY, LOG, rows(range(2)), NOW)
    with pytest.raises(StorageError) as caught:
        await storage.ingest(KEY, LOG, rows(range(5, 7), seq=5), NOW + 1)
    assert (caught.value.status, caught.value.code) == (409, "seq_gap")
    assert caught.value.extra == {"acked_seq": 1}
    assert await history_steps(storage) == [0, 1]
    assert (await start(storage, "continue")).acked_seq == 1


async def test_two_log_ids_of_one_run_are_acked_separately(storage: SQLiteStorage) -> None:
    """Each log id has its own stored seq; both logs' rows land in the one run."""
    await start(storage)
    assert await storage.ingest(KEY, LOG, rows(range(3)), NOW) == 2
    assert await storage.ingest(KEY, LOG2, rows(range(3, 5)), NOW) == 1
    assert (await start(storage, "continue", log_id=LOG)).acked_seq == 2
    assert (await start(storage, "continue", log_id=LOG2)).acked_seq == 1
    assert await history_steps(storage) == [0, 1, 2, 3, 4]


async def test_ingest_into_an_unknown_run_is_404(storage: SQLiteStorage) -> None:
    """Records for a run without a handshake are 404 run_not_found."""
    with pytest.raises(StorageError) as caught:
        await storage.ingest(KEY, LOG, rows(range(1)), NOW)
    assert (caught.value.status, caught.value.code) == (404, "run_not_found")


async def test_special_values_round_trip_exactly(storage: SQLiteStorage) -> None:
    """NaN, ±inf, big ints, unicode and nesting come back as logged, in rows, config and summary."""
    await start(storage)
    data = {
        "nan": math.nan,
        "inf": math.inf,
        "-inf": -math.inf,
        "big": 2**70,
        "neg": -(2**65),
        "u64": 2**64 - 1,
        "text": "héllo ✓",
        "nested": {"a": [1, math.nan, {"b": 2**80}]},
        "none": None,
        "flag": True,
    }
    batch = records(("config", {"eps": math.inf, "n": 2**66}), ("row", 0, 1000.0, data))
    await storage.ingest(KEY, LOG, batch, NOW)
    (row,) = await storage.history(KEY, None, None, None, None)
    assert same({k: row[k] for k in data}, data)
    run = await storage.get_run(KEY)
    assert run is not None
    assert same(run["summary"], data)
    assert same(run["config"], {"eps": math.inf, "n": 2**66})


async def test_config_records_merge_into_the_config(storage: SQLiteStorage) -> None:
    """Config records update keys shallowly, as the run-log reader folds them."""
    await start(storage)
    batch = records(
        ("config", {"lr": 0.1, "opt": {"a": 1}}), ("config", {"opt": {"b": 2}, "bs": 8})
    )
    await storage.ingest(KEY, LOG, batch, NOW)
    result = await start(storage, "allow")
    assert result.run["config"] == {"lr": 0.1, "opt": {"b": 2}, "bs": 8}


async def test_run_records_set_metadata_and_session_runtime(storage: SQLiteStorage) -> None:
    """Run records set name, tags, group, job type, notes and metadata; a start_time opens a
    session whose rows get _runtime = runtime_offset + timestamp - start_time."""
    await start(storage)
    batch = records(
        ("run", {"name": "n1", "tags": ["x"], "group": "g", "job_type": "train", "notes": "hi"}),
        ("run", {"start_time": 1000.0, "created_at": 999.0, "host": "box"}),
        ("row", 0, 1002.5, {"a": 1}),
        ("run", {"start_time": 2000.0, "runtime_offset": 10.0}),
        ("row", 1, 2001.0, {"a": 2}),
    )
    await storage.ingest(KEY, LOG, batch, NOW)
    history = await storage.history(KEY, None, None, None, None)
    assert [row["_runtime"] for row in history] == [2.5, 11.0]
    assert [row["_timestamp"] for row in history] == [1002.5, 2001.0]
    run = await storage.get_run(KEY)
    assert run is not None
    assert (run["name"], run["tags"], run["group"], run["job_type"], run["notes"]) == (
        "n1",
        ["x"],
        "g",
        "train",
        "hi",
    )
    assert run["created_at"] == 999.0
    assert run["metadata"] == {"start_time": 2000.0, "runtime_offset": 10.0, "host": "box"}
    assert run["runtime"] == 11.0


async def test_summary_equals_the_clients_fold(storage: SQLiteStorage, tmp_path: Path) -> None:
    """The records of a real offline run, ingested, give the summary the client showed and
    read_run reads, with define_metric rules, explicit sets, deletes and special values."""
    run = init(dir=str(tmp_path / "runs"), mode="offline", project="p", settings={"silent": True})
    run.define_metric("loss", summary="min,max,mean")
    run.define_metric("val/*", summary="max")
    for step in range(20):
        run.log({"loss": 1 / (step + 1), "val/acc": (step % 7) / 7, "x": math.nan, "n": 2**70})
        if step == 5:
            run.summary["best"] = 0.5
            del run.summary["x"]
    run.summary.update({"loss": "explicit"})
    run.log({"loss": 0.01})
    run.finish()
    expected = run.summary.as_dict()
    log = list(read_records(Path(run.dir).parent / LOG_NAME))
    await start(storage)
    for begin in range(0, len(log), 7):  # in several batches
        await storage.ingest(KEY, LOG, log[begin : begin + 7], NOW)
    stored = await storage.get_run(KEY)
    assert stored is not None
    assert same(stored["summary"], expected)
    assert same(stored["summary"], read_run(run.dir).summary)
    local = read_run(run.dir)
    assert (stored["state"], stored["exit_code"], stored["end_time"]) == (
        local.state,
        local.exit_code,
        local.end_time,
    )
    assert stored["last_step"] == local.last_step == 20
    stored_rows = await storage.history(KEY, None, None, None, None)
    assert same(stored_rows, local.history())


async def test_define_metric_records_shape_the_summary(storage: SQLiteStorage) -> None:
    """metric records with min/max make the summary hold the extremes of the rows."""
    await start(storage)
    rule = make_rule("loss", summary="min,max").to_record()
    await storage.ingest(KEY, LOG, records(("metric", rule)) + rows([0, 1, 2], seq=1), NOW)
    await storage.ingest(KEY, LOG, rows([3], seq=4), NOW)
    run = await storage.get_run(KEY)
    assert run is not None
    assert run["summary"] == {"loss": {"min": 0.0, "max": 0.3}}


async def test_exit_records_set_state_exit_code_and_end_time(storage: SQLiteStorage) -> None:
    """An exit record ends the session; a later run record with start_time starts another."""
    await start(storage)
    end = {"state": "failed", "exit_code": 3, "end_time": 1234.5, "runtime": 9.0}
    await storage.ingest(KEY, LOG, records(("exit", end)), NOW)
    run = await storage.get_run(KEY)
    assert run is not None
    assert (run["state"], run["exit_code"], run["end_time"], run["runtime"]) == (
        "failed",
        3,
        1234.5,
        9.0,
    )
    await storage.ingest(KEY, LOG, records(("run", {"start_time": 2000.0}), seq=1), NOW)
    run = await storage.get_run(KEY)
    assert run is not None
    assert (run["state"], run["exit_code"], run["end_time"]) == ("running", None, None)


async def test_unknown_and_file_records_are_skipped_but_acked(storage: SQLiteStorage) -> None:
    """Records of unknown kinds (newer clients) and file records change nothing and count."""
    await start(storage)
    batch = [*records(("future", {"x": 1}), ("file", {"name": "a.txt", "size": 1}))]
    batch.append([2, "future2", 1, 2, {"y": 3}])
    assert await storage.ingest(KEY, LOG, batch, NOW) == 2
    run = await storage.get_run(KEY)
    assert run is not None
    assert (run["summary"], run["metadata"], run["last_step"]) == ({}, {}, -1)


async def assert_refused_without_change(storage: Storage, batch: list[Any]) -> None:
    """Ingesting ``batch`` after rows 0 and 1 is 400 bad_batch and changes nothing."""
    await start(storage)
    await storage.ingest(KEY, LOG, rows([0, 1]), NOW)
    before = await storage.get_run(KEY)
    with pytest.raises(StorageError) as caught:
        await storage.ingest(KEY, LOG, batch, NOW + 1)
    assert (caught.value.status, caught.value.code) == (400, "bad_batch")
    assert await storage.get_run(KEY) == before
    assert await history_steps(storage) == [0, 1]
    assert (await start(storage, "continue")).acked_seq == 1


@pytest.mark.parametrize(
    "bad",
    [
        ["row", -1, 1.0, {}],
        ["row", 2**63, 1.0, {}],
        ["row", True, 1.0, {}],
        ["row", 0, math.nan, {}],
        ["row", 0, 10**400, {}],
        ["row", 0, "now", {}],
        ["row", 0, 1.0, [1]],
        ["row", 0, 1.0],
        ["config", [1]],
        ["summary", "x"],
        ["summary_delete", [1]],
        ["metric", {"name": "x"}],
        ["run", {"tags": "x"}],
        ["run", {"name": 1}],
        ["run", {"start_time": "soon"}],
        ["exit", {"state": "done"}],
        ["exit", {"state": "failed", "exit_code": 2**64}],
        [7, {}],
    ],
)
async def test_a_malformed_record_refuses_the_whole_batch(
    storage: SQLiteStorage, bad: list[Any]
) -> None:
    """A malformed record after good ones is 400 bad_batch and nothing of the batch is stored."""
    good = records(("config", {"z": 1}), ("row", 2, 1.0, {"loss": 9.0}), seq=2)
    await assert_refused_without_change(storage, [*good, [4, *bad]])


@pytest.mark.parametrize(
    "batch",
    [
        [[2, "row", 5, 1.0, {"a": 1}], [4, "row", 6, 1.0, {}]],
        [[2, "row", 5, 1.0, {"a": 1}], ["3", "row", 6, 1.0, {}]],
        [[2, "row", 5, 1.0, {"a": 1}], [3]],
        [(2, "row", 5, 1.0, {})],
    ],
)
async def test_a_batch_that_is_not_a_run_log_is_refused(
    storage: SQLiteStorage, batch: list[Any]
) -> None:
    """Records that are not [seq, kind, ...] lists numbered by one are 400 bad_batch."""
    await assert_refused_without_change(storage, batch)


async def test_records_revive_a_run_swept_as_crashed(storage: SQLiteStorage) -> None:
    """Records from a run marked crashed show its client is alive: it is running again."""
    await start(storage)
    assert await storage.sweep_crashed(NOW + 31) == 1
    await storage.ingest(KEY, LOG, rows([0]), NOW + 32)
    run = await storage.get_run(KEY)
    assert run is not None
    assert run["state"] == "running"


# -- heartbeats and crashes ----------------------------------------------------------------


async def test_sweep_marks_runs_without_heartbeats_crashed(storage: SQLiteStorage) -> None:
    """A running run silent for 3 heartbeat intervals (at least 3 s) becomes crashed; others
    stay as they are."""
    fast = RunKey("local", "mnist", "fast")
    done = RunKey("local", "mnist", "done")
    await start(storage, interval=10.0)
    await start(storage, key=fast, interval=0.1)
    await start(storage, key=done, interval=0.1)
    await storage.ingest(done, LOG, records(("exit", {"state": "finished"})), NOW)
    assert await storage.sweep_crashed(NOW + 2.9) == 0
    assert await storage.sweep_crashed(NOW + 3.1) == 1
    assert await storage.sweep_crashed(NOW + 29) == 0
    await storage.heartbeat(KEY, NOW + 25)
    assert await storage.sweep_crashed(NOW + 54) == 0
    assert await storage.sweep_crashed(NOW + 56) == 1
    states = {
        run["id"]: run["state"]
        for run in (await storage.list_runs("local", "mnist", {}, "name", 10, 0))[0]
    }
    assert states == {"abc12345": "crashed", "fast": "crashed", "done": "finished"}


async def test_a_heartbeat_revives_a_crashed_run(storage: SQLiteStorage) -> None:
    """A heartbeat from a run marked crashed makes it running again."""
    await start(storage)
    await storage.sweep_crashed(NOW + 100)
    await storage.heartbeat(KEY, NOW + 101)
    run = await storage.get_run(KEY)
    assert run is not None
    assert (run["state"], run["heartbeat_at"]) == ("running", NOW + 101)


async def test_a_heartbeat_for_an_unknown_run_is_404(storage: SQLiteStorage) -> None:
    """Heartbeats need a handshake first."""
    with pytest.raises(StorageError) as caught:
        await storage.heartbeat(KEY, NOW)
    assert caught.value.status == 404


# -- listing -------------------------------------------------------------------------------


async def make_runs(storage: Storage) -> None:
    """Five runs in local/proj with distinct metadata, config and summary, created in order."""
    specs: list[tuple[str, dict[str, Any], dict[str, Any], dict[str, Any]]] = [
        ("r1", {"name": "alpha", "group": "g1", "tags": ["base"]}, {"lr": 0.1}, {"acc": 0.5}),
        ("r2", {"name": "Beta", "group": "g1", "job_type": "eval"}, {"lr": 0.2}, {"acc": 0.9}),
        ("r3", {"name": "gamma", "tags": ["base", "x"]}, {"lr": 0.1, "opt": {"m": 1}}, {"acc": 1}),
        ("r4", {"name": "delta", "group": "g2"}, {"lr": True}, {"acc": True}),
        ("zz-alp", {"name": "omega"}, {}, {}),
    ]
    for index, (run_id, meta, config, summary) in enumerate(specs):
        key = RunKey("local", "proj", run_id)
        await start(storage, key=key, now=NOW + index)
        batch = records(("run", meta), ("config", config), ("summary", summary))
        await storage.ingest(key, LOG, batch, NOW + index)
    await storage.ingest(
        RunKey("local", "proj", "r2"), LOG, records(("exit", {"state": "finished"}), seq=3), NOW
    )
    await start(storage, key=RunKey("local", "other", "o1"))
    await start(storage, key=RunKey("team", "proj", "t1"))


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({}, ["r1", "r2", "r3", "r4", "zz-alp"]),
        ({"state": "finished"}, ["r2"]),
        ({"group": "g1"}, ["r1", "r2"]),
        ({"group": None}, ["r3", "zz-alp"]),
        ({"job_type": "eval"}, ["r2"]),
        ({"name": "gamma"}, ["r3"]),
        ({"tags": "base"}, ["r1", "r3"]),
        ({"tags": "x", "name": "gamma"}, ["r3"]),
        ({"search": "ALP"}, ["r1", "zz-alp"]),
        ({"search": "beta"}, ["r2"]),
        ({"config.lr": 0.1}, ["r1", "r3"]),
        ({"config.lr": 1}, []),
        ({"config.lr": True}, ["r4"]),
        ({"config.opt.m": 1}, ["r3"]),
        ({"summary.acc": 1}, ["r3"]),
        ({"summary.acc": 0.9, "group": "g1"}, ["r2"]),
        ({"config.missing": None}, []),
    ],
)
async def test_list_runs_filters(
    storage: SQLiteStorage, filters: dict[str, Any], expected: list[str]
) -> None:
    """Each filter keeps the runs it names, all must hold, and total counts the matches."""
    await make_runs(storage)
    runs, total = await storage.list_runs("local", "proj", filters, "created_at", 100, 0)
    assert [run["id"] for run in runs] == expected
    assert total == len(expected)


@pytest.mark.parametrize(
    ("order", "expected"),
    [
        ("created_at", ["r1", "r2", "r3", "r4", "zz-alp"]),
        ("-created_at", ["zz-alp", "r4", "r3", "r2", "r1"]),
        ("name", ["r1", "r2", "r4", "r3", "zz-alp"]),
        ("-name", ["zz-alp", "r3", "r4", "r2", "r1"]),
        ("updated_at", ["r1", "r3", "r4", "zz-alp", "r2"]),
    ],
)
async def test_list_runs_orders(storage: SQLiteStorage, order: str, expected: list[str]) -> None:
    """Runs come back by creation time, name (case ignored) or update time, either way."""
    await make_runs(storage)
    await storage.update_run(RunKey("local", "proj", "r2"), {"notes": "n"}, NOW + 100)
    runs, _ = await storage.list_runs("local", "proj", {}, order, 100, 0)
    assert [run["id"] for run in runs] == expected


@pytest.mark.parametrize("filters", [{}, {"config.lr": 0.1, "tags": "base"}, {"summary.acc": 1}])
async def test_list_runs_pages_with_a_total(
    storage: SQLiteStorage, filters: dict[str, Any]
) -> None:
    """limit and offset cut pages out of the ordered matches; total counts them all."""
    await make_runs(storage)
    everything, total = await storage.list_runs("local", "proj", filters, "-created_at", 100, 0)
    pages = [
        await storage.list_runs("local", "proj", filters, "-created_at", 2, offset)
        for offset in range(0, 6, 2)
    ]
    assert [run["id"] for page, _ in pages for run in page] == [run["id"] for run in everything]
    assert {count for _, count in pages} == {total}


@pytest.mark.parametrize(
    ("filters", "order", "limit", "offset", "code"),
    [
        ({"colour": "red"}, "name", 10, 0, "bad_filter"),
        ({"config.": 1}, "name", 10, 0, "bad_filter"),
        ({"state": 1}, "name", 10, 0, "bad_filter"),
        ({"tags": ["a"]}, "name", 10, 0, "bad_filter"),
        ({}, "size", 10, 0, "bad_order"),
        ({}, "name", -1, 0, "bad_request"),
        ({}, "name", 10, -5, "bad_request"),
    ],
)
async def test_list_runs_refuses_bad_queries(
    storage: SQLiteStorage, filters: dict[str, Any], order: str, limit: int, offset: int, code: str
) -> None:
    """Unknown filters, non-text values, unknown orders and negative paging are 400."""
    with pytest.raises(StorageError) as caught:
        await storage.list_runs("local", "proj", filters, order, limit, offset)
    assert (caught.value.status, caught.value.code) == (400, code)


async def test_list_projects_counts_runs_per_project(storage: SQLiteStorage) -> None:
    """Projects of an entity come with their run count and latest update."""
    await make_runs(storage)
    projects = await storage.list_projects("local")
    assert [(p["name"], p["runs"]) for p in projects] == [("other", 1), ("proj", 5)]
    assert await storage.list_projects("nobody") == []


async def test_update_run_edits_tags_and_notes(storage: SQLiteStorage) -> None:
    """The dashboard may change tags and notes; other fields and bad values are 400."""
    await start(storage)
    await storage.update_run(KEY, {"tags": ["best"], "notes": "keep"}, NOW + 1)
    run = await storage.get_run(KEY)
    assert run is not None
    assert (run["tags"], run["notes"], run["updated_at"]) == (["best"], "keep", NOW + 1)
    for changes in ({"name": "x"}, {"tags": "best"}, {"notes": 3}):
        with pytest.raises(StorageError) as caught:
            await storage.update_run(KEY, changes, NOW)
        assert caught.value.status == 400
    with pytest.raises(StorageError) as missing:
        await storage.update_run(RunKey("local", "mnist", "nope"), {"notes": None}, NOW)
    assert missing.value.status == 404


# -- files and keys ------------------------------------------------------------------------


async def test_files_are_stored_listed_and_replaced(storage: SQLiteStorage) -> None:
    """put_file stores bytes with size and sha256; the same name replaces; get_file reads."""
    await start(storage)
    await storage.put_file(KEY, "b/model.pt", b"\x00\x01weights", NOW)
    await storage.put_file(KEY, "a.txt", b"one", NOW)
    await storage.put_file(KEY, "a.txt", b"two!", NOW + 1)
    files = await storage.list_files(KEY)
    assert [(f["name"], f["size"], f["updated_at"]) for f in files] == [
        ("a.txt", 4, NOW + 1),
        ("b/model.pt", 9, NOW),
    ]
    assert files[0]["sha256"] == hashlib.sha256(b"two!").hexdigest()
    assert await storage.get_file(KEY, "a.txt") == b"two!"
    assert await storage.get_file(KEY, "missing") is None
    with pytest.raises(StorageError) as caught:
        await storage.put_file(RunKey("local", "mnist", "nope"), "a", b"", NOW)
    assert caught.value.status == 404


async def test_api_keys_are_stored_hashed(storage: SQLiteStorage, tmp_path: Path) -> None:
    """Keys map to entities, are stored only as SHA-256, and rebinding a key replaces it."""
    assert not await storage.has_api_keys()
    await storage.add_api_key("team", "secret-key")
    await storage.add_api_key("local", "other")
    assert await storage.has_api_keys()
    assert await storage.entity_for_key("secret-key") == "team"
    assert await storage.entity_for_key("nope") is None
    await storage.add_api_key("team2", "secret-key")
    assert await storage.entity_for_key("secret-key") == "team2"
    with sqlite3.connect(storage.path) as conn:
        hashes = [row[0] for row in conn.execute("SELECT hash FROM api_keys")]
    assert "secret-key" not in hashes
    assert all(len(digest) == 64 for digest in hashes)


# -- the database file ---------------------------------------------------------------------


async def test_reopening_the_file_keeps_everything(tmp_path: Path) -> None:
    """Runs, rows, acks, files and keys survive closing and reopening the database."""
    path = str(tmp_path / "tracker.db")
    first = await open_sqlite(path)
    await run_with_rows(first, range(4))
    await first.put_file(KEY, "f", b"data", NOW)
    await first.add_api_key("local", "k")
    await first.close()
    await first.close()  # closing twice is harmless
    second = await open_sqlite(path)
    try:
        result = await start(second, "must")
        assert (result.last_step, result.acked_seq, result.run["summary"]) == (3, 5, {"loss": 0.3})
        assert await history_steps(second) == [0, 1, 2, 3]
        assert await second.get_file(KEY, "f") == b"data"
        assert await second.entity_for_key("k") == "local"
    finally:
        await second.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(2,)]
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)


async def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    """A database written by a newer tracker is not opened (StorageError naming the file)."""
    path = str(tmp_path / "tracker.db")
    await (await open_sqlite(path)).close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE schema_version SET version = 99")
    with pytest.raises(StorageError, match="schema version 99"):
        await open_sqlite(path)


async def test_a_file_that_is_not_a_database_is_refused(tmp_path: Path) -> None:
    """Opening a file that is not SQLite is a StorageError, not a crash."""
    path = tmp_path / "junk.db"
    path.write_bytes(b"not a database at all" * 100)
    with pytest.raises(StorageError):
        await open_sqlite(str(path))


async def test_a_closed_storage_refuses_calls(tmp_path: Path) -> None:
    """After close, calls are 503 storage_closed instead of hanging or crashing."""
    store = await open_sqlite(str(tmp_path / "tracker.db"))
    await store.close()
    with pytest.raises(StorageError) as caught:
        await store.get_run(KEY)
    assert (caught.value.status, caught.value.code) == (503, "storage_closed")


async def test_ingest_speed_smoke(storage: SQLiteStorage) -> None:
    """100k rows of 10 floats in batches of 10k are stored (rows/s printed; no timing assert)."""
    await start(storage)
    seq, elapsed = 0, 0.0
    for begin in range(0, 100_000, 10_000):
        batch = records(
            *(
                ("row", step, 1000.0 + step, {f"k{i}": step * 0.5 + i for i in range(10)})
                for step in range(begin, begin + 10_000)
            ),
            seq=seq,
        )
        seq += len(batch)
        started = time.perf_counter()
        await storage.ingest(KEY, LOG, batch, NOW)
        elapsed += time.perf_counter() - started
    print(f"ingest: {100_000 / elapsed:,.0f} rows/s")
    run = await storage.get_run(KEY)
    assert run is not None
    assert run["last_step"] == 99_999
    sampled = await storage.history(KEY, ["k3"], None, None, 1000)
    assert sampled[0]["_step"] == 0
    assert sampled[-1]["_step"] == 99_999


async def test_rows_ingested_with_their_lines_equal_rows_encoded_again(
    storage: SQLiteStorage,
) -> None:
    """Rows stored from their lines as received read back as rows the storage encodes
    itself, special values and a replaced step included."""
    other = RunKey("local", "mnist", "other123")
    lines = [
        encode_record((0, "row", 0, 1000.0), {"loss": math.nan, "big": 2**70}, "row"),
        encode_record((1, "config"), {"lr": 0.1}, "config"),
        encode_record((2, "row", 1, 1001.0), {"loss": -math.inf, "name": "a {b}"}, "row"),
        encode_record((3, "row", 1, 1002.0), {"loss": 0.5, "none": None}, "row"),
    ]
    batch = [decode_record(line) for line in lines]
    for key in (KEY, other):
        await start(storage, key=key)
    await storage.ingest(KEY, LOG, batch, NOW, [line.decode()[:-1] for line in lines])
    await storage.ingest(other, LOG, [decode_record(line) for line in lines], NOW)
    from_lines = await storage.history(KEY, None, None, None, None)
    encoded = await storage.history(other, None, None, None, None)
    assert repr(from_lines) == repr(encoded)
    assert [row["_step"] for row in from_lines] == [0, 1]
    assert from_lines[0]["big"] == 2**70
    assert from_lines[1] == {"_step": 1, "_timestamp": 1002.0, "_runtime": 1002.0, **batch[3][4]}


async def test_the_checkpointer_copies_the_wal_into_the_database_file(tmp_path: Path) -> None:
    """Committed pages reach the database file soon after a commit, long before the WAL
    would reach the writer's own checkpoint threshold, and closing stops the thread."""
    path = tmp_path / "tracker.db"
    store = await open_sqlite(str(path))
    try:
        await start(store)
        size = path.stat().st_size
        await store.ingest(KEY, LOG, rows(range(5000), name="x" * 100), NOW)
        for _ in range(200):  # 10 s at most
            if path.stat().st_size > size:
                break
            await anyio.sleep(0.05)
        assert path.stat().st_size > size
    finally:
        await store.close()
    assert "tracker-db-checkpoint" not in {thread.name for thread in threading.enumerate()}


async def test_batches_of_rows_alone_keep_the_runs_other_fields(storage: SQLiteStorage) -> None:
    """A batch holding only rows changes the summary, last step and runtime, and leaves
    the name, tags, group, notes, config and metadata as the records before set them."""
    await start(storage)
    run_record = {"name": "n", "tags": ["t"], "group": "g", "notes": "x", "host": "h"}
    await storage.ingest(
        KEY,
        LOG,
        records(("run", run_record), ("config", {"lr": 0.1}), ("row", 0, NOW, {"a": 1})),
        NOW,
    )
    await storage.ingest(KEY, LOG, rows([1, 2], seq=3), NOW + 1)
    run = await storage.get_run(KEY)
    assert run is not None
    assert (run["name"], run["tags"], run["group"], run["notes"]) == ("n", ["t"], "g", "x")
    assert run["config"] == {"lr": 0.1}
    assert run["metadata"]["host"] == "h"
    assert (run["last_step"], run["summary"]) == (2, {"a": 1, "loss": 0.2})


async def test_a_batch_longer_than_one_insert_keeps_every_row_and_the_last_of_a_step(
    storage: SQLiteStorage,
) -> None:
    """Rows are inserted many to a statement: a batch spanning several statements and a
    remainder stores every row, and a step repeated across statements keeps its last row."""
    await start(storage)
    steps = [*range(450), 10, 250]  # 10 and 250 again, in the last statement
    batch = records(
        *(("row", step, 1000.0 + index, {"i": index}) for index, step in enumerate(steps))
    )
    await storage.ingest(KEY, LOG, batch, NOW)
    history = await storage.history(KEY, None, None, None, None)
    assert [row["_step"] for row in history] == list(range(450))
    by_step = {row["_step"]: row["i"] for row in history}
    assert by_step[10] == 450
    assert by_step[250] == 451
    assert all(by_step[step] == step for step in range(450) if step not in (10, 250))

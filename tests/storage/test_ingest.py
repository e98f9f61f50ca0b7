"""Exactly-once ingest on every backend: resends, gaps, logs, the record fold into config,
metadata and summary, refused batches, heartbeats and the crash sweep."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import pytest
from exact import same

from tracker._init import init
from tracker._reader import read_run
from tracker._records.codec import encode_record
from tracker._records.kinds import decode_record
from tracker._records.summary import make_rule
from tracker._rundir import LOG_NAME
from tracker._runlog import read_records
from tracker._server.storage import RunKey, Store, parse_order
from tracker._server.storage.errors import BadRequest, LogConflict, RunNotFound, SeqGap

from .making import KEY, LOG, LOG2, NOW, history_steps, records, rows, start

pytestmark = pytest.mark.anyio


async def test_resending_a_batch_stores_nothing_twice(store: Store) -> None:
    """A batch sent again is skipped: same acked seq, same rows, same summary."""
    await start(store)
    batch = records(("summary", {"count": 1})) + rows(range(3), seq=1)
    assert (await store.ingest(KEY, LOG, batch, NOW)).seq == 3
    before = await store.get_run(KEY)
    assert (await store.ingest(KEY, LOG, batch, NOW)).seq == 3
    assert await history_steps(store) == [0, 1, 2]
    after = await store.get_run(KEY)
    assert before is not None
    assert after is not None
    assert after["summary"] == before["summary"] == {"count": 1, "loss": 0.2}


async def test_an_overlapping_batch_applies_only_new_records(store: Store) -> None:
    """Records at or below the acked seq are skipped, the rest applied once."""
    await start(store)
    await store.ingest(KEY, LOG, rows(range(5)), NOW)
    overlap = records(*(("row", step, 0.0, {"again": step}) for step in range(3, 8)), seq=3)
    assert (await store.ingest(KEY, LOG, overlap, NOW)).seq == 7
    history = await store.history(KEY, None, None, None, None)
    assert [row.get("again") for row in history] == [None, None, None, None, None, 5, 6, 7]


async def test_a_seq_gap_is_refused_and_changes_nothing(store: Store) -> None:
    """A batch starting beyond acked_seq + 1 is 409 seq_gap with the acked seq; nothing stored."""
    await start(store)
    await store.ingest(KEY, LOG, rows(range(2)), NOW)
    with pytest.raises(SeqGap) as caught:
        await store.ingest(KEY, LOG, rows(range(5, 7), seq=5), NOW + 1)
    assert (caught.value.code, caught.value.acked_seq) == ("seq_gap", 1)
    assert await history_steps(store) == [0, 1]
    assert (await start(store, "continue")).acked_seq == 1


async def test_two_log_ids_of_one_run_are_acked_separately(store: Store) -> None:
    """Each log id has its own stored seq; both logs' rows land in the one run."""
    await start(store)
    assert (await store.ingest(KEY, LOG, rows(range(3)), NOW)).seq == 2
    assert (await store.ingest(KEY, LOG2, rows(range(3, 5)), NOW)).seq == 1
    assert (await start(store, "continue", log_id=LOG)).acked_seq == 2
    assert (await start(store, "continue", log_id=LOG2)).acked_seq == 1
    assert await history_steps(store) == [0, 1, 2, 3, 4]


async def test_ingest_into_an_unknown_run_is_404(store: Store) -> None:
    """Records for a run without a handshake are RunNotFound."""
    with pytest.raises(RunNotFound):
        await store.ingest(KEY, LOG, rows(range(1)), NOW)


async def test_special_values_round_trip_exactly(store: Store) -> None:
    """NaN, ±inf, big ints, unicode and nesting come back as logged, in rows, config and summary."""
    await start(store)
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
    await store.ingest(KEY, LOG, batch, NOW)
    (row,) = await store.history(KEY, None, None, None, None)
    assert same({k: row[k] for k in data}, data)
    run = await store.get_run(KEY)
    assert run is not None
    assert same(run["summary"], data)
    assert same(run["config"], {"eps": math.inf, "n": 2**66})


async def test_config_records_merge_into_the_config(store: Store) -> None:
    """Config records update keys shallowly, as the run-log reader folds them."""
    await start(store)
    batch = records(
        ("config", {"lr": 0.1, "opt": {"a": 1}}), ("config", {"opt": {"b": 2}, "bs": 8})
    )
    await store.ingest(KEY, LOG, batch, NOW)
    result = await start(store, "allow")
    assert result.run["config"] == {"lr": 0.1, "opt": {"b": 2}, "bs": 8}


async def test_run_records_set_metadata_and_session_runtime(store: Store) -> None:
    """Run records set name, tags, group, job type, notes and metadata; a start_time opens a
    session whose rows get _runtime = runtime_offset + timestamp - start_time."""
    await start(store)
    batch = records(
        ("run", {"name": "n1", "tags": ["x"], "group": "g", "job_type": "train", "notes": "hi"}),
        ("run", {"start_time": 1000.0, "created_at": 999.0, "host": "box"}),
        ("row", 0, 1002.5, {"a": 1}),
        ("run", {"start_time": 2000.0, "runtime_offset": 10.0}),
        ("row", 1, 2001.0, {"a": 2}),
    )
    await store.ingest(KEY, LOG, batch, NOW)
    history = await store.history(KEY, None, None, None, None)
    assert [row["_runtime"] for row in history] == [2.5, 11.0]
    assert [row["_timestamp"] for row in history] == [1002.5, 2001.0]
    run = await store.get_run(KEY)
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


async def test_summary_equals_the_clients_fold(store: Store, tmp_path: Path) -> None:
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
    await start(store)
    for begin in range(0, len(log), 7):  # in several batches
        await store.ingest(KEY, LOG, log[begin : begin + 7], NOW)
    stored = await store.get_run(KEY)
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
    stored_rows = await store.history(KEY, None, None, None, None)
    assert same(stored_rows, local.history())


async def test_define_metric_records_shape_the_summary(store: Store) -> None:
    """metric records with min/max make the summary hold the extremes of the rows."""
    await start(store)
    rule = make_rule("loss", summary="min,max").to_record()
    await store.ingest(KEY, LOG, records(("metric", rule)) + rows([0, 1, 2], seq=1), NOW)
    await store.ingest(KEY, LOG, rows([3], seq=4), NOW)
    run = await store.get_run(KEY)
    assert run is not None
    assert run["summary"] == {"loss": {"min": 0.0, "max": 0.3}}


async def test_exit_records_set_state_exit_code_and_end_time(store: Store) -> None:
    """An exit record ends the session; a later run record with start_time starts another."""
    await start(store)
    end = {"state": "failed", "exit_code": 3, "end_time": 1234.5, "runtime": 9.0}
    await store.ingest(KEY, LOG, records(("exit", end)), NOW)
    run = await store.get_run(KEY)
    assert run is not None
    assert (run["state"], run["exit_code"], run["end_time"], run["runtime"]) == (
        "failed",
        3,
        1234.5,
        9.0,
    )
    await store.ingest(KEY, LOG, records(("run", {"start_time": 2000.0}), seq=1), NOW)
    run = await store.get_run(KEY)
    assert run is not None
    assert (run["state"], run["exit_code"], run["end_time"]) == ("running", None, None)


async def test_unknown_and_file_records_are_skipped_but_acked(store: Store) -> None:
    """Records of unknown kinds (newer clients) and file records change nothing and count."""
    await start(store)
    batch = [*records(("future", {"x": 1}), ("file", {"name": "a.txt", "size": 1}))]
    batch.append([2, "future2", 1, 2, {"y": 3}])
    assert (await store.ingest(KEY, LOG, batch, NOW)).seq == 2
    run = await store.get_run(KEY)
    assert run is not None
    assert (run["summary"], run["metadata"], run["last_step"]) == ({}, {}, -1)


async def assert_refused_without_change(store: Store, batch: list[Any]) -> None:
    """Ingesting ``batch`` after rows 0 and 1 is BadRequest bad_batch and changes nothing."""
    await start(store)
    await store.ingest(KEY, LOG, rows([0, 1]), NOW)
    before = await store.get_run(KEY)
    with pytest.raises(BadRequest) as caught:
        await store.ingest(KEY, LOG, batch, NOW + 1)
    assert caught.value.code == "bad_batch"
    assert await store.get_run(KEY) == before
    assert await history_steps(store) == [0, 1]
    assert (await start(store, "continue")).acked_seq == 1


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
async def test_a_malformed_record_refuses_the_whole_batch(store: Store, bad: list[Any]) -> None:
    """A malformed record after good ones is bad_batch and nothing of the batch is stored."""
    good = records(("config", {"z": 1}), ("row", 2, 1.0, {"loss": 9.0}), seq=2)
    await assert_refused_without_change(store, [*good, [4, *bad]])


@pytest.mark.parametrize(
    "batch",
    [
        [[2, "row", 5, 1.0, {"a": 1}], [4, "row", 6, 1.0, {}]],
        [[2, "row", 5, 1.0, {"a": 1}], ["3", "row", 6, 1.0, {}]],
        [[2, "row", 5, 1.0, {"a": 1}], [3]],
        [(2, "row", 5, 1.0, {})],
    ],
)
async def test_a_batch_that_is_not_a_run_log_is_refused(store: Store, batch: list[Any]) -> None:
    """Records that are not [seq, kind, ...] lists numbered by one are bad_batch."""
    await assert_refused_without_change(store, batch)


async def test_records_revive_a_run_swept_as_crashed(store: Store) -> None:
    """Records from a run marked crashed show its client is alive: it is running again."""
    await start(store)
    assert await store.sweep_crashed(NOW + 31) == 1
    await store.ingest(KEY, LOG, rows([0]), NOW + 32)
    run = await store.get_run(KEY)
    assert run is not None
    assert run["state"] == "running"


# -- heartbeats and crashes ----------------------------------------------------------------


async def test_sweep_marks_runs_without_heartbeats_crashed(store: Store) -> None:
    """A running run silent for 3 heartbeat intervals (at least 3 s) becomes crashed; others
    stay as they are."""
    fast = RunKey("local", "mnist", "fast")
    done = RunKey("local", "mnist", "done")
    await start(store, interval=10.0)
    await start(store, key=fast, interval=0.1)
    await start(store, key=done, interval=0.1)
    await store.ingest(done, LOG, records(("exit", {"state": "finished"})), NOW)
    assert await store.sweep_crashed(NOW + 2.9) == 0
    assert await store.sweep_crashed(NOW + 3.1) == 1
    assert await store.sweep_crashed(NOW + 29) == 0
    await store.heartbeat(KEY, NOW + 25)
    assert await store.sweep_crashed(NOW + 54) == 0
    assert await store.sweep_crashed(NOW + 56) == 1
    states = {
        run["id"]: run["state"]
        for run in (await store.list_runs("local", "mnist", {}, parse_order("name"), 10, 0))[0]
    }
    assert states == {"abc12345": "crashed", "fast": "crashed", "done": "finished"}


async def test_a_heartbeat_revives_a_crashed_run(store: Store) -> None:
    """A heartbeat from a run marked crashed makes it running again."""
    await start(store)
    await store.sweep_crashed(NOW + 100)
    await store.heartbeat(KEY, NOW + 101)
    run = await store.get_run(KEY)
    assert run is not None
    assert (run["state"], run["heartbeat_at"]) == ("running", NOW + 101)


async def test_a_heartbeat_for_an_unknown_run_is_404(store: Store) -> None:
    """Heartbeats need a handshake first."""
    with pytest.raises(RunNotFound):
        await store.heartbeat(KEY, NOW)


async def test_ingest_speed_smoke(store: Store) -> None:
    """100k rows of 10 floats in batches of 10k are stored (rows/s printed; no timing assert)."""
    await start(store)
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
        await store.ingest(KEY, LOG, batch, NOW)
        elapsed += time.perf_counter() - started
    print(f"ingest: {100_000 / elapsed:,.0f} rows/s")
    run = await store.get_run(KEY)
    assert run is not None
    assert run["last_step"] == 99_999
    sampled = await store.history(KEY, ["k3"], None, None, 1000)
    assert sampled[0]["_step"] == 0
    assert sampled[-1]["_step"] == 99_999


async def test_rows_ingested_with_their_lines_equal_rows_encoded_again(
    store: Store,
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
        await start(store, key=key)
    await store.ingest(KEY, LOG, batch, NOW, [line.decode()[:-1] for line in lines])
    await store.ingest(other, LOG, [decode_record(line) for line in lines], NOW)
    from_lines = await store.history(KEY, None, None, None, None)
    encoded = await store.history(other, None, None, None, None)
    assert repr(from_lines) == repr(encoded)
    assert [row["_step"] for row in from_lines] == [0, 1]
    assert from_lines[0]["big"] == 2**70
    assert from_lines[1] == {"_step": 1, "_timestamp": 1002.0, "_runtime": 1002.0, **batch[3][4]}


async def test_batches_of_rows_alone_keep_the_runs_other_fields(store: Store) -> None:
    """A batch holding only rows changes the summary, last step and runtime, and leaves
    the name, tags, group, notes, config and metadata as the records before set them."""
    await start(store)
    run_record = {"name": "n", "tags": ["t"], "group": "g", "notes": "x", "host": "h"}
    await store.ingest(
        KEY,
        LOG,
        records(("run", run_record), ("config", {"lr": 0.1}), ("row", 0, NOW, {"a": 1})),
        NOW,
    )
    await store.ingest(KEY, LOG, rows([1, 2], seq=3), NOW + 1)
    run = await store.get_run(KEY)
    assert run is not None
    assert (run["name"], run["tags"], run["group"], run["notes"]) == ("n", ["t"], "g", "x")
    assert run["config"] == {"lr": 0.1}
    assert run["metadata"]["host"] == "h"
    assert (run["last_step"], run["summary"]) == (2, {"a": 1, "loss": 0.2})


async def test_a_batch_longer_than_one_insert_keeps_every_row_and_the_last_of_a_step(
    store: Store,
) -> None:
    """Rows are inserted many to a statement: a batch spanning several statements and a
    remainder stores every row, and a step repeated across statements keeps its last row."""
    await start(store)
    steps = [*range(450), 10, 250]  # 10 and 250 again, in the last statement
    batch = records(
        *(("row", step, 1000.0 + index, {"i": index}) for index, step in enumerate(steps))
    )
    await store.ingest(KEY, LOG, batch, NOW)
    history = await store.history(KEY, None, None, None, None)
    assert [row["_step"] for row in history] == list(range(450))
    by_step = {row["_step"]: row["i"] for row in history}
    assert by_step[10] == 450
    assert by_step[250] == 451
    assert all(by_step[step] == step for step in range(450) if step not in (10, 250))


def session(seq: int, started: float) -> list[Any]:
    """A session-opening run record at ``seq``, as a start or a resume writes it."""
    return records(("run", {"start_time": started}), seq=seq)


async def test_a_lost_record_moves_the_ack_past_the_hole_and_counts(store: Store) -> None:
    """A lost record stands for seqs it through its through: the ack moves past them, the
    next record follows, and the run's metadata counts them; resending it changes nothing."""
    await start(store)
    await store.ingest(KEY, LOG, rows(range(3)), NOW)
    batch = [[3, "lost", {"through": 9, "offset": 100}], *rows(range(10, 12), seq=10)]
    assert (await store.ingest(KEY, LOG, batch, NOW)).seq == 11
    assert (await store.ingest(KEY, LOG, batch, NOW)).seq == 11
    assert await history_steps(store) == [0, 1, 2, 10, 11]
    run = await store.get_run(KEY)
    assert run is not None
    assert run["metadata"]["records_lost"] == 7


async def test_a_second_copy_of_a_log_resumed_apart_is_refused_not_merged(store: Store) -> None:
    """Two copies of one log resumed apart (sessions differing at seq 3): the server keeps
    the first one stored, and refuses the other at its handshake and at ingest."""
    await start(store, sessions=[[0, "1.0"]])
    await store.ingest(KEY, LOG, session(0, 1.0) + rows(range(2), seq=1), NOW)
    # both copies' syncs shake hands before either stores its resumed session
    await start(store, "continue", sessions=[[0, "1.0"], [3, "2.0"]])
    await start(store, "continue", sessions=[[0, "1.0"], [3, "3.0"]])
    assert (await store.ingest(KEY, LOG, session(3, 2.0) + rows(range(2, 4), seq=4), NOW)).seq == 5
    with pytest.raises(LogConflict, match="--run-id"):
        await store.ingest(KEY, LOG, session(3, 3.0) + rows(range(2, 6), seq=4), NOW)
    with pytest.raises(LogConflict):
        await start(store, "continue", sessions=[[0, "1.0"], [3, "3.0"]])
    assert (await start(store, "continue", sessions=[[0, "1.0"], [3, "2.0"]])).acked_seq == 5
    assert await history_steps(store) == [0, 1, 2, 3]

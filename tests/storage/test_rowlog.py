"""The row log on every backend: an ack logs the batch as received, reads merge the logged
tail with compacted data (the same answers before and after compaction, in order or
not), compaction goes in steps of a bounded size, a batch that cannot be folded is set
aside, a crash between ack and compaction loses nothing, and the key limits."""

from __future__ import annotations

import math
from functools import partial
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from tracker._server.storage import RunKey, Store
from tracker._server.storage.backend import BatchWrites, LoggedBatch
from tracker._server.storage.errors import BadRequest
from tracker._server.storage.ingest import checked_lines, decide
from tracker._server.storage.rowlog import COMPACT_BYTES, compact_fold
from tracker._server.storage.sqlite import SQLiteBackend
from tracker._wire.limits import MAX_ROW_KEYS, MAX_RUN_KEYS

from .making import KEY, LOG, NOW, history_steps, records, row_records, rows, start

pytestmark = pytest.mark.anyio


async def logged(store: Store, batch: list[list[Any]], key: RunKey = KEY) -> BatchWrites:
    """Acknowledge ``batch`` as `Store.ingest` does, without waking the compactor: its
    records stay in the row log."""
    lines = checked_lines(batch, None)
    return await store.backend.ingest_batch(key, LOG, partial(decide, key, LOG, batch, lines, NOW))


async def pk_of(store: Store, key: RunKey = KEY) -> int:
    """The run's pk."""
    async with store.backend.read() as snap:
        stored = await snap.load_run(key)
    assert stored is not None
    return stored["pk"]


async def tail(store: Store) -> list[LoggedBatch]:
    """The run's logged batches not yet compacted."""
    pk = await pk_of(store)
    async with store.backend.read() as snap:
        return await snap.read_log(pk)


async def answers(store: Store) -> list[Any]:
    """Every read a batch shows in: the run document, history (whole, by key, sampled)
    and chart series."""
    document = await store.get_run(KEY)
    assert document is not None
    document.pop("updated_at")
    return [
        document,
        await store.history(KEY, None, None, None, None),
        await store.history(KEY, ["loss"], 2, 40, None),
        await store.history(KEY, None, None, None, 7),
        await store.history(KEY, ["acc"], None, None, 5),
        await store.chart_series(KEY, None, None, 6),
        await store.chart_series(KEY, ["loss"], 3, 4),
    ]


def spread(steps: range, seq: int = 0) -> list[list[Any]]:
    """Rows whose keys vary by step (``acc`` on even steps), at 1 s per step."""
    return row_records(
        [
            (step, {"loss": math.sin(step), **({"acc": step / 7} if step % 2 == 0 else {})})
            for step in steps
        ],
        seq=seq,
    )


async def test_an_ack_logs_the_batch_and_reads_see_it_before_compaction(store: Store) -> None:
    """An acknowledged batch sits in the row log, as received, and every read shows it;
    once compacted the log is empty and every read answers the same."""
    await start(store)
    opening = records(("run", {"name": "first", "start_time": 1000.0}), ("config", {"lr": 1}))
    writes = await logged(store, opening + spread(range(30), seq=2))
    assert writes.acked_seq == 31
    assert [(entry.first_seq, entry.last_seq) for entry in await tail(store)] == [(0, 31)]
    before = await answers(store)
    assert before[0]["name"] == "first"
    assert before[0]["last_step"] == 29
    assert len(before[1]) == 30
    async with store.backend.read() as snap:
        assert [key for _, key in await snap.logged_runs()] == [KEY]
    store.start_compactor()
    await store.compacted()
    assert await tail(store) == []
    assert await answers(store) == before


async def test_a_tail_rewriting_compacted_steps_merges_as_compaction_stores_it(
    store: Store,
) -> None:
    """Rows of the tail that replace compacted steps (out of order, other keys) read the
    same before and after compaction: a later row of a step replaces it whole."""
    await start(store)
    await store.ingest(KEY, LOG, spread(range(40)), NOW)
    await store.compacted()
    again = row_records([(step, {"acc": -step}) for step in (35, 3, 12, 50, 4)], seq=40)
    await logged(store, again)
    before = await answers(store)
    assert [row["_step"] for row in before[1]] == [*range(40), 50]
    assert before[1][3] == {"_step": 3, "_timestamp": 1003.0, "_runtime": 1003.0, "acc": -3}
    await store.compacted()
    assert await tail(store) == []
    after = await answers(store)
    assert after[1:] == before[1:]
    assert after[0] == before[0]


async def test_compaction_goes_in_steps_of_about_its_budget(store: Store) -> None:
    """A batch bigger than a step's budget is folded a part at a time, whole lines each,
    the log entry advancing (its first seq, its body); reads in between show it all."""
    await start(store)
    batch = rows(range(400))
    await logged(store, batch)
    pk = await pk_of(store)
    whole = await store.history(KEY, None, None, None, None)
    body = (await tail(store))[0].body
    budget = len(body) // 3
    longest = max(map(len, body.splitlines(keepends=True)))
    seen = []
    remaining = len(body)
    while (
        step := await store.backend.compact(pk, budget, partial(compact_fold, budget))
    ) is not None:
        seen.append(len(step.steps))
        left = await tail(store)
        rest = len(left[0].body) if left else 0
        assert budget <= remaining - rest < budget + longest or not left
        remaining = rest
        if left:
            assert left[0].first_seq == sum(seen)
            assert body.endswith(left[0].body)
            assert left[0].body.startswith(b"[")
        assert await store.history(KEY, None, None, None, None) == whole
    assert sum(seen) == 400
    assert len(seen) >= 3
    assert await history_steps(store) == list(range(400))


async def test_a_logged_batch_that_cannot_be_folded_is_set_aside(store: Store) -> None:
    """A log entry whose body is no batch (stored by another writer) is set aside with
    its reason at compaction: later batches still compact, reads skip it."""
    await start(store)
    await store.ingest(KEY, LOG, rows(range(3)), NOW)
    await store.compacted()
    junk = BatchWrites(await pk_of(store), 3, {}, [LoggedBatch(3, 3, b"not a record\n", NOW)])
    await store.backend.ingest_batch(KEY, LOG, lambda stored: junk)
    await logged(store, rows(range(4, 6), seq=4))
    await store.compacted()
    assert await tail(store) == []
    assert await history_steps(store) == [0, 1, 2, 4, 5]
    async with store.backend.read() as snap:
        assert await snap.logged_runs() == []


async def test_a_server_stopped_between_ack_and_compaction_loses_nothing(tmp_path: Path) -> None:
    """Batches acked but not compacted when the server stops are in the database: the
    reopened store reads them at once and its compactor folds them."""
    path = str(tmp_path / "tracker.db")
    store = Store(await SQLiteBackend.open(path))
    await start(store)
    await store.ingest(KEY, LOG, spread(range(10)), NOW)
    await store.compacted()
    await logged(store, spread(range(10, 300), seq=10))
    expected = await answers(store)
    await store.close()
    reopened = Store(await SQLiteBackend.open(path))
    try:
        assert [(entry.first_seq, entry.last_seq) for entry in await tail(reopened)] == [(10, 299)]
        assert await answers(reopened) == expected
        reopened.start_compactor()
        await reopened.compacted()
        assert await tail(reopened) == []
        assert await answers(reopened) == expected
        assert (await start(reopened, "continue")).acked_seq == 299
    finally:
        await reopened.close()


async def test_a_row_over_the_key_limit_is_refused_before_the_ack(store: Store) -> None:
    """A row of more than MAX_ROW_KEYS keys is too_many_keys, naming the limit and what to
    do; nothing of its batch is stored."""
    await start(store)
    wide = {f"k{index}": 1.0 for index in range(MAX_ROW_KEYS + 1)}
    with pytest.raises(BadRequest) as caught:
        await store.ingest(KEY, LOG, rows([0]) + row_records([(1, wide)], seq=1), NOW)
    assert caught.value.code == "too_many_keys"
    assert f"at most {MAX_ROW_KEYS}" in caught.value.message
    assert "step 1" in caught.value.message
    assert await history_steps(store) == []


async def test_rows_past_the_run_key_limit_are_refused_and_the_rest_stored(
    store: Store,
) -> None:
    """Keys add up over a run's batches: a row taking the run past MAX_RUN_KEYS is refused
    (the ack says so, the run counts it in rows_refused, its step is not stored), also for a
    store that starts afresh on the same database (its keys read from the series and the
    row log); the rows after it and the run's known keys are stored."""
    other = RunKey("local", "mnist", "other")
    half = MAX_RUN_KEYS // 2
    first = {f"a{index}": 1.0 for index in range(half)}
    second = {f"b{index}": 1.0 for index in range(MAX_RUN_KEYS - half)}
    for key in (KEY, other):
        await start(store, key=key)
        await store.ingest(key, LOG, row_records([(0, first)]), NOW)
    await store.compacted()
    await store.ingest(KEY, LOG, row_records([(1, second)], seq=1), NOW)
    await logged(store, row_records([(1, second)], seq=1), other)
    for fresh, key in ((store, KEY), (Store(store.backend), other)):
        batch = row_records([(2, {"c": 1.0}), (3, {"a0": 2.0}), (4, {"d": 1.0, "a1": 1.0})], seq=2)
        acked = await fresh.ingest(key, LOG, batch, NOW)
        assert acked.seq == 4
        assert acked.refused is not None
        assert f"holds at most {MAX_RUN_KEYS} keys: 2 row(s)" in acked.refused
        assert "from step 2 (e.g. key 'c')" in acked.refused
        assert "reuse keys" in acked.refused
        assert (await fresh.ingest(key, LOG, row_records([(5, {"b0": 2.0})], seq=5), NOW)).seq == 5
        assert await history_steps(store, key) == [0, 1, 3, 5]
        await fresh.compacted()
        run = await fresh.get_run(key)
        assert run is not None
        assert run["metadata"]["rows_refused"] == 2


async def test_a_big_batch_is_logged_in_pieces_of_whole_lines(store: Store) -> None:
    """A batch of more than COMPACT_BYTES is logged as consecutive entries of whole lines,
    each about COMPACT_BYTES, their seq ranges following each other; all of it reads back
    before and after compaction."""
    await start(store)
    count = 4 * COMPACT_BYTES // 40
    await logged(store, rows(range(count)))
    pieces = await tail(store)
    assert len(pieces) >= 4
    assert pieces[0].first_seq == 0
    assert pieces[-1].last_seq == count - 1
    for earlier, later in pairwise(pieces):
        assert later.first_seq == earlier.last_seq + 1
        assert COMPACT_BYTES <= len(earlier.body) < COMPACT_BYTES + 100
        assert earlier.body.endswith(b"\n")
    assert await history_steps(store) == list(range(count))
    await store.compacted()
    assert await tail(store) == []
    assert await history_steps(store) == list(range(count))


async def test_an_edit_after_an_ack_outlasts_the_records_acked_before_it(store: Store) -> None:
    """Tags and notes edited after a batch setting them was acked, and before it was
    compacted, are the run's: the edit comes after the records, as it did."""
    await start(store)
    await logged(store, records(("run", {"tags": ["from-run"], "notes": "logged"})))
    await store.update_run(KEY, {"tags": ["edited"], "notes": "edited"}, NOW + 1)
    await store.compacted()
    document = await store.get_run(KEY)
    assert document is not None
    assert (document["tags"], document["notes"]) == (["edited"], "edited")

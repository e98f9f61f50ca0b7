"""The order and transaction contract on every backend: ingest calls of one run apply in
call order however many run at once, runs do not disturb each other, and a write
transaction that raises leaves nothing behind."""

from __future__ import annotations

import asyncio

import pytest

from tracker._server.storage import Acked, RunKey, Store
from tracker._server.storage.errors import SeqGap
from tracker._server.storage.stored import new_run_fields

from .making import KEY, LOG, NOW, history_steps, rows, start

pytestmark = pytest.mark.anyio


async def test_concurrent_ingest_calls_of_one_run_apply_in_call_order(store: Store) -> None:
    """Twenty batches of one log started at once (as a websocket pipelines them) are each
    applied after the one before: every call is acknowledged, none sees a gap."""
    await start(store)
    batches = [rows(range(index * 50, index * 50 + 50), seq=index * 50) for index in range(20)]
    tasks = [asyncio.ensure_future(store.ingest(KEY, LOG, batch, NOW)) for batch in batches]
    acks = await asyncio.gather(*tasks)
    assert [ack.seq for ack in acks] == [index * 50 + 49 for index in range(20)]
    assert await history_steps(store) == list(range(1000))
    stored = await store.get_run(KEY)
    assert stored is not None
    assert (stored["last_step"], stored["summary"]) == (999, {"loss": 99.9})


async def test_a_gap_among_concurrent_calls_refuses_only_the_batches_after_it(
    store: Store,
) -> None:
    """Batches 0, 2, 1 started in that order: 0 is stored, 2 is a gap, 1 then follows 0."""
    await start(store)
    first, second, third = (rows(range(n * 5, n * 5 + 5), seq=n * 5) for n in range(3))
    results = await asyncio.gather(
        store.ingest(KEY, LOG, first, NOW),
        store.ingest(KEY, LOG, third, NOW),
        store.ingest(KEY, LOG, second, NOW),
        return_exceptions=True,
    )
    assert results[0] == Acked(4)
    assert isinstance(results[1], SeqGap)
    assert results[1].acked_seq == 4
    assert results[2] == Acked(9)
    assert await history_steps(store) == list(range(10))


async def test_concurrent_runs_and_heartbeats_do_not_disturb_each_other(store: Store) -> None:
    """Five runs streaming at once, with heartbeats in between, each store all their rows."""
    keys = [RunKey("local", "mnist", f"run{index}") for index in range(5)]
    for key in keys:
        await start(store, key=key)
    calls = []
    for index in range(10):
        for key in keys:
            calls.append(
                store.ingest(key, LOG, rows(range(index * 3, index * 3 + 3), seq=index * 3), NOW)
            )
            calls.append(store.heartbeat(key, NOW + index))
    await asyncio.gather(*calls)
    for key in keys:
        assert await history_steps(store, key) == list(range(30))


async def abandoned_writes(store: Store, other: RunKey) -> None:
    """Write to every table in one transaction, then raise."""
    async with store.backend.write() as tx:
        stored = await tx.load_run(KEY)
        assert stored is not None
        pk = await tx.create_run(other, new_run_fields(NOW, 10.0, None))
        await tx.copy_history(stored["pk"], pk, 0)
        await tx.move_history(stored["pk"], pk, 0)
        await tx.rebuild_series(stored["pk"], 0, 10)
        await tx.update_run(stored["pk"], {"name": "changed", "tags": ["t"], "last_step": 5})
        with store.spool() as upload:
            upload.write(b"x")
            await tx.put_file(stored["pk"], "f", upload, NOW)
        await tx.put_api_key("0" * 64, "local", NOW)
        await tx.delete_run(stored["pk"])
        raise RuntimeError("abandon")


async def test_a_write_transaction_that_raises_leaves_nothing(store: Store) -> None:
    """Everything written in a transaction that raises is gone, the rest untouched."""
    await start(store)
    await store.ingest(KEY, LOG, rows([0, 1]), NOW)
    other = RunKey("local", "mnist", "other")
    with pytest.raises(RuntimeError):
        await abandoned_writes(store, other)
    document = await store.get_run(KEY)
    assert document is not None
    assert (document["name"], document["tags"], document["last_step"]) == (None, [], 1)
    assert await history_steps(store) == [0, 1]
    assert (await start(store, "continue")).acked_seq == 1
    assert await store.get_run(other) is None
    assert not await store.has_api_keys()
    assert await store.list_files(KEY) == []
    sampled = await store.history(KEY, ["loss"], None, None, 1)
    assert [row["_step"] for row in sampled] == [0, 1]

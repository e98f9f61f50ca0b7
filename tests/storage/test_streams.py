"""A run's streams on every backend: records of stream kinds kept apart from the history,
in seq order per stream, read by seq and time, exactly once, refused when malformed."""

from __future__ import annotations

import math
from typing import Any

import pytest

from tracker._server.storage import RunKey, Store
from tracker._server.storage.errors import BadRequest, RunNotFound

from .making import KEY, LOG, LOG2, NOW, history_steps, records, rows, start

pytestmark = pytest.mark.anyio


def samples(times: range, seq: int = 0) -> list[list[Any]]:
    """``system`` records at unix seconds ``times``, ``cpu`` the second's last two digits."""
    return records(
        *(("system", {"_timestamp": float(t), "cpu": float(t % 100)}) for t in times), seq=seq
    )


async def stream_times(store: Store, **span: Any) -> list[float]:
    """The times of the run's ``system`` records within ``span``."""
    return [entry["time"] for entry in await store.stream(KEY, "system", **span)]


async def test_stream_records_are_kept_apart_from_the_history(store: Store) -> None:
    """System records interleaved with rows land in the stream, the rows alone in the history."""
    await start(store)
    batch = rows(range(2)) + samples(range(1000, 1002), seq=2) + rows(range(2, 4), seq=4)
    assert (await store.ingest(KEY, LOG, batch, NOW)).seq == 5
    assert await history_steps(store) == [0, 1, 2, 3]
    run = await store.get_run(KEY)
    assert run is not None
    assert run["last_step"] == 3
    assert "cpu" not in run["summary"]
    assert await store.stream(KEY, "system") == [
        {"seq": 0, "time": 1000.0, "data": {"_timestamp": 1000.0, "cpu": 0.0}},
        {"seq": 1, "time": 1001.0, "data": {"_timestamp": 1001.0, "cpu": 1.0}},
    ]


async def test_a_resent_batch_appends_its_stream_records_once(store: Store) -> None:
    """Resending and overlapping batches add each stream record once, in seq order."""
    await start(store)
    first = samples(range(1000, 1003))
    await store.ingest(KEY, LOG, first, NOW)
    await store.ingest(KEY, LOG, first, NOW)
    await store.ingest(KEY, LOG, samples(range(1002, 1005), seq=2), NOW)
    entries = await store.stream(KEY, "system")
    assert [entry["seq"] for entry in entries] == [0, 1, 2, 3, 4]
    assert [entry["time"] for entry in entries] == [1000.0, 1001.0, 1002.0, 1003.0, 1004.0]


async def test_two_logs_of_a_run_share_its_stream(store: Store) -> None:
    """Records of two logs of one run take the stream's next seqs, whatever their log seqs."""
    await start(store)
    await store.ingest(KEY, LOG, samples(range(1000, 1002)), NOW)
    await store.ingest(KEY, LOG2, samples(range(2000, 2002)), NOW)
    entries = await store.stream(KEY, "system")
    assert [(entry["seq"], entry["time"]) for entry in entries] == [
        (0, 1000.0),
        (1, 1001.0),
        (2, 2000.0),
        (3, 2001.0),
    ]


async def test_reads_page_by_seq_and_cut_by_time(store: Store) -> None:
    """after and limit page a stream; start and end cut it by time; newest keeps the last."""
    await start(store)
    await store.ingest(KEY, LOG, samples(range(1000, 1010)), NOW)
    assert await stream_times(store, limit=3) == [1000.0, 1001.0, 1002.0]
    assert await stream_times(store, after=2, limit=3) == [1003.0, 1004.0, 1005.0]
    assert await stream_times(store, after=9) == []
    assert await stream_times(store, start=1004, end=1006.0) == [1004.0, 1005.0, 1006.0]
    assert await stream_times(store, limit=2, newest=True) == [1008.0, 1009.0]
    assert await stream_times(store, after=6, start=1005, limit=2, newest=True) == [1008.0, 1009.0]
    assert await stream_times(store, end=1001.5, limit=5, newest=True) == [1000.0, 1001.0]


async def test_a_malformed_stream_record_refuses_the_batch(store: Store) -> None:
    """A system record with a non-number or without its time is bad_batch; nothing is stored."""
    await start(store)
    for payload in ({"_timestamp": 1000.0, "cpu": "busy"}, {"cpu": 1.0}, [1.0]):
        batch = rows(range(2)) + records(("system", payload), seq=2)
        with pytest.raises(BadRequest) as caught:
            await store.ingest(KEY, LOG, batch, NOW)
        assert caught.value.code == "bad_batch"
        assert "system" in caught.value.message
    assert await history_steps(store) == []
    assert await store.stream(KEY, "system") == []


async def test_a_nan_metric_is_refused(store: Store) -> None:
    """A system metric of NaN is refused by name: a sample holds finite numbers only."""
    await start(store)
    with pytest.raises(BadRequest, match="cpu"):
        await store.ingest(KEY, LOG, records(("system", {"_timestamp": 1.0, "cpu": math.nan})), NOW)


async def test_bad_stream_reads_are_refused(store: Store) -> None:
    """An unknown stream names the streams there are; bad spans and missing runs are refused."""
    await start(store)
    with pytest.raises(BadRequest) as caught:
        await store.stream(KEY, "gpu")
    assert caught.value.code == "unknown_stream"
    assert "'gpu'" in caught.value.message
    assert "system" in caught.value.message
    for span in ({"limit": 0}, {"limit": 10**6}, {"after": 1.5}, {"start": "noon"}):
        with pytest.raises(BadRequest) as bad:
            await store.stream(KEY, "system", **span)
        assert bad.value.code == "bad_request"
    with pytest.raises(RunNotFound):
        await store.stream(RunKey(KEY.entity, KEY.project, "nosuchrun"), "system")


async def test_replacing_a_run_drops_its_streams(store: Store) -> None:
    """A new start over an existing run deletes its stream records with its history."""
    await start(store)
    await store.ingest(KEY, LOG, samples(range(1000, 1003)), NOW)
    await start(store, "new")
    assert await store.stream(KEY, "system") == []
    await store.ingest(KEY, LOG, samples(range(1100, 1101)), NOW)
    assert [entry["seq"] for entry in await store.stream(KEY, "system")] == [0]

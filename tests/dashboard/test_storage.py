"""The storage reads the dashboard adds: runs sorted on any column, and chart series."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tracker._records.codec import encode_record
from tracker._records.kinds import decode_record
from tracker._server._sqlite import SQLiteStorage, open_sqlite
from tracker._server._storage import RunKey, StartRequest, StorageError

pytestmark = pytest.mark.anyio

LOG = "6f1c0b1e9d3a4c7e8b2f5a0d4e6c8b1a"


@pytest.fixture
def anyio_backend() -> str:
    """The SQLite storage runs on asyncio executors."""
    return "asyncio"


@pytest.fixture
async def storage(tmp_path: Path) -> AsyncIterator[SQLiteStorage]:
    """A storage on a fresh database file."""
    store = await open_sqlite(str(tmp_path / "tracker.db"))
    yield store
    await store.close()


def _records(*items: tuple[Any, ...]) -> list[list[Any]]:
    return [
        decode_record(encode_record((seq, kind, *head), payload, kind))
        for seq, (kind, *head, payload) in enumerate(items)
    ]


async def _run(
    storage: SQLiteStorage,
    run_id: str,
    *,
    config: dict[str, Any] | None = None,
    summary: dict[str, Any] | None = None,
    rows: list[dict[str, Any]] = (),  # type: ignore[assignment]
    name: str | None = None,
) -> RunKey:
    key = RunKey("local", "proj", run_id)
    await storage.start_run(StartRequest(key, LOG, "new", None, None, 10.0, 1000.0))
    items: list[tuple[Any, ...]] = [("run", {"name": name or run_id, "start_time": 1000.0})]
    items.append(("config", config or {}))
    items += [("row", step, 1000.0 + step, data) for step, data in enumerate(rows)]
    items.append(("summary", summary or {}))
    await storage.ingest(key, LOG, _records(*items), 1000.0)
    return key


async def _sorted_ids(storage: SQLiteStorage, sort: list[str], descending: bool, **kw: Any) -> Any:
    runs, total = await storage.list_runs_sorted(
        "local", "proj", kw.get("filters", {}), sort, descending, kw.get("limit", 100), 0
    )
    return [run["id"] for run in runs], total


async def test_runs_sort_by_a_summary_value_with_missing_values_last(
    storage: SQLiteStorage,
) -> None:
    """Sorting on summary.KEY orders by the value both ways; runs without it come last."""
    await _run(storage, "b", summary={"acc": 0.5})
    await _run(storage, "a", summary={"acc": 0.9})
    await _run(storage, "c", summary={})
    await _run(storage, "d", summary={"acc": 0.1})
    assert await _sorted_ids(storage, ["summary", "acc"], True) == (["a", "b", "d", "c"], 4)
    assert await _sorted_ids(storage, ["summary", "acc"], False) == (["d", "b", "a", "c"], 4)


async def test_runs_sort_by_nested_config_and_by_columns(storage: SQLiteStorage) -> None:
    """A config path sorts nested values; name and runtime sort as columns."""
    await _run(storage, "x", config={"opt": {"lr": 0.3}}, name="Beta", rows=[{"a": 1}] * 3)
    await _run(storage, "y", config={"opt": {"lr": 0.1}}, name="alpha", rows=[{"a": 1}])
    await _run(storage, "z", config={"opt": {"lr": 0.2}}, name="gamma", rows=[{"a": 1}] * 2)
    assert (await _sorted_ids(storage, ["config", "opt", "lr"], False))[0] == ["y", "z", "x"]
    assert (await _sorted_ids(storage, ["name"], False))[0] == ["y", "x", "z"]  # case ignored
    assert (await _sorted_ids(storage, ["runtime"], True))[0] == ["x", "z", "y"]


async def test_sorted_runs_keep_filters_and_pages(storage: SQLiteStorage) -> None:
    """Filters (SQL and config checks alike) and limit apply to the sorted runs and total."""
    for index in range(6):
        await _run(storage, f"r{index}", config={"even": index % 2 == 0}, summary={"n": index})
    runs, total = await storage.list_runs_sorted(
        "local", "proj", {"config.even": True}, ["summary", "n"], True, 2, 1
    )
    assert ([run["id"] for run in runs], total) == (["r2", "r0"], 3)
    runs, total = await storage.list_runs_sorted(
        "local", "proj", {"search": "r1"}, ["summary", "n"], True, 10, 0
    )
    assert ([run["id"] for run in runs], total) == (["r1"], 1)


@pytest.mark.parametrize(
    "sort",
    [[], ["nope"], ["config"], ["summary", 'a"b'], ["state", "x"], "name", [""], [1]],
)
async def test_bad_sorts_are_refused(storage: SQLiteStorage, sort: Any) -> None:
    """An unknown column, a bare config/summary, a quote in a key or a non-list is bad_order."""
    with pytest.raises(StorageError) as caught:
        await storage.list_runs_sorted("local", "proj", {}, sort, True, 10, 0)
    assert (caught.value.status, caught.value.code) == (400, "bad_order")


async def test_bad_pages_are_refused(storage: SQLiteStorage) -> None:
    """A negative limit or offset is a bad_request."""
    with pytest.raises(StorageError, match="limit"):
        await storage.list_runs_sorted("local", "proj", {}, ["name"], True, -1, 0)


async def test_chart_series_are_columns_with_times(storage: SQLiteStorage) -> None:
    """Each numeric key comes as step, value, runtime and timestamp lists over its rows."""
    rows = [{"loss": 1.0, "note": "text"}, {"loss": 0.5, "acc": 0.2}, {"acc": 0.4}]
    key = await _run(storage, "r", rows=rows)
    answer = await storage.chart_series(key, None, None, 100)
    assert answer["last_step"] == 2
    series = answer["series"]
    assert set(series) == {"loss", "acc"}  # "note" holds no number
    assert series["loss"] == {
        "step": [0, 1],
        "value": [1.0, 0.5],
        "runtime": [0.0, 1.0],
        "timestamp": [1000.0, 1001.0],
    }
    assert series["acc"]["step"] == [1, 2]
    assert (await storage.chart_series(key, ["acc"], 2, 100))["series"] == {
        "acc": {"step": [2], "value": [0.4], "runtime": [2.0], "timestamp": [1002.0]}
    }


async def test_chart_series_are_downsampled_per_key_keeping_spikes(
    storage: SQLiteStorage,
) -> None:
    """samples=N caps each key near N points and keeps a one-step spike; NaN is kept as NaN."""
    rows: list[dict[str, Any]] = [{"loss": 1.0, "acc": 0.5} for _ in range(2000)]
    rows[1234] = {"loss": 99.0, "acc": math.nan}
    key = await _run(storage, "r", rows=rows)
    series = (await storage.chart_series(key, None, None, 50))["series"]
    assert len(series["loss"]["step"]) <= 52
    assert 99.0 in series["loss"]["value"]
    assert len(series["acc"]["step"]) <= 52


async def test_chart_series_refuse_bad_arguments_and_missing_runs(
    storage: SQLiteStorage,
) -> None:
    """A missing run is run_not_found; bad keys, min_step or samples are bad_request."""
    key = await _run(storage, "r", rows=[{"a": 1}])
    with pytest.raises(StorageError) as missing:
        await storage.chart_series(RunKey("local", "proj", "none"), None, None, 10)
    assert missing.value.code == "run_not_found"
    for keys, min_step, samples in [("a", None, 10), (None, "1", 10), (None, None, 1)]:
        with pytest.raises(StorageError) as caught:
            await storage.chart_series(key, keys, min_step, samples)  # type: ignore[arg-type]
        assert caught.value.code == "bad_request"

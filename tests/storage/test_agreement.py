"""Every backend answers as the in-memory one: the same random histories of batches,
forks, rewinds and edits, read back every way, give the same answers."""

from __future__ import annotations

import asyncio
import math
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tracker._records import sampler
from tracker._server.storage import RunKey, Store, parse_order, parse_sort, series
from tracker._server.storage.errors import StorageError

from .backends import BACKENDS, runnable
from .making import KEY, LOG, NOW, records, row_records, start

values = st.one_of(
    st.integers(-5, 5),
    st.floats(-5, 5),
    st.sampled_from([math.inf, -math.inf, math.nan, 2**70, "s", None, True, [1], {"n": 1}]),
)
row_data = st.dictionaries(st.sampled_from(["a", "b", "c"]), values, max_size=3)
operations = st.lists(
    st.one_of(
        st.tuples(st.just("rows"), st.lists(st.tuples(st.integers(0, 40), row_data), max_size=12)),
        st.tuples(st.just("config"), st.dictionaries(st.sampled_from(["x", "y"]), values)),
        st.tuples(st.just("run"), st.fixed_dictionaries({"group": st.sampled_from([None, "g"])})),
        st.tuples(st.just("fork"), st.integers(0, 40)),
        st.tuples(st.just("rewind"), st.integers(0, 40)),
        st.tuples(st.just("tags"), st.lists(st.sampled_from(["t", "u"]), max_size=2)),
        st.tuples(st.just("exit"), st.sampled_from(["finished", "failed"])),
    ),
    min_size=1,
    max_size=8,
)


async def play(store: Store, ops: list[tuple[str, Any]]) -> list[Any]:
    """Apply ``ops`` to a run and its forks, noting each answer or refusal, then read
    everything back every way."""
    noted: list[Any] = [await start(store)]
    seq, forks, clock = 0, 0, NOW
    for kind, value in ops:
        clock += 1.0
        try:
            if kind == "rows":
                batch = row_records(value, seq=seq)
            elif kind in ("config", "run"):
                batch = records((kind, value), seq=seq)
            elif kind == "exit":
                batch = records(("exit", {"state": value}), seq=seq)
            if kind in ("rows", "config", "run", "exit"):
                noted.append(await store.ingest(KEY, LOG, batch, clock))
                seq += len(batch)
            elif kind == "fork":
                forks += 1
                child = RunKey(KEY.entity, KEY.project, f"fork{forks}")
                noted.append(await start(store, "fork", key=child, fork_from=(KEY.run_id, value)))
            elif kind == "rewind":
                noted.append(await start(store, "rewind", rewind_to=value, now=clock))
            else:
                noted.append(await store.update_run(KEY, {"tags": value}, clock))
        except StorageError as exc:
            noted.append((type(exc).__name__, exc.code, exc.message))
    runs, _ = await store.list_runs(KEY.entity, KEY.project, {}, parse_order("name"), 100, 0)
    noted.append(runs)
    for sort in (["config", "x"], ["group"], ["last_step"], ["summary", "a"]):
        for descending in (False, True):
            page = await store.list_runs(
                KEY.entity, KEY.project, {"tags": "t"}, parse_sort(sort, descending), 100, 0
            )
            noted.append([run["id"] for run in page[0]])
    for run in runs:
        key = RunKey(KEY.entity, KEY.project, run["id"])
        noted.append(await store.history(key, None, None, None, None))
        for keys in (None, ["a"], ["b", "c"]):
            noted.append(await store.history(key, keys, 5, 30, 6))
        noted.append(await store.chart_series(key, None, None, 4))
    noted.append(await store.list_projects(KEY.entity))
    return noted


@settings(max_examples=40, deadline=None)
@given(operations)
def test_every_backend_answers_as_memory(ops: list[tuple[str, Any]]) -> None:
    """Any sequence of batches, forks, rewinds, edits and exits reads back the same from
    every backend (NaN compared as NaN), refusals included."""

    async def answers(backend: str, folder: Path) -> list[Any]:
        async with BACKENDS[backend](folder) as opened:
            store = Store(opened)
            return await play(store, ops)

    with tempfile.TemporaryDirectory() as folder, pytest.MonkeyPatch.context() as patch:
        patch.setattr(series, "OPEN_CHUNK", 3)
        patch.setattr(series, "MAX_CHUNK", 5)
        patch.setattr(sampler, "BLOCK", 2)
        memory = asyncio.run(answers("memory", Path(folder)))
        for backend in runnable():
            assert repr(asyncio.run(answers(backend, Path(folder) / backend))) == repr(memory), (
                backend
            )


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(1, 3), row_data), min_size=1, max_size=120
    ),  # (step increment, data)
    st.integers(1, 40),
    st.one_of(st.none(), st.sampled_from([["a"], ["b", "c"]])),
)
def test_read_run_samples_as_every_backend_does(
    rows: list[tuple[int, dict[str, Any]]], samples: int, keys: list[str] | None
) -> None:
    """A run's history sampled by read_run (its run log) keeps exactly the rows the server's
    backends keep for the same samples and keys: one sampler (tracker._records.sampler)."""
    import tracker
    from tracker._rundir import LOG_NAME
    from tracker._runlog import read_records

    with tempfile.TemporaryDirectory() as folder, pytest.MonkeyPatch.context() as patch:
        patch.setattr(sampler, "BLOCK", 2)  # several blocks in these short series
        run = tracker.init(dir=folder, mode="offline", settings={"silent": True})
        step = -1
        for increment, data in rows:
            step += increment
            run.log(data, step=step)
        run.finish()
        local = tracker.read_run(run.dir).history(keys=keys, samples=samples)
        log = list(read_records(Path(run.dir).parent / LOG_NAME))

        async def served(backend: str) -> list[Any]:
            async with BACKENDS[backend](Path(folder) / backend) as opened:
                store = Store(opened)
                await start(store)
                await store.ingest(KEY, LOG, log, NOW)
                return await store.history(KEY, keys, None, None, samples)

        for backend in runnable():
            assert repr(asyncio.run(served(backend))) == repr(local), backend

"""History on every backend: key and step filters, sampling that keeps extremes (checked
against a brute-force reference on any order of stored rows, after forks and rewinds),
chart series, and the backends' answers compared with each other."""

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
from tracker._server.storage import RunKey, Store, series
from tracker._server.storage.errors import BadRequest, RunNotFound

from .backends import BACKENDS
from .making import KEY, LOG, NOW, records, row_records, start, stored_run

pytestmark = pytest.mark.anyio


def as_float(value: Any) -> float | None:
    """The number sampling compares, or None when the value is not a number."""
    if type(value) is int:
        try:
            return float(value)
        except OverflowError:
            return math.inf if value > 0 else -math.inf
    if type(value) is float and not math.isnan(value):
        return value
    return None


def reference_steps(rows: list[dict[str, Any]], keys: list[str], samples: int) -> list[int]:
    """The steps samples=N must return, by the definition, from full stored rows."""
    held = [row for row in rows if any(key in row for key in keys)]
    if len(held) <= samples:
        return [row["_step"] for row in held]
    buckets = samples // 2
    picked = {held[0]["_step"], held[-1]["_step"]}
    for bucket in range(buckets):
        members = [row for index, row in enumerate(held) if index * buckets // len(held) == bucket]
        for key in keys:
            numbers = [
                (number, row["_step"])
                for row in members
                if key in row and (number := as_float(row[key])) is not None
            ]
            if numbers:
                picked.add(min(numbers, key=lambda pair: pair[0])[1])
                picked.add(max(numbers, key=lambda pair: pair[0])[1])
    return sorted(picked)


async def test_rows_carry_step_timestamp_and_runtime(store: Store) -> None:
    """Each row is {_step, _timestamp, _runtime, **data} in step order."""
    await stored_run(store, [(0, {"a": 1}), (1, {"b": "x"})])
    assert await store.history(KEY, None, None, None, None) == [
        {"_step": 0, "_timestamp": 1000.0, "_runtime": 0.0, "a": 1},
        {"_step": 1, "_timestamp": 1001.0, "_runtime": 1.0, "b": "x"},
    ]


async def test_keys_keep_those_keys_of_rows_holding_one(store: Store) -> None:
    """keys returns _step and the requested keys, only for rows holding at least one."""
    await stored_run(store, [(0, {"a": 1, "b": 2}), (1, {"c": 3}), (2, {"b": None})])
    assert await store.history(KEY, ["b", "z"], None, None, None) == [
        {"_step": 0, "b": 2},
        {"_step": 2, "b": None},
    ]
    assert await store.history(KEY, [], None, None, None) == []


async def test_min_and_max_step_bound_the_rows(store: Store) -> None:
    """min_step and max_step are inclusive bounds, with or without sampling."""
    await stored_run(store, [(step, {"a": step}) for step in range(10)])
    for samples in (None, 4, 100):
        rows = await store.history(KEY, ["a"], 3, 6, samples)
        assert (rows[0]["_step"], rows[-1]["_step"]) == (3, 6)
        assert all(3 <= row["_step"] <= 6 for row in rows)
    assert await store.history(KEY, None, 20, None, None) == []


async def test_samples_keep_spikes_and_the_ends(store: Store) -> None:
    """With more rows than samples, each bucket keeps its extremes: spikes survive, the first
    and last rows too, and about N rows come back."""
    values = {step: math.sin(step / 50) for step in range(5000)}
    values[1234], values[4321] = 100.0, -100.0
    rows = [(step, {"loss": value, "other": "x"}) for step, value in values.items()]
    await stored_run(store, rows)
    sampled = await store.history(KEY, ["loss"], None, None, 100)
    steps = [row["_step"] for row in sampled]
    assert {0, 1234, 4321, 4999} <= set(steps)
    assert steps == sorted(steps)
    assert len(steps) <= 102
    assert all(set(row) == {"_step", "loss"} for row in sampled)
    full = await store.history(KEY, None, None, None, None)
    assert steps == reference_steps(full, ["loss"], 100)


async def test_samples_return_every_row_when_few(store: Store) -> None:
    """samples=N with at most N rows holding the keys returns them all."""
    await stored_run(store, [(step, {"a": step} if step % 2 else {"b": 1}) for step in range(10)])
    sampled = await store.history(KEY, ["a"], None, None, 5)
    assert [row["_step"] for row in sampled] == [1, 3, 5, 7, 9]
    everything = await store.history(KEY, None, None, None, 10)
    assert everything == await store.history(KEY, None, None, None, None)


async def test_samples_treat_special_values_as_numbers_or_not(store: Store) -> None:
    """inf and big ints count as extremes; NaN, strings, bools and None never do."""
    data: list[dict[str, Any]] = [{"v": float(step % 5)} for step in range(40)]
    data[7] = {"v": math.inf}
    data[13] = {"v": -(2**70)}
    data[21] = {"v": math.nan}
    data[22] = {"v": True}
    data[23] = {"v": "big"}
    data[24] = {"v": None}
    await stored_run(store, list(enumerate(data)))
    sampled = await store.history(KEY, ["v"], None, None, 4)
    steps = [row["_step"] for row in sampled]
    assert {7, 13} <= set(steps)
    assert not {21, 22, 23, 24} & set(steps)
    full = await store.history(KEY, None, None, None, None)
    assert steps == reference_steps(full, ["v"], 4)
    assert sampled[steps.index(13)]["v"] == -(2**70)


async def test_samples_without_keys_cover_every_key(store: Store) -> None:
    """samples with keys=None samples over all keys and returns whole rows."""
    rows = [(step, {"a": step % 7, "b": -(step % 11)}) for step in range(300)]
    await stored_run(store, rows)
    sampled = await store.history(KEY, None, None, None, 20)
    full = await store.history(KEY, None, None, None, None)
    assert [row["_step"] for row in sampled] == reference_steps(full, ["a", "b"], 20)
    assert all(set(row) == {"_step", "_timestamp", "_runtime", "a", "b"} for row in sampled)


@pytest.mark.parametrize(
    ("keys", "min_step", "max_step", "samples"),
    [
        ("a", None, None, None),
        ([1], None, None, None),
        (None, 1.5, None, None),
        (None, None, None, 0),
    ],
)
async def test_bad_history_arguments_are_400(
    store: Store, keys: Any, min_step: Any, max_step: Any, samples: Any
) -> None:
    """keys not a list of str, non-integer steps, or samples < 1 are BadRequest bad_request."""
    await stored_run(store, [(0, {"a": 1})])
    with pytest.raises(BadRequest) as caught:
        await store.history(KEY, keys, min_step, max_step, samples)
    assert caught.value.code == "bad_request"


async def test_history_of_an_unknown_run_is_404(store: Store) -> None:
    """Reading a run that does not exist is RunNotFound."""
    with pytest.raises(RunNotFound):
        await store.history(KEY, None, None, None, None)


async def test_samples_after_fork_and_rewind_match_the_rows(store: Store) -> None:
    """Forks, rewound runs and their archives sample exactly like their stored rows."""
    rows = [(step, {"a": (step * 37) % 101, "b": step % 13}) for step in range(700)]
    await stored_run(store, rows)
    child = RunKey("local", "mnist", "child")
    await start(store, "fork", key=child, fork_from=("abc12345", 333))
    await start(store, "rewind", rewind_to=450)
    archive = RunKey("local", "mnist", f"abc12345-rewind-{int(NOW)}")
    for key, first, last in ((KEY, 0, 450), (child, 0, 333), (archive, 451, 699)):
        full = await store.history(key, None, None, None, None)
        assert (full[0]["_step"], full[-1]["_step"]) == (first, last)
        for keys in (["a"], ["a", "b"]):
            sampled = await store.history(key, keys, None, None, 30)
            assert [row["_step"] for row in sampled] == reference_steps(full, keys, 30)


async def chart_run(store: Store, run_id: str, rows: list[dict[str, Any]]) -> RunKey:
    """A run in local/proj holding ``rows`` at steps 0, 1, ... from timestamp 1000."""
    key = RunKey("local", "proj", run_id)
    await start(store, key=key, now=1000.0)
    items: list[tuple[Any, ...]] = [("run", {"start_time": 1000.0})]
    items += [("row", step, 1000.0 + step, data) for step, data in enumerate(rows)]
    await store.ingest(key, LOG, records(*items), 1000.0)
    return key


async def test_chart_series_are_columns_with_times(store: Store) -> None:
    """Each numeric key comes as step, value, runtime and timestamp lists over its rows."""
    rows = [{"loss": 1.0, "note": "text"}, {"loss": 0.5, "acc": 0.2}, {"acc": 0.4}]
    key = await chart_run(store, "r", rows=rows)
    answer = await store.chart_series(key, None, None, 100)
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
    assert (await store.chart_series(key, ["acc"], 2, 100))["series"] == {
        "acc": {"step": [2], "value": [0.4], "runtime": [2.0], "timestamp": [1002.0]}
    }


async def test_chart_series_are_downsampled_per_key_keeping_spikes(
    store: Store,
) -> None:
    """samples=N caps each key near N points and keeps a one-step spike; NaN is kept as NaN."""
    rows: list[dict[str, Any]] = [{"loss": 1.0, "acc": 0.5} for _ in range(2000)]
    rows[1234] = {"loss": 99.0, "acc": math.nan}
    key = await chart_run(store, "r", rows=rows)
    series = (await store.chart_series(key, None, None, 50))["series"]
    assert len(series["loss"]["step"]) <= 52
    assert 99.0 in series["loss"]["value"]
    assert len(series["acc"]["step"]) <= 52


async def test_chart_series_refuse_bad_arguments_and_missing_runs(
    store: Store,
) -> None:
    """A missing run is run_not_found; bad keys, min_step or samples are bad_request."""
    key = await chart_run(store, "r", rows=[{"a": 1}])
    with pytest.raises(RunNotFound):
        await store.chart_series(RunKey("local", "proj", "none"), None, None, 10)
    for keys, min_step, samples in [("a", None, 10), (None, "1", 10), (None, None, 1)]:
        with pytest.raises(BadRequest) as caught:
            await store.chart_series(key, keys, min_step, samples)  # type: ignore[arg-type]
        assert caught.value.code == "bad_request"


row_data = st.dictionaries(
    st.sampled_from(["a", "b", "c"]),
    st.one_of(
        st.integers(-5, 5),
        st.floats(-5, 5),
        st.sampled_from([math.inf, -math.inf, math.nan, 2**70, "s", None, True]),
    ),
    max_size=3,
)
batch_rows = st.lists(st.tuples(st.integers(0, 60), row_data), max_size=25)


@pytest.mark.parametrize("backend", sorted(BACKENDS))
@settings(max_examples=60, deadline=None)
@given(
    st.lists(batch_rows, min_size=1, max_size=6),
    st.sampled_from([["a"], ["b", "c"], ["a", "b", "c"], None]),
    st.integers(2, 12),
    st.one_of(st.none(), st.integers(0, 60)),
)
def test_sampling_matches_the_reference_for_any_row_order(
    backend: str,
    batches: list[list[tuple[int, dict[str, Any]]]],
    keys: list[str] | None,
    samples: int,
    rewind_to: int | None,
) -> None:
    """Rows stored in any order, repeated or replaced, across batches and after a rewind,
    sample exactly as the definition says over what is stored; the last write of a step wins."""

    async def scenario(path: Path) -> None:
        async with BACKENDS[backend](path) as opened:
            store = Store(opened)
            await start(store)
            seq, expected = 0, {}
            for batch in batches:
                await store.ingest(KEY, LOG, row_records(batch, seq=seq), NOW)
                seq += len(batch)
                expected.update(dict(batch))
            if rewind_to is not None and expected and rewind_to <= max(expected):
                await start(store, "rewind", rewind_to=rewind_to)
                expected = {step: data for step, data in expected.items() if step <= rewind_to}
            full = await store.history(KEY, None, None, None, None)
            assert [row["_step"] for row in full] == sorted(expected)
            wanted = keys if keys is not None else ["a", "b", "c"]
            for low, high in ((None, None), (10, 40)):
                sampled = await store.history(KEY, keys, low, high, samples)
                bounded = [
                    row
                    for row in full
                    if (low is None or row["_step"] >= low)
                    and (high is None or row["_step"] <= high)
                ]
                if keys is None and len(bounded) <= samples:
                    assert [row["_step"] for row in sampled] == [row["_step"] for row in bounded]
                else:
                    assert [row["_step"] for row in sampled] == reference_steps(
                        bounded, wanted, samples
                    )

    with pytest.MonkeyPatch.context() as patch, tempfile.TemporaryDirectory() as folder:
        patch.setattr(series, "OPEN_CHUNK", 3)  # tiny chunks: fills, splits, rebuilds all happen
        patch.setattr(series, "MAX_CHUNK", 5)
        patch.setattr(sampler, "BLOCK", 2)
        asyncio.run(scenario(Path(folder)))


@pytest.mark.parametrize("backend", sorted(BACKENDS))
@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.lists(st.tuples(st.integers(1, 3), row_data), max_size=8), min_size=1, max_size=8),
    st.integers(2, 12),
)
def test_sampling_matches_the_reference_when_logging_live(
    backend: str, batches: list[list[tuple[int, dict[str, Any]]]], samples: int
) -> None:
    """Rows logged in step order in small batches (a live run) sample exactly as defined."""

    async def scenario(path: Path) -> None:
        async with BACKENDS[backend](path) as opened:
            store = Store(opened)
            await start(store)
            seq, step = 0, -1
            for batch in batches:
                rows = []
                for gap, data in batch:
                    step += gap
                    rows.append((step, data))
                await store.ingest(KEY, LOG, row_records(rows, seq=seq), NOW)
                seq += len(rows)
            full = await store.history(KEY, None, None, None, None)
            for keys in (["a"], ["a", "b", "c"]):
                sampled = await store.history(KEY, keys, None, None, samples)
                assert [row["_step"] for row in sampled] == reference_steps(full, keys, samples)

    with pytest.MonkeyPatch.context() as patch, tempfile.TemporaryDirectory() as folder:
        patch.setattr(series, "OPEN_CHUNK", 3)
        patch.setattr(series, "MAX_CHUNK", 5)
        patch.setattr(sampler, "BLOCK", 2)
        asyncio.run(scenario(Path(folder)))

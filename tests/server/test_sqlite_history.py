"""Tests for reading history from the SQLite storage: key and step filters, and sampling that
keeps extremes, checked against a brute-force reference on any order of stored rows."""

from __future__ import annotations

import asyncio
import itertools
import math
import sqlite3
import tempfile
from array import array
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tracker._records import sampler
from tracker._records.codec import encode_record
from tracker._records.kinds import decode_record
from tracker._server import _series
from tracker._server._sqlite import SQLiteStorage, open_sqlite
from tracker._server._storage import RunKey, StartRequest, Storage, StorageError

pytestmark = pytest.mark.anyio  # on asyncio (conftest): the storage uses its executors

KEY = RunKey("local", "mnist", "abc12345")
LOG = "6f1c0b1e9d3a4c7e8b2f5a0d4e6c8b1a"
NOW = 1_800_000_000.0


@pytest.fixture
async def storage(tmp_path: Path) -> AsyncIterator[SQLiteStorage]:
    """A storage on a fresh database file, closed after the test."""
    store = await open_sqlite(str(tmp_path / "tracker.db"))
    yield store
    await store.close()


def row_records(rows: Iterable[tuple[int, dict[str, Any]]], seq: int = 0) -> list[list[Any]]:
    """Row records for (step, data) pairs at 1 s per step, decoded as the server gets them."""
    return [
        decode_record(encode_record((seq + index, "row", step, 1000.0 + step), data, "row"))
        for index, (step, data) in enumerate(rows)
    ]


async def start(storage: Storage, mode: str = "new", key: RunKey = KEY, **kw: Any) -> None:
    """Handshake for ``key`` (fork_from / rewind_to as keywords)."""
    await storage.start_run(
        StartRequest(key, LOG, mode, kw.get("fork_from"), kw.get("rewind_to"), 10.0, NOW)
    )


async def stored_run(storage: Storage, rows: list[tuple[int, dict[str, Any]]]) -> None:
    """A new run holding ``rows``, with a session started at timestamp 1000."""
    await start(storage)
    opening = decode_record(encode_record((0, "run"), {"start_time": 1000.0}, "run"))
    await storage.ingest(KEY, LOG, [opening, *row_records(rows, seq=1)], NOW)


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


async def test_rows_carry_step_timestamp_and_runtime(storage: SQLiteStorage) -> None:
    """Each row is {_step, _timestamp, _runtime, **data} in step order."""
    await stored_run(storage, [(0, {"a": 1}), (1, {"b": "x"})])
    assert await storage.history(KEY, None, None, None, None) == [
        {"_step": 0, "_timestamp": 1000.0, "_runtime": 0.0, "a": 1},
        {"_step": 1, "_timestamp": 1001.0, "_runtime": 1.0, "b": "x"},
    ]


async def test_keys_keep_those_keys_of_rows_holding_one(storage: SQLiteStorage) -> None:
    """keys returns _step and the requested keys, only for rows holding at least one."""
    await stored_run(storage, [(0, {"a": 1, "b": 2}), (1, {"c": 3}), (2, {"b": None})])
    assert await storage.history(KEY, ["b", "z"], None, None, None) == [
        {"_step": 0, "b": 2},
        {"_step": 2, "b": None},
    ]
    assert await storage.history(KEY, [], None, None, None) == []


async def test_min_and_max_step_bound_the_rows(storage: SQLiteStorage) -> None:
    """min_step and max_step are inclusive bounds, with or without sampling."""
    await stored_run(storage, [(step, {"a": step}) for step in range(10)])
    for samples in (None, 4, 100):
        rows = await storage.history(KEY, ["a"], 3, 6, samples)
        assert (rows[0]["_step"], rows[-1]["_step"]) == (3, 6)
        assert all(3 <= row["_step"] <= 6 for row in rows)
    assert await storage.history(KEY, None, 20, None, None) == []


async def test_samples_keep_spikes_and_the_ends(storage: SQLiteStorage) -> None:
    """With more rows than samples, each bucket keeps its extremes: spikes survive, the first
    and last rows too, and about N rows come back."""
    values = {step: math.sin(step / 50) for step in range(5000)}
    values[1234], values[4321] = 100.0, -100.0
    rows = [(step, {"loss": value, "other": "x"}) for step, value in values.items()]
    await stored_run(storage, rows)
    sampled = await storage.history(KEY, ["loss"], None, None, 100)
    steps = [row["_step"] for row in sampled]
    assert {0, 1234, 4321, 4999} <= set(steps)
    assert steps == sorted(steps)
    assert len(steps) <= 102
    assert all(set(row) == {"_step", "loss"} for row in sampled)
    full = await storage.history(KEY, None, None, None, None)
    assert steps == reference_steps(full, ["loss"], 100)


async def test_samples_return_every_row_when_few(storage: SQLiteStorage) -> None:
    """samples=N with at most N rows holding the keys returns them all."""
    await stored_run(storage, [(step, {"a": step} if step % 2 else {"b": 1}) for step in range(10)])
    sampled = await storage.history(KEY, ["a"], None, None, 5)
    assert [row["_step"] for row in sampled] == [1, 3, 5, 7, 9]
    everything = await storage.history(KEY, None, None, None, 10)
    assert everything == await storage.history(KEY, None, None, None, None)


async def test_samples_treat_special_values_as_numbers_or_not(storage: SQLiteStorage) -> None:
    """inf and big ints count as extremes; NaN, strings, bools and None never do."""
    data: list[dict[str, Any]] = [{"v": float(step % 5)} for step in range(40)]
    data[7] = {"v": math.inf}
    data[13] = {"v": -(2**70)}
    data[21] = {"v": math.nan}
    data[22] = {"v": True}
    data[23] = {"v": "big"}
    data[24] = {"v": None}
    await stored_run(storage, list(enumerate(data)))
    sampled = await storage.history(KEY, ["v"], None, None, 4)
    steps = [row["_step"] for row in sampled]
    assert {7, 13} <= set(steps)
    assert not {21, 22, 23, 24} & set(steps)
    full = await storage.history(KEY, None, None, None, None)
    assert steps == reference_steps(full, ["v"], 4)
    assert sampled[steps.index(13)]["v"] == -(2**70)


async def test_samples_without_keys_cover_every_key(storage: SQLiteStorage) -> None:
    """samples with keys=None samples over all keys and returns whole rows."""
    rows = [(step, {"a": step % 7, "b": -(step % 11)}) for step in range(300)]
    await stored_run(storage, rows)
    sampled = await storage.history(KEY, None, None, None, 20)
    full = await storage.history(KEY, None, None, None, None)
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
    storage: SQLiteStorage, keys: Any, min_step: Any, max_step: Any, samples: Any
) -> None:
    """keys not a list of str, non-integer steps, or samples < 1 are 400 bad_request."""
    await stored_run(storage, [(0, {"a": 1})])
    with pytest.raises(StorageError) as caught:
        await storage.history(KEY, keys, min_step, max_step, samples)
    assert (caught.value.status, caught.value.code) == (400, "bad_request")


async def test_history_of_an_unknown_run_is_404(storage: SQLiteStorage) -> None:
    """Reading a run that does not exist is 404 run_not_found."""
    with pytest.raises(StorageError) as caught:
        await storage.history(KEY, None, None, None, None)
    assert caught.value.status == 404


async def test_samples_after_fork_and_rewind_match_the_rows(storage: SQLiteStorage) -> None:
    """Forks, rewound runs and their archives sample exactly like their stored rows."""
    rows = [(step, {"a": (step * 37) % 101, "b": step % 13}) for step in range(700)]
    await stored_run(storage, rows)
    child = RunKey("local", "mnist", "child")
    await start(storage, "fork", key=child, fork_from=("abc12345", 333))
    await start(storage, "rewind", rewind_to=450)
    archive = RunKey("local", "mnist", f"abc12345-rewind-{int(NOW)}")
    for key, first, last in ((KEY, 0, 450), (child, 0, 333), (archive, 451, 699)):
        full = await storage.history(key, None, None, None, None)
        assert (full[0]["_step"], full[-1]["_step"]) == (first, last)
        for keys in (["a"], ["a", "b"]):
            sampled = await storage.history(key, keys, None, None, 30)
            assert [row["_step"] for row in sampled] == reference_steps(full, keys, 30)


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


@settings(max_examples=60, deadline=None)
@given(
    st.lists(batch_rows, min_size=1, max_size=6),
    st.sampled_from([["a"], ["b", "c"], ["a", "b", "c"], None]),
    st.integers(2, 12),
    st.one_of(st.none(), st.integers(0, 60)),
)
def test_sampling_matches_the_reference_for_any_row_order(
    batches: list[list[tuple[int, dict[str, Any]]]],
    keys: list[str] | None,
    samples: int,
    rewind_to: int | None,
) -> None:
    """Rows stored in any order, repeated or replaced, across batches and after a rewind,
    sample exactly as the definition says over what is stored; the last write of a step wins."""

    async def scenario(path: str) -> None:
        store = await open_sqlite(path)
        try:
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
        finally:
            await store.close()

    with pytest.MonkeyPatch.context() as patch, tempfile.TemporaryDirectory() as folder:
        patch.setattr(_series, "OPEN_CHUNK", 3)  # tiny chunks: fills, splits, rebuilds all happen
        patch.setattr(_series, "MAX_CHUNK", 5)
        patch.setattr(sampler, "BLOCK", 2)
        asyncio.run(scenario(str(Path(folder) / "tracker.db")))


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.lists(st.tuples(st.integers(1, 3), row_data), max_size=8), min_size=1, max_size=8),
    st.integers(2, 12),
)
def test_sampling_matches_the_reference_when_logging_live(
    batches: list[list[tuple[int, dict[str, Any]]]], samples: int
) -> None:
    """Rows logged in step order in small batches (a live run) sample exactly as defined."""

    async def scenario(path: str) -> None:
        store = await open_sqlite(path)
        try:
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
        finally:
            await store.close()

    with pytest.MonkeyPatch.context() as patch, tempfile.TemporaryDirectory() as folder:
        patch.setattr(_series, "OPEN_CHUNK", 3)
        patch.setattr(_series, "MAX_CHUNK", 5)
        patch.setattr(sampler, "BLOCK", 2)
        asyncio.run(scenario(str(Path(folder) / "tracker.db")))


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.integers(1, 3), min_size=1, max_size=10),
    st.lists(st.integers(1, 3), min_size=1, max_size=10),
    st.integers(0, 2**40),
)
def test_extending_a_chunk_equals_cutting_the_whole_series(
    old_gaps: list[int], new_gaps: list[int], first: int
) -> None:
    """A chunk extended with later entries is the chunk `chunks` makes of the whole series,
    whether its steps and the new ones run without gaps or not."""
    steps = list(itertools.accumulate([first, *old_gaps[1:], *new_gaps]))
    values = array("d", [step / 7 for step in steps])
    cut = len(old_gaps)
    (chunk,) = _series.chunks(array("q", steps[:cut]), values[:cut], len(steps))
    extended = _series.extend_chunk(chunk, array("q", steps[cut:]), values[cut:])
    assert extended == _series.chunks(array("q", steps), values, len(steps))[0]


def first_extremes(values: list[float], start: int, stop: int) -> tuple[int, int] | None:
    """Where the first smallest and first largest number of values[start:stop] are, by scan."""
    held = [(value, index) for index, value in enumerate(values) if start <= index < stop]
    numbers = [(value, index) for value, index in held if not math.isnan(value)]
    if not numbers:
        return None
    return min(numbers, key=lambda pair: pair[0])[1], max(numbers, key=lambda pair: pair[0])[1]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.floats(-3, 3),
            st.sampled_from([0.0, -0.0, math.inf, -math.inf, math.nan, 1.0, -1.0]),
        ),
        min_size=1,
        max_size=40,
    ),
    st.lists(st.integers(1, 9), min_size=1, max_size=12),
    st.lists(st.booleans(), min_size=1, max_size=12),
    st.data(),
)
def test_block_extremes_find_what_a_scan_finds(
    values: list[float], sizes: list[int], summarized: list[bool], data: st.DataObject
) -> None:
    """Any values, in chunks of any size stored with or without their block extremes (as
    before the extremes were kept), give the positions of each range's first smallest
    and first largest number that a scan gives, whole or clipped; NaN, -0.0 and infinities
    included."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sampler, "BLOCK", 3)
        steps = array("q", range(len(values)))
        stored: list[_series.Chunk] = []
        offset = 0
        for size, keep in zip(itertools.cycle(sizes), itertools.cycle(summarized)):
            if offset >= len(values):
                break
            (chunk,) = _series.chunks(
                steps[offset : offset + size], array("d", values[offset : offset + size]), size
            )
            stored.append(chunk if keep else (*chunk[:4], b""))
            offset += size
        series = _series.unpack_series(stored)
        assert list(series.values) == pytest.approx(values, nan_ok=True)
        low = data.draw(st.integers(0, len(values) - 1))
        high = data.draw(st.integers(low, len(values) - 1))
        clipped = series.clip(low, high)
        for whole, scanned, base in ((series, values, 0), (clipped, values[low : high + 1], low)):
            count = len(scanned)
            start = data.draw(st.integers(0, count - 1))
            stop = data.draw(st.integers(start + 1, count))
            found = whole.extremes.first_extremes(whole.values, start, stop)
            assert found == first_extremes(scanned, start, stop), (base, start, stop)


async def test_a_database_from_before_block_extremes_samples_the_same(tmp_path: Path) -> None:
    """A database written by a tracker without block extremes (schema version 1) is migrated
    on open; its chunks, stored without extremes, sample as the definition says, and rows
    added since extend them."""
    path = str(tmp_path / "tracker.db")
    rows = [(step, {"a": math.cos(step / 9) * step}) for step in range(700)]
    store = await open_sqlite(path)
    await stored_run(store, rows[:200])
    await store.close()
    with sqlite3.connect(path) as conn:
        conn.execute("ALTER TABLE series DROP COLUMN extremes")
        conn.execute("UPDATE schema_version SET version = 1")
    store = await open_sqlite(path)
    try:
        await store.ingest(KEY, LOG, row_records(rows[200:], seq=201), NOW)
        full = await store.history(KEY, None, None, None, None)
        assert len(full) == 700
        for samples in (10, 99):
            sampled = await store.history(KEY, ["a"], None, None, samples)
            assert [row["_step"] for row in sampled] == reference_steps(full, ["a"], samples)
    finally:
        await store.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT version FROM schema_version").fetchone() == (2,)

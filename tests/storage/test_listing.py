"""Run listings on every backend: the filter language, orders and sorts (the runs table's
too), pages, projects, run edits, files and API keys."""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tracker._server.storage import RunKey, Store, parse_order, parse_sort
from tracker._server.storage.errors import BadRequest, FileReplaced, RunNotFound
from tracker._server.storage.spool import FILE_CHUNK_BYTES

from .making import KEY, LOG, NOW, put_bytes, records, start

pytestmark = pytest.mark.anyio


async def make_runs(store: Store) -> None:
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
        await start(store, key=key, now=NOW + index)
        batch = records(("run", meta), ("config", config), ("summary", summary))
        await store.ingest(key, LOG, batch, NOW + index)
    await store.ingest(
        RunKey("local", "proj", "r2"), LOG, records(("exit", {"state": "finished"}), seq=3), NOW
    )
    await start(store, key=RunKey("local", "other", "o1"))
    await start(store, key=RunKey("team", "proj", "t1"))


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
    store: Store, filters: dict[str, Any], expected: list[str]
) -> None:
    """Each filter keeps the runs it names, all must hold, and total counts the matches."""
    await make_runs(store)
    runs, total = await store.list_runs("local", "proj", filters, parse_order("created_at"), 100, 0)
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
async def test_list_runs_orders(store: Store, order: str, expected: list[str]) -> None:
    """Runs come back by creation time, name (case ignored) or update time, either way."""
    await make_runs(store)
    await store.update_run(RunKey("local", "proj", "r2"), {"notes": "n"}, NOW + 100)
    runs, _ = await store.list_runs("local", "proj", {}, parse_order(order), 100, 0)
    assert [run["id"] for run in runs] == expected


@pytest.mark.parametrize("filters", [{}, {"config.lr": 0.1, "tags": "base"}, {"summary.acc": 1}])
async def test_list_runs_pages_with_a_total(store: Store, filters: dict[str, Any]) -> None:
    """limit and offset cut pages out of the ordered matches; total counts them all."""
    await make_runs(store)
    newest = parse_order("-created_at")
    everything, total = await store.list_runs("local", "proj", filters, newest, 100, 0)
    pages = [
        await store.list_runs("local", "proj", filters, newest, 2, offset)
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
    store: Store, filters: dict[str, Any], order: str, limit: int, offset: int, code: str
) -> None:
    """Unknown filters, non-text values, unknown orders and negative paging are BadRequest."""
    with pytest.raises(BadRequest) as caught:
        await store.list_runs("local", "proj", filters, parse_order(order), limit, offset)
    assert caught.value.code == code


async def test_list_projects_counts_runs_per_project(store: Store) -> None:
    """Projects of an entity come with their run count and latest update."""
    await make_runs(store)
    projects = await store.list_projects("local")
    assert [(p["name"], p["runs"]) for p in projects] == [("other", 1), ("proj", 5)]
    assert await store.list_projects("nobody") == []


async def test_update_run_edits_tags_and_notes(store: Store) -> None:
    """The dashboard may change tags and notes (duplicate tags dropped); no change, other
    fields and bad values are BadRequest; a missing run is RunNotFound."""
    await start(store)
    await store.update_run(KEY, {"tags": ["best", "best"], "notes": "keep"}, NOW + 1)
    run = await store.get_run(KEY)
    assert run is not None
    assert (run["tags"], run["notes"], run["updated_at"]) == (["best"], "keep", NOW + 1)
    for changes in ({"name": "x"}, {"tags": "best"}, {"notes": 3}, {}, {"tags": ["x" * 257]}):
        with pytest.raises(BadRequest):
            await store.update_run(KEY, changes, NOW)
    with pytest.raises(RunNotFound):
        await store.update_run(RunKey("local", "mnist", "nope"), {"notes": None}, NOW)


# -- files and keys ------------------------------------------------------------------------


async def test_files_are_stored_listed_and_replaced(store: Store) -> None:
    """put_file stores bytes with size and sha256; the same name replaces; get_file reads."""
    await start(store)
    await put_bytes(store, KEY, "b/model.pt", b"\x00\x01weights", NOW)
    await put_bytes(store, KEY, "a.txt", b"one", NOW)
    await put_bytes(store, KEY, "a.txt", b"two!", NOW + 1)
    files = await store.list_files(KEY)
    assert [(f["name"], f["size"], f["updated_at"]) for f in files] == [
        ("a.txt", 4, NOW + 1),
        ("b/model.pt", 9, NOW),
    ]
    assert files[0]["sha256"] == hashlib.sha256(b"two!").hexdigest()
    assert await store.get_file(KEY, "a.txt") == b"two!"
    assert await store.get_file(KEY, "missing") is None
    with pytest.raises(RunNotFound):
        await put_bytes(store, RunKey("local", "mnist", "nope"), "a", b"", NOW)
    with pytest.raises(RunNotFound):
        await store.list_files(RunKey("local", "mnist", "nope"))


async def test_a_file_of_many_chunks_is_read_back_in_chunks(store: Store) -> None:
    """A file of 9.5 chunks reads back exactly, a chunk at a time (the last one short),
    whatever the snapshot each read takes; replacing it with one chunk leaves none of the
    old chunks."""
    await start(store)
    content = os.urandom(FILE_CHUNK_BYTES * 19 // 2)
    await put_bytes(store, KEY, "model.pt", content, NOW)
    found = await store.open_file(KEY, "model.pt")
    assert found is not None
    info, chunks = found
    assert (info["size"], info["sha256"]) == (len(content), hashlib.sha256(content).hexdigest())
    pieces = [chunk async for chunk in chunks]
    assert [len(piece) for piece in pieces] == [FILE_CHUNK_BYTES] * 9 + [FILE_CHUNK_BYTES // 2]
    assert b"".join(pieces) == content
    await put_bytes(store, KEY, "model.pt", b"small", NOW + 1)
    assert await store.get_file(KEY, "model.pt") == b"small"
    await put_bytes(store, KEY, "empty", b"", NOW)
    assert await store.get_file(KEY, "empty") == b""


async def test_a_file_replaced_while_it_is_read_stops_the_read(store: Store) -> None:
    """A download whose file is replaced between two of its reads raises FileReplaced (never
    a mix of the two files' chunks); one of the new file reads it whole."""
    await start(store)
    await put_bytes(store, KEY, "f", b"a" * (FILE_CHUNK_BYTES * 9), NOW)
    found = await store.open_file(KEY, "f")
    assert found is not None
    chunks = found[1]
    assert await anext(chunks) == b"a" * FILE_CHUNK_BYTES
    await put_bytes(store, KEY, "f", b"b" * (FILE_CHUNK_BYTES * 9), NOW + 1)
    before: list[bytes] = []
    with pytest.raises(FileReplaced, match="download it again"):
        await _drain(chunks, before)
    assert before == [b"a" * FILE_CHUNK_BYTES] * 3  # what the first read held
    assert await store.get_file(KEY, "f") == b"b" * (FILE_CHUNK_BYTES * 9)


async def _drain(chunks: AsyncIterator[bytes], into: list[bytes]) -> None:
    """Append every chunk to ``into`` until the iterator ends or raises."""
    async for chunk in chunks:
        into.append(chunk)


async def test_api_keys_map_to_entities(store: Store) -> None:
    """Keys map to entities, and rebinding a key replaces it."""
    assert not await store.has_api_keys()
    await store.add_api_key("team", "secret-key")
    await store.add_api_key("local", "other")
    assert await store.has_api_keys()
    assert await store.entity_for_key("secret-key") == "team"
    assert await store.entity_for_key("nope") is None
    await store.add_api_key("team2", "secret-key")
    assert await store.entity_for_key("secret-key") == "team2"


async def _run(
    store: Store,
    run_id: str,
    *,
    config: dict[str, Any] | None = None,
    summary: dict[str, Any] | None = None,
    rows: list[dict[str, Any]] = (),  # type: ignore[assignment]
    name: str | None = None,
) -> RunKey:
    key = RunKey("local", "proj", run_id)
    await start(store, key=key, now=1000.0)
    items: list[tuple[Any, ...]] = [("run", {"name": name or run_id, "start_time": 1000.0})]
    items.append(("config", config or {}))
    items += [("row", step, 1000.0 + step, data) for step, data in enumerate(rows)]
    items.append(("summary", summary or {}))
    await store.ingest(key, LOG, records(*items), 1000.0)
    return key


async def _sorted_ids(store: Store, sort: list[str], descending: bool, **kw: Any) -> Any:
    runs, total = await store.list_runs(
        "local",
        "proj",
        kw.get("filters", {}),
        parse_sort(sort, descending),
        kw.get("limit", 100),
        0,
    )
    return [run["id"] for run in runs], total


async def test_runs_sort_by_a_summary_value_with_missing_values_last(
    store: Store,
) -> None:
    """Sorting on summary.KEY orders by the value both ways; runs without it come last."""
    await _run(store, "b", summary={"acc": 0.5})
    await _run(store, "a", summary={"acc": 0.9})
    await _run(store, "c", summary={})
    await _run(store, "d", summary={"acc": 0.1})
    assert await _sorted_ids(store, ["summary", "acc"], True) == (["a", "b", "d", "c"], 4)
    assert await _sorted_ids(store, ["summary", "acc"], False) == (["d", "b", "a", "c"], 4)


async def test_runs_sort_by_nested_config_and_by_columns(store: Store) -> None:
    """A config path sorts nested values; name and runtime sort as columns."""
    await _run(store, "x", config={"opt": {"lr": 0.3}}, name="Beta", rows=[{"a": 1}] * 3)
    await _run(store, "y", config={"opt": {"lr": 0.1}}, name="alpha", rows=[{"a": 1}])
    await _run(store, "z", config={"opt": {"lr": 0.2}}, name="gamma", rows=[{"a": 1}] * 2)
    assert (await _sorted_ids(store, ["config", "opt", "lr"], False))[0] == ["y", "z", "x"]
    assert (await _sorted_ids(store, ["name"], False))[0] == ["y", "x", "z"]  # case ignored
    assert (await _sorted_ids(store, ["runtime"], True))[0] == ["x", "z", "y"]


async def test_sorted_runs_keep_filters_and_pages(store: Store) -> None:
    """Filters (SQL and config checks alike) and limit apply to the sorted runs and total."""
    for index in range(6):
        await _run(store, f"r{index}", config={"even": index % 2 == 0}, summary={"n": index})
    by_n = parse_sort(["summary", "n"], True)
    runs, total = await store.list_runs("local", "proj", {"config.even": True}, by_n, 2, 1)
    assert ([run["id"] for run in runs], total) == (["r2", "r0"], 3)
    runs, total = await store.list_runs("local", "proj", {"search": "r1"}, by_n, 10, 0)
    assert ([run["id"] for run in runs], total) == (["r1"], 1)


@pytest.mark.parametrize(
    "sort",
    [[], ["nope"], ["config"], ["summary", 'a"b'], ["state", "x"], "name", [""], [1]],
)
async def test_bad_sorts_are_refused(store: Store, sort: Any) -> None:
    """An unknown column, a bare config/summary, a quote in a key or a non-list is bad_order."""
    with pytest.raises(BadRequest) as caught:
        await store.list_runs("local", "proj", {}, parse_sort(sort, True), 10, 0)
    assert caught.value.code == "bad_order"


async def test_bad_pages_are_refused(store: Store) -> None:
    """A negative limit or offset is a bad_request."""
    with pytest.raises(BadRequest, match="limit"):
        await store.list_runs("local", "proj", {}, parse_sort(["name"], True), -1, 0)


async def test_sorting_by_a_value_orders_numbers_before_texts_and_missing_last(
    store: Store,
) -> None:
    """A config value sorts numbers (ints and floats together, bools as 0 and 1) before
    texts (big ints are texts in the exact encoding); NaN, null and missing values come
    last both ways; ties go by creation, in the sort's direction."""
    values: list[Any] = [2, "b", 0.5, None, True, math.nan, "a", 2**70, 2, {"x": 1}]
    for index, value in enumerate(values):
        await _run(store, f"r{index}", config={"v": value})
    await _run(store, "none")
    ascending, _ = await _sorted_ids(store, ["config", "v"], False)
    assert ascending == ["r2", "r4", "r0", "r8", "r7", "r6", "r1", "r9", "r3", "r5", "none"]
    descending, _ = await _sorted_ids(store, ["config", "v"], True)
    assert descending == ["r9", "r1", "r6", "r7", "r8", "r0", "r4", "r2", "none", "r5", "r3"]


async def test_group_sorts_put_runs_without_one_last(store: Store) -> None:
    """Sorting by a column that may be unset (group) puts runs without it last both ways."""
    for run_id, group in (("a", "g2"), ("b", None), ("c", "g1")):
        key = await _run(store, run_id)
        await store.ingest(key, LOG, records(("run", {"group": group}), seq=3), 1000.0)
    assert (await _sorted_ids(store, ["group"], False))[0] == ["c", "a", "b"]
    assert (await _sorted_ids(store, ["group"], True))[0] == ["a", "c", "b"]

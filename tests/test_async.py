"""Tests for the async API (ainit, alog, aflush, afinish, async with) under asyncio and trio."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import anyio
import anyio.lowlevel
import pytest
from anyio.abc import TaskStatus

import tracker
from tracker import _runlog

pytestmark = pytest.mark.anyio

T = TypeVar("T")

SILENT: dict[str, Any] = {"silent": True}
SLOW_DISK_SECONDS = 0.15


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Run every async test once on asyncio and once on trio."""
    return str(request.param)


@pytest.fixture
def slow_disk(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make opening and fsyncing a run log take SLOW_DISK_SECONDS, like a slow disk would."""
    real_open = _runlog.RunLogWriter.__init__
    real_fsync = _runlog.RunLogWriter.fsync

    def slow_open(self: _runlog.RunLogWriter, path: Path) -> None:
        time.sleep(SLOW_DISK_SECONDS)
        real_open(self, path)

    def slow_fsync(self: _runlog.RunLogWriter) -> None:
        time.sleep(SLOW_DISK_SECONDS)
        real_fsync(self)

    monkeypatch.setattr(_runlog.RunLogWriter, "__init__", slow_open)
    monkeypatch.setattr(_runlog.RunLogWriter, "fsync", slow_fsync)


async def ticks_during(call: Callable[[], Awaitable[T]]) -> tuple[T, int, float]:
    """Await ``call()`` while a task ticks every millisecond.

    Returns the call's result, the ticks counted while it ran and its duration in seconds.
    """
    ticks = 0

    async def ticker(*, task_status: TaskStatus[None]) -> None:
        nonlocal ticks
        task_status.started()
        while True:
            await anyio.sleep(0.001)
            ticks += 1

    async with anyio.create_task_group() as group:
        await group.start(ticker)
        before = ticks
        started = time.perf_counter()
        result = await call()
        elapsed = time.perf_counter() - started
        during = ticks - before
        group.cancel_scope.cancel()
    return result, during, elapsed


def history_without_times(run_dir: str) -> list[dict[str, Any]]:
    """The stored history of a run with _timestamp and _runtime left out."""
    return [
        {key: value for key, value in row.items() if key not in ("_timestamp", "_runtime")}
        for row in tracker.read_run(run_dir).history()
    ]


async def test_ainit_returns_the_current_run_and_alog_rows_read_back(tmp_path: Path) -> None:
    """`await ainit()` returns a Run that is tracker.run; alog'd rows are stored in order."""
    run = await tracker.ainit(dir=tmp_path, settings=SILENT)
    assert isinstance(run, tracker.Run)
    assert run is tracker.run
    await run.alog({"loss": 0.5, "name": "héllo"})
    await run.alog({"loss": float("inf"), "n": 2})
    await run.alog({"nested": {"a": [1, 2.5, None]}})
    await run.afinish()

    assert tracker.run is None
    stored = tracker.read_run(run.dir)
    assert stored.state == "finished"
    assert stored.id == run.id
    assert history_without_times(run.dir) == [
        {"_step": 0, "loss": 0.5, "name": "héllo"},
        {"_step": 1, "loss": float("inf"), "n": 2},
        {"_step": 2, "nested": {"a": [1, 2.5, None]}},
    ]


async def test_ainit_rejects_a_bad_argument(tmp_path: Path) -> None:
    """`ainit()` checks its arguments like `init()`: a bad one raises UsageError, no run."""
    with pytest.raises(tracker.UsageError, match="reinit"):
        await tracker.ainit(dir=tmp_path, reinit="sometimes", settings=SILENT)
    assert tracker.run is None
    assert [entry async for entry in anyio.Path(tmp_path).iterdir()] == []


async def test_async_with_finishes_the_run_on_exit(tmp_path: Path) -> None:
    """`async with await ainit()` finishes the run when the block ends."""
    async with await tracker.ainit(dir=tmp_path, settings=SILENT) as run:
        await run.alog({"x": 1})
        assert await run.aflush() is True
        assert tracker.read_run(run.dir).state == "running"
    assert tracker.run is None
    stored = tracker.read_run(run.dir)
    assert stored.state == "finished"
    assert [row["x"] for row in stored.history()] == [1]


async def test_exception_escaping_async_with_marks_the_run_failed(tmp_path: Path) -> None:
    """An exception escaping `async with run:` propagates and marks the run failed."""
    run = await tracker.ainit(dir=tmp_path, settings=SILENT)

    async def fail_inside() -> None:
        async with run:
            await run.alog({"x": 1})
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        await fail_inside()
    assert tracker.run is None
    stored = tracker.read_run(run.dir)
    assert stored.state == "failed"
    assert [row["x"] for row in stored.history()] == [1]
    with pytest.raises(tracker.UsageError, match="finish"):
        await run.alog({"x": 2})


async def test_aflush_makes_every_logged_row_durable(
    tmp_path: Path, metadata_recorded: Callable[[tracker.Run], None]
) -> None:
    """`await aflush()` returns True once nothing is queued and every row is readable."""
    run = await tracker.ainit(dir=tmp_path, settings=SILENT)
    metadata_recorded(run)
    for i in range(1000):
        await run.alog({"i": i})
    assert await run.aflush() is True
    status = run.status()
    assert status.queued == 0
    assert status.durable == status.written
    assert [row["i"] for row in tracker.read_run(run.dir).history()] == list(range(1000))
    await run.afinish()


@pytest.mark.usefixtures("slow_disk")
async def test_ainit_does_not_block_the_event_loop(tmp_path: Path) -> None:
    """While `ainit()` waits on a slow disk, other tasks on the event loop keep running."""
    run, ticks, elapsed = await ticks_during(lambda: tracker.ainit(dir=tmp_path, settings=SILENT))
    assert elapsed >= SLOW_DISK_SECONDS * 0.9
    assert ticks >= 5, f"the loop ticked {ticks} times during a {elapsed:.3f}s ainit()"
    await run.afinish()


@pytest.mark.usefixtures("slow_disk")
async def test_afinish_does_not_block_the_event_loop(tmp_path: Path) -> None:
    """While `afinish()` waits for its rows to reach a slow disk, the event loop keeps running."""
    run = await tracker.ainit(dir=tmp_path, settings=SILENT)
    for i in range(20_000):
        run.log({"i": i})
    _, ticks, elapsed = await ticks_during(run.afinish)
    assert elapsed >= SLOW_DISK_SECONDS * 0.9
    assert ticks >= 5, f"the loop ticked {ticks} times during a {elapsed:.3f}s afinish()"
    stored = tracker.read_run(run.dir)
    assert stored.state == "finished"
    assert len(stored.history()) == 20_000


@pytest.mark.usefixtures("slow_disk")
async def test_aflush_does_not_block_the_event_loop(
    tmp_path: Path, metadata_recorded: Callable[[tracker.Run], None]
) -> None:
    """While `aflush()` waits for a slow disk's fsync, the event loop keeps running."""
    run = await tracker.ainit(dir=tmp_path, settings=SILENT)
    metadata_recorded(run)
    for i in range(20_000):
        run.log({"i": i})
    flushed, ticks, elapsed = await ticks_during(run.aflush)
    assert flushed is True
    assert elapsed >= SLOW_DISK_SECONDS * 0.9
    assert ticks >= 5, f"the loop ticked {ticks} times during a {elapsed:.3f}s aflush()"
    assert run.status().queued == 0
    await run.afinish()


async def test_alog_awaits_room_in_a_full_queue_without_blocking_the_loop(
    tmp_path: Path,
) -> None:
    """Under the "block" policy a full queue makes alog await: all rows stored, loop runs."""
    run = await tracker.ainit(
        dir=tmp_path,
        settings={"silent": True, "queue_max_events": 5, "batch_linger_seconds": 0.01},
    )

    async def log_all() -> None:
        # no other await in this loop: the ticker only runs when alog itself yields
        for i in range(2000):
            await run.alog({"i": i})

    _, ticks, elapsed = await ticks_during(log_all)
    assert ticks >= 10, f"the loop ticked {ticks} times during {elapsed:.3f}s of alog()"
    assert run.status().dropped == 0
    await run.afinish()
    history = tracker.read_run(run.dir).history()
    assert [row["i"] for row in history] == list(range(2000))
    assert [row["_step"] for row in history] == list(range(2000))


async def test_concurrent_tasks_alog_to_one_run(tmp_path: Path) -> None:
    """20 tasks x 200 alog calls on one run: all 4000 rows stored, each at its own step."""
    run = await tracker.ainit(dir=tmp_path, settings=SILENT)

    async def worker(task: int) -> None:
        for i in range(200):
            await run.alog({"task": task, "i": i})
            if i % 17 == 0:
                await anyio.lowlevel.checkpoint()

    async with anyio.create_task_group() as group:
        for task in range(20):
            group.start_soon(worker, task)
    await run.afinish()

    history = tracker.read_run(run.dir).history()
    assert len(history) == 4000
    assert sorted(row["_step"] for row in history) == list(range(4000))
    assert sorted((row["task"], row["i"]) for row in history) == [
        (task, i) for task in range(20) for i in range(200)
    ]
    for task in range(20):
        assert [row["i"] for row in history if row["task"] == task] == list(range(200))


async def test_alog_follows_the_same_step_and_commit_rules_as_log(tmp_path: Path) -> None:
    """alog's step/commit rules (merge, commit=False, jump, drop below) match log's."""

    async def calls(run: tracker.Run, asynchronous: bool) -> None:
        async def log(data: dict[str, Any], **kwargs: Any) -> None:
            if asynchronous:
                await run.alog(data, **kwargs)
            else:
                run.log(data, **kwargs)

        sequence: list[tuple[dict[str, Any], dict[str, Any]]] = [
            ({"a": 1}, {"commit": False}),
            ({"b": 2}, {}),
            ({"c": 3}, {"step": 5}),
            ({"d": 4}, {"step": 5}),
            ({"e": 5}, {"step": 7}),
            ({"f": 6}, {"commit": True}),
            ({"g": 7}, {}),
        ]
        for data, kwargs in sequence:
            await log(data, **kwargs)
        with pytest.warns(UserWarning, match="step=3"):
            await log({"late": 1}, step=3)
        await log({"h": 8}, step=10)

    sync_run = await tracker.ainit(dir=tmp_path / "sync", settings=SILENT)
    await calls(sync_run, asynchronous=False)
    await sync_run.afinish()
    async_run = await tracker.ainit(dir=tmp_path / "async", settings=SILENT)
    await calls(async_run, asynchronous=True)
    assert async_run.step == 10
    await async_run.afinish()

    expected = [
        {"_step": 0, "a": 1, "b": 2},
        {"_step": 5, "c": 3, "d": 4},
        {"_step": 7, "e": 5, "f": 6},
        {"_step": 8, "g": 7},
        {"_step": 10, "h": 8},
    ]
    assert history_without_times(async_run.dir) == expected
    assert history_without_times(sync_run.dir) == expected


async def test_alog_with_a_non_str_key_raises_usage_error(tmp_path: Path) -> None:
    """`alog({1: 2})` raises UsageError naming the key, and logs nothing."""
    run = await tracker.ainit(dir=tmp_path, settings=SILENT)
    with pytest.raises(tracker.UsageError, match="key 1"):
        await run.alog({1: 2})  # type: ignore[dict-item]
    assert run.step == 0
    await run.alog({"ok": 1})
    await run.afinish()
    assert history_without_times(run.dir) == [{"_step": 0, "ok": 1}]


async def test_alog_after_afinish_raises_usage_error(tmp_path: Path) -> None:
    """alog on a finished run raises UsageError telling the user to start a new run."""
    run = await tracker.ainit(dir=tmp_path, settings=SILENT)
    await run.alog({"x": 1})
    await run.afinish()
    with pytest.raises(tracker.UsageError, match=r"finish.*tracker\.init"):
        await run.alog({"x": 2})
    await run.afinish()  # idempotent
    assert history_without_times(run.dir) == [{"_step": 0, "x": 1}]

"""Which runs change (`Store.changes`): a watcher of a run is woken by what changes that run
here, its start, an acked batch, a compaction step, an edit, and by nothing of another run."""

from __future__ import annotations

import asyncio

import pytest

from tracker._server.storage import RunKey, Store

from .making import KEY, NOW, rows, start

pytestmark = pytest.mark.anyio

OTHER = RunKey(KEY.entity, KEY.project, "other123")


async def test_a_watcher_is_woken_by_its_runs_changes_only(store: Store) -> None:
    with store.changes.watching([KEY]) as changed:
        await start(store, key=OTHER)
        await store.ingest(OTHER, "1" * 32, rows(range(3)), NOW)
        await store.compacted()
        assert not changed.is_set()

        await start(store)
        assert changed.is_set()
        changed.clear()
        await store.ingest(KEY, "6f1c0b1e9d3a4c7e8b2f5a0d4e6c8b1a", rows(range(3)), NOW)
        assert changed.is_set()
        changed.clear()
        await store.compacted()
        assert changed.is_set()
        changed.clear()
        await store.update_run(KEY, {"notes": "seen"}, NOW)
        assert changed.is_set()


async def test_watchers_leave_nothing_behind(store: Store) -> None:
    """A watcher that stops watching is forgotten; two watchers of one run are both woken."""
    with store.changes.watching([KEY]) as first, store.changes.watching([KEY, OTHER]) as second:
        await start(store)
        assert first.is_set()
        assert second.is_set()
    with store.changes.watching([OTHER]) as third:
        await start(store)
        await asyncio.sleep(0)
        assert not third.is_set()
    assert not store.changes._watchers

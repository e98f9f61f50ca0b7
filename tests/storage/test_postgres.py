"""What PostgreSQL adds to the conformance suite: several server processes on one database
(two backends here, each with its own pool) serialize a run's writes by its row lock and
sweep crashed runs one at a time; driver errors become storage errors; the schema's row
tables are hash-partitioned by run."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from postgres_db import fresh_database

from tracker._server.storage import Store
from tracker._server.storage.errors import StorageBusy, StorageClosed, StorageFailed
from tracker._server.storage.postgres import PostgresBackend
from tracker._server.storage.postgres_schema import MIGRATIONS, PARTITIONS

from .making import KEY, LOG, NOW, history_steps, rows, start

pytestmark = pytest.mark.anyio


@pytest.fixture
async def url() -> AsyncIterator[str]:
    """A fresh database's URL."""
    async with fresh_database() as made:
        yield made


async def test_a_write_holds_its_run_against_another_server_process(url: str) -> None:
    """While one process's write has loaded a run, another process's write of that run
    waits for it to commit (SELECT ... FOR UPDATE), then sees what it wrote."""
    first, second = Store(await PostgresBackend.open(url)), Store(await PostgresBackend.open(url))
    try:
        await start(first)
        async with first.backend.write() as tx:
            held = await tx.load_run(KEY)
            assert held is not None
            waiting = asyncio.create_task(second.ingest(KEY, LOG, rows(range(3)), NOW))
            await asyncio.sleep(0.3)
            assert not waiting.done()
            await tx.update_run(held["pk"], {"notes": "first"})
        assert (await waiting).seq == 2
        run = await second.get_run(KEY)
        assert run is not None
        assert run["notes"] == "first"
        assert await history_steps(first) == [0, 1, 2]
    finally:
        await first.close()
        await second.close()


async def test_one_process_sweeps_crashed_runs_at_a_time(url: str) -> None:
    """While one process sweeps (holding the advisory lock), another's sweep marks nothing;
    the first one marks the silent run, once."""
    first, second = await PostgresBackend.open(url), await PostgresBackend.open(url)
    try:
        await start(Store(first), now=NOW, interval=10.0)
        later = NOW + 1000
        async with first.write() as tx:
            assert await tx.mark_crashed(later, 3.0, 3.0) == 1
            async with second.write() as other:
                assert await other.mark_crashed(later, 3.0, 3.0) == 0
        async with second.write() as other:
            assert await other.mark_crashed(later, 3.0, 3.0) == 0
        run = await Store(second).get_run(KEY)
        assert run is not None
        assert run["state"] == "crashed"
    finally:
        await first.close()
        await second.close()


async def test_a_lock_wait_past_the_timeout_is_busy(url: str) -> None:
    """A write that cannot get a run's row lock within lock_timeout is StorageBusy
    (retry), and the run is unchanged."""
    first = await PostgresBackend.open(url)
    impatient = await PostgresBackend.open(url + "&lock_timeout=100")
    try:
        await start(Store(first))
        async with first.write() as tx:
            await tx.load_run(KEY)
            with pytest.raises(StorageBusy, match="retry"):
                await Store(impatient).ingest(KEY, LOG, rows(range(2)), NOW)
        assert await history_steps(Store(first)) == []
    finally:
        await first.close()
        await impatient.close()


async def test_a_closed_backend_refuses_and_a_broken_query_fails(url: str) -> None:
    """Driver errors become storage errors: a failing statement is StorageFailed naming
    the database, any call after close is StorageClosed."""
    backend = await PostgresBackend.open(url)
    async with backend.read() as snap:
        assert await snap.load_run(KEY) is None
    with pytest.raises(StorageFailed, match=r"127\.0\.0\.1:5432"):
        async with backend.write() as tx:
            await tx._conn.execute("SELECT * FROM no_such_table")
    await backend.close()
    await backend.close()
    with pytest.raises(StorageClosed):
        async with backend.read():
            pass
    with pytest.raises(StorageClosed):
        await Store(backend).ingest(KEY, LOG, rows(range(1)), NOW)


async def test_the_row_tables_are_hash_partitioned_by_run(url: str) -> None:
    """history, series, stream_records and row_log have PARTITIONS hash partitions each,
    and a run's compacted rows all land in one of them."""
    store = Store(await PostgresBackend.open(url))
    try:
        await start(store)
        await store.ingest(KEY, LOG, rows(range(50)), NOW)
        await store.compacted()
        async with store.backend.read() as snap:
            conn = snap._conn
            for table in ("history", "series", "stream_records", "row_log"):
                strategy = await conn.fetchval(
                    "SELECT partstrat::text FROM pg_partitioned_table "
                    "WHERE partrelid = $1::regclass",
                    table,
                )
                assert strategy == "h"
                count = await conn.fetchval(
                    "SELECT COUNT(*) FROM pg_inherits WHERE inhparent = $1::regclass", table
                )
                assert count == PARTITIONS
            compressions = await conn.fetch(
                "SELECT attcompression::text, attstorage::text FROM pg_attribute WHERE "
                "attname = 'body' AND attrelid IN (SELECT inhrelid FROM pg_inherits "
                "WHERE inhparent = 'row_log'::regclass)"
            )
            assert len(compressions) == PARTITIONS
            assert all(tuple(row) in {("l", "x"), ("", "e")} for row in compressions)
            holding = await conn.fetch(
                "SELECT tableoid::regclass, COUNT(*) FROM history GROUP BY 1"
            )
            assert [row[1] for row in holding] == [50]
    finally:
        await store.close()


async def test_processes_opening_a_new_database_at_once_migrate_it_once(url: str) -> None:
    """Three processes opening one empty database at the same moment (replicas starting
    together) all open it: one migrates under the advisory lock, the others find it done."""
    opened = await asyncio.gather(*(PostgresBackend.open(url) for _ in range(3)))
    try:
        found = sorted(backend.migrated.found for backend in opened)
        assert found == [0, len(MIGRATIONS), len(MIGRATIONS)]
        async with opened[0].read() as snap:
            assert await snap._conn.fetchval("SELECT version FROM schema_version") == len(
                MIGRATIONS
            )
    finally:
        for backend in opened:
            await backend.close()


async def _woken(event: asyncio.Event, seconds: float = 5.0) -> bool:
    try:
        await asyncio.wait_for(event.wait(), seconds)
    except asyncio.TimeoutError:
        return False
    return True


async def test_a_change_in_one_process_wakes_another_s_watchers(url: str) -> None:
    """Two server processes on one database: a batch acked by one wakes the other's watcher
    of that run through NOTIFY (within `ANNOUNCE_SECONDS` and the round trip); after the
    listening connections are killed, they connect again and hear again."""
    first, second = Store(await PostgresBackend.open(url)), Store(await PostgresBackend.open(url))
    try:
        await first.listen()
        await second.listen()
        for _ in range(100):
            if first.hears_others and second.hears_others:
                break
            await asyncio.sleep(0.05)
        assert first.hears_others
        assert second.hears_others
        await start(first)
        with second.changes.watching([KEY]) as changed:
            await first.ingest(KEY, LOG, rows(range(3)), NOW)
            began = asyncio.get_running_loop().time()
            assert await _woken(changed)
            assert asyncio.get_running_loop().time() - began < 2.0

            async with first.backend.write() as tx:
                killed = await tx._conn.fetch(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE query LIKE 'LISTEN%' AND datname = current_database()"
                )
            assert len(killed) == 2
            for _ in range(100):
                await asyncio.sleep(0.02)
                if not second.hears_others:
                    break
            assert not second.hears_others
            for _ in range(200):
                if second.hears_others:
                    break
                await asyncio.sleep(0.05)
            assert second.hears_others, "the listener did not connect again"
            changed.clear()
            await first.ingest(KEY, LOG, rows(range(3, 6), seq=3), NOW)
            assert await _woken(changed)
    finally:
        await first.close()
        await second.close()

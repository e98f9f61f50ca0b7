"""What only the SQLite backend has: the database file (reopening it, its schema and its
migrations, refusing files it cannot serve), the WAL checkpointer, hashed keys on disk,
and refusing calls once closed. Everything else runs on every backend in tests/storage."""

from __future__ import annotations

import hashlib
import math
import os
import sqlite3
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from tests.storage.making import put_bytes
from tracker._records.codec import encode_record
from tracker._records.kinds import decode_record
from tracker._server.storage import RunKey, StartRequest, Store, open_storage
from tracker._server.storage.errors import (
    SchemaTooNew,
    StorageClosed,
    StorageFailed,
    StorageLost,
)
from tracker._server.storage.spool import FILE_CHUNK_BYTES
from tracker._server.storage.sqlite_schema import MIGRATIONS

pytestmark = pytest.mark.anyio

KEY = RunKey("local", "mnist", "abc12345")
LOG = "6f1c0b1e9d3a4c7e8b2f5a0d4e6c8b1a"
NOW = 1_800_000_000.0


async def opened(path: Path) -> Store:
    """The store on the SQLite file at ``path``."""
    return await open_storage(f"sqlite:///{path}")


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    """A store on a fresh database file, closed after the test."""
    store = await opened(tmp_path / "tracker.db")
    yield store
    await store.close()


def row_records(pairs: list[tuple[int, dict[str, float]]], seq: int = 0) -> list[list[object]]:
    """Row records for (step, data) pairs at 1 s per step."""
    return [
        decode_record(encode_record((seq + index, "row", step, 1000.0 + step), data, "row"))
        for index, (step, data) in enumerate(pairs)
    ]


async def start(store: Store, mode: str = "new") -> int:
    """Handshake for KEY; the acked seq."""
    result = await store.start_run(StartRequest(KEY, LOG, mode, None, None, 10.0, NOW))
    return result.acked_seq


async def test_reopening_the_file_keeps_everything(tmp_path: Path) -> None:
    """Runs, rows, acks, files and keys survive closing and reopening the database."""
    path = tmp_path / "tracker.db"
    first = await opened(path)
    await start(first)
    await first.ingest(
        KEY, LOG, row_records([(step, {"loss": step / 10}) for step in range(4)]), NOW
    )
    await put_bytes(first, KEY, "f", b"data", NOW)
    await first.add_api_key("local", "k")
    await first.close()
    await first.close()  # closing twice is harmless
    second = await opened(path)
    try:
        assert await start(second, "must") == 3
        stored = await second.get_run(KEY)
        assert stored is not None
        assert (stored["last_step"], stored["summary"]) == (3, {"loss": 0.3})
        assert len(await second.history(KEY, None, None, None, None)) == 4
        assert await second.get_file(KEY, "f") == b"data"
        assert await second.entity_for_key("k") == "local"
    finally:
        await second.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(len(MIGRATIONS),)]
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)


async def test_api_keys_are_stored_hashed(store: Store, tmp_path: Path) -> None:
    """The file holds only the SHA-256 of each key, never the key."""
    await store.add_api_key("team", "secret-key")
    await store.add_api_key("local", "other")
    with sqlite3.connect(tmp_path / "tracker.db") as conn:
        hashes = [row[0] for row in conn.execute("SELECT hash FROM api_keys")]
    assert "secret-key" not in hashes
    assert len(hashes) == 2
    assert all(len(digest) == 64 for digest in hashes)


async def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    """A database written by a newer tracker is not opened (SchemaTooNew naming it)."""
    path = tmp_path / "tracker.db"
    await (await opened(path)).close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE schema_version SET version = 99")
    with pytest.raises(SchemaTooNew, match="schema version 99"):
        await opened(path)


async def test_a_file_that_is_not_a_database_is_refused(tmp_path: Path) -> None:
    """Opening a file that is not SQLite is StorageFailed, not a crash."""
    path = tmp_path / "junk.db"
    path.write_bytes(b"not a database at all" * 100)
    with pytest.raises(StorageFailed):
        await opened(path)


async def test_the_database_directory_is_created(tmp_path: Path) -> None:
    """A database in a folder that does not exist yet gets its folder."""
    from tracker._server.storage.sqlite import SQLiteBackend

    backend = await SQLiteBackend.open(str(tmp_path / "new" / "tracker.db"))
    await Store(backend).close()
    assert (tmp_path / "new" / "tracker.db").is_file()


async def test_a_closed_storage_refuses_calls(tmp_path: Path) -> None:
    """After close, calls are StorageClosed instead of hanging or crashing."""
    store = await opened(tmp_path / "tracker.db")
    await store.close()
    with pytest.raises(StorageClosed) as caught:
        await store.get_run(KEY)
    assert caught.value.code == "storage_closed"
    with pytest.raises(StorageClosed):
        await start(store)


async def test_the_checkpointer_copies_the_wal_into_the_database_file(tmp_path: Path) -> None:
    """Committed pages reach the database file soon after a commit, long before the WAL
    would reach the writer's own checkpoint threshold, even just after a read (whose
    snapshot must not pin the WAL), and closing stops the thread."""
    path = tmp_path / "tracker.db"
    store = await opened(path)
    try:
        await start(store)
        assert await store.get_run(KEY) is not None
        size = path.stat().st_size
        rows = row_records([(step, {"loss": float(step)}) for step in range(5000)])
        for record in rows:
            record[4]["name"] = "x" * 100  # type: ignore[index]
        await store.ingest(KEY, LOG, rows, NOW)
        for _ in range(200):  # 10 s at most
            if path.stat().st_size > size:
                break
            await anyio.sleep(0.05)
        assert path.stat().st_size > size
    finally:
        await store.close()
    assert "tracker-db-checkpoint" not in {thread.name for thread in threading.enumerate()}


async def test_a_database_from_before_block_extremes_samples_the_same(tmp_path: Path) -> None:
    """A database written by a tracker without block extremes (schema version 1) is migrated
    on open; its chunks, stored without extremes, sample like the chunks stored since (the
    same rows in a fresh database), and rows added since extend them."""
    path, fresh_path = tmp_path / "tracker.db", tmp_path / "fresh.db"
    rows = [(step, {"a": math.cos(step / 9) * step}) for step in range(700)]
    store = await opened(path)
    await start(store)
    await store.ingest(KEY, LOG, row_records(rows[:200]), NOW)
    await store.compacted()
    await store.close()
    with sqlite3.connect(
        path
    ) as conn:  # back to version 1: no extremes, sessions, streams, row log
        conn.execute("DROP TABLE row_log")
        conn.execute("ALTER TABLE series DROP COLUMN extremes")
        conn.execute("ALTER TABLE streams DROP COLUMN sessions")
        conn.execute("DROP TABLE file_chunks")
        conn.execute("ALTER TABLE files ADD COLUMN content BLOB NOT NULL DEFAULT x''")
        conn.execute("DROP TABLE stream_records")
        conn.execute("UPDATE schema_version SET version = 1")
    store, fresh = await opened(path), await opened(fresh_path)
    try:
        await store.ingest(KEY, LOG, row_records(rows[200:], seq=200), NOW)
        await start(fresh)
        await fresh.ingest(KEY, LOG, row_records(rows), NOW)
        assert len(await store.history(KEY, None, None, None, None)) == 700
        for samples in (10, 99):
            assert await store.history(KEY, ["a"], None, None, samples) == await fresh.history(
                KEY, ["a"], None, None, samples
            )
    finally:
        await store.close()
        await fresh.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT version FROM schema_version").fetchone() == (len(MIGRATIONS),)


async def test_files_stored_whole_before_chunks_are_cut_into_chunks(tmp_path: Path) -> None:
    """A database whose files are one value each (the schema before the last migration)
    is migrated on open:
    every file, empty, one byte, exactly one chunk or several, reads back byte for byte in
    chunks, and its chunk rows are FILE_CHUNK_BYTES each."""
    path = tmp_path / "tracker.db"
    store = await opened(path)
    await start(store)
    await store.close()
    contents = {
        "empty": b"",
        "one": b"x",
        "chunk": bytes(range(256)) * (FILE_CHUNK_BYTES // 256),
        "several": os.urandom(FILE_CHUNK_BYTES * 5 // 2),
    }
    with sqlite3.connect(path) as conn:  # back one version: each file's bytes in one value
        conn.execute("DROP TABLE file_chunks")
        conn.execute("ALTER TABLE files ADD COLUMN content BLOB NOT NULL DEFAULT x''")
        conn.executemany(
            "INSERT INTO files (run_pk, name, content, size, sha256, updated_at) "
            "VALUES (1, ?, ?, ?, ?, ?)",
            [
                (name, data, len(data), hashlib.sha256(data).hexdigest(), NOW)
                for name, data in contents.items()
            ],
        )
        conn.execute("UPDATE schema_version SET version = ?", (len(MIGRATIONS) - 1,))
    store = await opened(path)
    try:
        for name, data in contents.items():
            assert await store.get_file(KEY, name) == data, name
    finally:
        await store.close()
    with sqlite3.connect(path) as conn:
        sizes = conn.execute(
            "SELECT name, length(data) FROM file_chunks ORDER BY name, idx"
        ).fetchall()
        assert "content" not in {row[1] for row in conn.execute("PRAGMA table_info(files)")}
    assert sizes == [
        ("chunk", FILE_CHUNK_BYTES),
        ("one", 1),
        ("several", FILE_CHUNK_BYTES),
        ("several", FILE_CHUNK_BYTES),
        ("several", FILE_CHUNK_BYTES // 2),
    ]


async def test_a_replaced_file_refuses_writes_and_keeps_reading(tmp_path: Path) -> None:
    """Another file moved to the database's path: every write and read raises StorageLost
    saying what happened and what to do (the same error each time), and nothing is
    written to the new file."""
    path = tmp_path / "tracker.db"
    store = await opened(path)
    try:
        await start(store)
        (tmp_path / "other.db").write_bytes(b"")
        os.replace(tmp_path / "other.db", path)
        with pytest.raises(StorageLost, match="was replaced by another file") as first:
            await store.heartbeat(KEY, NOW)
        with pytest.raises(StorageLost) as second:
            await store.add_api_key("local", "k" * 16)
        assert first.value is second.value
        with pytest.raises(StorageLost, match="restart the server"):
            store.check()
        with pytest.raises(StorageLost):
            await store.get_run(KEY)
        assert path.stat().st_size == 0
    finally:
        await store.close()


async def test_an_in_memory_database_has_no_file_to_lose() -> None:
    """``:memory:`` is never lost: its check passes and it takes writes."""
    store = await open_storage("sqlite:///:memory:")
    try:
        store.check()
        await store.add_api_key("local", "k" * 16)
        store.check()
    finally:
        await store.close()

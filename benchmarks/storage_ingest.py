"""Measure the storage's ingest on each engine, side by side: `Store.ingest` (the server's
ingest path minus HTTP) of one run's batches, on SQLite and on PostgreSQL.

Each engine gets a fresh database (a temporary SQLite file; a temporary PostgreSQL
database made on ``--postgres`` and dropped afterwards), then ``--batches`` batches of
``--rows`` rows of 10 floats are ingested one after the other, the compactor folding the
row log meanwhile. Printed per engine: rows/s until the last ack, rows/s until every
batch is compacted, and the CPU this process spent per row until then (PostgreSQL's own
CPU is not in it).

With ``--bodies``: one insert of a batch's body into a PostgreSQL table per way of
storing it (pglz, the default; lz4; uncompressed), what the row log's migration chose by.

Usage: ``python3 benchmarks/storage_ingest.py [--postgres postgresql://postgres@127.0.0.1:5432]
[--rows 1000] [--batches 60] [--bodies]``
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import tempfile
import time
from typing import Any

import _common

_common.import_tracker()

from tracker._records.codec import encode_record  # noqa: E402
from tracker._records.kinds import decode_record  # noqa: E402
from tracker._server.storage import RunKey, StartRequest, open_storage  # noqa: E402

KEY = RunKey("bench", "ingest", "run00001")
LOG = "0" * 32


def _batch(first: int, rows: int) -> list[list[Any]]:
    """``rows`` row records of 10 floats, seqs and steps from ``first``."""
    return [
        decode_record(
            encode_record(
                (step, "row", step, 1000.0 + step),
                {f"m{k}": step * 0.001 + k for k in range(10)},
                "row",
            )
        )
        for step in range(first, first + rows)
    ]


async def _measure(db_url: str, rows: int, batches: int) -> tuple[float, float, float]:
    """Rows/s until the last ack, rows/s until every batch is compacted, and this process's
    CPU µs per row until then, of ingesting ``batches`` batches."""
    store = await open_storage(db_url)
    try:
        await store.start_run(StartRequest(KEY, LOG, "new", None, None, 10.0, time.time(), []))
        prepared = [_batch(number * rows, rows) for number in range(batches)]
        wall, cpu = time.perf_counter(), time.process_time()
        for batch in prepared:
            await store.ingest(KEY, LOG, batch, time.time())
        acked = time.perf_counter() - wall
        await store.compacted()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    finally:
        await store.close()
    total = rows * batches
    return total / acked, total / wall, cpu / total * 1e6


async def _postgres(server: str, rows: int, batches: int) -> tuple[float, float, float]:
    import asyncpg

    name = f"tracker_bench_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(f"{server}/postgres")
    try:
        await admin.execute(f"CREATE DATABASE {name}")
        try:
            return await _measure(f"{server}/{name}", rows, batches)
        finally:
            await admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
    finally:
        await admin.close()


async def _bodies(server: str, rows: int, batches: int) -> dict[str, float]:
    """Per way of storing a row log body on PostgreSQL (pglz, lz4, uncompressed), the ms
    one insert of a ``rows``-row batch's body takes, in a transaction of its own."""
    import asyncpg

    body = b"".join(
        encode_record((s, "row", s, 1000.0 + s), {f"m{k}": s * 0.001 + k for k in range(10)}, "row")
        for s in range(rows)
    )
    name = f"tracker_bench_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(f"{server}/postgres")
    await admin.execute(f"CREATE DATABASE {name}")
    timings: dict[str, list[float]] = {"pglz": [], "lz4": [], "uncompressed": []}
    try:
        conn = await asyncpg.connect(f"{server}/{name}")
        for _ in range(2):  # each way twice, alternating
            for way, setting in (
                ("pglz", "SET COMPRESSION pglz"),
                ("lz4", "SET COMPRESSION lz4"),
                ("uncompressed", "SET STORAGE EXTERNAL"),
            ):
                await conn.execute(
                    "DROP TABLE IF EXISTS bodies; CREATE TABLE bodies (body bytea NOT NULL); "
                    f"ALTER TABLE bodies ALTER COLUMN body {setting}"
                )
                start = time.perf_counter()
                for _ in range(batches):
                    await conn.execute("INSERT INTO bodies VALUES ($1)", body)
                timings[way].append((time.perf_counter() - start) / batches * 1000)
        await conn.close()
    finally:
        await admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
        await admin.close()
    print(f"a {rows}-row batch's body: {len(body):,} bytes")
    return {way: min(values) for way, values in timings.items()}


def main() -> None:
    """Measure each engine and print one line per engine."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432")
    parser.add_argument("--rows", type=int, default=1000, help="rows per batch")
    parser.add_argument("--batches", type=int, default=60)
    parser.add_argument(
        "--bodies",
        action="store_true",
        help="instead: time one insert of a batch's body into a PostgreSQL table per way "
        "of storing it (pglz, lz4, uncompressed), as the row log keeps them",
    )
    arguments = parser.parse_args()
    if arguments.bodies:
        ways = asyncio.run(_bodies(arguments.postgres, arguments.rows, arguments.batches))
        for way, ms in ways.items():
            print(f"{way:>12}: {ms:.2f} ms per insert (the better of two rounds)")
        return
    with tempfile.TemporaryDirectory() as folder:
        results = {
            "sqlite": asyncio.run(
                _measure(f"sqlite:///{folder}/bench.db", arguments.rows, arguments.batches)
            )
        }
    results["postgresql"] = asyncio.run(
        _postgres(arguments.postgres, arguments.rows, arguments.batches)
    )
    for engine, (acked, compacted, cpu) in results.items():
        print(
            f"{engine:>10}: {acked:>9,.0f} rows/s acknowledged, {compacted:>9,.0f} rows/s "
            f"compacted, {cpu:.1f} µs CPU/row here"
        )


if __name__ == "__main__":
    main()

"""The PostgreSQL schema: its migrations, in order (``schema_version`` holds how many ran).

The tables of `sqlite_schema` (the same data model, so both engines store the same
bytes): projects, runs, streams, history, series, stream_records, files, api_keys,
row_log. Texts compare by code point (``COLLATE "C"``, and `lower` folds ASCII only), as
SQLite's do, so every order the conformance suite checks is the same on both; tags are a
``text[]``. The history rows, the series chunks, the stream records and the row log are
hash-partitioned by run (`PARTITIONS` each): a run's reads and writes touch one
partition, and a deleted run's rows leave from one. A schema change is a new script at
the end of both engines' lists.
"""

from __future__ import annotations

from typing import Final

from tracker._server.storage.spool import FILE_CHUNK_BYTES

__all__ = ["MIGRATIONS", "PARTITIONS"]

PARTITIONS: Final = 16
"""Hash partitions of the history and series tables, by run."""


def _partitions(table: str) -> str:
    """The statements making ``table``'s `PARTITIONS` hash partitions."""
    return ";\n".join(
        f"CREATE TABLE {table}_{remainder} PARTITION OF {table} "
        f"FOR VALUES WITH (MODULUS {PARTITIONS}, REMAINDER {remainder})"
        for remainder in range(PARTITIONS)
    )


MIGRATIONS: Final = (
    f"""
    CREATE TABLE projects (
        entity TEXT COLLATE "C" NOT NULL,
        name TEXT COLLATE "C" NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (entity, name)
    );
    CREATE TABLE runs (
        pk BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        entity TEXT COLLATE "C" NOT NULL,
        project TEXT COLLATE "C" NOT NULL,
        run_id TEXT COLLATE "C" NOT NULL,
        name TEXT COLLATE "C",
        state TEXT COLLATE "C" NOT NULL,
        config TEXT NOT NULL,
        summary TEXT NOT NULL,
        summary_state TEXT NOT NULL,
        metadata TEXT NOT NULL,
        tags TEXT[] COLLATE "C" NOT NULL,
        run_group TEXT COLLATE "C",
        job_type TEXT COLLATE "C",
        notes TEXT,
        created_at DOUBLE PRECISION NOT NULL,
        updated_at DOUBLE PRECISION NOT NULL,
        heartbeat_at DOUBLE PRECISION NOT NULL,
        heartbeat_interval DOUBLE PRECISION NOT NULL,
        end_time DOUBLE PRECISION,
        exit_code BIGINT,
        last_step BIGINT NOT NULL,
        runtime DOUBLE PRECISION NOT NULL,
        session_start DOUBLE PRECISION NOT NULL,
        runtime_offset DOUBLE PRECISION NOT NULL,
        parent_run_id TEXT COLLATE "C",
        parent_step BIGINT,
        UNIQUE (entity, project, run_id),
        FOREIGN KEY (entity, project) REFERENCES projects (entity, name)
    );
    CREATE INDEX runs_by_created ON runs (entity, project, created_at);
    CREATE INDEX runs_by_state ON runs (state, heartbeat_at);
    CREATE TABLE streams (
        run_pk BIGINT NOT NULL REFERENCES runs (pk) ON DELETE CASCADE,
        log_id TEXT COLLATE "C" NOT NULL,
        acked_seq BIGINT NOT NULL,
        sessions TEXT NOT NULL DEFAULT '[]',
        PRIMARY KEY (run_pk, log_id)
    );
    CREATE TABLE history (
        run_pk BIGINT NOT NULL REFERENCES runs (pk) ON DELETE CASCADE,
        step BIGINT NOT NULL,
        ts DOUBLE PRECISION NOT NULL,
        runtime DOUBLE PRECISION NOT NULL,
        data TEXT NOT NULL,
        PRIMARY KEY (run_pk, step)
    ) PARTITION BY HASH (run_pk);
    {_partitions("history")};
    CREATE TABLE series (
        run_pk BIGINT NOT NULL REFERENCES runs (pk) ON DELETE CASCADE,
        key TEXT COLLATE "C" NOT NULL,
        first_step BIGINT NOT NULL,
        last_step BIGINT NOT NULL,
        steps BYTEA NOT NULL,
        vals BYTEA NOT NULL,
        extremes BYTEA NOT NULL,
        PRIMARY KEY (run_pk, key, first_step)
    ) PARTITION BY HASH (run_pk);
    {_partitions("series")};
    CREATE TABLE stream_records (
        run_pk BIGINT NOT NULL REFERENCES runs (pk) ON DELETE CASCADE,
        stream TEXT COLLATE "C" NOT NULL,
        seq BIGINT NOT NULL,
        ts DOUBLE PRECISION NOT NULL,
        data TEXT NOT NULL,
        PRIMARY KEY (run_pk, stream, seq)
    ) PARTITION BY HASH (run_pk);
    {_partitions("stream_records")};
    CREATE TABLE files (
        run_pk BIGINT NOT NULL REFERENCES runs (pk) ON DELETE CASCADE,
        name TEXT COLLATE "C" NOT NULL,
        content BYTEA NOT NULL,
        size BIGINT NOT NULL,
        sha256 TEXT NOT NULL,
        updated_at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (run_pk, name)
    );
    CREATE TABLE api_keys (
        hash TEXT PRIMARY KEY,
        entity TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL
    )
    """,
    # the row log: each acknowledged batch as received, until the compactor folds it
    # (`tracker._server.storage.backend.LoggedBatch`), hash-partitioned by run
    f"""
    CREATE TABLE row_log (
        entry BIGSERIAL,
        run_pk BIGINT NOT NULL REFERENCES runs (pk) ON DELETE CASCADE,
        log_id TEXT COLLATE "C" NOT NULL,
        first_seq BIGINT NOT NULL,
        last_seq BIGINT NOT NULL,
        body BYTEA NOT NULL,
        done BIGINT NOT NULL DEFAULT 0,
        received_at DOUBLE PRECISION NOT NULL,
        failed TEXT,
        PRIMARY KEY (run_pk, entry)
    ) PARTITION BY HASH (run_pk);
    {_partitions("row_log")}
    """,
    # a logged batch's body compressed with lz4 where the server has it, else stored
    # uncompressed: inserting a 1,000-row batch's 142 KB body took 3.2 ms with pglz (the
    # default) on the ack path, 0.9 ms with lz4 or uncompressed, lz4 writing 2.4x fewer
    # bytes (benchmarks/storage_ingest.py --bodies)
    # (set on each partition: a partitioned table's setting only reaches partitions made
    # after it)
    """
    DO $$
    DECLARE
        part regclass;
    BEGIN
        BEGIN
            FOR part IN SELECT 'row_log'::regclass UNION ALL
                SELECT inhrelid::regclass FROM pg_inherits WHERE inhparent = 'row_log'::regclass
            LOOP
                EXECUTE format('ALTER TABLE %s ALTER COLUMN body SET COMPRESSION lz4', part);
            END LOOP;
        EXCEPTION WHEN feature_not_supported THEN
            FOR part IN SELECT 'row_log'::regclass UNION ALL
                SELECT inhrelid::regclass FROM pg_inherits WHERE inhparent = 'row_log'::regclass
            LOOP
                EXECUTE format('ALTER TABLE %s ALTER COLUMN body SET STORAGE EXTERNAL', part);
            END LOOP;
        END;
    END
    $$
    """,
    # files in chunks of FILE_CHUNK_BYTES (`tracker._server.storage.spool`), never one value
    # of their whole size, stored uncompressed (model weights do not compress); the files
    # stored before are cut into chunks
    f"""
    CREATE TABLE file_chunks (
        run_pk BIGINT NOT NULL,
        name TEXT COLLATE "C" NOT NULL,
        idx BIGINT NOT NULL,
        data BYTEA NOT NULL,
        PRIMARY KEY (run_pk, name, idx),
        FOREIGN KEY (run_pk, name) REFERENCES files (run_pk, name) ON DELETE CASCADE
    );
    ALTER TABLE file_chunks ALTER COLUMN data SET STORAGE EXTERNAL;
    INSERT INTO file_chunks (run_pk, name, idx, data)
    SELECT run_pk, name, piece,
        substring(content FROM (piece * {FILE_CHUNK_BYTES} + 1)::int FOR {FILE_CHUNK_BYTES})
    FROM files, generate_series(0, (size - 1) / {FILE_CHUNK_BYTES}) AS piece WHERE size > 0;
    ALTER TABLE files DROP COLUMN content
    """,
)
"""Schema migrations, applied in order at open (and by ``tracker server --migrate``)."""

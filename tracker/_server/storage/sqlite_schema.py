"""The SQLite schema: its migrations, in order (``schema_version`` holds how many ran).

Tables: projects; runs (metadata, config, summary, the summary's fold state, state,
heartbeat, last step, parent); streams (per run and log id, the highest stored sequence
number: what makes resends harmless); history (one row per step, the values in exact
JSON); series (per run and key, chunks of packed steps and values with their block
extremes); files (name, size, SHA-256) and file_chunks (their bytes, `FILE_CHUNK_BYTES` a
row); api_keys (SHA-256 hashes); stream_records
(per run, stream name and the stream's seq, a record of a stream kind: its time and
payload in exact JSON); row_log (each acknowledged batch as received, until compacted).
"""

from __future__ import annotations

from typing import Final

from tracker._server.storage.spool import FILE_CHUNK_BYTES

__all__ = ["MIGRATIONS"]

MIGRATIONS: Final = (
    """
    CREATE TABLE projects (
        entity TEXT NOT NULL,
        name TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (entity, name)
    );
    CREATE TABLE runs (
        pk INTEGER PRIMARY KEY,
        entity TEXT NOT NULL,
        project TEXT NOT NULL,
        run_id TEXT NOT NULL,
        name TEXT,
        state TEXT NOT NULL,
        config TEXT NOT NULL,
        summary TEXT NOT NULL,
        summary_state TEXT NOT NULL,
        metadata TEXT NOT NULL,
        tags TEXT NOT NULL,
        run_group TEXT,
        job_type TEXT,
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
        parent_run_id TEXT,
        parent_step BIGINT,
        UNIQUE (entity, project, run_id),
        FOREIGN KEY (entity, project) REFERENCES projects (entity, name)
    );
    CREATE INDEX runs_by_created ON runs (entity, project, created_at);
    CREATE INDEX runs_by_state ON runs (state, heartbeat_at);
    CREATE TABLE streams (
        run_pk BIGINT NOT NULL REFERENCES runs (pk) ON DELETE CASCADE,
        log_id TEXT NOT NULL,
        acked_seq BIGINT NOT NULL,
        PRIMARY KEY (run_pk, log_id)
    );
    CREATE TABLE history (
        run_pk BIGINT NOT NULL REFERENCES runs (pk) ON DELETE CASCADE,
        step BIGINT NOT NULL,
        ts DOUBLE PRECISION NOT NULL,
        runtime DOUBLE PRECISION NOT NULL,
        data TEXT NOT NULL,
        PRIMARY KEY (run_pk, step)
    );
    CREATE TABLE series (
        run_pk BIGINT NOT NULL REFERENCES runs (pk) ON DELETE CASCADE,
        key TEXT NOT NULL,
        first_step BIGINT NOT NULL,
        last_step BIGINT NOT NULL,
        steps BLOB NOT NULL,
        vals BLOB NOT NULL,
        PRIMARY KEY (run_pk, key, first_step)
    );
    CREATE TABLE files (
        run_pk BIGINT NOT NULL REFERENCES runs (pk) ON DELETE CASCADE,
        name TEXT NOT NULL,
        content BLOB NOT NULL,
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
    # each series chunk's block extremes (`tracker._server.storage.series.Chunk`); chunks
    # stored before have none, and are summarized when read
    "ALTER TABLE series ADD COLUMN extremes BLOB NOT NULL DEFAULT x''",
    # each log's writer sessions, [[first seq, session], ...] (`ingest.sessions_of`)
    "ALTER TABLE streams ADD COLUMN sessions TEXT NOT NULL DEFAULT '[]'",
    # the records of each run's streams of their own (system metrics, console output)
    """
    CREATE TABLE stream_records (
        run_pk BIGINT NOT NULL REFERENCES runs (pk) ON DELETE CASCADE,
        stream TEXT NOT NULL,
        seq BIGINT NOT NULL,
        ts DOUBLE PRECISION NOT NULL,
        data TEXT NOT NULL,
        PRIMARY KEY (run_pk, stream, seq)
    )
    """,
    # the row log: each acknowledged batch as received, until the compactor folds it
    # (`tracker._server.storage.backend.LoggedBatch`); ``done`` bytes of it are folded,
    # ``failed`` says why an entry that cannot be folded was set aside
    """
    CREATE TABLE row_log (
        entry INTEGER PRIMARY KEY,
        run_pk BIGINT NOT NULL REFERENCES runs (pk) ON DELETE CASCADE,
        log_id TEXT NOT NULL,
        first_seq BIGINT NOT NULL,
        last_seq BIGINT NOT NULL,
        body BLOB NOT NULL,
        done BIGINT NOT NULL DEFAULT 0,
        received_at DOUBLE PRECISION NOT NULL,
        failed TEXT
    );
    CREATE INDEX row_log_by_run ON row_log (run_pk, entry) WHERE failed IS NULL
    """,
    # files in chunks of FILE_CHUNK_BYTES (`tracker._server.storage.spool`), never one value
    # of their whole size; the files stored before are cut into chunks
    f"""
    CREATE TABLE file_chunks (
        run_pk BIGINT NOT NULL,
        name TEXT NOT NULL,
        idx BIGINT NOT NULL,
        data BLOB NOT NULL,
        PRIMARY KEY (run_pk, name, idx),
        FOREIGN KEY (run_pk, name) REFERENCES files (run_pk, name) ON DELETE CASCADE
    );
    WITH RECURSIVE pieces (run_pk, name, idx) AS (
        SELECT run_pk, name, 0 FROM files WHERE size > 0
        UNION ALL
        SELECT p.run_pk, p.name, p.idx + 1 FROM pieces AS p JOIN files AS f
        ON f.run_pk = p.run_pk AND f.name = p.name WHERE (p.idx + 1) * {FILE_CHUNK_BYTES} < f.size
    )
    INSERT INTO file_chunks (run_pk, name, idx, data)
    SELECT p.run_pk, p.name, p.idx,
        substr(f.content, p.idx * {FILE_CHUNK_BYTES} + 1, {FILE_CHUNK_BYTES})
    FROM pieces AS p JOIN files AS f ON f.run_pk = p.run_pk AND f.name = p.name;
    ALTER TABLE files DROP COLUMN content
    """,
)
"""Schema migrations, applied in order at open; ``schema_version`` holds how many ran."""

"""`tracker server --db postgresql://...` as a real process: a streamed run reads back,
`--migrate` on both engines, and the errors of a database it cannot serve."""

from __future__ import annotations

import asyncio
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from exact import same
from postgres_db import POSTGRES, database, postgres_missing
from server_process import ROOT, ServerProcess

import tracker
from tracker._server.storage.postgres_schema import MIGRATIONS as POSTGRES_MIGRATIONS
from tracker._server.storage.sqlite_schema import MIGRATIONS as SQLITE_MIGRATIONS


def _tracker(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tracker", *arguments],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={key: value for key, value in os.environ.items() if not key.startswith("TRACKER_")},
    )


async def _execute(url: str, sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def test_a_run_streams_to_a_postgres_server_and_reads_back(tmp_path: Path) -> None:
    """A run streamed to a `tracker server` on PostgreSQL reads back exactly: every row,
    the config, the summary, the system stream and the final state."""
    rows = [{"loss": 1 / (step + 1), "acc": step / 1000} for step in range(2000)]
    rows.append({"s": "héllo ✓ 日本", "nan": math.nan, "big": 2**80, "nested": {"a": [1, None]}})
    with database() as url:
        server = ServerProcess(tmp_path / "server", db_url=url).start()
        try:
            run = tracker.init(
                project="p",
                dir=tmp_path / "runs",
                config={"lr": 0.1},
                settings={"silent": True, "base_url": server.url, "init_timeout": 10.0},
            )
            for row in rows:
                run.log(row)
            run.finish()
            stored = tracker.Api(server.url).run(run.path)
            history = stored.history()
            assert [row["_step"] for row in history] == list(range(len(rows)))
            for logged, read in zip(rows, history, strict=True):
                assert same({k: v for k, v in read.items() if not k.startswith("_")}, logged)
            assert stored.state == "finished"
            assert stored.config["lr"] == 0.1
            assert stored.summary["s"] == "héllo ✓ 日本"
            assert stored.summary["loss"] == rows[1999]["loss"]
            sampled = stored.history(keys=["loss"], samples=100)
            assert 0 < len(sampled) <= 200
            assert sampled[0]["loss"] == 1.0
        finally:
            server.stop()
        assert "Traceback" not in server.log_text()


def test_migrate_applies_the_schema_and_exits_on_both_engines(tmp_path: Path) -> None:
    """`tracker server --migrate` brings a new database to the schema this tracker knows
    and exits 0; run again, it has nothing to do."""
    with database() as url:
        for db_url, migrations in (
            (f"sqlite:///{tmp_path / 'tracker.db'}", SQLITE_MIGRATIONS),
            (url, POSTGRES_MIGRATIONS),
        ):
            first = _tracker("server", "--migrate", "--db", db_url)
            assert first.returncode == 0, first.stderr
            assert first.stdout == (
                f"tracker server: migrated the schema from version 0 to {len(migrations)}\n"
            )
            again = _tracker("server", "--migrate", "--db", db_url)
            assert again.returncode == 0, again.stderr
            assert "nothing to migrate" in again.stdout


def test_a_server_refuses_a_postgres_schema_newer_than_it_knows(tmp_path: Path) -> None:
    """A database migrated by a newer tracker is not served: exit 1, saying to upgrade."""
    with database() as url:
        assert _tracker("server", "--migrate", "--db", url).returncode == 0
        asyncio.run(_execute(url, "UPDATE schema_version SET version = 99"))
        for arguments in (["--port", "0"], ["--migrate"]):
            refused = _tracker("server", "--db", url, *arguments)
            assert refused.returncode == 1
            assert "schema version 99, newer than this tracker's" in refused.stderr
            assert "upgrade tracker" in refused.stderr
            assert "Traceback" not in refused.stderr


@pytest.mark.parametrize(
    ("db_url", "needles"),
    [
        (
            "postgresql://postgres@127.0.0.1:1/tracker",
            ["127.0.0.1:1", "database 'tracker'", "pg_isready -h 127.0.0.1 -p 1"],
        ),
        (
            f"{POSTGRES}/tracker_no_such_database",
            ["database 'tracker_no_such_database'", "does not exist", "createdb"],
        ),
    ],
)
def test_a_database_it_cannot_reach_exits_1_naming_it(db_url: str, needles: list[str]) -> None:
    """An unreachable server or a missing database: exit 1 with a message naming host, port
    and database and what to check, no traceback."""
    missing = postgres_missing()
    if db_url.startswith(POSTGRES) and missing is not None:
        pytest.skip(missing)
    refused = _tracker("server", "--port", "0", "--db", db_url)
    assert refused.returncode == 1
    for needle in needles:
        assert needle in refused.stderr
    assert "Traceback" not in refused.stderr


def test_postgres_without_asyncpg_says_what_to_install() -> None:
    """Without the asyncpg driver, --db postgresql:// exits 2 naming the extra to install."""
    script = (
        "import sys; sys.modules['asyncpg'] = None; from tracker._cli import main; "
        "sys.exit(main(['server', '--port', '0', '--db', 'postgresql://u@127.0.0.1/db']))"
    )
    refused = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert refused.returncode == 2
    assert "pip install 'tracker[postgres]'" in refused.stderr

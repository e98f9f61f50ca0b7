"""The SQLite file deleted under a running `tracker server`: writes are refused with 503
``storage_lost`` (never stored into the deleted file), the health check fails, the server
says so once on its log, and the client keeps its rows until the file is back."""

from __future__ import annotations

import contextlib
import http.client
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

import tracker
from tracker._wire.protocol import CLIENT_HEADERS

from .conftest import FAST_RETRIES, Figures, ServerProcess, child_env, count_exactly_once

pytestmark = pytest.mark.faults

ROWS = 200


def _ask(server: ServerProcess, method: str, path: str) -> tuple[int, dict[str, Any]]:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        connection.request(method, path, headers=CLIENT_HEADERS)
        response = connection.getresponse()
        return response.status, orjson.loads(response.read() or b"{}")
    finally:
        connection.close()


@pytest.mark.timeout(120)
def test_a_database_deleted_under_the_server_refuses_writes_and_loses_nothing(
    tmp_path: Path, figures: Figures, capsys: pytest.CaptureFixture[str]
) -> None:
    """Half a run streams; its database file is deleted (a backup kept): the next writes get
    503 storage_lost naming the file, /health answers 503, the server logs one ERROR; the
    run's finish() says its rows wait on disk; with the backup restored and the server
    restarted, `tracker sync` stores the rest, every row exactly once."""
    server = ServerProcess(tmp_path / "server").start()
    try:
        run = tracker.init(
            project="lost",
            dir=tmp_path / "runs",
            settings={
                **FAST_RETRIES,
                "base_url": server.url,
                "silent": False,
                "finish_timeout": 3.0,
            },
        )
        run.define_metric("x", summary="mean")
        for step in range(ROWS // 2):
            run.log({"x": step})
        path = f"local/lost/{run.id}"
        deadline = time.monotonic() + 30
        while len(tracker.Api(server.url).run(path).history(keys=["x"])) < ROWS // 2:
            assert time.monotonic() < deadline, "the first half was never stored"
            time.sleep(0.05)
        backup = tmp_path / "backup.db"
        with (
            contextlib.closing(sqlite3.connect(server.db)) as live,
            contextlib.closing(sqlite3.connect(backup)) as copy,
        ):
            live.backup(copy)
        server.db.unlink()
        lost_at = time.monotonic()

        for step in range(ROWS // 2, ROWS):
            run.log({"x": step})
        status, answer = _ask(server, "POST", f"/api/v1/runs/{path}/heartbeat")
        assert (status, answer["error"]["code"]) == (503, "storage_lost")
        assert str(server.db) in answer["error"]["message"]
        assert "restart the server" in answer["error"]["message"]
        status, health = _ask(server, "GET", "/api/v1/health")
        assert (status, health["error"]["code"]) == (503, "storage_lost")
        run.finish()
        report = capsys.readouterr().err
        assert "records are not on the server yet" in report, report
        assert "storage_lost" in report or "was deleted" in report, report
        assert not server.db.exists(), "the server made a new, empty database"
        time.sleep(1.5)  # a crash sweep or two try to write meanwhile
        log = server.log_text()
        assert log.count("was deleted while the server ran") == 1, log

        server.stop()
        for leftover in server.db.parent.glob("server.db-*"):
            leftover.unlink()
        backup.replace(server.db)
        server.start()
        synced = subprocess.run(
            [sys.executable, "-m", "tracker", "sync", run.dir, "--base-url", server.url],
            env=child_env(tmp_path, **FAST_RETRIES),
            capture_output=True,
            text=True,
            timeout=60,
        )
        figures.extra["seconds_lost_to_synced"] = round(time.monotonic() - lost_at, 1)
        assert synced.returncode == 0, synced.stdout + synced.stderr
        stored = count_exactly_once(figures, server, path, ROWS)
        figures.extra["sync"] = synced.stdout.strip().split(": ", 2)[-1][:60]
        assert stored == list(range(ROWS))
        assert (figures.lost, figures.duplicates) == (0, 0)
        assert _ask(server, "GET", "/api/v1/health")[0] == 200
    finally:
        server.stop()

"""`tracker server` as a process: it starts, reports its port, and stops gracefully."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from tracker._errors import UsageError
from tracker._server._runner import EmbeddedServer
from tracker._wire.protocol import CLIENT_HEADERS

ROOT = Path(__file__).resolve().parents[2]


def _tracker(*arguments: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tracker", *arguments],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture
def process(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """A `tracker server --port 0` process and its URL."""
    server = _tracker("server", "--port", "0", "--db", f"sqlite:///{tmp_path / 'tracker.db'}")
    assert server.stdout is not None
    line = server.stdout.readline()
    assert line.startswith("tracker server: listening on http://127.0.0.1:"), line
    url = line.split()[4]
    yield server, url
    if server.poll() is None:
        server.kill()
    server.communicate(timeout=10)


@pytest.mark.anyio
async def test_sigterm_closes_streams_with_1001_and_exits_0(
    process: tuple[subprocess.Popen[str], str],
) -> None:
    """On SIGTERM the server closes websockets with 1001 (going away) and exits 0 promptly."""
    server, url = process
    run = f"{url}/api/v1/runs/local/proj/run1"
    handshake = {
        "protocol": 1,
        "project": "proj",
        "run_id": "run1",
        "log_id": "0" * 32,
        "mode": "new",
    }
    async with aiohttp.ClientSession(headers=CLIENT_HEADERS) as session:
        async with session.post(f"{url}/api/v1/runs/start", json=handshake) as response:
            assert response.status == 200
        async with session.ws_connect(f"{run}/stream", params={"log_id": "0" * 32}) as socket:
            started = time.monotonic()
            server.send_signal(signal.SIGTERM)
            message = await socket.receive()
            assert message.type == aiohttp.WSMsgType.CLOSE
            assert socket.close_code == aiohttp.WSCloseCode.GOING_AWAY
    assert server.wait(timeout=10) == 0
    assert time.monotonic() - started < 5


def test_sigint_stops_an_idle_server_with_exit_0(
    process: tuple[subprocess.Popen[str], str],
) -> None:
    """Ctrl-C (SIGINT) shuts an idle server down cleanly."""
    server, _ = process
    server.send_signal(signal.SIGINT)
    _, stderr = server.communicate(timeout=10)
    assert server.returncode == 0
    assert "Traceback" not in stderr


@pytest.mark.parametrize(
    ("arguments", "needle"),
    [
        (["--port", "70000"], "--port"),
        (["--host", "0.0.0.0", "--port", "0"], "--insecure"),
        (["--db", "mysql://db/tracker"], "not a database URL"),
    ],
)
def test_bad_server_arguments_exit_2_with_a_message(
    tmp_path: Path, arguments: list[str], needle: str
) -> None:
    """Bad ports, unsafe binds and unsupported databases exit 2, saying what to do."""
    db = ["--db", f"sqlite:///{tmp_path / 'tracker.db'}"] if "--db" not in arguments else []
    server = _tracker("server", *db, *arguments)
    _, stderr = server.communicate(timeout=30)
    assert server.returncode == 2, stderr
    assert needle in stderr


def test_the_default_database_lives_in_the_data_dir(tmp_path: Path) -> None:
    """Without --db the server creates $XDG_DATA_HOME/tracker/tracker.db."""
    server = _tracker("server", "--port", "0", env={"XDG_DATA_HOME": str(tmp_path)})
    assert server.stdout is not None
    line = server.stdout.readline()
    server.send_signal(signal.SIGTERM)
    server.communicate(timeout=10)
    assert server.returncode == 0
    assert f"db: sqlite:///{tmp_path}/tracker/tracker.db" in line
    assert (tmp_path / "tracker" / "tracker.db").exists()


def test_embedded_server_stop_is_idempotent_and_url_needs_a_running_server(
    tmp_path: Path,
) -> None:
    """stop() twice is fine; url outside the running window is a UsageError."""
    embedded = EmbeddedServer(f"sqlite:///{tmp_path / 'tracker.db'}")
    with pytest.raises(UsageError, match="not running"):
        _ = embedded.url
    with embedded:
        assert embedded.url.startswith("http://127.0.0.1:")
    embedded.stop()
    with pytest.raises(UsageError, match="not running"):
        _ = embedded.url

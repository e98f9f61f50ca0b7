"""A real `tracker server` in a subprocess for tests: fixed loopback port, own SQLite file;
it can be killed, frozen (SIGSTOP), thawed and restarted on the same port and database."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import orjson

import tracker

ROOT = Path(tracker.__file__).resolve().parent.parent


def child_env(tmp_path: Path, **settings: Any) -> dict[str, str]:
    """The environment of a child process importing this tracker, with ``settings`` written
    to its own settings file (so `tracker sync` can be given fast retries and heartbeats),
    taking no system metrics samples."""
    config = tmp_path / "child-config"
    config.mkdir(exist_ok=True)
    (config / "settings.toml").write_text(
        "".join(f"{key} = {json.dumps(value)}\n" for key, value in settings.items())
    )
    env = {key: value for key, value in os.environ.items() if not key.startswith("TRACKER_")}
    env["TRACKER_CONFIG_DIR"] = str(config)
    env["TRACKER_SILENT"] = "1"
    env["TRACKER_DISABLE_STATS"] = "1"  # as in this process (conftest); tests that sample say so
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def run_script(cwd: Path, script: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run the Python ``script`` (dedented) in ``cwd`` with ``env``, within a minute; it must
    exit 0 (its stderr is the failure's message)."""
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        cwd=cwd,
        env=env,
        timeout=60,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class ServerProcess:
    """A `tracker server` subprocess on a fixed loopback port and SQLite file: it can be
    SIGKILLed, frozen with SIGSTOP, thawed and restarted on the same port and database."""

    def __init__(
        self,
        directory: Path,
        *extra: str,
        env: dict[str, str] | None = None,
        db_url: str | None = None,
    ) -> None:
        """Prepare a server whose output lives in ``directory``, and its SQLite file too
        unless ``db_url`` names another database (another SQLite file, which replicas
        share, or PostgreSQL); ``env`` adds variables to its environment."""
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.db_url = db_url or f"sqlite:///{directory / 'server.db'}"
        sqlite = self.db_url.startswith("sqlite:///")
        self.db = Path(self.db_url[len("sqlite:///") :]) if sqlite else None
        """The SQLite file (None on PostgreSQL)."""
        self.output = directory / "server.out"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.extra = extra
        self.env = env or {}
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.frozen = False

    def start(self, timeout: float = 30.0) -> ServerProcess:
        """Start the server and wait until it listens."""
        assert self.process is None or self.process.poll() is not None, "already running"
        seen = self._listening_lines()
        with self.output.open("ab") as sink:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "tracker",
                    "server",
                    "--port",
                    str(self.port),
                    "--db",
                    self.db_url,
                    *self.extra,
                ],
                stdout=sink,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**child_env(self.directory), **self.env},
            )
        deadline = time.monotonic() + timeout
        while self._listening_lines() == seen:
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise AssertionError(f"tracker server did not start:\n{self.output.read_text()}")
            time.sleep(0.02)
        self.starts += 1
        self.frozen = False
        return self

    def _listening_lines(self) -> int:
        if not self.output.exists():
            return 0
        return self.output.read_bytes().count(b"listening on")

    def limit_files(self, count: int) -> None:
        """Let the running server hold at most ``count`` file descriptors (sockets included)."""
        assert self.process is not None
        resource.prlimit(self.process.pid, resource.RLIMIT_NOFILE, (count, count))

    def cpu_seconds(self) -> float:
        """User + system CPU seconds the running server has used (Linux ``/proc``)."""
        assert self.process is not None
        stat = Path(f"/proc/{self.process.pid}/stat").read_text()
        fields = stat.rsplit(")", 1)[1].split()  # the command name may hold spaces
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def log_text(self) -> str:
        """Everything the server printed so far."""
        return self.output.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL the server (frozen or not) and reap it."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)
        self.frozen = False

    def freeze(self) -> None:
        """SIGSTOP the server: connections stay open, nothing is answered."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)
        self.frozen = True

    def thaw(self) -> None:
        """SIGCONT a frozen server."""
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)
        self.frozen = False

    def stop(self) -> None:
        """Stop the server gracefully (SIGTERM), or kill it after 10 s."""
        if self.process is None or self.process.poll() is not None:
            return
        if self.frozen:
            self.thaw()
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.kill()

    def applied(self, run_id: str, key: str = "x") -> int:
        """How many history rows holding ``key`` the server folded into run ``run_id``,
        resends included: the count of the key's summary statistics (the run must have
        ``define_metric(key, summary="mean")``), once the compactor has folded every
        acknowledged batch of the run (waiting up to `COMPACTED_SECONDS`). More than the
        rows stored means a duplicate was applied."""
        state = orjson.loads(self.compacted(run_id))[0]
        return int(state["stats"][key][1])

    def compacted(self, run_id: str) -> str:
        """Wait (up to `COMPACTED_SECONDS`) until the compactor folded every acknowledged
        batch of run ``run_id``; its summary's fold state then."""
        deadline = time.monotonic() + COMPACTED_SECONDS
        while True:
            pending, text = self._fold_state(run_id)
            if not pending:
                return text
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"run {run_id}: {pending} logged batches still not compacted after "
                    f"{COMPACTED_SECONDS} s"
                )
            time.sleep(0.05)

    def _fold_state(self, run_id: str) -> tuple[int, str]:
        """The run's row log entries not yet compacted, and its summary's fold state."""
        if self.db_url.startswith("postgresql://"):
            return asyncio.run(_postgres_fold_state(self.db_url, run_id))
        with contextlib.closing(sqlite3.connect(f"file:{self.db}?mode=ro", uri=True)) as conn:
            (pending,) = conn.execute(_PENDING.replace("$1", "?"), (run_id,)).fetchone()
            (text,) = conn.execute(
                "SELECT summary_state FROM runs WHERE run_id = ?", (run_id,)
            ).fetchone()
        return int(pending), str(text)


COMPACTED_SECONDS = 30.0
_PENDING = (
    "SELECT COUNT(*) FROM row_log JOIN runs ON runs.pk = row_log.run_pk "
    "WHERE runs.run_id = $1 AND row_log.failed IS NULL"
)


async def _postgres_fold_state(db_url: str, run_id: str) -> tuple[int, str]:
    import asyncpg

    conn = await asyncpg.connect(db_url)
    try:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            pending = await conn.fetchval(_PENDING, run_id)
            text: str = await conn.fetchval(
                "SELECT summary_state FROM runs WHERE run_id = $1", run_id
            )
    finally:
        await conn.close()
    return int(pending), text

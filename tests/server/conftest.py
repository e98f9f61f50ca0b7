"""Fixtures of the server tests: real servers on loopback over real SQLite files, and a client.

Test modules reach the helpers through the `client` fixture (``client.run_batch(...)``),
so nothing needs importing from this file.
"""

from __future__ import annotations

import io
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from tracker._records.codec import encode_record
from tracker._server._runner import EmbeddedServer
from tracker._wire.protocol import CLIENT_HEADERS

ALICE_KEY = "alice-secret-key"
BOB_KEY = "bob-secret-key-0001"


@pytest.fixture
def anyio_backend() -> str:
    """The server tests use aiohttp's client, which runs on asyncio only."""
    return "asyncio"


def _db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'tracker.db'}"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[EmbeddedServer]:
    """A server without API keys on loopback: every request acts as the entity ``local``."""
    with EmbeddedServer(_db(tmp_path)) as running:
        yield running


@pytest.fixture
def keyed_server(tmp_path: Path) -> Iterator[EmbeddedServer]:
    """A server with the keys of ``alice`` and ``bob``."""
    keys = [f"alice:{ALICE_KEY}", f"bob:{BOB_KEY}"]
    with EmbeddedServer(_db(tmp_path), api_keys=keys) as running:
        yield running


@pytest.fixture
def anonymous_server(tmp_path: Path) -> Iterator[EmbeddedServer]:
    """A server with alice's key that also lets requests without a key in, as ``anonymous``."""
    with EmbeddedServer(
        _db(tmp_path), api_keys=[f"alice:{ALICE_KEY}"], allow_anonymous=True
    ) as running:
        yield running


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """An aiohttp client session sending the header of tracker's client (as it does)."""
    async with aiohttp.ClientSession(headers=CLIENT_HEADERS) as opened:
        yield opened


@pytest.fixture
def client(server: EmbeddedServer, session: aiohttp.ClientSession) -> Client:
    """A client of the keyless server."""
    return Client(session, server.url)


@pytest.fixture
def alice(keyed_server: EmbeddedServer, session: aiohttp.ClientSession) -> Client:
    """A client of the keyed server, with alice's key (``alice.as_key`` switches callers)."""
    return Client(session, keyed_server.url, ALICE_KEY)


@pytest.fixture
def guest(anonymous_server: EmbeddedServer, session: aiohttp.ClientSession) -> Client:
    """A client without a key of the server that allows anonymous requests."""
    return Client(session, anonymous_server.url)


class Client:
    """Requests to one server as one caller (an API key or none), and batch builders."""

    ALICE_KEY = ALICE_KEY
    BOB_KEY = BOB_KEY
    LOG_ID = "6f1c0b1e9d3a4c7e8b2f5a0d4e6c8b1a"

    def __init__(self, session: aiohttp.ClientSession, url: str, key: str | None = None) -> None:
        self.session = session
        self.url = url
        self.headers = {"Authorization": f"Bearer {key}"} if key else {}

    def as_key(self, key: str | None) -> Client:
        """The same server, as another caller."""
        return Client(self.session, self.url, key)

    async def raw(
        self,
        method: str,
        path: str,
        *,
        data: bytes | None = None,
        json: Any = None,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, bytes]:
        """Send a request; the status and the body."""
        if json is not None:
            data = orjson.dumps(json)
        # aiohttp warns about big bytes bodies; a file object is streamed instead
        body = io.BytesIO(data) if data is not None and len(data) > 1 << 20 else data
        async with self.session.request(
            method,
            self.url + path,
            data=body,
            params=params,
            headers={**self.headers, **(headers or {})},
        ) as response:
            return response.status, await response.read()

    async def call(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
        """Send a request; the status and the JSON answer (None when empty)."""
        status, body = await self.raw(method, path, **kwargs)
        return status, orjson.loads(body) if body else None

    async def error(self, method: str, path: str, status: int, code: str, **kwargs: Any) -> str:
        """Send a request that must fail with ``status`` and ``code``; its error message."""
        got, answer = await self.call(method, path, **kwargs)
        assert got == status, answer
        assert answer["error"]["status"] == status, answer
        assert answer["error"]["code"] == code, answer
        message: str = answer["error"]["message"]
        assert message
        return message

    async def start(self, run_id: str = "run1", **fields: Any) -> dict[str, Any]:
        """A successful handshake; its answer."""
        body = self.handshake(run_id, **fields)
        status, answer = await self.call("POST", "/api/v1/runs/start", json=body)
        assert status == 200, answer
        result: dict[str, Any] = answer
        return result

    async def post_batch(
        self, run_id: str, batch: bytes, log_id: str | None = None, entity: str = "local"
    ) -> tuple[int, Any]:
        """POST a batch to ``ENTITY/proj/RUN_ID`` over HTTP."""
        return await self.call(
            "POST",
            f"/api/v1/runs/{entity}/proj/{run_id}/records",
            data=batch,
            params={"log_id": log_id or self.LOG_ID},
            headers={"Content-Type": "application/x-ndjson"},
        )

    async def history(self, run_id: str, entity: str = "local", **params: str) -> list[bytes]:
        """The history lines of ``ENTITY/proj/RUN_ID``."""
        path = f"/api/v1/runs/{entity}/proj/{run_id}/history"
        status, body = await self.raw("GET", path, params=params)
        assert status == 200, body
        return body.splitlines()

    async def healthy(self) -> None:
        """The server answers health, and a fresh run streams and reads back."""
        status, answer = await self.call("GET", "/api/v1/health")
        assert (status, answer["status"]) == (200, "ok")
        run_id = "ok-" + uuid.uuid4().hex[:8]
        log_id = self.new_log_id()
        entity = (await self.start(run_id, log_id=log_id))["entity"]
        status, answer = await self.post_batch(run_id, self.run_batch(0, rows=3), log_id, entity)
        assert (status, answer) == (200, {"acked_seq": 3})
        assert len(await self.history(run_id, entity)) == 3

    @staticmethod
    def new_log_id() -> str:
        """A fresh log id."""
        return uuid.uuid4().hex

    @classmethod
    def handshake(cls, run_id: str = "run1", **fields: Any) -> dict[str, Any]:
        """A handshake body for ``proj/RUN_ID`` of the caller's entity (``fields`` override)."""
        body: dict[str, Any] = {
            "protocol": 1,
            "entity": None,
            "project": "proj",
            "run_id": run_id,
            "log_id": cls.LOG_ID,
            "mode": "new",
            "fork_from": None,
            "rewind_to": None,
            "heartbeat_interval": 10.0,
        }
        body.update(fields)
        return body

    @staticmethod
    def record(seq: int, kind: str, payload: Any, *head: Any) -> bytes:
        """One encoded record line ``[seq, kind, *head, payload]``."""
        return encode_record((seq, kind, *head), payload, "test record")

    @classmethod
    def run_batch(
        cls, first_seq: int, rows: int = 0, first_step: int = 0, start: bool = True, **config: Any
    ) -> bytes:
        """A batch: a session-start ``run`` record (when ``start``), config, then rows."""
        now = time.time()
        lines = []
        seq = first_seq
        if start:
            lines.append(cls.record(seq, "run", {"name": "test-run", "start_time": now}))
            seq += 1
        if config:
            lines.append(cls.record(seq, "config", config))
            seq += 1
        for index in range(rows):
            step = first_step + index
            data = {"loss": 1.0 / (step + 1), "n": step}
            lines.append(cls.record(seq, "row", data, step, now))
            seq += 1
        return b"".join(lines)

"""Slow bodies and connection floods against a real `tracker server` process: a body
trickled a byte at a time is cut at its deadline while a slow but steady one is stored, and
a client address opening more connections than its cap cannot lock another client out."""

from __future__ import annotations

import http.client
import os
import select
import socket
import threading
import time
import uuid
from pathlib import Path

import orjson
import pytest

import tracker

from .conftest import FAST_RETRIES, Figures, ServerProcess

pytestmark = pytest.mark.faults

GRACE_SECONDS = 10.0  # tracker._server._http.BODY_GRACE_SECONDS
ATTACKER = "127.0.0.2"  # another client address on loopback


def _open(server: ServerProcess, head: str, source: str = "127.0.0.1") -> socket.socket:
    """A connection from ``source`` that has sent ``head`` (and whatever follows it)."""
    connection = socket.create_connection(("127.0.0.1", server.port), source_address=(source, 0))
    connection.sendall(head.encode())
    return connection


def _head(method: str, path: str, length: int, content_type: str = "application/json") -> str:
    """A request head announcing a body of ``length`` bytes."""
    return (
        f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\n"
        f"X-Tracker-Client: test\r\nContent-Length: {length}\r\n\r\n"
    )


def _steady_upload(server: ServerProcess, path: str, size: int, rate: int) -> dict[str, float]:
    """PUT ``size`` bytes to ``path`` at ``rate`` bytes/s; the status and the seconds taken."""
    connection = _open(server, _head("PUT", path, size, "application/octet-stream"))
    began = time.monotonic()
    piece = rate // 4
    for start in range(0, size, piece):
        connection.sendall(b"w" * min(piece, size - start))
        time.sleep(0.25)
    answer = connection.recv(65536)
    connection.close()
    return {"status": int(answer.split()[1]), "seconds": time.monotonic() - began}


@pytest.mark.timeout(60)
def test_a_trickled_body_is_cut_at_its_deadline_and_a_steady_one_is_stored(
    tracker_server: ServerProcess, figures: Figures
) -> None:
    """A handshake body sent a byte a second (which the 15 s pause limit alone never cuts)
    is answered 408 within its 10 s deadline and its connection closed at once, while a
    192 KiB file sent at 16 KiB/s meanwhile, for longer than those 10 s, is stored."""
    start = http.client.HTTPConnection("127.0.0.1", tracker_server.port, timeout=10)
    handshake = {"protocol": 1, "project": "p", "run_id": "r", "log_id": uuid.uuid4().hex}
    start.request(
        "POST",
        "/api/v1/runs/start",
        orjson.dumps({**handshake, "mode": "new"}),
        {"Content-Type": "application/json"},
    )
    assert start.getresponse().status == 200
    start.close()
    steady: dict[str, float] = {}
    uploader = threading.Thread(
        target=lambda: steady.update(
            _steady_upload(
                tracker_server, "/api/v1/runs/local/p/r/files/slow.bin", 192 * 1024, 16 * 1024
            )
        )
    )
    uploader.start()
    trickle = _open(tracker_server, _head("POST", "/api/v1/runs/start", 10_000) + "{")
    began = time.monotonic()
    answer = b""
    answered_at = closed_at = None
    while closed_at is None and time.monotonic() - began < GRACE_SECONDS + 6:
        readable, _, _ = select.select([trickle], [], [], 1.0)
        if readable:
            try:
                data = trickle.recv(65536)
            except ConnectionError:
                data = b""
            if data:
                answer += data
                answered_at = answered_at or time.monotonic()
            else:
                closed_at = time.monotonic()
        else:
            try:
                trickle.sendall(b" ")  # JSON whitespace, a byte a second
            except OSError:
                closed_at = time.monotonic()
    trickle.close()
    uploader.join(30)
    figures.extra.update(
        trickle_cut_seconds=None if answered_at is None else round(answered_at - began, 2),
        closed_after_answer_seconds=None
        if answered_at is None or closed_at is None
        else round(closed_at - answered_at, 2),
        steady_upload=steady,
    )
    assert answered_at is not None, "a byte a second held the connection past its deadline"
    assert answered_at - began < GRACE_SECONDS + 1.5
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert orjson.loads(answer.partition(b"\r\n\r\n")[2])["error"]["code"] == "timeout"
    assert closed_at is not None
    assert closed_at - answered_at < 1.0, "the connection lingered"
    assert steady["status"] == 204, steady
    assert steady["seconds"] > GRACE_SECONDS, steady
    (stored,) = tracker.Api(tracker_server.url).run("local/p/r").files()
    assert (stored.name, stored.size) == ("slow.bin", 192 * 1024)


def _closed_by_server(connections: list[socket.socket]) -> set[int]:
    """The indexes of the connections the server has closed (or reset)."""
    closed = set()
    for index, connection in enumerate(connections):
        connection.setblocking(False)
        try:
            if connection.recv(65536) == b"":
                closed.add(index)
        except BlockingIOError:
            pass
        except ConnectionError:
            closed.add(index)
    return closed


@pytest.mark.timeout(60)
def test_connections_beyond_an_address_cap_do_not_stop_another_client(
    tracker_server: ServerProcess, tmp_path: Path, figures: Figures
) -> None:
    """A server allowed 256 file descriptors, and a client at another address opening 300
    connections that each hold a half-sent body: beyond its cap (half of 256 - 64) they are
    closed at once, the server keeps file descriptors to spare, and a run from 127.0.0.1
    streams 20,000 rows, all stored, within seconds."""
    tracker_server.limit_files(256)
    assert tracker_server.process is not None
    held = [
        _open(tracker_server, _head("POST", "/api/v1/runs/start", 10_000) + "{", ATTACKER)
        for _ in range(300)
    ]
    cap = (256 - 64) // 2
    try:
        # connections the kernel completed while the accept queue was full reach the server
        # when it resends its SYN-ACK (after 1 s, 3 s): give them that long
        opened = time.monotonic()
        refused: set[int] = set()
        while len(refused) < len(held) - cap and time.monotonic() - opened < 8:
            time.sleep(0.25)
            refused |= _closed_by_server(held)
        refusing_seconds = time.monotonic() - opened
        fds = len(os.listdir(f"/proc/{tracker_server.process.pid}/fd"))
        began = time.monotonic()
        run = tracker.init(
            project="p",
            dir=tmp_path / "runs",
            settings={**FAST_RETRIES, "base_url": tracker_server.url},
        )
        for index in range(20_000):
            run.log({"x": index})
        run.finish()
        run_seconds = time.monotonic() - began
        stored = tracker.Api(tracker_server.url).run(run.path).history(keys=["x"])
    finally:
        for connection in held:
            connection.close()
    figures.rows_logged, figures.rows_stored = 20_000, len(stored)
    figures.extra.update(
        held_connections=len(held) - len(refused),
        refused=len(refused),
        refused_within_seconds=round(refusing_seconds, 2),
        server_fds=fds,
        run_seconds=round(run_seconds, 2),
    )
    assert len(refused) == len(held) - cap, "an address held more connections than its cap"
    assert fds < 256 - 32
    assert [row["x"] for row in stored] == list(range(20_000))
    assert run_seconds < 10


def test_the_caps_are_set_on_the_command_line(tmp_path: Path) -> None:
    """--max-connections-per-ip 3: a fourth and fifth connection from one address are
    closed at once, another address is answered; a cap below 1 is a usage error."""
    server = ServerProcess(tmp_path / "capped", "--max-connections-per-ip", "3").start()
    try:
        held = [_open(server, "GET /api/v1/health HTTP/1.1\r\n", ATTACKER) for _ in range(5)]
        began = time.monotonic()
        refused: set[int] = set()
        while len(refused) < 2 and time.monotonic() - began < 3:
            time.sleep(0.1)
            refused |= _closed_by_server(held)
        assert refused == {3, 4}
        assert tracker.Api(server.url).default_entity == "local"
        for connection in held:
            connection.close()
    finally:
        server.stop()
    refused_start = ServerProcess(tmp_path / "zero", "--max-connections", "0")
    with pytest.raises(AssertionError, match="--max-connections 0: give a number"):
        refused_start.start(timeout=15)

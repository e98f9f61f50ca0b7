"""The guard against forged requests: a change needs an unforgeable content type or the
client header, a websocket the client header, an Origin must be the server's own, and the
Host one of its names (a --base-url adds one)."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from server_process import ServerProcess

from tracker._server._runner import EmbeddedServer
from tracker._wire.protocol import CLIENT_HEADERS

from .conftest import Client

RUN = "/api/v1/runs/local/proj/run1"


@pytest.fixture
async def browserlike(server: EmbeddedServer) -> AsyncIterator[Client]:
    """A client of the keyless server that sends no X-Tracker-Client header."""
    async with aiohttp.ClientSession() as session:
        yield Client(session, server.url)


@pytest.mark.anyio
async def test_a_change_without_a_safe_type_or_the_client_header_is_refused(
    client: Any, browserlike: Any
) -> None:
    """POST, PUT and PATCH with text/plain, a form type or no type (what a page may send to
    another site) get 415 bad_content_type naming the allowed types; with the header or a
    safe type they are answered."""
    await client.start()
    body = orjson.dumps(client.handshake())
    for content_type in ("text/plain", "text/plain; charset=utf-8", "multipart/form-data"):
        message = await browserlike.error(
            "POST",
            "/api/v1/runs/start",
            415,
            "bad_content_type",
            data=body,
            headers={"Content-Type": content_type},
        )
        assert "application/json" in message
        assert "X-Tracker-Client" in message
    # no type at all, as a page's fetch of a Blob sends (aiohttp adds one unless told not to)
    async with browserlike.session.post(
        f"{client.url}{RUN}/heartbeat", data=b"{}", skip_auto_headers=["Content-Type"]
    ) as response:
        assert response.status == 415
        assert (await response.json())["error"]["code"] == "bad_content_type"
    await browserlike.error(
        "PUT",
        f"{RUN}/files/a.txt",
        415,
        "bad_content_type",
        data=b"x",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    await browserlike.error(
        "PATCH",
        RUN,
        415,
        "bad_content_type",
        data=b'{"notes": "x"}',
        headers={"Content-Type": "text/plain"},
    )
    assert (await browserlike.raw("POST", f"{RUN}/heartbeat", headers=CLIENT_HEADERS))[0] == 204
    status, answer = await browserlike.call("PATCH", RUN, json={"notes": "edited"})
    assert (status, answer[0]["notes"]) == (200, "edited")
    status, _ = await browserlike.raw(
        "PUT", f"{RUN}/files/a.txt", data=b"x", headers={"Content-Type": "application/octet-stream"}
    )
    assert status == 204


@pytest.mark.anyio
async def test_a_websocket_needs_the_client_header(client: Any, browserlike: Any) -> None:
    """A websocket upgrade without X-Tracker-Client (all a browser can send) is refused with
    403 client_header_required; with it, the stream opens."""
    await client.start()
    url = f"{client.url}{RUN}/stream"
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await browserlike.session.ws_connect(url, params={"log_id": client.LOG_ID})
    assert refused.value.status == 403
    async with client.session.ws_connect(url, params={"log_id": client.LOG_ID}) as opened:
        assert not opened.closed


@pytest.mark.anyio
async def test_an_origin_other_than_the_server_is_refused(client: Any) -> None:
    """A request carrying the Origin of another site is 403 bad_origin, even with the client
    header; the server's own origin (as the dashboard's pages send) is answered."""
    await client.start()
    host, port = client.url.removeprefix("http://").split(":")
    for origin in ("http://evil.example", f"http://{host}:{int(port) + 1}", "null"):
        message = await client.error(
            "PATCH", RUN, 403, "bad_origin", json={"notes": "x"}, headers={"Origin": origin}
        )
        assert origin in message
    await client.error("GET", RUN, 403, "bad_origin", headers={"Origin": "http://evil.example"})
    status, _ = await client.call("PATCH", RUN, json={"notes": "x"}, headers={"Origin": client.url})
    assert status == 200


@pytest.fixture
def named_server(tmp_path: Path) -> Iterator[ServerProcess]:
    """A `tracker server` process told its public name with --base-url."""
    running = ServerProcess(tmp_path / "named", "--base-url", "https://tracker.example.com")
    yield running.start()
    running.stop()


def test_the_host_of_base_url_is_answered_and_used_in_run_urls(named_server: ServerProcess) -> None:
    """With --base-url, requests naming its host (and its origin) are answered and run URLs
    use it; other names are still refused."""

    def ask(host: str, origin: str | None = None) -> tuple[int, Any]:
        body = orjson.dumps(
            {"protocol": 1, "project": "p", "run_id": "r", "log_id": "a" * 32, "mode": "allow"}
        )
        head = (
            f"POST /api/v1/runs/start HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        )
        if origin is not None:
            head += f"Origin: {origin}\r\n"
        with socket.create_connection(("127.0.0.1", named_server.port), timeout=10) as connection:
            connection.sendall(head.encode() + b"\r\n" + body)
            answer = b""
            while chunk := connection.recv(65536):
                answer += chunk
        status_line, _, rest = answer.partition(b"\r\n")
        return int(status_line.split()[1]), orjson.loads(rest.partition(b"\r\n\r\n")[2])

    status, answer = ask("tracker.example.com", "https://tracker.example.com")
    assert status == 200, answer
    assert answer["url"] == "https://tracker.example.com/local/p/runs/r"
    assert ask("other.example.com")[1]["error"]["code"] == "bad_host"
    assert (
        ask("tracker.example.com", "https://other.example.com")[1]["error"]["code"] == "bad_origin"
    )

"""Talking to the server: one HTTP client per server, and the two batch transports.

Both transports (websocket, HTTP POST) take batches of run-log records and report
the server's acknowledgements through a callback, so the sender does not care
which one carries its batches. aiohttp is imported here, on the I/O thread only.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, Protocol

import aiohttp
import orjson

from tracker._io._retry import CONNECT_TIMEOUT_SECONDS, REQUEST_TIMEOUT_SECONDS
from tracker._wire.errors import TransportError, error_from_answer, parse_retry_after
from tracker._wire.limits import MAX_BATCH_BYTES
from tracker._wire.protocol import API_ROOT, CLIENT_HEADERS

__all__ = ["BatchTransport", "HttpTransport", "ServerClient", "WebSocketTransport"]


class ServerClient:
    """HTTP requests to one tracker server, with the API key; lives on the I/O loop."""

    def __init__(self, base_url: str, api_key: str | None) -> None:
        """Prepare a client for ``base_url``; the session opens on first use."""
        self.base_url = base_url.rstrip("/")
        self._headers = dict(CLIENT_HEADERS)  # on every request, websocket upgrades included
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self._session: aiohttp.ClientSession | None = None

    def session(self) -> aiohttp.ClientSession:
        """The aiohttp session (created on the running loop on first use)."""
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                headers=self._headers,
                timeout=aiohttp.ClientTimeout(
                    total=REQUEST_TIMEOUT_SECONDS, connect=CONNECT_TIMEOUT_SECONDS
                ),
            )
        return self._session

    def url(self, path: str) -> str:
        """The absolute URL of an API path."""
        return f"{self.base_url}{API_ROOT}{path}"

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        data: bytes | Path | None = None,
        content_type: str | None = None,
        params: dict[str, str] | None = None,
    ) -> bytes:
        """Send a request and return the body of a 2xx answer; ``data`` a `Path` sends that
        file, read from disk as it goes out (with no overall time limit: only the connect
        and the server's answer to each piece are timed).

        Raises:
            TransportError: no answer (status 0), or the server's error answer.
        """
        headers = {}
        if json is not None:
            data = orjson.dumps(json)
            content_type = "application/json"
        if content_type is not None:
            headers["Content-Type"] = content_type
        try:
            with contextlib.ExitStack() as stack:
                timeout: aiohttp.ClientTimeout | None = None
                upload: IO[bytes] | None = None
                if isinstance(data, Path):
                    upload = stack.enter_context(data.open("rb"))
                    timeout = aiohttp.ClientTimeout(
                        connect=CONNECT_TIMEOUT_SECONDS, sock_read=REQUEST_TIMEOUT_SECONDS
                    )
                elif data is not None:
                    # aiohttp warns about bytes bodies over 1 MiB (batches are up to 16)
                    upload = io.BytesIO(data)
                async with self.session().request(
                    method,
                    self.url(path),
                    data=upload,
                    headers=headers,
                    params=params,
                    timeout=timeout,
                ) as response:
                    body = await response.read()
                    if response.status >= 400:
                        raise error_from_answer(
                            response.status, body, response.headers.get("Retry-After")
                        )
                    return body
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            raise TransportError(f"cannot reach {self.base_url}: {_describe(exc)}") from exc

    async def close(self) -> None:
        """Close the session; safe to call twice."""
        if self._session is not None:
            await self._session.close()
            self._session = None


class BatchTransport(Protocol):
    """Carries batches to the server; acknowledgements arrive through ``on_ack``."""

    name: str

    async def open(self) -> None:
        """Connect."""

    async def send(self, batch: bytes) -> None:
        """Send one batch (JSON lines of records)."""

    async def heartbeat(self) -> None:
        """Tell the server the client is alive."""

    def failure(self) -> TransportError | None:
        """The error that broke the transport since it opened, if any."""

    async def close(self) -> None:
        """Disconnect; safe to call twice."""


class WebSocketTransport:
    """Batches as binary websocket messages; acks come back as text messages."""

    name = "websocket"

    def __init__(
        self,
        client: ServerClient,
        path: str,
        log_id: str,
        heartbeat_interval: float,
        on_ack: Callable[[int, str | None], None],
        on_event: Callable[[], None],
    ) -> None:
        """Prepare the stream of one run log; ``on_event`` wakes the sender."""
        self._client = client
        self._url = client.url(f"{path}/stream")
        self._log_id = log_id
        self._heartbeat = heartbeat_interval
        self._on_ack = on_ack
        self._on_event = on_event
        self._socket: aiohttp.ClientWebSocketResponse[bool] | None = None
        self._reader: asyncio.Task[None] | None = None
        self._failure: TransportError | None = None

    async def open(self) -> None:
        """Open the websocket and start the one task that receives from it."""
        self._failure = None
        try:
            socket = await self._client.session().ws_connect(
                self._url,
                params={"log_id": self._log_id},
                heartbeat=max(self._heartbeat, 1.0),
                max_msg_size=MAX_BATCH_BYTES + 1,
                compress=0,  # compressing big frames needs an executor, gone at exit
            )
        except aiohttp.WSServerHandshakeError as exc:
            retry_after = exc.headers.get("Retry-After") if exc.headers else None
            raise TransportError(
                f"the server refused the websocket: {exc.status} {exc.message}",
                status=exc.status,
                retry_after=parse_retry_after(retry_after),
            ) from exc
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            raise TransportError(
                f"cannot open a websocket to {self._client.base_url}: {_describe(exc)}"
            ) from exc
        self._socket = socket
        self._reader = asyncio.get_running_loop().create_task(self._receive(socket))

    async def _receive(self, socket: aiohttp.ClientWebSocketResponse[bool]) -> None:
        try:
            async for message in socket:
                if message.type != aiohttp.WSMsgType.TEXT:
                    continue
                event = orjson.loads(message.data)
                if event.get("type") == "ack":
                    self._on_ack(int(event["seq"]), event.get("refused"))
                elif event.get("type") == "error":
                    self._failure = TransportError(
                        f"the server answered {event.get('status')}: {event.get('message')}",
                        status=int(event.get("status", 0)),
                        code=str(event.get("code", "")),
                        extra={"acked_seq": event.get("acked_seq")},
                    )
            if self._failure is None:
                reason = f"code {socket.close_code}" if socket.close_code else "no reason"
                status = 413 if socket.close_code == aiohttp.WSCloseCode.MESSAGE_TOO_BIG else 0
                self._failure = TransportError(
                    f"the server closed the websocket ({reason})", status=status
                )
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError, ValueError) as exc:
            self._failure = TransportError(f"the websocket broke: {_describe(exc)}")
        finally:
            self._on_event()

    async def send(self, batch: bytes) -> None:
        """Send one batch as a binary message."""
        if self._failure is not None:
            raise self._failure
        if self._socket is None or self._socket.closed:
            raise TransportError("the websocket is closed")
        # A peer that stopped reading (frozen, or gone without a FIN) blocks the send while
        # the socket drains; two heartbeat intervals without progress means it is dead.
        limit = 2 * max(self._heartbeat, 1.0)
        try:
            await asyncio.wait_for(self._socket.send_bytes(batch), limit)
        except asyncio.TimeoutError:
            raise TransportError(
                f"the server took no data for {limit:.0f} s; reconnecting"
            ) from None
        except (aiohttp.ClientError, ConnectionError, OSError) as exc:
            raise TransportError(f"sending over the websocket failed: {_describe(exc)}") from exc

    async def heartbeat(self) -> None:
        """Send an application-level heartbeat."""
        if self._socket is not None and not self._socket.closed:
            try:
                await self._socket.send_str('{"type":"heartbeat"}')
            except (aiohttp.ClientError, ConnectionError, OSError) as exc:
                raise TransportError(f"heartbeat failed: {_describe(exc)}") from exc

    def failure(self) -> TransportError | None:
        """The error that broke the websocket, if any."""
        return self._failure

    async def close(self) -> None:
        """Close the websocket and stop the receiving task."""
        socket, self._socket = self._socket, None
        if socket is not None and not socket.closed:
            await socket.close()
        if self._reader is not None:
            self._reader.cancel()
            self._reader = None


class HttpTransport:
    """Batches as HTTP POSTs; each answer carries the ack."""

    name = "http"

    def __init__(
        self,
        client: ServerClient,
        path: str,
        log_id: str,
        on_ack: Callable[[int, str | None], None],
    ) -> None:
        """Prepare the POSTs of one run log."""
        self._client = client
        self._path = path
        self._log_id = log_id
        self._on_ack = on_ack

    async def open(self) -> None:
        """Nothing to open: every batch is its own request."""

    async def send(self, batch: bytes) -> None:
        """POST one batch and report its ack."""
        body = await self._client.request(
            "POST",
            f"{self._path}/records",
            data=batch,
            content_type="application/x-ndjson",
            params={"log_id": self._log_id},
        )
        answer = orjson.loads(body)
        self._on_ack(int(answer["acked_seq"]), answer.get("refused"))

    async def heartbeat(self) -> None:
        """POST a heartbeat."""
        await self._client.request("POST", f"{self._path}/heartbeat")

    def failure(self) -> TransportError | None:
        """HTTP errors raise from `send`; nothing breaks in between."""
        return None

    async def close(self) -> None:
        """Nothing to close."""


def _describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__

"""Where records come in: the run's websocket stream, its HTTP fallback and heartbeats.

Batches are parsed and checked here (`tracker._records.batch`), stored by the `Store` in
order, and acknowledged in order; how much the server holds at once is bounded, per
connection and over all of them (`ByteBudget`), whatever a client sends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from collections import deque
from typing import Any, Final

import orjson
from aiohttp import WSCloseCode, WSMsgType, web

from tracker._records.batch import BatchTooLarge, ParsedBatch, parse_batch
from tracker._records.state import RecordError
from tracker._server._auth import ApiError
from tracker._server._budget import ByteBudget
from tracker._server._http import api_error, json_answer, read_body
from tracker._server._params import log_id_param, run_key, run_not_found
from tracker._server.storage import Acked, RunKey, Store
from tracker._server.storage.errors import StorageError
from tracker._wire.limits import MAX_BATCH_BYTES

__all__ = ["Ingest"]

WS_PING_SECONDS: Final = 10.0
WS_BATCHES_IN_FLIGHT: Final = 2
"""Batches of one websocket parsed or being stored at once: one stored while the next is
parsed; the socket is not read meanwhile."""
INGEST_BUDGET_BYTES: Final = 64 * 2**20
"""Batch bytes the server holds at once over every connection (`ByteBudget`)."""

_THREAD_PARSE_BYTES: Final = 1024 * 1024
"""Batches above this are decoded in a worker thread, so the event loop keeps serving."""

_logger = logging.getLogger(__name__)


class Ingest:
    """The endpoints that take records, sharing the store, the budget and the open streams."""

    def __init__(self, storage: Store) -> None:
        """Take records into ``storage``."""
        self._storage = storage
        self._sockets: weakref.WeakSet[web.WebSocketResponse] = weakref.WeakSet()
        self._ingest_budget = ByteBudget(INGEST_BUDGET_BYTES)

    def routes(self, run: str) -> list[web.RouteDef]:
        """The stream, records and heartbeat endpoints of the run at path ``run``."""
        return [
            web.get(run + "/stream", self.stream),
            web.post(run + "/records", self.records),
            web.post(run + "/heartbeat", self.heartbeat),
        ]

    async def stream(self, request: web.Request) -> web.StreamResponse:
        """The websocket: binary batches in, text acks out; text heartbeats in."""
        key = run_key(request)
        log_id = log_id_param(request.query.get("log_id"), "query parameter log_id")
        if await self._storage.get_run(key) is None:
            raise run_not_found(key)
        # aiohttp refuses messages of max_msg_size bytes and more; MAX_BATCH_BYTES itself is fine
        # no permessage-deflate: clients send batches uncompressed, and inflating on the loop
        # would cost the server CPU a client chooses
        socket = web.WebSocketResponse(
            heartbeat=WS_PING_SECONDS, max_msg_size=MAX_BATCH_BYTES + 1, compress=False
        )
        if not socket.can_prepare(request).ok:
            raise ApiError(
                400, "bad_request", "this endpoint is a websocket: connect with an upgrade request"
            )
        await socket.prepare(request)
        self._sockets.add(socket)
        # Batches are pipelined: while the storage writes one (SQLite releases the GIL),
        # the next is parsed. The storage applies them in order and refuses any gap, and
        # each batch's ack waits for the ack before it, so acks go out in order too. At most
        # WS_BATCHES_IN_FLIGHT per connection and INGEST_BUDGET_BYTES in all are held: the
        # socket is not read meanwhile, and TCP slows the client down.
        previous: asyncio.Task[None] | None = None
        in_flight: deque[asyncio.Task[None]] = deque()
        try:
            # the only task that calls receive(); shutdown's close() is what aiohttp allows
            async for message in socket:
                if message.type is WSMsgType.ERROR:
                    break
                try:
                    if message.type is WSMsgType.BINARY:
                        while len(in_flight) >= WS_BATCHES_IN_FLIGHT:
                            await _settle(in_flight.popleft())
                        size = len(message.data)
                        await self._ingest_budget.acquire(size)
                        try:
                            parsed = await _parse(message.data)
                        except BaseException:
                            await self._ingest_budget.release(size)
                            raise
                        previous = asyncio.ensure_future(
                            self._ingest_and_ack(socket, key, log_id, parsed, previous, size)
                        )
                        del parsed, message  # the task holds the batch, and frees it when stored
                        in_flight.append(previous)
                    else:
                        await self._on_text(key, message)
                except (ApiError, StorageError) as exc:
                    await _settle(previous)
                    answer = api_error(exc)
                    await _refuse(socket, answer.status, answer.code, answer.message, answer.extra)
                    break
                except Exception:
                    _logger.exception("internal error on the stream of %s", key)
                    await _settle(previous)
                    await _refuse(
                        socket, 500, "internal", "the server failed; reconnect and resend", {}
                    )
                    break
        finally:
            await _settle(previous)  # transactions in flight finish before the socket goes
            self._sockets.discard(socket)
        return socket

    async def _ingest_and_ack(
        self,
        socket: web.WebSocketResponse,
        key: RunKey,
        log_id: str,
        batch: ParsedBatch,
        previous: asyncio.Task[None] | None,
        size: int,
    ) -> None:
        """Store one batch (holding ``size`` bytes of the ingest budget until stored), then
        (after the previous batch's ack) send its ack; a refusal closes the socket, and the
        client resends from its last ack."""
        failure: tuple[int, str, str, dict[str, Any]] | None = None
        try:
            acked = await self._ingest(key, log_id, batch)
        except (ApiError, StorageError) as exc:
            answer = api_error(exc)
            failure = (answer.status, answer.code, answer.message, answer.extra)
        except Exception:
            _logger.exception("internal error on the stream of %s", key)
            failure = (500, "internal", "the server failed; reconnect and resend", {})
        finally:
            del batch  # the parsed records go before the budget says they have
            await self._ingest_budget.release(size)
        await _settle(previous)
        previous = None  # no chain of finished tasks kept for the life of the socket
        if socket.closed:
            return
        if failure is not None:
            await _refuse(socket, *failure)
            return
        ack = {"type": "ack", "seq": acked.seq, **_refusal(acked)}
        with contextlib.suppress(ConnectionError):
            await socket.send_str(orjson.dumps(ack).decode())

    async def _on_text(self, key: RunKey, message: Any) -> None:
        if message.type is WSMsgType.TEXT:
            try:
                value = orjson.loads(message.data)
            except orjson.JSONDecodeError:
                value = None
            if not isinstance(value, dict) or not isinstance(value.get("type"), str):
                raise ApiError(
                    400,
                    "bad_message",
                    'a text message must be a JSON object with a "type", like '
                    '{"type": "heartbeat"}; send batches as binary messages',
                )
            if value["type"] == "heartbeat":
                await self._storage.heartbeat(key, time.time())
            # other types come from newer clients; ignoring them keeps this server compatible

    async def _ingest(self, key: RunKey, log_id: str, batch: ParsedBatch) -> Acked:
        records, lines = batch
        return await self._storage.ingest(key, log_id, records, time.time(), lines)

    async def records(self, request: web.Request) -> web.Response:
        """The HTTP fallback of the stream: one batch, answered with the stored seq."""
        key = run_key(request)
        log_id = log_id_param(request.query.get("log_id"), "query parameter log_id")
        size = min(request.content_length or MAX_BATCH_BYTES, MAX_BATCH_BYTES)
        async with self._ingest_budget.holding(size):
            body = await read_body(request, MAX_BATCH_BYTES, "the batch")
            acked = await self._ingest(key, log_id, await _parse(body))
        return json_answer({"acked_seq": acked.seq, **_refusal(acked)})

    async def heartbeat(self, request: web.Request) -> web.Response:
        """The HTTP heartbeat: the run's client is alive."""
        await self._storage.heartbeat(run_key(request), time.time())
        return web.Response(status=204)

    async def close_sockets(self, app: web.Application) -> None:
        """On shutdown, close every stream with 1001 (going away); clients reconnect elsewhere."""
        await asyncio.gather(
            *(
                socket.close(code=WSCloseCode.GOING_AWAY, message=b"server shutting down")
                for socket in list(self._sockets)
            ),
            return_exceptions=True,
        )


def _refusal(acked: Acked) -> dict[str, str]:
    """What an ack adds when rows of its batch were refused (docs/protocol.md)."""
    return {} if acked.refused is None else {"refused": acked.refused}


async def _parse(body: bytes) -> ParsedBatch:
    """Decode and check a batch (in a worker thread when big); refusals as API errors."""
    try:
        if len(body) > _THREAD_PARSE_BYTES:
            return await asyncio.to_thread(parse_batch, body)
        return parse_batch(body)
    except RecordError as exc:
        raise api_error(exc) from None
    except BatchTooLarge as exc:
        raise ApiError(413, "too_large", str(exc)) from None


async def _settle(task: asyncio.Task[None] | None) -> None:
    """Wait for a batch's ingest-and-ack task; it reports its own failures."""
    if task is not None:
        await asyncio.shield(task)


async def _refuse(
    socket: web.WebSocketResponse, status: int, code: str, message: str, extra: dict[str, Any]
) -> None:
    """Send a stream's error message, then close it (1009 too large, 1011 server, 1008 else)."""
    error = {"type": "error", "status": status, "code": code, "message": message, **extra}
    if status == 413:
        close_code = WSCloseCode.MESSAGE_TOO_BIG
    elif status >= 500:
        close_code = WSCloseCode.INTERNAL_ERROR
    else:
        close_code = WSCloseCode.POLICY_VIOLATION
    with contextlib.suppress(ConnectionError):
        await socket.send_str(orjson.dumps(error, default=str).decode())
        await socket.close(code=close_code, message=code.encode()[:120])

"""The HTTP and websocket API of docs/protocol.md, over a `Store`.

Handlers turn what a client sends into the store's arguments, checking what HTTP carries
(names, JSON shapes, batch records, sizes); the store checks the rest, so bad input gets
a 4xx naming the problem and never a 500. Every error answer goes through
`error_response`, and every storage error through `api_error`; user values in answers
are exactly encoded (`tracker._records.codec.encode_value`) so NaN, ±inf and big ints
survive.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
import weakref
from collections import deque
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import quote

import orjson
from aiohttp import ClientPayloadError, WSCloseCode, WSMsgType, web

import tracker
from tracker._errors import UsageError
from tracker._names import check_file_name
from tracker._records.batch import BatchTooLarge, ParsedBatch, parse_batch
from tracker._records.codec import encode_value
from tracker._records.state import RecordError
from tracker._server._auth import ApiError, auth_middleware, caller, check_entity
from tracker._server._budget import ByteBudget
from tracker._server._dashboard import Dashboard, dashboard_auth
from tracker._server._guard import guard_middleware
from tracker._server._params import checked_name, clip, int_query, json_query, project_of
from tracker._server.storage import RunKey, StartRequest, Store, parse_order
from tracker._server.storage.errors import (
    BadRequest,
    BadStep,
    LogConflict,
    RunExists,
    RunNotFound,
    SeqGap,
    StorageError,
    Unavailable,
)
from tracker._wire.limits import (
    MAX_BATCH_BYTES,
    MAX_FILE_BYTES,
    MAX_JSON_BYTES,
    MAX_PAGE,
    MAX_STEP,
)
from tracker._wire.protocol import LOG_ID, PROTOCOL

if TYPE_CHECKING:
    from aiohttp.typedefs import Handler

__all__ = ["api_error", "build_app", "error_response"]

BODY_IDLE_SECONDS: Final = 15.0
BODY_GRACE_SECONDS: Final = 10.0
BODY_MIN_BYTES_PER_SECOND: Final = 4096
"""A body must arrive within BODY_GRACE_SECONDS plus a second per this many bytes received."""
WS_PING_SECONDS: Final = 10.0
WS_BATCHES_IN_FLIGHT: Final = 2
"""Batches of one websocket parsed or being stored at once: one stored while the next is
parsed; the socket is not read meanwhile."""
INGEST_BUDGET_BYTES: Final = 64 * 2**20
"""Batch bytes the server holds at once over every connection (`ByteBudget`)."""
SWEEP_SECONDS: Final = 1.0
DEFAULT_HEARTBEAT_SECONDS: Final = 10.0
"""The heartbeat interval of a handshake that names none."""

_THREAD_PARSE_BYTES: Final = 1024 * 1024
"""Batches above this are decoded in a worker thread, so the event loop keeps serving."""
_HISTORY_CHUNK: Final = 2000
_HTTP_CODES: Final = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}

_logger = logging.getLogger(__name__)


def build_app(
    storage: Store,
    *,
    allow_anonymous: bool,
    open_access: bool,
    base_url: str | None = None,
    bound_host: str | None = None,
) -> web.Application:
    """The server application: the API of docs/protocol.md, the HTML pages, the crash sweep.

    Args:
        storage: the database; the caller opens it before and closes it after the app.
        allow_anonymous: requests without a key act as the entity ``anonymous``.
        open_access: no API keys and a loopback (or ``--insecure``) bind: every request
            acts as the entity ``local``.
        base_url: the public root of run URLs, also accepted as the Host and Origin of
            requests; default: the scheme and host of the request.
        bound_host: the address the server listens on, accepted as a Host.
    """
    api = _Api(storage, base_url)
    app = web.Application(
        middlewares=[
            _error_middleware,
            guard_middleware(bound_host, base_url),
            dashboard_auth(
                auth_middleware(storage, allow_anonymous=allow_anonymous, open_access=open_access)
            ),
        ],
        # bodies are read as streams with per-route limits (`_read_body`); this is the largest
        client_max_size=MAX_FILE_BYTES,
    )
    app.add_routes(api.routes())
    dashboard = Dashboard(storage)
    app.add_routes(dashboard.routes())
    app.on_shutdown.append(dashboard.close)
    app.cleanup_ctx.append(api.sweeper)
    app.on_shutdown.append(api.close_sockets)
    return app


def error_response(status: int, code: str, message: str, **extra: Any) -> web.Response:
    """The one shape of every error answer: ``{"error": {"status", "code", "message", ...}}``."""
    body = {"error": {"status": status, "code": code, "message": message, **extra}}
    return web.Response(
        status=status, body=orjson.dumps(body, default=str), content_type="application/json"
    )


def _is_real(value: object) -> bool:
    return type(value) in (int, float) and math.isfinite(value)  # type: ignore[arg-type]


def api_error(exc: ApiError | StorageError | RecordError) -> ApiError:
    """The API's answer to a refusal: the storage's errors and malformed records mapped
    to statuses (4xx: fix the request; 503: retry; 500: the server's fault)."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, RecordError):
        return _bad_batch(str(exc))
    if isinstance(exc, SeqGap):
        return ApiError(409, exc.code, exc.message, acked_seq=exc.acked_seq)
    if isinstance(exc, BadRequest):
        status = 400
    elif isinstance(exc, RunNotFound):
        status = 404
    elif isinstance(exc, RunExists | BadStep | LogConflict):
        status = 409
    elif isinstance(exc, Unavailable):
        status = 503
    else:
        status = 500
    return ApiError(status, exc.code, exc.message)


def _bad_batch(problem: str) -> ApiError:
    return ApiError(
        400, "bad_batch", f"malformed batch, nothing stored: {problem}; resend run-log records"
    )


def _too_large(what: str, limit: int) -> ApiError:
    return ApiError(413, "too_large", f"{what}; the limit is {limit} bytes: send less at once")


@web.middleware
async def _error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Render refusals, unknown routes and unexpected failures as protocol errors."""
    try:
        return await handler(request)
    except (ApiError, StorageError) as exc:
        answer = api_error(exc)
        return error_response(answer.status, answer.code, answer.message, **answer.extra)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _http_error(request, exc)
    except ConnectionError:
        # the client went away mid-request; nobody reads this answer
        _logger.debug("connection lost during %s %s", request.method, request.path)
        return error_response(400, "connection_lost", "the connection was lost; retry")
    except Exception:
        _logger.exception("internal error answering %s %s", request.method, request.path)
        return error_response(
            500,
            "internal",
            "the server failed to answer this request and logged why; retry later, and "
            "report it if it persists",
        )


def _http_error(request: web.Request, exc: web.HTTPException) -> web.Response:
    code = _HTTP_CODES.get(exc.status, "http_error")
    if isinstance(exc, web.HTTPMethodNotAllowed):
        allowed = ", ".join(sorted(exc.allowed_methods))
        response = error_response(
            405, code, f"{request.method} is not allowed on {request.path}; use {allowed}"
        )
        response.headers["Allow"] = allowed
        return response
    if exc.status == 404:
        message = f"no endpoint {request.method} {request.path}; the API is in docs/protocol.md"
    else:
        message = f"{exc.reason}: {exc.text or request.path}"
    return error_response(exc.status, code, clip(message, 300))


async def _read_body(request: web.Request, limit: int, what: str) -> bytes:
    """Read the request body, refusing (413) more than ``limit`` bytes, and (408) a body
    that pauses for BODY_IDLE_SECONDS or falls behind its deadline."""
    length = request.content_length
    if length is not None and length > limit:
        raise _too_large(f"{what} of {length} bytes", limit)
    chunks: list[bytes] = []
    size = 0
    clock = asyncio.get_running_loop().time
    began = clock()
    try:
        while True:
            # A body trickled a byte at a time would hold the connection for as long as the
            # client likes: besides the pause limit, the whole body has a deadline that
            # grows with what arrived (Apache's mod_reqtimeout: body=10,MinRate=4096).
            left = began + BODY_GRACE_SECONDS + size / BODY_MIN_BYTES_PER_SECOND - clock()
            try:
                chunk = await asyncio.wait_for(
                    request.content.readany(), min(left, BODY_IDLE_SECONDS)
                )
            except asyncio.TimeoutError:
                _stop_reading(request)
                if left <= BODY_IDLE_SECONDS:
                    raise ApiError(
                        408,
                        "timeout",
                        f"{what} arrived too slowly ({size} bytes in {clock() - began:.0f} s); "
                        f"after its first {BODY_GRACE_SECONDS:.0f} s a body must come at "
                        f"{BODY_MIN_BYTES_PER_SECOND} bytes/s or faster: send it again",
                    ) from None
                raise ApiError(
                    408,
                    "timeout",
                    f"{what} stopped arriving for {BODY_IDLE_SECONDS:.0f} s; send it again",
                ) from None
            if not chunk:
                break
            size += len(chunk)
            if size > limit:
                raise _too_large(f"{what} of more than {limit} bytes", limit)
            chunks.append(chunk)
    except ClientPayloadError:
        raise ApiError(
            400, "bad_body", f"{what} arrived cut short or malformed; send it again"
        ) from None
    return b"".join(chunks)


def _stop_reading(request: web.Request) -> None:
    """Close the connection once the answer to ``request`` is sent: aiohttp would otherwise
    read and discard the rest of its body for up to 10 s more (its lingering close)."""
    request.protocol.close()  # takes no more data, closes after the answer
    request.content.feed_eof()  # the body is over: nothing left to linger for


async def _read_json(request: web.Request) -> dict[str, Any]:
    """Read a JSON object body (at most 1 MiB)."""
    body = await _read_body(request, MAX_JSON_BYTES, "the JSON body")
    if not body.strip():
        raise ApiError(400, "bad_json", "the body is empty; send a JSON object")
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ApiError(
            400, "bad_json", f"the body is not valid JSON ({clip(str(exc))}); send a JSON object"
        ) from None
    if not isinstance(value, dict):
        raise ApiError(
            400, "bad_request", f"the body is a JSON {type(value).__name__}; send a JSON object"
        )
    return value


def _json(value: Any, status: int = 200) -> web.Response:
    """A plain JSON answer (no user values that need exact encoding)."""
    return web.Response(status=status, body=orjson.dumps(value), content_type="application/json")


def _exact(value: Any, what: str) -> web.Response:
    """An exactly encoded JSON answer (docs/protocol.md, "Exact JSON")."""
    return web.Response(body=encode_value(value, what), content_type="application/json")


def _file_name(value: str) -> str:
    """A stored file name (`tracker._names.check_file_name`), else 400 ``bad_name``."""
    try:
        return check_file_name(value)
    except UsageError as exc:
        raise ApiError(400, "bad_name", str(exc)) from None


def _log_id(value: object, what: str) -> str:
    if not isinstance(value, str) or not LOG_ID.match(value):
        raise ApiError(
            400,
            "bad_request",
            f"{what}={clip(repr(value))} is not a log id: give 32 lowercase hex characters",
        )
    return value


def _field(body: dict[str, Any], name: str) -> Any:
    if name not in body:
        raise ApiError(400, "bad_request", f"the body lacks the field {name!r}; add it")
    return body[name]


def _encode_rows(rows: list[dict[str, Any]]) -> bytes:
    return b"".join(encode_value(row, "history row") for row in rows)


class _Api:
    """The handlers of /api/v1, sharing the storage and the open websockets."""

    def __init__(self, storage: Store, base_url: str | None) -> None:
        self._storage = storage
        self._base_url = base_url.rstrip("/") if base_url else None
        self._sockets: weakref.WeakSet[web.WebSocketResponse] = weakref.WeakSet()
        self._ingest_budget = ByteBudget(INGEST_BUDGET_BYTES)

    def routes(self) -> list[web.RouteDef]:
        """Every endpoint of docs/protocol.md."""
        run = "/api/v1/runs/{entity}/{project}/{run_id}"
        return [
            web.get("/api/v1/health", self.health),
            web.get("/api/v1/viewer", self.viewer),
            web.post("/api/v1/runs/start", self.start),
            web.get("/api/v1/projects", self.projects),
            web.get("/api/v1/runs/{entity}/{project}", self.runs),
            web.get(run, self.run),
            web.patch(run, self.update),
            web.get(run + "/stream", self.stream),
            web.post(run + "/records", self.records),
            web.post(run + "/heartbeat", self.heartbeat),
            web.get(run + "/history", self.history),
            web.get(run + "/files", self.files),
            web.put(run + "/files/{name:.+}", self.put_file),
            web.get(run + "/files/{name:.+}", self.get_file),
        ]

    async def sweeper(self, app: web.Application) -> AsyncIterator[None]:
        """Mark runs whose heartbeats stopped as crashed, every second, while the app runs."""
        task = asyncio.create_task(self._sweep_forever())
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def _sweep_forever(self) -> None:
        while True:
            try:
                await self._storage.sweep_crashed(time.time())
            except Exception:
                _logger.exception("marking crashed runs failed; trying again shortly")
            await asyncio.sleep(SWEEP_SECONDS)

    async def close_sockets(self, app: web.Application) -> None:
        """On shutdown, close every stream with 1001 (going away); clients reconnect elsewhere."""
        await asyncio.gather(
            *(
                socket.close(code=WSCloseCode.GOING_AWAY, message=b"server shutting down")
                for socket in list(self._sockets)
            ),
            return_exceptions=True,
        )

    def _key(self, request: web.Request) -> RunKey:
        info = request.match_info
        return RunKey(
            checked_name(info["entity"], "entity"),
            checked_name(info["project"], "project"),
            checked_name(info["run_id"], "run_id"),
        )

    def _url(self, request: web.Request, key: RunKey) -> str:
        root = self._base_url or f"{request.scheme}://{request.host}"
        parts = (quote(part, safe="") for part in (key.entity, key.project, key.run_id))
        entity, project, run_id = parts
        return f"{root}/{entity}/{project}/runs/{run_id}"

    async def _document(self, request: web.Request, key: RunKey) -> dict[str, Any]:
        document = await self._storage.get_run(key)
        if document is None:
            raise _run_not_found(key)
        return {**document, "url": self._url(request, key)}

    async def health(self, request: web.Request) -> web.Response:
        """Liveness, protocol and version; public."""
        return _json({"status": "ok", "protocol": PROTOCOL, "version": tracker.__version__})

    async def viewer(self, request: web.Request) -> web.Response:
        """The entity the caller acts as."""
        who = caller()
        return _json({"entity": who.entity, "anonymous": who.anonymous})

    async def start(self, request: web.Request) -> web.Response:
        """The handshake: create, continue, replace, fork or rewind a run."""
        body = await _read_json(request)
        protocol = _field(body, "protocol")
        if type(protocol) is not int or protocol != PROTOCOL:
            raise ApiError(
                400,
                "bad_protocol",
                f"protocol {clip(repr(protocol))} is not spoken here; this server speaks "
                f"protocol {PROTOCOL}: upgrade or downgrade tracker to match",
                versions=[PROTOCOL],
            )
        entity = body.get("entity")
        entity = caller().entity if entity is None else checked_name(entity, "entity")
        check_entity(entity)
        project = checked_name(_field(body, "project"), "project")
        key = RunKey(entity, project, checked_name(_field(body, "run_id"), "run_id"))
        mode = _field(body, "mode")
        interval = body.get("heartbeat_interval")
        request_ = StartRequest(
            key=key,
            log_id=_log_id(_field(body, "log_id"), "log_id"),
            mode=mode,
            fork_from=_fork_from(body.get("fork_from")),
            rewind_to=body.get("rewind_to"),
            heartbeat_interval=DEFAULT_HEARTBEAT_SECONDS if interval is None else interval,
            now=time.time(),
            sessions=_sessions(body.get("sessions")),
        )
        result = await self._storage.start_run(request_)
        url = self._url(request, key)
        answer = {
            "protocol": PROTOCOL,
            "entity": key.entity,
            "project": key.project,
            "run_id": key.run_id,
            "url": url,
            "resumed": result.resumed,
            "last_step": result.last_step,
            "acked_seq": result.acked_seq,
            "run": orjson.Fragment(encode_value({**result.run, "url": url}, "run")),
        }
        return web.Response(body=orjson.dumps(answer), content_type="application/json")

    async def stream(self, request: web.Request) -> web.StreamResponse:
        """The websocket: binary batches in, text acks out; text heartbeats in."""
        key = self._key(request)
        log_id = _log_id(request.query.get("log_id"), "query parameter log_id")
        if await self._storage.get_run(key) is None:
            raise _run_not_found(key)
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
        with contextlib.suppress(ConnectionError):
            await socket.send_str(f'{{"type":"ack","seq":{acked}}}')

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

    async def _ingest(self, key: RunKey, log_id: str, batch: ParsedBatch) -> int:
        records, lines = batch
        return await self._storage.ingest(key, log_id, records, time.time(), lines)

    async def records(self, request: web.Request) -> web.Response:
        """The HTTP fallback of the stream: one batch, answered with the stored seq."""
        key = self._key(request)
        log_id = _log_id(request.query.get("log_id"), "query parameter log_id")
        size = min(request.content_length or MAX_BATCH_BYTES, MAX_BATCH_BYTES)
        async with self._ingest_budget.holding(size):
            body = await _read_body(request, MAX_BATCH_BYTES, "the batch")
            acked = await self._ingest(key, log_id, await _parse(body))
        return _json({"acked_seq": acked})

    async def heartbeat(self, request: web.Request) -> web.Response:
        """The HTTP heartbeat: the run's client is alive."""
        await self._storage.heartbeat(self._key(request), time.time())
        return web.Response(status=204)

    async def put_file(self, request: web.Request) -> web.Response:
        """Store a run file from the raw body."""
        key = self._key(request)
        name = _file_name(request.match_info["name"])
        content = await _read_body(request, MAX_FILE_BYTES, f"file {name!r}")
        await self._storage.put_file(key, name, content, time.time())
        return web.Response(status=204)

    async def get_file(self, request: web.Request) -> web.Response:
        """A run file's bytes, as a download (never rendered by a browser)."""
        key = self._key(request)
        name = _file_name(request.match_info["name"])
        content = await self._storage.get_file(key, name)
        if content is None:
            raise ApiError(
                404,
                "file_not_found",
                f"run {key.run_id} in {key.entity}/{key.project} has no file {name!r}; "
                "list its files with GET .../files",
            )
        filename = quote(name.rpartition("/")[2], safe="")
        return web.Response(
            body=content,
            content_type="application/octet-stream",
            headers={
                "Content-Disposition": f"attachment; filename*=UTF-8''{filename}",
                "X-Content-Type-Options": "nosniff",
            },
        )

    async def files(self, request: web.Request) -> web.Response:
        """The run's files: name, size, sha256, updated_at."""
        return _json({"files": await self._storage.list_files(self._key(request))})

    async def projects(self, request: web.Request) -> web.Response:
        """The projects of an entity (default: the caller's)."""
        entity = request.query.get("entity") or caller().entity
        entity = checked_name(entity, "entity")
        check_entity(entity)
        return _json({"projects": await self._storage.list_projects(entity)})

    async def runs(self, request: web.Request) -> web.Response:
        """One page of a project's runs, filtered and ordered."""
        entity, project = project_of(request)
        filters = json_query(request, "filters", {}, "bad_filter", '{"state": "finished"}')
        sort = parse_order(request.query.get("order") or "-created_at")
        limit = int_query(request, "limit", 100, 1, MAX_PAGE)
        offset = int_query(request, "offset", 0, 0, MAX_STEP)
        documents, total = await self._storage.list_runs(
            entity, project, filters, sort, limit, offset
        )
        runs = [
            {**document, "url": self._url(request, RunKey(entity, project, document["id"]))}
            for document in documents
        ]
        return _exact({"runs": runs, "total": total}, "runs")

    async def run(self, request: web.Request) -> web.Response:
        """The run document."""
        key = self._key(request)
        return _exact(await self._document(request, key), "run")

    async def update(self, request: web.Request) -> web.Response:
        """Edit a run's tags or notes; answers the updated run document."""
        key = self._key(request)
        await self._storage.update_run(key, await _read_json(request), time.time())
        return _exact(await self._document(request, key), "run")

    async def history(self, request: web.Request) -> web.StreamResponse:
        """History rows as JSON lines, exactly encoded, streamed in chunks."""
        key = self._key(request)
        text = request.query.get("keys")
        # "keys=" (empty) keeps no key, as StoredRun.history(keys=[]) does
        keys = None if text is None else [part for part in text.split(",") if part]
        min_step = int_query(request, "min_step", None, -MAX_STEP, MAX_STEP)
        max_step = int_query(request, "max_step", None, -MAX_STEP, MAX_STEP)
        samples = int_query(request, "samples", None, 1, 10_000_000)
        rows = await self._storage.history(key, keys, min_step, max_step, samples)
        chunks = range(0, len(rows), _HISTORY_CHUNK)
        big = len(rows) > _HISTORY_CHUNK
        response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await response.prepare(request)
        try:
            for start in chunks:
                chunk = rows[start : start + _HISTORY_CHUNK]
                data = await asyncio.to_thread(_encode_rows, chunk) if big else _encode_rows(chunk)
                await response.write(data)
            await response.write_eof()
        except ConnectionError:
            _logger.debug("client left while reading the history of %s", key)
        return response


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


def _run_not_found(key: RunKey) -> ApiError:
    return ApiError(
        404,
        "run_not_found",
        f"run {key.run_id} does not exist in {key.entity}/{key.project}; start it with "
        "POST /api/v1/runs/start first",
    )


def _sessions(value: object) -> list[list[Any]]:
    """The handshake's ``sessions``: ``[[first seq, session], ...]`` in seq order, or none."""
    if value is None:
        return []
    if not isinstance(value, list) or not all(
        isinstance(pair, list)
        and len(pair) == 2
        and type(pair[0]) is int
        and 0 <= pair[0] <= MAX_STEP
        and isinstance(pair[1], str)
        and len(pair[1]) <= 64
        for pair in value
    ):
        raise ApiError(
            400,
            "bad_request",
            f"sessions={clip(repr(value))} must be a list of [first seq, session] pairs "
            "(an int >= 0 and a str of at most 64 characters)",
        )
    return value


def _fork_from(value: object) -> tuple[str, int] | None:
    """The handshake's ``fork_from`` as (parent run id, step); the store checks the step."""
    if value is None:
        return None
    if not isinstance(value, dict) or set(value) != {"run_id", "step"}:
        raise ApiError(
            400,
            "bad_request",
            'fork_from must be {"run_id": "PARENT", "step": N}; got ' + clip(repr(value)),
        )
    return checked_name(value["run_id"], "fork_from.run_id"), value["step"]

"""HTTP plumbing every endpoint shares: the one error shape and the mapping of refusals to
statuses, request bodies read under a size limit and a deadline, JSON answers."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any, Final

import orjson
from aiohttp import ClientPayloadError, web

from tracker._records.codec import encode_value
from tracker._records.state import RecordError
from tracker._server._auth import ApiError
from tracker._server._params import clip
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
from tracker._server.storage.spool import SpooledFile
from tracker._wire.limits import MAX_JSON_BYTES

if TYPE_CHECKING:
    from aiohttp.typedefs import Handler

__all__ = [
    "api_error",
    "bad_batch",
    "error_middleware",
    "error_response",
    "exact_answer",
    "json_answer",
    "read_body",
    "read_json",
    "spool_body",
    "too_large",
]

BODY_IDLE_SECONDS: Final = 15.0
BODY_GRACE_SECONDS: Final = 10.0
BODY_MIN_BYTES_PER_SECOND: Final = 4096
"""A body must arrive within BODY_GRACE_SECONDS plus a second per this many bytes received."""
SPOOL_WRITE_BYTES: Final = 2**20
"""What `spool_body` gathers before each write to its spool (one hop to a worker thread)."""

_HTTP_CODES: Final = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}

_logger = logging.getLogger(__name__)


def error_response(status: int, code: str, message: str, **extra: Any) -> web.Response:
    """The one shape of every error answer: ``{"error": {"status", "code", "message", ...}}``."""
    body = {"error": {"status": status, "code": code, "message": message, **extra}}
    return web.Response(
        status=status, body=orjson.dumps(body, default=str), content_type="application/json"
    )


def api_error(exc: ApiError | StorageError | RecordError) -> ApiError:
    """The API's answer to a refusal: the storage's errors and malformed records mapped
    to statuses (4xx: fix the request; 503: retry; 500: the server's fault)."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, RecordError):
        return bad_batch(str(exc))
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


def bad_batch(problem: str) -> ApiError:
    """400 ``bad_batch``: the batch is malformed, nothing of it stored."""
    return ApiError(
        400, "bad_batch", f"malformed batch, nothing stored: {problem}; resend run-log records"
    )


def too_large(what: str, limit: int) -> ApiError:
    """413 ``too_large``: ``what`` is over ``limit`` bytes."""
    return ApiError(413, "too_large", f"{what}; the limit is {limit} bytes: send less at once")


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
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


async def read_body(request: web.Request, limit: int, what: str) -> bytes:
    """Read the request body, refusing (413) more than ``limit`` bytes, and (408) a body
    that pauses for BODY_IDLE_SECONDS or falls behind its deadline."""

    def refuse(size: str, limit: int) -> ApiError:
        return too_large(f"{what} of {size} bytes", limit)

    pieces = _body_chunks(request, limit, what, refuse, cut=False)
    return b"".join([chunk async for chunk in pieces])


async def spool_body(
    request: web.Request, spool: SpooledFile, limit: int, what: str, refusal: str
) -> None:
    """Write the request body into ``spool`` as it arrives (a `SPOOL_WRITE_BYTES` piece at a
    time, written and hashed in a worker thread), under `read_body`'s deadlines; more than
    ``limit`` bytes is refused (413) with ``refusal`` saying what to do."""

    def refuse(size: str, limit: int) -> ApiError:
        return ApiError(
            413, "too_large", f"{what} is {size} bytes, over the limit of {limit}: {refusal}"
        )

    pending: list[bytes] = []
    held = 0
    async for chunk in _body_chunks(request, limit, what, refuse, cut=True):
        pending.append(chunk)
        held += len(chunk)
        if held >= SPOOL_WRITE_BYTES:
            await asyncio.to_thread(spool.write, b"".join(pending))
            pending, held = [], 0
    if pending:
        await asyncio.to_thread(spool.write, b"".join(pending))


async def _body_chunks(
    request: web.Request,
    limit: int,
    what: str,
    refuse: Callable[[str, int], ApiError],
    *,
    cut: bool,
) -> AsyncIterator[bytes]:
    """The request body's pieces as they arrive, under the size limit (``refuse`` makes its
    413; ``cut``: the connection is closed after it rather than the rest of the body read
    and discarded, for bodies that may be as large as a file) and the deadlines of
    `read_body`."""
    length = request.content_length
    if length is not None and length > limit:
        if cut:
            _stop_reading(request)
        raise refuse(str(length), limit)
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
                if cut:
                    _stop_reading(request)
                raise refuse(f"more than {limit}", limit)
            yield chunk
    except ClientPayloadError:
        raise ApiError(
            400, "bad_body", f"{what} arrived cut short or malformed; send it again"
        ) from None


def _stop_reading(request: web.Request) -> None:
    """Close the connection once the answer to ``request`` is sent: aiohttp would otherwise
    read and discard the rest of its body for up to 10 s more (its lingering close)."""
    request.protocol.close()  # takes no more data, closes after the answer
    request.content.feed_eof()  # the body is over: nothing left to linger for


async def read_json(request: web.Request) -> dict[str, Any]:
    """Read a JSON object body (at most 1 MiB)."""
    body = await read_body(request, MAX_JSON_BYTES, "the JSON body")
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


def json_answer(value: Any, status: int = 200) -> web.Response:
    """A plain JSON answer (no user values that need exact encoding)."""
    return web.Response(status=status, body=orjson.dumps(value), content_type="application/json")


def exact_answer(value: Any, what: str) -> web.Response:
    """An exactly encoded JSON answer (docs/protocol.md, "Exact JSON")."""
    return web.Response(body=encode_value(value, what), content_type="application/json")

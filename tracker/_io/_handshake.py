"""The run handshake of `init()`, from the caller's thread.

One POST with the standard library's http.client, so that `init()` does not wait
for aiohttp: importing it takes ~200 ms, most of a process's first online init. The
I/O thread imports it meanwhile, for streaming; reconnects handshake again there,
over aiohttp (`tracker._io._sender.handshake`).
"""

from __future__ import annotations

import http.client
import time
from typing import Any
from urllib.parse import urlsplit

import orjson

from tracker._io._retry import CONNECT_TIMEOUT_SECONDS, REQUEST_TIMEOUT_SECONDS, handshake_retrying
from tracker._wire.errors import TransportError, error_from_answer
from tracker._wire.protocol import API_ROOT, CLIENT_HEADERS, START_PATH, read_answer

__all__ = ["handshake_now"]

_LEAST_SECONDS = 0.5  # a last attempt gets at least this long, even past the deadline


def handshake_now(
    base_url: str,
    api_key: str | None,
    body: dict[str, Any],
    deadline_seconds: float,
    retry_initial: float,
    retry_max: float,
) -> dict[str, Any]:
    """POST a run handshake, retrying what can be retried until ``deadline_seconds`` pass.

    Returns:
        The server's answer, its ``run`` decoded exactly.

    Raises:
        TransportError: an answer retrying cannot change, or the last failure.
    """
    deadline = time.monotonic() + deadline_seconds
    for attempt in handshake_retrying(deadline_seconds, retry_initial, retry_max):
        with attempt:
            # no attempt outlives the deadline (a host that drops packets would hold it)
            left = max(deadline - time.monotonic(), _LEAST_SECONDS)
            return read_answer(_post(base_url, api_key, START_PATH, body, left))
    raise AssertionError("tenacity re-raises the last error")


def _post(
    base_url: str, api_key: str | None, path: str, body: dict[str, Any], most_seconds: float
) -> bytes:
    """POST ``body`` as JSON to an API path, waiting at most ``most_seconds`` for each step;
    the body of a 2xx answer."""
    parts = urlsplit(base_url)
    kind = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    connect_timeout = min(CONNECT_TIMEOUT_SECONDS, most_seconds)
    connection = kind(parts.hostname or "", parts.port, timeout=connect_timeout)
    headers = {**CLIENT_HEADERS, "Content-Type": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    try:
        connection.connect()
        if connection.sock is not None:
            connection.sock.settimeout(min(REQUEST_TIMEOUT_SECONDS, most_seconds))
        target = f"{parts.path.rstrip('/')}{API_ROOT}{path}"
        connection.request("POST", target, body=orjson.dumps(body), headers=headers)
        response = connection.getresponse()
        answer = response.read()
    except (OSError, http.client.HTTPException) as exc:
        raise TransportError(
            f"cannot reach {base_url.rstrip('/')}: {exc or type(exc).__name__}"
        ) from exc
    finally:
        connection.close()
    if not 200 <= response.status < 300:
        raise error_from_answer(response.status, answer, response.getheader("Retry-After"))
    return answer

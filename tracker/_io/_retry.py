"""Every retry policy of tracker, built with tenacity in this one place, and what they
judge: `TransportError` (from a lost connection or the server's error answer) and the
time one attempt may take. Free of aiohttp, so that init's handshake (`_handshake.py`)
can use them from the caller's thread.

Connection errors, 408, 429 and 5xx are retried with exponential backoff and full
jitter, capped at ``retry_max_wait_seconds``; a ``Retry-After`` from the server
replaces the computed wait. Other 4xx are final: retrying cannot fix them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_delay,
    stop_never,
    wait_random_exponential,
)

__all__ = [
    "CONNECT_TIMEOUT_SECONDS",
    "REQUEST_TIMEOUT_SECONDS",
    "RETRYABLE_STATUSES",
    "TransportError",
    "error_from_answer",
    "handshake_retrying",
    "parse_retry_after",
    "stream_retrying",
]

RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
CONNECT_TIMEOUT_SECONDS = 10.0
"""How long one attempt may take to connect to the server."""
REQUEST_TIMEOUT_SECONDS = 60.0
"""How long one request may take in all."""


class TransportError(Exception):
    """A failed exchange with the server: a lost connection (status 0) or an error answer."""

    def __init__(
        self,
        message: str,
        *,
        status: int = 0,
        code: str = "",
        retry_after: float | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        """Describe the failure; ``status`` 0 means no answer (connection error, timeout)."""
        super().__init__(message)
        self.status = status
        self.code = code
        self.retry_after = retry_after
        self.extra = extra or {}

    @property
    def retryable(self) -> bool:
        """Whether trying again can help."""
        return self.status == 0 or self.status in RETRYABLE_STATUSES


def _is_retryable(exc: BaseException) -> bool:
    return isinstance(exc, TransportError) and exc.retryable


class _ServerAwareWait:
    """Jittered exponential backoff, replaced by the server's Retry-After when it sent one."""

    def __init__(self, initial: float, maximum: float) -> None:
        self._backoff = wait_random_exponential(multiplier=initial, max=maximum)
        self._maximum = maximum

    def __call__(self, state: RetryCallState) -> float:
        outcome = state.outcome
        exc = outcome.exception() if outcome is not None else None
        if isinstance(exc, TransportError) and exc.retry_after is not None:
            return min(max(exc.retry_after, 0.0), self._maximum)
        return float(self._backoff(state))


def handshake_retrying(deadline_seconds: float, initial: float, maximum: float) -> Retrying:
    """Retry a handshake until ``deadline_seconds`` have passed, then re-raise the last error."""
    return Retrying(
        retry=retry_if_exception(_is_retryable),
        wait=_ServerAwareWait(initial, min(maximum, max(deadline_seconds / 4, initial))),
        stop=stop_after_delay(deadline_seconds),
        reraise=True,
    )


def stream_retrying(
    initial: float, maximum: float, on_retry: Callable[[RetryCallState], None]
) -> AsyncRetrying:
    """Retry streaming for as long as the run lives (the caller cancels it at the end)."""
    return AsyncRetrying(
        retry=retry_if_exception(_is_retryable),
        wait=_ServerAwareWait(initial, maximum),
        stop=stop_never,
        before_sleep=on_retry,
        reraise=True,
    )


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds; an HTTP date is ignored)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def error_from_answer(status: int, body: bytes, retry_after: str | None) -> TransportError:
    """The TransportError for an error answer, with the server's code and message."""
    code, message, extra = "", "", {}
    try:
        error = orjson.loads(body)["error"]
        code, message = str(error.get("code", "")), str(error.get("message", ""))
        extra = {key: value for key, value in error.items() if key not in ("code", "message")}
    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
        message = body[:200].decode("utf-8", "replace")
    return TransportError(
        f"the server answered {status}: {message or 'no message'}",
        status=status,
        code=code,
        retry_after=parse_retry_after(retry_after),
        extra=extra,
    )

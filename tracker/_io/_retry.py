"""Every retry policy of tracker, built with tenacity in this one place, and the time one
attempt may take; they judge `tracker._wire.errors.TransportError`. Free of aiohttp, so
that init's handshake (`_handshake.py`) can use them from the caller's thread.

Connection errors, 408, 429 and 5xx are retried with exponential backoff and full
jitter, capped at ``retry_max_wait_seconds``; a ``Retry-After`` from the server
replaces the computed wait. Other 4xx are final: retrying cannot fix them.
"""

from __future__ import annotations

from collections.abc import Callable

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_delay,
    stop_never,
    wait_random_exponential,
)

from tracker._wire.errors import TransportError

__all__ = [
    "CONNECT_TIMEOUT_SECONDS",
    "REQUEST_TIMEOUT_SECONDS",
    "handshake_retrying",
    "stream_retrying",
]

CONNECT_TIMEOUT_SECONDS = 10.0
"""How long one attempt may take to connect to the server."""
REQUEST_TIMEOUT_SECONDS = 60.0
"""How long one request may take in all."""


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

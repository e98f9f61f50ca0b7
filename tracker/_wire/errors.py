"""Failed exchanges with a server, and the one mapping to the public errors.

A `TransportError` is a lost connection (status 0) or the server's error answer, with
its stable code. `public_error` turns one into what the caller of `init()`, `tracker
sync` or `tracker.Api` sees, so the three say the same thing for the same failure.
"""

from __future__ import annotations

from typing import Any, Final

import orjson

from tracker._errors import AuthenticationError, CommError, Error, UsageError

__all__ = [
    "RETRYABLE_STATUSES",
    "TransportError",
    "error_from_answer",
    "parse_retry_after",
    "public_error",
]

RETRYABLE_STATUSES: Final = frozenset({408, 429, 500, 502, 503, 504})
"""Answers that say "later": retried with backoff. Other 4xx are final."""


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


def public_error(exc: TransportError, what: str, where: str, later: str) -> Error:
    """The public error for a failed exchange.

    Args:
        exc: the failure.
        what: what the caller was doing, e.g. ``"init()"`` or ``"tracker sync"``.
        where: the server's URL.
        later: what to do when the server cannot be reached, e.g. "log offline and sync".

    Returns:
        `AuthenticationError` for a refused key (401, 403), `CommError` when trying later
        can help (no answer, 408, 429, 5xx), `UsageError` for any other refusal.
    """
    if exc.status in (401, 403):
        return AuthenticationError(
            f"{what}: {where} refused the API key ({exc}); run `tracker login`, set "
            "TRACKER_API_KEY, or pass settings={'api_key': ...}"
        )
    if exc.retryable:
        return CommError(f"{what}: cannot reach the tracker server at {where}: {exc}; {later}")
    return UsageError(f"{what}: {where} refused the request: {exc}")

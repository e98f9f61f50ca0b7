"""Request parameters read the same way by every endpoint: bounded integers, clipped echoes."""

from __future__ import annotations

from typing import Any, Final

from aiohttp import web

from tracker._encoding import MAX_STEP
from tracker._server._auth import ApiError

__all__ = ["MAX_INT", "MAX_PAGE", "clip", "int_query"]

MAX_PAGE: Final = 1000
"""The most runs one page of a runs listing holds."""
MAX_INT: Final = MAX_STEP
"""The largest integer a query parameter (a step, an offset) may hold: a signed 64-bit one."""


def clip(text: str, limit: int = 120) -> str:
    """``text`` cut to ``limit`` characters, to echo user input in an error message."""
    return text if len(text) <= limit else text[:limit] + "..."


def int_query(request: web.Request, name: str, default: int | None, low: int, high: int) -> Any:
    """The integer query parameter ``name`` (``default`` when absent).

    Raises:
        ApiError: 400 when it is not an integer from ``low`` to ``high``.
    """
    text = request.query.get(name, "")
    if not text:
        return default
    try:
        value = int(text) if len(text) <= 20 else None
    except ValueError:
        value = None
    if value is None or not low <= value <= high:
        raise ApiError(
            400,
            "bad_request",
            f"query parameter {name}={clip(repr(text))} must be an integer from {low} to {high}",
        )
    return value

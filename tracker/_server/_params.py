"""Request parameters read the same way by every endpoint: names, bounded integers, JSON,
clipped echoes."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from tracker._errors import UsageError
from tracker._names import check_run_id
from tracker._server._auth import ApiError

__all__ = ["checked_name", "clip", "int_query", "json_query", "project_of"]


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


def json_query(request: web.Request, name: str, default: Any, code: str, example: str) -> Any:
    """The JSON query parameter ``name`` decoded (``default`` when absent or empty); the
    store checks its shape.

    Raises:
        ApiError: 400 ``code`` when it is not JSON.
    """
    text = request.query.get(name)
    if not text:
        return default
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        raise ApiError(
            400,
            code,
            f"query parameter {name}={clip(repr(text))} is not JSON; send one like {example}",
        ) from None


def checked_name(value: object, what: str) -> str:
    """An entity, project or run id (`tracker._names.check_run_id`), else 400 ``bad_name``."""
    try:
        return check_run_id(value, what)
    except UsageError as exc:
        raise ApiError(400, "bad_name", str(exc)) from None


def project_of(request: web.Request) -> tuple[str, str]:
    """The entity and project of the request's path, checked."""
    info = request.match_info
    return checked_name(info["entity"], "entity"), checked_name(info["project"], "project")

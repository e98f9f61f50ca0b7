"""Request parameters read the same way by every endpoint: names, bounded integers, JSON,
clipped echoes."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from tracker._errors import UsageError
from tracker._names import check_run_id
from tracker._server._auth import ApiError
from tracker._server.storage import RunKey
from tracker._wire.protocol import LOG_ID

__all__ = [
    "checked_name",
    "clip",
    "int_query",
    "json_query",
    "log_id_param",
    "project_of",
    "run_key",
    "run_not_found",
]


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


def run_key(request: web.Request) -> RunKey:
    """The run the request's path names, checked."""
    entity, project = project_of(request)
    return RunKey(entity, project, checked_name(request.match_info["run_id"], "run_id"))


def run_not_found(key: RunKey) -> ApiError:
    """404 ``run_not_found``: the run has had no handshake."""
    return ApiError(
        404,
        "run_not_found",
        f"run {key.run_id} does not exist in {key.entity}/{key.project}; start it with "
        "POST /api/v1/runs/start first",
    )


def log_id_param(value: object, what: str) -> str:
    """A log id (32 lowercase hex characters), else 400 ``bad_request``."""
    if not isinstance(value, str) or not LOG_ID.match(value):
        raise ApiError(
            400,
            "bad_request",
            f"{what}={clip(repr(value))} is not a log id: give 32 lowercase hex characters",
        )
    return value

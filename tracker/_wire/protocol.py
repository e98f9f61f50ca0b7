"""The protocol's version, its API paths, and the run handshake both sides speak."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, Final
from urllib.parse import quote

import orjson

from tracker._records.codec import restore_exact

__all__ = [
    "API_ROOT",
    "CLIENT_HEADER",
    "CLIENT_HEADERS",
    "LOG_ID",
    "MODES",
    "PROTOCOL",
    "START_PATH",
    "handshake_body",
    "read_answer",
    "run_path",
]

PROTOCOL: Final = 1
"""The protocol version; a handshake for another one is refused with ``bad_protocol``."""
API_ROOT: Final = "/api/v1/"
"""Where every API path below lives on a server."""
START_PATH: Final = "runs/start"
"""The handshake's API path."""
MODES: Final = ("new", "allow", "never", "must", "continue", "fork", "rewind")
"""The handshake's modes (docs/protocol.md, "Starting a run")."""
LOG_ID: Final = re.compile(r"[0-9a-f]{32}\Z")
"""A log id: 32 lowercase hex characters naming one run log."""
CLIENT_HEADER: Final = "X-Tracker-Client"
"""Sent on every request: a header no web page can send to another origin, so the server
knows the request is no forgery of a page in the user's browser (`tracker._server._guard`)."""
CLIENT_HEADERS: Final[Mapping[str, str]] = {CLIENT_HEADER: "python"}


def run_path(entity: str, project: str, run_id: str | None = None, *rest: str) -> str:
    """The API path of a project's runs, or of a run (``rest``: a sub-resource such as
    ``"history"``), each name URL-quoted."""
    parts = [entity, project] if run_id is None else [entity, project, run_id]
    return "/".join(["runs", *(quote(part, safe="") for part in parts), *rest])


def handshake_body(
    *,
    entity: str | None,
    project: str,
    run_id: str,
    log_id: str,
    mode: str,
    heartbeat_interval: float,
    fork_from: tuple[str, int] | None = None,
    rewind_to: int | None = None,
    sessions: Sequence[Sequence[Any]] = (),
) -> dict[str, Any]:
    """The JSON body of ``POST runs/start``; ``sessions``, the log's writer sessions so far
    (``[first seq, session]``), let the server tell two copies of one log apart."""
    return {
        "protocol": PROTOCOL,
        "entity": entity,
        "project": project,
        "run_id": run_id,
        "log_id": log_id,
        "mode": mode,
        "fork_from": None if fork_from is None else {"run_id": fork_from[0], "step": fork_from[1]},
        "rewind_to": rewind_to,
        "heartbeat_interval": heartbeat_interval,
        "sessions": [list(pair) for pair in sessions],
    }


def read_answer(body: bytes) -> dict[str, Any]:
    """A handshake answer as a dict, its ``run`` document decoded exactly."""
    answer: dict[str, Any] = orjson.loads(body)
    answer["run"] = restore_exact(answer.get("run") or [{}])
    return answer

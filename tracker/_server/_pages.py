"""Plain HTML pages until the dashboard lands: the caller's projects with their runs, and a run.

Everything shown is escaped (`html.escape`) and the pages load nothing from elsewhere
(a Content-Security-Policy forbids it), so a run name or config value cannot inject markup.
"""

from __future__ import annotations

import datetime
import html
import json
from typing import Any, Final
from urllib.parse import quote

from aiohttp import web

from tracker._errors import UsageError
from tracker._names import check_run_id
from tracker._server._auth import ApiError, caller
from tracker._server._storage import RunKey, Storage

__all__ = ["Pages"]

_RUNS_PER_PROJECT: Final = 100
_HEADERS: Final = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
    "X-Content-Type-Options": "nosniff",
}
_STYLE: Final = (
    "body{font-family:system-ui,sans-serif;margin:2em;color:#222}"
    "table{border-collapse:collapse}td,th{padding:.25em .75em;text-align:left;"
    "border-bottom:1px solid #ddd}pre{background:#f6f6f6;padding:1em;overflow:auto}"
)


class Pages:
    """The handlers of ``/`` and ``/{entity}/{project}/runs/{run_id}``."""

    def __init__(self, storage: Storage) -> None:
        """Serve pages from ``storage``."""
        self._storage = storage

    def routes(self) -> list[web.RouteDef]:
        """The page routes; an entity named like the API root cannot shadow /api/v1."""
        return [
            web.get("/", self.index),
            web.get("/{entity:(?!api/v1/)[^/]+}/{project}/runs/{run_id}", self.run_page),
        ]

    async def index(self, request: web.Request) -> web.Response:
        """The caller's projects, each with its latest runs."""
        entity = caller().entity
        parts = [f"<h1>{_e(entity)}</h1>"]
        projects = await self._storage.list_projects(entity)
        if not projects:
            parts.append("<p>No runs yet: point a client at this server, call tracker.init().</p>")
        for project in projects:
            name = str(project["name"])
            runs, total = await self._storage.list_runs(
                entity, name, {}, "-created_at", _RUNS_PER_PROJECT, 0
            )
            parts.append(f"<h2>{_e(name)} <small>({total} runs)</small></h2>")
            parts.append(_runs_table(entity, name, runs))
        return _page(f"tracker: {entity}", "".join(parts))

    async def run_page(self, request: web.Request) -> web.Response:
        """One run: state, times, config and summary."""
        info = request.match_info
        try:
            names = (check_run_id(info[part], part) for part in ("entity", "project", "run_id"))
            key = RunKey(*names)
        except UsageError as exc:
            raise ApiError(400, "bad_name", str(exc)) from None
        run = await self._storage.get_run(key)
        if run is None:
            body = (
                f"<h1>No such run</h1><p>{_e(key.entity)}/{_e(key.project)} has no run "
                f"{_e(key.run_id)}.</p><p><a href='/'>All projects</a></p>"
            )
            return _page("tracker: no such run", body, status=404)
        rows = [
            ("id", run.get("id")),
            ("state", run.get("state")),
            ("group", run.get("group")),
            ("job type", run.get("job_type")),
            ("tags", ", ".join(str(tag) for tag in run.get("tags") or ())),
            ("notes", run.get("notes")),
            ("created", _time(run.get("created_at"))),
            ("ended", _time(run.get("end_time"))),
            ("exit code", run.get("exit_code")),
            ("last step", run.get("last_step")),
        ]
        parent = run.get("parent")
        if isinstance(parent, dict):
            rows.append(("forked from", f"{parent.get('run_id')} at step {parent.get('step')}"))
        api = f"/api/v1/runs/{_path(key.entity, key.project, key.run_id)}"
        body = (
            f"<p><a href='/'>All projects</a> / {_e(key.project)}</p>"
            f"<h1>{_e(run.get('name') or key.run_id)}</h1>"
            + "<table>"
            + "".join(f"<tr><th>{_e(label)}</th><td>{_e(_show(v))}</td></tr>" for label, v in rows)
            + "</table>"
            + f"<h2>Config</h2><pre>{_e(_pretty(run.get('config')))}</pre>"
            + f"<h2>Summary</h2><pre>{_e(_pretty(run.get('summary')))}</pre>"
            + f"<p><a href='{_e(api)}/history'>History (JSON lines)</a> · "
            + f"<a href='{_e(api)}/files'>Files (JSON)</a></p>"
        )
        return _page(f"tracker: {run.get('name') or key.run_id}", body)


def _runs_table(entity: str, project: str, runs: list[dict[str, Any]]) -> str:
    head = "<tr><th>name</th><th>id</th><th>state</th><th>created</th><th>last step</th></tr>"
    rows = []
    for run in runs:
        run_id = str(run.get("id"))
        link = f"/{_path(entity, project)}/runs/{quote(run_id, safe='')}"
        rows.append(
            f"<tr><td><a href='{_e(link)}'>{_e(run.get('name') or run_id)}</a></td>"
            f"<td>{_e(run_id)}</td><td>{_e(_show(run.get('state')))}</td>"
            f"<td>{_e(_time(run.get('created_at')))}</td>"
            f"<td>{_e(_show(run.get('last_step')))}</td></tr>"
        )
    return f"<table>{head}{''.join(rows)}</table>"


def _page(title: str, body: str, status: int = 200) -> web.Response:
    document = (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{_e(title)}</title><style>{_STYLE}</style></head>"
        f"<body>{body}</body></html>"
    )
    return web.Response(
        text=document, status=status, content_type="text/html", charset="utf-8", headers=_HEADERS
    )


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _path(*parts: str) -> str:
    return "/".join(quote(part, safe="") for part in parts)


def _show(value: object) -> str:
    return "" if value is None else str(value)


def _time(value: object) -> str:
    if type(value) not in (int, float):
        return ""
    try:
        moment = datetime.datetime.fromtimestamp(value).astimezone()  # type: ignore[arg-type]
    except (OverflowError, OSError, ValueError):
        return str(value)
    return moment.strftime("%Y-%m-%d %H:%M:%S %Z")


def _pretty(value: object) -> str:
    # json, not orjson: it writes NaN, Infinity and big ints as they are
    return json.dumps(value or {}, indent=2, ensure_ascii=False, sort_keys=True, default=str)

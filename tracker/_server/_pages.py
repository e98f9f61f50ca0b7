"""The dashboard's pages: one HTML shell for every page, and the static files it loads.

The pages hold no data: the shell's scripts read everything from the API with the
browser's key (docs/dashboard.md), so the shell and static files are served to anyone
(`tracker._server._dashboard.dashboard_auth`). A Content-Security-Policy lets a page
load only this server's scripts and styles, so a run name or config value rendered by
the scripts cannot pull code from elsewhere.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from aiohttp import web

from tracker._server._auth import ApiError

__all__ = ["PAGE_ROUTES", "STATIC_DIR", "Pages"]

STATIC_DIR: Final = Path(__file__).parent / "static"
"""The dashboard's HTML, scripts and styles, and the vendored uPlot (shipped as package data)."""
PAGE_ROUTES: Final = frozenset(
    {
        "dashboard.static",
        "dashboard.projects",
        "dashboard.project",
        "dashboard.benchmarks",
        "dashboard.run",
    }
)
"""The names of the routes that serve the shell or static files."""

_TYPES: Final = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
_HEADERS: Final = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self' data: blob:; media-src 'self' blob:; base-uri 'none'; "
        "form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    # the dashboard URL may carry ?key=...: never send it to another site
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
# an entity named like the API root cannot shadow /api/v1
_ENTITY: Final = "{entity:(?!api/v1(?:/|$))[^/]+}"


class Pages:
    """The handlers of ``/``, ``/{entity}/{project}``, its benchmarks and runs' pages, and
    ``/static/``."""

    def __init__(self) -> None:
        """Index the static files once: only those are ever served."""
        self._files = {
            path.relative_to(STATIC_DIR).as_posix(): path
            for path in STATIC_DIR.rglob("*")
            if path.suffix in _TYPES
        }
        self._shell = (STATIC_DIR / "index.html").read_bytes()

    def routes(self) -> list[web.RouteDef]:
        """The page routes; static files first, so ``/static/x.js`` is never a project page."""
        return [
            web.get("/static/{name:.+}", self.static, name="dashboard.static"),
            web.get("/", self.shell, name="dashboard.projects"),
            web.get(f"/{_ENTITY}/{{project}}", self.shell, name="dashboard.project"),
            web.get(f"/{_ENTITY}/{{project}}/benchmarks", self.shell, name="dashboard.benchmarks"),
            web.get(f"/{_ENTITY}/{{project}}/runs/{{run_id}}", self.shell, name="dashboard.run"),
        ]

    async def shell(self, request: web.Request) -> web.Response:
        """The HTML shell; its scripts read the path and draw the page."""
        return web.Response(
            body=self._shell, content_type="text/html", charset="utf-8", headers=_HEADERS
        )

    async def static(self, request: web.Request) -> web.FileResponse:
        """A script, style sheet or image of the dashboard."""
        name = request.match_info["name"]
        path = self._files.get(name)
        if path is None:
            raise ApiError(404, "not_found", f"the dashboard has no static file {name[:200]!r}")
        return web.FileResponse(path, headers={**_HEADERS, "Content-Type": _TYPES[path.suffix]})

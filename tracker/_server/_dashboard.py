"""The dashboard's server side: its pages, the reads its scripts need, and live updates.

Besides the pages (`tracker._server._pages`), four endpoints under
``/api/v1/dashboard/`` serve the scripts (docs/dashboard.md): a page of runs sorted on
any column, a run's numeric history as chart columns downsampled per key, a run's console
as a text download, and a server-sent event stream that reads the runs a page shows when
they change (`Store.changes`, other replicas' changes included where the database tells
them; else twice a second) and sends their changed run documents, their new points, and
the new records of their system and console streams (`tracker._server._streams`).
`dashboard_auth` lets the pages load without a key and lets the event stream carry its key
in the URL, as EventSource cannot send headers; everything else is authenticated as the
API is.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import quote

import orjson
from aiohttp import web
from multidict import CIMultiDict

from tracker._records.codec import encode_value
from tracker._server._auth import ApiError
from tracker._server._benchmarks import BenchmarkViews
from tracker._server._pages import PAGE_ROUTES, Pages
from tracker._server._params import checked_name, int_query, json_query, project_of, run_key
from tracker._server._streams import console_tail, console_text, system_columns
from tracker._server.storage import RunDocument, RunKey, Store, parse_sort
from tracker._server.storage.errors import StorageError
from tracker._wire.limits import MAX_PAGE, MAX_STEP

if TYPE_CHECKING:
    from aiohttp.typedefs import Handler, Middleware

__all__ = ["LIVE_ROUTE", "Dashboard", "dashboard_auth"]

LIVE_ROUTE: Final = "dashboard.live"
"""The name of the event stream's route: the one that takes ``?key=``."""
POLL_SECONDS: Final = 0.5
"""How often a live stream reads the storage when changes made by other server processes
cannot reach it (SQLite replicas): their new points show within about this long."""
HEARD_POLL_SECONDS: Final = 5.0
"""How often it reads anyway when they can (PostgreSQL's NOTIFY): a backstop for a change
that is announced to no one (a crashed run marked by the sweep)."""
MIN_POLL_SECONDS: Final = 0.1
"""The shortest time between two reads of one stream, however often its runs change."""
PING_SECONDS: Final = 15.0
"""A comment line this often keeps proxies from closing an idle stream."""
MAX_LIVE_RUNS: Final = 100
MAX_SAMPLES: Final = 10_000
DEFAULT_SAMPLES: Final = 1000

_UNREAD: Final = object()
"""A follow whose streams were not read yet."""
_LIST_FIELDS_LEFT_OUT: Final = ("metadata",)
"""Run fields the table and live events do without (the run page reads the whole run)."""

_logger = logging.getLogger(__name__)


def dashboard_auth(auth: Middleware) -> Middleware:
    """Wrap the API's auth middleware for the dashboard.

    A page or static file requested without an ``Authorization`` header is served
    without a caller: it holds no data, and a browser cannot send the header when it
    opens a link. The live stream's ``?key=KEY`` becomes ``Authorization: Bearer KEY``
    and is checked as any key is. Every other request passes ``auth`` unchanged.
    """

    @web.middleware
    async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
        route = request.match_info.route.name
        has_header = "Authorization" in request.headers
        if route in PAGE_ROUTES and not has_header:
            return await handler(request)
        key = request.query.get("key")
        if route == LIVE_ROUTE and not has_header and key:
            headers = CIMultiDict(request.headers)
            headers["Authorization"] = f"Bearer {key}"
            request = request.clone(headers=headers)
        return await auth(request, handler)

    return authenticate


class Dashboard:
    """The pages and the endpoints of ``/api/v1/dashboard/``, and the open live streams."""

    def __init__(self, storage: Store) -> None:
        """Serve the dashboard from ``storage``."""
        self._storage = storage
        self._closing = asyncio.Event()

    def routes(self) -> list[web.RouteDef]:
        """The dashboard's endpoints, then its pages (register them after the API's)."""
        base = "/api/v1/dashboard"
        return [
            web.get(base + "/runs/{entity}/{project}", self.runs, name="dashboard.runs"),
            web.get(
                base + "/series/{entity}/{project}/{run_id}", self.series, name="dashboard.series"
            ),
            web.get(
                base + "/console/{entity}/{project}/{run_id}",
                self.console,
                name="dashboard.console",
            ),
            web.get(base + "/live/{entity}/{project}", self.live, name=LIVE_ROUTE),
            *BenchmarkViews(self._storage).routes(),
            *Pages().routes(),
        ]

    async def close(self, app: web.Application) -> None:
        """End the live streams (an ``on_shutdown`` hook), so shutdown does not wait on them."""
        self._closing.set()

    async def runs(self, request: web.Request) -> web.Response:
        """One page of a project's runs, filtered and sorted on any column, exactly encoded."""
        entity, project = project_of(request)
        filters = json_query(request, "filters", {}, "bad_filter", '{"state": "running"}')
        sort = json_query(request, "sort", ["created_at"], "bad_order", '["summary", "loss"]')
        descending = request.query.get("desc", "1") != "0"
        limit = int_query(request, "limit", 100, 1, MAX_PAGE)
        offset = int_query(request, "offset", 0, 0, MAX_STEP)
        documents, total = await self._storage.list_runs(
            entity, project, filters, parse_sort(sort, descending), limit, offset
        )
        runs = [_slim(document) for document in documents]
        return web.Response(
            body=encode_value({"runs": runs, "total": total}, "runs"),
            content_type="application/json",
        )

    async def series(self, request: web.Request) -> web.Response:
        """A run's numeric history as chart columns (NaN and ±inf as null), downsampled."""
        entity, project = project_of(request)
        key = RunKey(entity, project, checked_name(request.match_info["run_id"], "run_id"))
        text = request.query.get("keys")
        keys = None if text is None else [part for part in text.split(",") if part]
        min_step = int_query(request, "min_step", None, -MAX_STEP, MAX_STEP)
        samples = int_query(request, "samples", DEFAULT_SAMPLES, 2, MAX_SAMPLES)
        answer = await self._storage.chart_series(key, keys, min_step, samples)
        return web.Response(body=orjson.dumps(answer), content_type="application/json")

    async def console(self, request: web.Request) -> web.StreamResponse:
        """The run's whole console as a text download, lines collapsed as ``run.console()``
        collapses them, streamed a page of records at a time."""
        key = run_key(request)
        chunks = console_text(self._storage, key)
        first = await anext(chunks, b"")  # a missing run is a 404, before the answer starts
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/plain; charset=utf-8",
                "Content-Disposition": "attachment; filename*=UTF-8''"
                + quote(f"{key.run_id}-console.txt", safe=""),
                "X-Content-Type-Options": "nosniff",
            }
        )
        await response.prepare(request)
        try:
            await response.write(first)
            async for chunk in chunks:
                await response.write(chunk)
            await response.write_eof()
        except ConnectionError:
            _logger.debug("client left while downloading the console of %s", key)
        return response

    async def live(self, request: web.Request) -> web.StreamResponse:
        """Server-sent events: ``run`` when a run document changes, ``series`` with new
        points, ``system`` and ``console`` with new records of those streams.

        ``runs=A,B`` names the runs, ``after=10,-1`` the last step the page holds of each
        (default -1: all of it), ``samples`` caps the points of one key in one event.
        ``system=4,-1`` and ``console=,12`` give the last seq the page holds of each run's
        stream (-1: none yet; empty, or the parameter left out: not followed).
        """
        entity, project = project_of(request)
        run_ids = _run_ids(request.query.get("runs", ""))
        count = len(run_ids)
        after = _positions(request.query.get("after"), count, "after", "a step", -1)
        system = _positions(request.query.get("system"), count, "system", "a seq", None)
        console = _positions(request.query.get("console"), count, "console", "a seq", None)
        samples = int_query(request, "samples", DEFAULT_SAMPLES, 2, MAX_SAMPLES)
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",  # nginx: pass events on at once
            }
        )
        await response.prepare(request)
        follows = [
            _Follow(RunKey(entity, project, run_id), step, system_seq, console_seq)
            for run_id, step, system_seq, console_seq in zip(
                run_ids, after, system, console, strict=True
            )
        ]
        stream = _LiveStream(self._storage, follows, samples)
        loop = asyncio.get_running_loop()
        pinged = loop.time()
        try:
            with self._storage.changes.watching(stream.keys) as changed:
                while not self._closing.is_set() and not _gone(request):
                    read_at = loop.time()
                    changed.clear()
                    for event, data in await stream.poll():
                        await response.write(b"event: " + event + b"\ndata: " + data + b"\n\n")
                    if loop.time() - pinged >= PING_SECONDS:
                        await response.write(b": ping\n\n")
                        pinged = loop.time()
                    await self._next_read(changed, read_at)
        except ConnectionError:
            _logger.debug("a live stream of %s/%s lost its client", entity, project)
        return response

    async def _next_read(self, changed: asyncio.Event, read_at: float) -> None:
        """Wait until one of the stream's runs changes (or the backstop timer passes, or the
        server closes), and at least `MIN_POLL_SECONDS` since the last read began."""
        timer = HEARD_POLL_SECONDS if self._storage.hears_others else POLL_SECONDS
        waits = [asyncio.ensure_future(event.wait()) for event in (changed, self._closing)]
        try:
            await asyncio.wait(waits, timeout=timer, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()
        pause = read_at + MIN_POLL_SECONDS - asyncio.get_running_loop().time()
        if pause > 0 and not self._closing.is_set():
            await asyncio.sleep(pause)


@dataclass
class _Follow:
    """What one live stream has sent of a run: its last step, system and console seqs (None:
    not followed), the document version last sent and the one its streams were read at."""

    key: RunKey
    step: int
    system: int | None
    console: int | None
    version: object = None
    streams_read_at: object = _UNREAD


class _LiveStream:
    """The runs one live stream follows, polled in turn."""

    def __init__(self, storage: Store, follows: list[_Follow], samples: int) -> None:
        self._storage = storage
        self._follows = follows
        self.keys = [follow.key for follow in follows]
        self._samples = samples

    async def poll(self) -> list[tuple[bytes, bytes]]:
        """The events since the last poll: changed run documents, new points, new records."""
        events: list[tuple[bytes, bytes]] = []
        for follow in self._follows:
            try:
                events += await self._poll_run(follow)
            except StorageError as exc:  # busy or gone: the next poll tries again
                _logger.debug("live stream: reading %s failed: %s", follow.key, exc.message)
        return events

    async def _poll_run(self, follow: _Follow) -> list[tuple[bytes, bytes]]:
        events: list[tuple[bytes, bytes]] = []
        key = follow.key
        document = await self._storage.get_run(key)
        if document is None:
            return events
        version = (document.get("updated_at"), document.get("state"))
        if follow.version != version:
            follow.version = version
            events.append((b"run", encode_value(_slim(document), "run")[:-1]))
        last_step = document.get("last_step")
        if isinstance(last_step, int) and last_step > follow.step:
            answer = await self._storage.chart_series(key, None, follow.step + 1, self._samples)
            follow.step = max(follow.step, int(answer["last_step"]))
            if answer["series"]:
                events.append((b"series", orjson.dumps({"run": key.run_id, **answer})))
        # stream records come with a new updated_at: read the streams only when it moved
        updated = document.get("updated_at")
        if follow.streams_read_at == updated:
            return events
        first = follow.streams_read_at is _UNREAD
        follow.streams_read_at = updated
        if follow.system is not None:
            system = await system_columns(self._storage, key, follow.system, self._samples)
            if first or system["last_seq"] > follow.system:
                message = {"run": key.run_id, "after": follow.system, **system}
                events.append((b"system", orjson.dumps(message)))
                follow.system = system["last_seq"]
        if follow.console is not None:
            console = await console_tail(self._storage, key, follow.console)
            if first or console["last_seq"] > follow.console:
                message = {"run": key.run_id, "after": follow.console, **console}
                events.append((b"console", orjson.dumps(message)))
                follow.console = console["last_seq"]
        return events


def _gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


def _slim(document: RunDocument) -> dict[str, Any]:
    return {name: value for name, value in document.items() if name not in _LIST_FIELDS_LEFT_OUT}


def _run_ids(text: str) -> list[str]:
    run_ids = list(dict.fromkeys(part for part in text.split(",") if part))
    if not run_ids or len(run_ids) > MAX_LIVE_RUNS:
        raise ApiError(
            400,
            "bad_request",
            f"query parameter runs={text[:120]!r} must name 1 to {MAX_LIVE_RUNS} run ids, "
            "separated by commas",
        )
    return [checked_name(run_id, "run id in runs") for run_id in run_ids]


def _positions(
    text: str | None, count: int, name: str, what: str, default: int | None
) -> list[Any]:
    """One position per run of ``name=4,,-1``: an integer >= -1, or None for an empty part;
    ``default`` for every run when the parameter is absent or empty."""
    if not text:
        return [default] * count
    parts = text.split(",")
    try:
        positions = [int(part) if part else None for part in parts if len(part) <= 20]
    except ValueError:
        positions = []
    if len(positions) != count or not all(
        position is None or -1 <= position <= MAX_STEP for position in positions
    ):
        raise ApiError(
            400,
            "bad_request",
            f"query parameter {name}={text[:120]!r} must hold one position ({what}, an "
            f"integer >= -1) per run in runs, {count} in all, separated by commas",
        )
    if default is None:
        return positions
    return [default if position is None else position for position in positions]

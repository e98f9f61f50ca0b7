"""The HTTP API of docs/protocol.md over a `Store`: the application, and its endpoints but
those that take records (`tracker._server._ingest`).

Handlers turn what a client sends into the store's arguments, checking what HTTP carries
(names, JSON shapes, sizes); the store checks the rest, so bad input gets a 4xx naming
the problem and never a 500. Every error answer goes through `_http.error_response`, and
every storage error through `_http.api_error`; user values in answers are exactly encoded
(`tracker._records.codec.encode_value`) so NaN, ±inf and big ints survive.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import AsyncIterator
from typing import Any, Final
from urllib.parse import quote

import orjson
from aiohttp import web

import tracker
from tracker._errors import UsageError
from tracker._names import check_file_name
from tracker._records.codec import encode_value
from tracker._server._auth import ApiError, auth_middleware, caller, check_entity
from tracker._server._dashboard import Dashboard, dashboard_auth
from tracker._server._guard import guard_middleware
from tracker._server._http import (
    error_middleware,
    error_response,
    exact_answer,
    json_answer,
    read_json,
    spool_body,
)
from tracker._server._ingest import Ingest
from tracker._server._params import (
    checked_name,
    clip,
    int_query,
    json_query,
    log_id_param,
    project_of,
    run_key,
    run_not_found,
)
from tracker._server._tasks import cancel_and_wait
from tracker._server.storage import RunKey, StartRequest, Store, parse_order
from tracker._server.storage.errors import FileReplaced, StorageLost
from tracker._wire.limits import MAX_FILE_BYTES, MAX_PAGE, MAX_STEP, MAX_STREAM_PAGE
from tracker._wire.protocol import PROTOCOL

__all__ = ["build_app"]

SWEEP_SECONDS: Final = 1.0
RESCAN_SWEEPS: Final = 2
"""Every this many sweeps, the row log is rescanned for runs another replica acknowledged
and did not compact (`Store.rescan_log`)."""
DEFAULT_HEARTBEAT_SECONDS: Final = 10.0
"""The heartbeat interval of a handshake that names none."""

_HISTORY_CHUNK: Final = 2000

_logger = logging.getLogger(__name__)


def build_app(
    storage: Store,
    *,
    allow_anonymous: bool,
    open_access: bool,
    base_url: str | None = None,
    bound_host: str | None = None,
) -> web.Application:
    """The server application: the API of docs/protocol.md, the HTML pages, the crash sweep.

    Args:
        storage: the database; the caller opens it before and closes it after the app.
        allow_anonymous: requests without a key act as the entity ``anonymous``.
        open_access: no API keys and a loopback (or ``--insecure``) bind: every request
            acts as the entity ``local``.
        base_url: the public root of run URLs, also accepted as the Host and Origin of
            requests; default: the scheme and host of the request.
        bound_host: the address the server listens on, accepted as a Host.
    """
    api = _Api(storage, base_url)
    app = web.Application(
        middlewares=[
            error_middleware,
            guard_middleware(bound_host, base_url),
            dashboard_auth(
                auth_middleware(storage, allow_anonymous=allow_anonymous, open_access=open_access)
            ),
        ],
        # bodies are read as streams with per-route limits (`read_body`); this is the largest
        client_max_size=MAX_FILE_BYTES,
    )
    app.add_routes(api.routes())
    dashboard = Dashboard(storage)
    app.add_routes(dashboard.routes())
    app.on_shutdown.append(dashboard.close)
    app.cleanup_ctx.append(api.sweeper)
    app.on_shutdown.append(api.ingest.close_sockets)
    return app


class _Api:
    """The handlers of /api/v1 but those that take records (`Ingest`), sharing the store."""

    def __init__(self, storage: Store, base_url: str | None) -> None:
        self._storage = storage
        self._base_url = base_url.rstrip("/") if base_url else None
        self.ingest = Ingest(storage)

    def routes(self) -> list[web.RouteDef]:
        """Every endpoint of docs/protocol.md."""
        run = "/api/v1/runs/{entity}/{project}/{run_id}"
        return [
            web.get("/api/v1/health", self.health),
            web.get("/api/v1/viewer", self.viewer),
            web.post("/api/v1/runs/start", self.start),
            web.get("/api/v1/projects", self.projects),
            web.get("/api/v1/runs/{entity}/{project}", self.runs),
            web.get(run, self.run),
            web.patch(run, self.update),
            *self.ingest.routes(run),
            web.get(run + "/history", self.history),
            web.get(run + "/streams/{stream}", self.stream),
            web.get(run + "/files", self.files),
            web.put(run + "/files/{name:.+}", self.put_file),
            web.get(run + "/files/{name:.+}", self.get_file),
        ]

    async def sweeper(self, app: web.Application) -> AsyncIterator[None]:
        """Mark runs whose heartbeats stopped as crashed, every second, and every
        `RESCAN_SWEEPS` seconds queue for compaction the runs whose row log another
        replica left, while the app runs."""
        task = asyncio.create_task(self._sweep_forever())
        yield
        await cancel_and_wait(task)

    async def _sweep_forever(self) -> None:
        for sweep in itertools.count(1):
            try:
                await self._storage.sweep_crashed(time.time())
                if sweep % RESCAN_SWEEPS == 0:
                    await self._storage.rescan_log()
            except StorageLost:
                pass  # said once on the log; health and every write say it since
            except Exception:
                _logger.exception("sweeping crashed runs or the row log failed; retrying shortly")
            await asyncio.sleep(SWEEP_SECONDS)

    def _url(self, request: web.Request, key: RunKey) -> str:
        root = self._base_url or f"{request.scheme}://{request.host}"
        parts = (quote(part, safe="") for part in (key.entity, key.project, key.run_id))
        entity, project, run_id = parts
        return f"{root}/{entity}/{project}/runs/{run_id}"

    async def _document(self, request: web.Request, key: RunKey) -> dict[str, Any]:
        document = await self._storage.get_run(key)
        if document is None:
            raise run_not_found(key)
        return {**document, "url": self._url(request, key)}

    async def health(self, request: web.Request) -> web.Response:
        """Liveness, protocol and version; public. 503 ``storage_lost`` when the database
        file was deleted or replaced under the server."""
        try:
            self._storage.check()
        except StorageLost as exc:
            return error_response(
                503, exc.code, exc.message, protocol=PROTOCOL, version=tracker.__version__
            )
        return json_answer({"status": "ok", "protocol": PROTOCOL, "version": tracker.__version__})

    async def viewer(self, request: web.Request) -> web.Response:
        """The entity the caller acts as."""
        who = caller()
        return json_answer({"entity": who.entity, "anonymous": who.anonymous})

    async def start(self, request: web.Request) -> web.Response:
        """The handshake: create, continue, replace, fork or rewind a run."""
        body = await read_json(request)
        protocol = _field(body, "protocol")
        if type(protocol) is not int or protocol != PROTOCOL:
            raise ApiError(
                400,
                "bad_protocol",
                f"protocol {clip(repr(protocol))} is not spoken here; this server speaks "
                f"protocol {PROTOCOL}: upgrade or downgrade tracker to match",
                versions=[PROTOCOL],
            )
        entity = body.get("entity")
        entity = caller().entity if entity is None else checked_name(entity, "entity")
        check_entity(entity)
        project = checked_name(_field(body, "project"), "project")
        key = RunKey(entity, project, checked_name(_field(body, "run_id"), "run_id"))
        mode = _field(body, "mode")
        interval = body.get("heartbeat_interval")
        request_ = StartRequest(
            key=key,
            log_id=log_id_param(_field(body, "log_id"), "log_id"),
            mode=mode,
            fork_from=_fork_from(body.get("fork_from")),
            rewind_to=body.get("rewind_to"),
            heartbeat_interval=DEFAULT_HEARTBEAT_SECONDS if interval is None else interval,
            now=time.time(),
            sessions=_sessions(body.get("sessions")),
        )
        result = await self._storage.start_run(request_)
        url = self._url(request, key)
        answer = {
            "protocol": PROTOCOL,
            "entity": key.entity,
            "project": key.project,
            "run_id": key.run_id,
            "url": url,
            "resumed": result.resumed,
            "last_step": result.last_step,
            "acked_seq": result.acked_seq,
            "run": orjson.Fragment(encode_value({**result.run, "url": url}, "run")),
        }
        return web.Response(body=orjson.dumps(answer), content_type="application/json")

    async def put_file(self, request: web.Request) -> web.Response:
        """Store a run file from the raw body, spooled to disk as it arrives (never whole in
        memory); nothing is stored of a body refused."""
        key = run_key(request)
        name = _file_name(request.match_info["name"])
        with self._storage.spool() as upload:
            await spool_body(
                request,
                upload,
                MAX_FILE_BYTES,
                f"file {name!r}",
                "keep it in the run directory, or split it into smaller files and save those",
            )
            await self._storage.put_file(key, name, upload, time.time())
        return web.Response(status=204)

    async def get_file(self, request: web.Request) -> web.StreamResponse:
        """A run file's bytes, as a download (never rendered by a browser), streamed a chunk
        at a time."""
        key = run_key(request)
        name = _file_name(request.match_info["name"])
        found = await self._storage.open_file(key, name)
        if found is None:
            raise ApiError(
                404,
                "file_not_found",
                f"run {key.run_id} in {key.entity}/{key.project} has no file {name!r}; "
                "list its files with GET .../files",
            )
        info, chunks = found
        filename = quote(name.rpartition("/")[2], safe="")
        response = web.StreamResponse(
            headers={
                "Content-Type": "application/octet-stream",
                "Content-Disposition": f"attachment; filename*=UTF-8''{filename}",
                "X-Content-Type-Options": "nosniff",
            }
        )
        response.content_length = info["size"]
        await response.prepare(request)
        try:
            async for chunk in chunks:
                await response.write(chunk)
        except FileReplaced as exc:
            # the answer is under way: all that can be said is to cut it short
            _logger.warning("%s", exc.message)
            request.protocol.force_close()
            return response
        except ConnectionError:
            _logger.debug("client left while downloading %r of %s", name, key)
            return response
        await response.write_eof()
        return response

    async def files(self, request: web.Request) -> web.Response:
        """The run's files: name, size, sha256, updated_at."""
        return json_answer({"files": await self._storage.list_files(run_key(request))})

    async def projects(self, request: web.Request) -> web.Response:
        """The projects of an entity (default: the caller's)."""
        entity = request.query.get("entity") or caller().entity
        entity = checked_name(entity, "entity")
        check_entity(entity)
        return json_answer({"projects": await self._storage.list_projects(entity)})

    async def runs(self, request: web.Request) -> web.Response:
        """One page of a project's runs, filtered and ordered."""
        entity, project = project_of(request)
        filters = json_query(request, "filters", {}, "bad_filter", '{"state": "finished"}')
        sort = parse_order(request.query.get("order") or "-created_at")
        limit = int_query(request, "limit", 100, 1, MAX_PAGE)
        offset = int_query(request, "offset", 0, 0, MAX_STEP)
        documents, total = await self._storage.list_runs(
            entity, project, filters, sort, limit, offset
        )
        runs = [
            {**document, "url": self._url(request, RunKey(entity, project, document["id"]))}
            for document in documents
        ]
        return exact_answer({"runs": runs, "total": total}, "runs")

    async def run(self, request: web.Request) -> web.Response:
        """The run document."""
        key = run_key(request)
        return exact_answer(await self._document(request, key), "run")

    async def update(self, request: web.Request) -> web.Response:
        """Edit a run's tags or notes; answers the updated run document."""
        key = run_key(request)
        await self._storage.update_run(key, await read_json(request), time.time())
        return exact_answer(await self._document(request, key), "run")

    async def history(self, request: web.Request) -> web.StreamResponse:
        """History rows as JSON lines, exactly encoded, streamed in chunks."""
        key = run_key(request)
        text = request.query.get("keys")
        # "keys=" (empty) keeps no key, as StoredRun.history(keys=[]) does
        keys = None if text is None else [part for part in text.split(",") if part]
        min_step = int_query(request, "min_step", None, -MAX_STEP, MAX_STEP)
        max_step = int_query(request, "max_step", None, -MAX_STEP, MAX_STEP)
        samples = int_query(request, "samples", None, 1, 10_000_000)
        rows = await self._storage.history(key, keys, min_step, max_step, samples)
        chunks = range(0, len(rows), _HISTORY_CHUNK)
        big = len(rows) > _HISTORY_CHUNK
        response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await response.prepare(request)
        try:
            for start in chunks:
                chunk = rows[start : start + _HISTORY_CHUNK]
                data = await asyncio.to_thread(_encode_rows, chunk) if big else _encode_rows(chunk)
                await response.write(data)
            await response.write_eof()
        except ConnectionError:
            _logger.debug("client left while reading the history of %s", key)
        return response

    async def stream(self, request: web.Request) -> web.Response:
        """Records of one of the run's streams: ``{"stream", "records": [{"seq", "time",
        "data"}, ...]}`` in seq order, exactly encoded."""
        key = run_key(request)
        stream = request.match_info["stream"]
        records = await self._storage.stream(
            key,
            stream,
            after=int_query(request, "after", -1, -1, MAX_STEP),
            limit=int_query(request, "limit", MAX_STREAM_PAGE, 1, MAX_STREAM_PAGE),
            start=json_query(request, "start", None, "bad_request", "start=1700000000.5"),
            end=json_query(request, "end", None, "bad_request", "end=1700000060"),
            newest=bool(int_query(request, "newest", 0, 0, 1)),
        )
        return exact_answer({"stream": stream, "records": records}, "stream records")


def _file_name(value: str) -> str:
    """A stored file name (`tracker._names.check_file_name`), else 400 ``bad_name``."""
    try:
        return check_file_name(value)
    except UsageError as exc:
        raise ApiError(400, "bad_name", str(exc)) from None


def _field(body: dict[str, Any], name: str) -> Any:
    if name not in body:
        raise ApiError(400, "bad_request", f"the body lacks the field {name!r}; add it")
    return body[name]


def _encode_rows(rows: list[dict[str, Any]]) -> bytes:
    return b"".join(encode_value(row, "history row") for row in rows)


def _sessions(value: object) -> list[list[Any]]:
    """The handshake's ``sessions``: ``[[first seq, session], ...]`` in seq order, or none."""
    if value is None:
        return []
    if not isinstance(value, list) or not all(
        isinstance(pair, list)
        and len(pair) == 2
        and type(pair[0]) is int
        and 0 <= pair[0] <= MAX_STEP
        and isinstance(pair[1], str)
        and len(pair[1]) <= 64
        for pair in value
    ):
        raise ApiError(
            400,
            "bad_request",
            f"sessions={clip(repr(value))} must be a list of [first seq, session] pairs "
            "(an int >= 0 and a str of at most 64 characters)",
        )
    return value


def _fork_from(value: object) -> tuple[str, int] | None:
    """The handshake's ``fork_from`` as (parent run id, step); the store checks the step."""
    if value is None:
        return None
    if not isinstance(value, dict) or set(value) != {"run_id", "step"}:
        raise ApiError(
            400,
            "bad_request",
            'fork_from must be {"run_id": "PARENT", "step": N}; got ' + clip(repr(value)),
        )
    return checked_name(value["run_id"], "fork_from.run_id"), value["step"]

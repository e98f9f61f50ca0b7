"""`tracker.Api`: read runs from a tracker server, with the same interface as `read_run`.

Requests run on the process's I/O thread (aiohttp), so a script, a notebook or an
async program can all call it; each call blocks its caller until the answer.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote

import orjson

from tracker._errors import UsageError
from tracker._files import RunFile
from tracker._records.codec import decode_value
from tracker._records.console import ConsoleLine, check_tail, console_lines
from tracker._records.kinds import CONSOLE
from tracker._runinfo import RunInfo, RunSummary
from tracker._settings import resolve_settings
from tracker._wire.errors import TransportError, public_error
from tracker._wire.limits import MAX_STREAM_PAGE
from tracker._wire.protocol import run_path

if TYPE_CHECKING:
    from tracker._io._transport import ServerClient

__all__ = ["Api", "ApiRun"]

T = TypeVar("T")
_PAGE = 500


class Api:
    """Read access to a tracker server: projects, runs, history, files.

    Args:
        base_url: the server; default from settings (`tracker login`, TRACKER_BASE_URL).
        api_key: the key; default from settings (TRACKER_API_KEY).

    Raises:
        UsageError: no server configured.
    """

    def __init__(self, base_url: str | None = None, api_key: str | None = None) -> None:
        settings = resolve_settings({"base_url": base_url, "api_key": api_key})
        if settings.base_url is None:
            raise UsageError(
                "tracker.Api(): no server configured; pass base_url=..., set TRACKER_BASE_URL, "
                "or run `tracker login`"
            )
        from tracker._io._transport import ServerClient

        self.base_url = settings.base_url
        self._client = ServerClient(settings.base_url, settings.api_key)
        self._entity: str | None = settings.entity

    @property
    def default_entity(self) -> str:
        """The entity of the API key (from the server), unless settings name one."""
        if self._entity is None:
            self._entity = str(self._get_json("viewer")["entity"])
        return self._entity

    def projects(self, entity: str | None = None) -> list[dict[str, Any]]:
        """The projects of ``entity`` (default: yours): name, number of runs, last update."""
        answer = self._get_json("projects", {"entity": entity or self.default_entity})
        return list(answer["projects"])

    def runs(
        self,
        path: str,
        filters: dict[str, Any] | None = None,
        order: str = "-created_at",
    ) -> list[ApiRun]:
        """The runs of ``"entity/project"`` (or ``"project"``) that match ``filters``.

        Args:
            filters: conditions that must all hold: ``state``, ``group``, ``job_type``,
                ``name``, ``tags`` (a tag), ``"config.KEY"``, ``"summary.KEY"``, ``search``.
            order: ``created_at``, ``name`` or ``updated_at``; ``-`` for descending.
        """
        entity, project = self._split(path, 2, "runs", '"entity/project"')
        query = orjson.dumps(filters or {}).decode()
        runs: list[ApiRun] = []
        while True:
            answer = decode_value(
                self._get(
                    run_path(entity, project),
                    {
                        "filters": query,
                        "order": order,
                        "limit": str(_PAGE),
                        "offset": str(len(runs)),
                    },
                )
            )
            runs += [ApiRun(self, document) for document in answer["runs"]]
            if len(runs) >= answer["total"] or not answer["runs"]:
                return runs

    def run(self, path: str) -> ApiRun:
        """One run, by ``"entity/project/run_id"`` (or ``"project/run_id"``).

        Raises:
            UsageError: there is no such run.
        """
        entity, project, run_id = self._split(path, 3, "run", '"entity/project/run_id"')
        return ApiRun(self, decode_value(self._get(run_path(entity, project, run_id))))

    def _split(self, path: str, parts: int, method: str, shape: str) -> list[str]:
        if not isinstance(path, str):
            raise UsageError(f"Api.{method}() takes a str like {shape}, not {type(path).__name__}")
        pieces = path.strip("/").split("/")
        if len(pieces) == parts - 1:
            pieces.insert(0, self.default_entity)
        if len(pieces) != parts or not all(pieces):
            raise UsageError(f"Api.{method}({path!r}): use the form {shape}")
        return pieces

    def _get(self, path: str, params: dict[str, str] | None = None) -> bytes:
        return self._call(self._client.request("GET", path, params=params))

    def _get_json(self, path: str, params: dict[str, str] | None = None) -> Any:
        return orjson.loads(self._get(path, params))

    def _call(self, request: Coroutine[Any, Any, T]) -> T:
        """Run one request on the I/O thread; map failures to the public errors."""
        from tracker._io._thread import io_thread

        async def request_then_close() -> T:
            try:
                return await request
            finally:
                await self._client.close()  # no session outlives a call, none left at exit

        try:
            return io_thread().submit(request_then_close()).result()
        except TransportError as exc:
            raise public_error(
                exc, "tracker.Api", self.base_url, "check that `tracker server` runs there"
            ) from None

    @property
    def client(self) -> ServerClient:
        """The HTTP client (for the run objects)."""
        return self._client


class ApiRun(RunInfo):
    """A run read from the server; the same interface as `tracker.StoredRun`."""

    def __init__(self, api: Api, document: dict[str, Any]) -> None:
        """Wrap a run document of the read API."""
        self._api = api
        self._document = document

    def _info(self) -> dict[str, Any]:
        return self._document

    @property
    def state(self) -> str:
        """running, finished, failed, killed or crashed."""
        return str(self._document["state"])

    @property
    def config(self) -> dict[str, Any]:
        """The run's config."""
        return dict(self._document.get("config") or {})

    @property
    def summary(self) -> RunSummary:
        """The run's summary: a dict, with W&B's ``_json_dict`` too."""
        return RunSummary(self._document.get("summary") or {})

    @property
    def metadata(self) -> dict[str, Any]:
        """The fields of the run's ``run`` records that have no property of their own: where
        and how it ran (host, command, git, ...; docs/run-log.md), as W&B's ``run.metadata``."""
        return dict(self._document.get("metadata") or {})

    @property
    def url(self) -> str | None:
        """The run's page on the server."""
        return self._document.get("url")

    @property
    def parent(self) -> dict[str, Any] | None:
        """``{"run_id", "step"}`` of the run this one was forked from, if any."""
        return self._document.get("parent")

    def history(
        self,
        keys: Sequence[str] | None = None,
        min_step: int | None = None,
        max_step: int | None = None,
        samples: int | None = None,
        pandas: bool = False,
        stream: str = "default",
    ) -> Any:
        """The history rows in step order, as `tracker.StoredRun.history` gives them (or a
        stream's records: ``stream="system"``).

        Args:
            keys: keep only these keys (and ``_step``); rows holding none are left out.
            min_step: the first step to include.
            max_step: the last step to include.
            samples: at most about this many rows, keeping each key's extremes.
            pandas: return a pandas DataFrame (pandas must be installed).
            stream: ``"default"`` (the logged rows) or a stream's name (docs/run-log.md).

        Raises:
            UsageError: an unknown stream, or steps or samples asked of a stream.
        """
        from tracker._records.history import (  # reads only
            check_keys,
            check_stream,
            history_frame,
            stream_rows,
        )

        wanted = check_keys(keys)
        name = check_stream(stream, min_step, max_step, samples)
        if name is not None:
            payloads = [record["data"] for record in self.stream_records(name)]
            found = stream_rows(name, payloads, wanted)
            return history_frame(found) if pandas else found
        params = {}
        if wanted is not None:
            params["keys"] = ",".join(wanted)
        for name, value in (("min_step", min_step), ("max_step", max_step), ("samples", samples)):
            if value is not None:
                params[name] = str(int(value))
        body = self._api._get(run_path(self.entity, self.project, self.id, "history"), params)
        rows = [decode_value(line) for line in body.splitlines() if line]
        return history_frame(rows) if pandas else rows

    def console(self, tail: int | None = None) -> list[ConsoleLine]:
        """The run's console output, as `tracker.StoredRun.console` gives it; the last
        ``tail`` lines when given (read from the end: at most ``tail`` records).

        Raises:
            UsageError: ``tail`` is not an int >= 0 or None.
        """
        wanted = check_tail(tail)
        if wanted == 0:
            return []
        if wanted is not None and wanted <= MAX_STREAM_PAGE:
            path = run_path(self.entity, self.project, self.id, "streams") + "/" + CONSOLE
            params = {"newest": "1", "limit": str(wanted)}
            records = decode_value(self._api._get(path, params))["records"]
        else:
            records = self.stream_records(CONSOLE)
        return console_lines((record["data"] for record in records), wanted)

    def stream_records(self, stream: str) -> list[dict[str, Any]]:
        """Every record of one of the run's streams, ``{"seq", "time", "data"}`` in order,
        read page by page (docs/protocol.md, "Streams")."""
        path = run_path(self.entity, self.project, self.id, "streams") + "/" + quote(stream)
        found: list[dict[str, Any]] = []
        while True:
            params = {"after": str(found[-1]["seq"] if found else -1)}
            page = decode_value(self._api._get(path, params))["records"]
            found += page
            if len(page) < MAX_STREAM_PAGE:
                return found

    def files(self) -> list[RunFile]:
        """The files stored with the run."""
        answer = self._api._get_json(run_path(self.entity, self.project, self.id, "files"))
        return [
            RunFile(
                name=entry["name"],
                size=int(entry["size"]),
                sha256=entry.get("sha256"),
                fetch=self._fetcher(entry["name"]),
            )
            for entry in answer["files"]
        ]

    def _fetcher(self, name: str) -> Callable[[], bytes]:
        path = run_path(self.entity, self.project, self.id, "files") + "/" + quote(name)

        def fetch() -> bytes:
            return self._api._get(path)

        return fetch

    def __repr__(self) -> str:
        return f"<ApiRun {self.path} ({self.state})>"

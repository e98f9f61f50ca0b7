"""The dashboard's HTTP side: pages and static files, who may load them, the JSON reads and
the live event stream, against a real server."""

from __future__ import annotations

import json
import math
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote

import pytest

from tracker._records.codec import decode_value
from tracker._run import Run
from tracker._server._runner import EmbeddedServer
from tracker._server._streams import CONSOLE_TAIL_LINES

StartRun = Callable[..., Run]


def _get(
    url: str, key: str | None = None, timeout: float = 10.0
) -> tuple[int, dict[str, str], bytes]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, dict(error.headers), error.read()


def _code(body: bytes) -> str:
    return str(json.loads(body)["error"]["code"])


def _events(url: str, count: int, timeout: float = 10.0) -> Iterator[tuple[str, Any]]:
    """The first ``count`` server-sent events of ``url``: (event name, decoded data)."""
    with urllib.request.urlopen(url, timeout=timeout) as response:
        assert response.headers["Content-Type"] == "text/event-stream"
        name = ""
        for raw in response:
            line = raw.decode().rstrip("\n")
            if line.startswith("event: "):
                name = line[len("event: ") :]
            elif line.startswith("data: "):
                data = line[len("data: ") :]
                yield name, decode_value(data) if name == "run" else json.loads(data)
                count -= 1
                if not count:
                    return


def _rows(run: Run, steps: range) -> None:
    for step in steps:
        run.log({"loss": 1 / (step + 1), "text": "not a number"})


@pytest.mark.parametrize("path", ["/", "/local/proj", "/local/proj/runs/abc"])
def test_every_page_is_the_shell_with_a_strict_policy(server: EmbeddedServer, path: str) -> None:
    """Each page answers the HTML shell, which may load only this server's scripts."""
    status, headers, body = _get(server.url + path)
    assert status == 200
    assert headers["Content-Type"].startswith("text/html")
    assert "script-src 'self'" in headers["Content-Security-Policy"]
    assert headers["Referrer-Policy"] == "no-referrer"
    assert b'<script type="module" src="/static/app.js">' in body


def test_static_files_are_served_with_their_types(server: EmbeddedServer) -> None:
    """Scripts, styles and the vendored uPlot are served; nothing else is."""
    for name, kind in [
        ("app.js", "text/javascript"),
        ("dashboard.css", "text/css"),
        ("vendor/uPlot.iife.min.js", "text/javascript"),
    ]:
        status, headers, body = _get(f"{server.url}/static/{name}")
        assert (status, headers["Content-Type"].split(";")[0]) == (200, kind)
        assert body
    for name in ["missing.js", "index.html", "vendor/LICENSE", "..%2F_app.py"]:
        status, _, body = _get(f"{server.url}/static/{name}")
        assert (status, _code(body)) == (404, "not_found")


def test_a_keyed_server_serves_pages_without_a_key_but_no_data(
    keyed_server: EmbeddedServer, alice_key: str
) -> None:
    """Pages need no key (they hold no data); the API still does; a key of another entity is
    refused on a page too."""
    assert _get(keyed_server.url + "/")[0] == 200
    assert _get(keyed_server.url + "/static/app.js")[0] == 200
    for read in ("runs/alice/proj", "console/alice/proj/run1"):
        status, _, body = _get(f"{keyed_server.url}/api/v1/dashboard/{read}")
        assert (status, _code(body)) == (401, "auth_required")
    status, _, body = _get(keyed_server.url + "/api/v1/dashboard/console/bob/proj/run1", alice_key)
    assert (status, _code(body)) == (403, "forbidden")
    assert _get(keyed_server.url + "/api/v1/dashboard/runs/alice/proj", alice_key)[0] == 200
    status, _, body = _get(keyed_server.url + "/bob/proj/runs/x", alice_key)
    assert (status, _code(body)) == (403, "forbidden")
    status, _, body = _get(keyed_server.url + "/alice/proj", "wrong")
    assert (status, _code(body)) == (401, "auth_invalid")


def test_the_live_stream_takes_its_key_from_the_url(
    keyed_server: EmbeddedServer, start_run: StartRun, alice_key: str
) -> None:
    """EventSource cannot send headers: ?key= authenticates the live stream, checked as keys are."""
    run = start_run(keyed_server, api_key=alice_key, project="proj")
    _rows(run, range(3))
    live = f"{keyed_server.url}/api/v1/dashboard/live/alice/proj?runs={run.id}"
    [(name, document)] = _events(f"{live}&key={quote(alice_key)}", 1)
    assert (name, document["id"]) == ("run", run.id)
    for suffix, status, code in [
        ("", 401, "auth_required"),
        ("&key=wrong", 401, "auth_invalid"),
    ]:
        answer, _, body = _get(live + suffix)
        assert (answer, _code(body)) == (status, code)
    other = live.replace("/alice/", "/bob/")
    answer, _, body = _get(f"{other}&key={quote(alice_key)}")
    assert (answer, _code(body)) == (403, "forbidden")


def test_runs_endpoint_sorts_filters_and_pages(server: EmbeddedServer, start_run: StartRun) -> None:
    """The runs page is sorted on the given column, filtered, and exactly encoded."""
    for index, score in enumerate([2.0, float("nan"), 3.0]):
        run = start_run(server, project="proj", name=f"run{index}", tags=["t"] if index else [])
        run.log({"score": score})
        run.finish(quiet=True)
    url = f"{server.url}/api/v1/dashboard/runs/local/proj"
    sort = quote(json.dumps(["summary", "score"]))
    status, _, body = _get(f"{url}?sort={sort}&desc=1&limit=2")
    answer = decode_value(body)
    assert status == 200
    assert [run["name"] for run in answer["runs"]] == ["run2", "run0"]
    assert answer["total"] == 3
    assert "metadata" not in answer["runs"][0]
    filters = quote(json.dumps({"tags": "t"}))
    answer = decode_value(_get(f"{url}?filters={filters}&sort={sort}&desc=0")[2])
    assert [run["name"] for run in answer["runs"]] == ["run2", "run1"]  # NaN (no value) last
    assert math.isnan(answer["runs"][1]["summary"]["score"])


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ("filters=%5B%5D", "bad_filter"),
        ("filters=nope", "bad_filter"),
        ("filters=%7B%22color%22%3A%22red%22%7D", "bad_filter"),
        ("sort=%7B%7D", "bad_order"),
        ("sort=%5B%22nope%22%5D", "bad_order"),
        ("limit=0", "bad_request"),
        ("offset=-1", "bad_request"),
    ],
)
def test_runs_endpoint_refuses_bad_queries(server: EmbeddedServer, query: str, code: str) -> None:
    """Malformed filters, sorts and pages get a 400 naming the problem."""
    status, _, body = _get(f"{server.url}/api/v1/dashboard/runs/local/proj?{query}")
    assert (status, _code(body)) == (400, code)


def test_series_endpoint_answers_numeric_columns(
    server: EmbeddedServer, start_run: StartRun
) -> None:
    """A run's series are plain JSON columns of its numeric keys, downsampled on request."""
    run = start_run(server, project="proj")
    _rows(run, range(100))
    run.finish(quiet=True)
    url = f"{server.url}/api/v1/dashboard/series/local/proj/{run.id}"
    answer = json.loads(_get(f"{url}?samples=10")[2])
    assert answer["last_step"] == 99
    assert list(answer["series"]) == ["loss"]
    loss = answer["series"]["loss"]
    assert 2 <= len(loss["step"]) <= 12
    assert len(loss["step"]) == len(loss["value"]) == len(loss["runtime"]) == len(loss["timestamp"])
    assert json.loads(_get(f"{url}?min_step=98")[2])["series"]["loss"]["step"] == [98, 99]
    status, _, body = _get(f"{server.url}/api/v1/dashboard/series/local/proj/none")
    assert (status, _code(body)) == (404, "run_not_found")
    status, _, body = _get(f"{url}?samples=1")
    assert (status, _code(body)) == (400, "bad_request")


def test_live_stream_sends_the_run_then_points_after_the_given_step(
    server: EmbeddedServer, start_run: StartRun
) -> None:
    """The stream starts with the run's document, then sends its points after `after`, then
    new points as they are logged, each once."""
    run = start_run(server, project="proj")
    _rows(run, range(10))
    url = f"{server.url}/api/v1/dashboard/live/local/proj?runs={run.id}&after=6"
    stream = _events(url, 100)
    name, document = next(stream)
    assert (name, document["id"], document["state"]) == ("run", run.id, "running")

    def steps_until(last: int) -> list[int]:
        steps: list[int] = []
        for name, message in stream:
            if name == "series":
                assert message["run"] == run.id
                steps += message["series"]["loss"]["step"]
            if steps[-1:] == [last]:
                return steps
        raise AssertionError("the stream ended")

    assert steps_until(9) == [7, 8, 9]
    started = time.monotonic()
    _rows(run, range(10, 12))
    assert steps_until(11) == [10, 11]
    assert time.monotonic() - started < 2.0
    stream.close()


@pytest.mark.parametrize(
    "query",
    [
        "",
        "runs=",
        "runs=a,b&after=1",
        "runs=a&after=x",
        "runs=a&after=-2",
        "runs=a%2Fb",
        "runs=a&system=x",
        "runs=a,b&system=1",
        "runs=a&console=-2",
        "runs=a,b&console=1,2,3",
    ],
)
def test_live_stream_refuses_bad_queries(server: EmbeddedServer, query: str) -> None:
    """A missing or bad run list, or steps or seqs not matching it, get a 400."""
    status, _, body = _get(f"{server.url}/api/v1/dashboard/live/local/proj?{query}")
    assert status == 400
    assert _code(body) in {"bad_request", "bad_name"}


def test_shutdown_ends_open_live_streams_at_once(
    server: EmbeddedServer, start_run: StartRun
) -> None:
    """Stopping the server closes live streams instead of waiting out the shutdown timeout."""
    run = start_run(server, project="proj")
    _rows(run, range(2))
    run.finish(quiet=True)
    stream = _events(f"{server.url}/api/v1/dashboard/live/local/proj?runs={run.id}", 1)
    assert next(stream)[0] == "run"
    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started < 3.0
    stream.close()


def _follow(stream: Iterator[tuple[str, Any]], name: str) -> dict[str, Any]:
    """The next event called ``name`` of a live stream."""
    for event, message in stream:
        if event == name:
            return message  # type: ignore[no-any-return]
    raise AssertionError(f"the stream ended before a {name} event")


def test_live_stream_follows_system_samples_from_a_seq(
    server: EmbeddedServer, start_run: StartRun, system_sample: Callable[..., None]
) -> None:
    """``system=SEQ`` sends the run's system samples after SEQ as columns per metric (the
    ``_timestamp`` as their time), then new samples as they arrive, each once."""
    run = start_run(server, project="proj")
    for index in range(3):
        system_sample(run, **{"cpu.percent": 10.0 * index, "memory.used_mb": 100 + index})
    run.flush()
    url = f"{server.url}/api/v1/dashboard/live/local/proj?runs={run.id}&system=0"
    stream = _events(url, 100)
    first = _follow(stream, "system")
    assert (first["run"], first["after"], first["last_seq"]) == (run.id, 0, 2)
    assert first["series"]["cpu.percent"]["value"] == [10.0, 20.0]
    assert first["series"]["memory.used_mb"]["value"] == [101, 102]
    assert len(first["series"]["cpu.percent"]["timestamp"]) == 2
    assert "_timestamp" not in first["series"]
    started = time.monotonic()
    system_sample(run, **{"cpu.percent": 55.0})
    fresh = _follow(stream, "system")
    assert time.monotonic() - started < 2.0
    assert (fresh["after"], fresh["last_seq"]) == (2, 3)
    assert fresh["series"] == {
        "cpu.percent": {"timestamp": fresh["series"]["cpu.percent"]["timestamp"], "value": [55.0]}
    }
    stream.close()


def test_live_system_samples_are_downsampled_per_metric_keeping_spikes(
    server: EmbeddedServer, start_run: StartRun, system_sample: Callable[..., None]
) -> None:
    """From -1 a long system stream arrives with each metric cut to about ``samples``
    samples, its own one-sample spike kept (metrics spiking apart do not add up)."""
    run = start_run(server, project="proj")
    for index in range(500):
        system_sample(
            run,
            **{
                "cpu.percent": 99.0 if index == 321 else 1.0,
                "memory.percent": 70.0 if index == 45 else float(index % 7),
                "disk.percent": float(index % 13),
            },
        )
    run.finish(quiet=True)
    url = f"{server.url}/api/v1/dashboard/live/local/proj?runs={run.id}&system=-1&samples=20"
    message = _follow(_events(url, 10), "system")
    assert message["last_seq"] == 499
    for columns in message["series"].values():
        assert 2 <= len(columns["value"]) <= 22
        assert len(columns["timestamp"]) == len(columns["value"])
        assert columns["timestamp"] == sorted(columns["timestamp"])
    assert 99.0 in message["series"]["cpu.percent"]["value"]
    assert 70.0 in message["series"]["memory.percent"]["value"]


def test_live_stream_follows_console_lines_collapsed(
    server: EmbeddedServer, start_run: StartRun
) -> None:
    """``console=-1`` sends the console's lines (``\\r`` progress collapsed as
    ``run.console()`` does, stdout and stderr told apart), then new lines as printed."""
    run = start_run(server, project="proj", settings={"console": "auto"})
    print("epoch 1")
    print("progress 10%\rprogress 60%\rprogress 100%")
    print("oops", file=sys.stderr)
    run.flush()
    url = f"{server.url}/api/v1/dashboard/live/local/proj?runs={run.id}&console=-1"
    stream = _events(url, 100)
    lines: list[dict[str, Any]] = []
    while len(lines) < 3:
        message = _follow(stream, "console")
        assert message["cut"] is False
        lines += message["lines"]
    assert [(line["stream"], line["text"]) for line in lines] == [
        ("stdout", "epoch 1"),
        ("stdout", "progress 100%"),
        ("stderr", "oops"),
    ]
    assert all(isinstance(line["time"], float) for line in lines)
    print("epoch 2")
    while True:
        message = _follow(stream, "console")
        if message["lines"]:
            break
    assert [line["text"] for line in message["lines"]] == ["epoch 2"]
    stream.close()


def test_live_console_sends_at_most_the_last_lines_and_says_so(
    server: EmbeddedServer, start_run: StartRun
) -> None:
    """A console longer than `CONSOLE_TAIL_LINES` arrives as its last lines, marked cut."""
    run = start_run(server, project="proj", settings={"console": "auto"})
    total = CONSOLE_TAIL_LINES + 700
    for index in range(total):
        print(f"line {index}")
    run.finish(quiet=True)
    url = f"{server.url}/api/v1/dashboard/live/local/proj?runs={run.id}&console=-1"
    message = _follow(_events(url, 10), "console")
    texts = [line["text"] for line in message["lines"]]
    assert message["cut"] is True
    assert texts == [f"line {index}" for index in range(total - CONSOLE_TAIL_LINES, total)]


def test_console_download_is_the_whole_text_collapsed(
    server: EmbeddedServer, start_run: StartRun
) -> None:
    """GET /api/v1/dashboard/console/... is the run's whole console as a text attachment,
    one line each, progress lines collapsed; a missing run is a 404."""
    run = start_run(server, project="proj", settings={"console": "auto"})
    print("start")
    print("step 1/3\rstep 3/3")
    print("<script>alert(1)</script>", file=sys.stderr)
    run.finish(quiet=True)
    status, headers, body = _get(f"{server.url}/api/v1/dashboard/console/local/proj/{run.id}")
    assert status == 200
    assert headers["Content-Type"] == "text/plain; charset=utf-8"
    assert headers["Content-Disposition"] == f"attachment; filename*=UTF-8''{run.id}-console.txt"
    assert body.decode() == "start\nstep 3/3\n<script>alert(1)</script>\n"
    status, _, body = _get(f"{server.url}/api/v1/dashboard/console/local/proj/nosuch")
    assert (status, _code(body)) == (404, "run_not_found")

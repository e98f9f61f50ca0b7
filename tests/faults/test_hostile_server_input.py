"""Hostile input to a real `tracker server` process, beyond tests/server/test_app_hostile.py:
slow clients holding connections, sequence numbers going backwards or far ahead, batches
sent to another run, and hypothesis-generated bodies, batches, messages and queries.
Every bad request gets a 4xx (or a closed socket), stored data does not change, and the
server keeps serving others."""

from __future__ import annotations

import asyncio
import http.client
import socket
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tracker
from tracker._records.codec import decode_value, encode_record
from tracker._wire.protocol import CLIENT_HEADERS

from .conftest import FAST_RETRIES, Figures, ServerProcess

pytestmark = pytest.mark.faults

START = "/api/v1/runs/start"
FUZZ = settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


# -- plain HTTP over one keep-alive connection ---------------------------------------------


class Wire:
    """Requests to one server over a keep-alive connection (reopened when the server closes
    it), so thousands of examples cost a millisecond each."""

    def __init__(self, url: str) -> None:
        """Prepare a connection to ``url`` (http://127.0.0.1:PORT)."""
        host, port = url.removeprefix("http://").split(":")
        self.host, self.port = host, int(port)
        self._connection = http.client.HTTPConnection(self.host, self.port, timeout=10)

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        content_type: str = "application/json",
    ) -> tuple[int, bytes]:
        """Send one request; the status and the body."""
        headers = {"Content-Type": content_type} if body is not None else {}
        for attempt in range(2):
            try:
                self._connection.request(method, path, body=body, headers=headers)
                response = self._connection.getresponse()
                return response.status, response.read()
            except (http.client.HTTPException, ConnectionError):
                self._connection.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def json(self, method: str, path: str, value: Any) -> tuple[int, Any]:
        """Send a JSON body; the status and the decoded answer (None when empty)."""
        status, body = self.request(method, path, orjson.dumps(value))
        return status, orjson.loads(body) if body else None

    def start(self, project: str, run_id: str, log_id: str, mode: str = "new") -> dict[str, Any]:
        """A successful handshake."""
        status, answer = self.json("POST", START, handshake(project, run_id, log_id, mode))
        assert status == 200, answer
        result: dict[str, Any] = answer
        return result

    def batch(self, path: str, log_id: str, body: bytes) -> tuple[int, Any]:
        """POST a batch to the run at ``path`` (``entity/project/run``)."""
        status, answer = self.request(
            "POST",
            f"/api/v1/runs/{path}/records?log_id={quote(log_id, safe='')}",
            body,
            "application/x-ndjson",
        )
        return status, orjson.loads(answer) if answer else None

    def xs(self, path: str) -> dict[int, Any]:
        """The run's history as {step: x}."""
        status, body = self.request("GET", f"/api/v1/runs/{path}/history")
        assert status == 200, body
        rows = [decode_value(line) for line in body.splitlines()]
        return {row["_step"]: row.get("x") for row in rows}

    def close(self) -> None:
        """Close the connection."""
        self._connection.close()


def handshake(project: str, run_id: str, log_id: str, mode: str = "new") -> dict[str, Any]:
    """A valid handshake body."""
    return {
        "protocol": 1,
        "entity": None,
        "project": project,
        "run_id": run_id,
        "log_id": log_id,
        "mode": mode,
        "fork_from": None,
        "rewind_to": None,
        "heartbeat_interval": 60.0,
    }


def rows(first_seq: int, count: int, step_of_seq: int = -1, x: Any = None) -> bytes:
    """``count`` row records from ``first_seq``, step ``seq + step_of_seq``, x = step (or
    ``x``)."""
    now = time.time()
    return b"".join(
        encode_record(
            (seq, "row", seq + step_of_seq, now),
            {"x": seq + step_of_seq if x is None else x},
            "test row",
        )
        for seq in range(first_seq, first_seq + count)
    )


def session_start(seq: int = 0) -> bytes:
    """A ``run`` record that starts a session."""
    return encode_record((seq, "run"), {"name": "hostile", "start_time": time.time()}, "run")


# -- a server with a control run that nothing may change ------------------------------------


class Fortress:
    """A server with one control run; `unchanged()` checks nothing touched it and nothing
    failed inside the server."""

    def __init__(self, server: ServerProcess) -> None:
        """Create the control run: config, summary and 100 rows, finished."""
        self.server = server
        self.wire = Wire(server.url)
        run = tracker.init(
            project="control",
            id="control",
            config={"lr": 0.1},
            dir=server.db.parent / "control-runs",
            settings={**FAST_RETRIES, "base_url": server.url},
        )
        for index in range(100):
            run.log({"x": index})
        run.summary["best"] = 1
        run.finish()
        self.snapshot = self._state()
        self.log_seen = 0

    def begin(self) -> None:
        """Start a test: only server output from now on counts for `unchanged`."""
        self.log_seen = len(self.server.log_text())

    def _state(self) -> tuple[bytes, bytes]:
        document = self.wire.request("GET", "/api/v1/runs/local/control/control")
        history = self.wire.request("GET", "/api/v1/runs/local/control/control/history")
        assert document[0] == history[0] == 200
        return document[1], history[1]

    def unchanged(self) -> None:
        """The control run reads back byte for byte as created, the server answers health,
        and it logged no internal error."""
        assert self._state() == self.snapshot
        status, body = self.wire.request("GET", "/api/v1/health")
        assert status == 200, body
        log = self.server.log_text()[self.log_seen :]
        assert "Traceback" not in log, log[-3000:]
        assert "internal error" not in log, log[-3000:]


@pytest.fixture(scope="module")
def _fortress(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fortress]:
    """One server for the module's tests, with its control run."""
    server = ServerProcess(tmp_path_factory.mktemp("hostile")).start()
    try:
        fortress = Fortress(server)
        yield fortress
        fortress.wire.close()
    finally:
        server.stop()
        server.kill()


@pytest.fixture
def fortress(_fortress: Fortress) -> Fortress:
    """The module's server, its log checked from the start of this test on."""
    _fortress.begin()
    return _fortress


def _error(status: int, body: Any) -> None:
    """A 4xx answer in the protocol's error shape."""
    assert 400 <= status < 500, (status, body)
    error = body["error"]
    assert error["status"] == status, body
    assert error["code"], body
    assert error["message"], body


# -- slow clients --------------------------------------------------------------------------


def _slow_connections(url: str, partial_headers: int, partial_bodies: int) -> list[socket.socket]:
    host, port = url.removeprefix("http://").split(":")
    held = []
    for index in range(partial_headers + partial_bodies):
        connection = socket.create_connection((host, int(port)))
        if index < partial_headers:
            connection.sendall(b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        else:
            connection.sendall(
                b"POST /api/v1/runs/start HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b"Content-Type: application/json"
                b"\r\nContent-Length: 100000\r\n\r\n{"
            )
        held.append(connection)
    return held


def _closed_by_server(connections: list[socket.socket]) -> int:
    closed = 0
    for connection in connections:
        connection.setblocking(False)
        try:
            closed += connection.recv(65536) == b""
        except BlockingIOError:
            pass
        except ConnectionError:
            closed += 1
    return closed


@pytest.mark.timeout(60)
def test_slow_clients_holding_connections_do_not_slow_others(
    tmp_path: Path, tracker_server: ServerProcess, figures: Figures
) -> None:
    """While 300 connections hold half-sent headers or bodies, other clients are answered
    at once and a run streams 20,000 rows to the end."""
    held = _slow_connections(tracker_server.url, 200, 100)
    try:
        wire = Wire(tracker_server.url)
        worst = 0.0
        for _ in range(20):
            began = time.monotonic()
            assert wire.request("GET", "/api/v1/health")[0] == 200
            worst = max(worst, time.monotonic() - began)
        wire.close()
        began = time.monotonic()
        run = tracker.init(
            project="p",
            dir=tmp_path / "runs",
            settings={**FAST_RETRIES, "base_url": tracker_server.url},
        )
        for index in range(20_000):
            run.log({"x": index})
        run.finish()
        run_seconds = time.monotonic() - began
        stored = tracker.Api(tracker_server.url).run(run.path).history(keys=["x"])
        figures.rows_logged, figures.rows_stored = 20_000, len(stored)
        figures.extra.update(held_connections=len(held), worst_health_ms=round(worst * 1000, 1))
        figures.extra["run_seconds"] = round(run_seconds, 2)
        figures.extra["closed_by_server"] = _closed_by_server(held)
        assert worst < 1.0
        assert [row["x"] for row in stored] == list(range(20_000))
    finally:
        for connection in held:
            connection.close()


@pytest.mark.timeout(60)
def test_a_client_holding_every_file_descriptor_locks_others_out_only_briefly(
    tracker_server: ServerProcess, figures: Figures
) -> None:
    """A server allowed 256 file descriptors, and one client opening 300 connections that
    never finish a request: the server drops idle and half-sent requests, so another client
    is answered within 10 s."""
    tracker_server.limit_files(256)
    held = _slow_connections(tracker_server.url, 150, 50)
    host, port = tracker_server.url.removeprefix("http://").split(":")
    held += [socket.create_connection((host, int(port))) for _ in range(100)]  # idle
    try:
        began = time.monotonic()
        answered = None
        while answered is None and time.monotonic() - began < 10:
            probe = http.client.HTTPConnection(host, int(port), timeout=1)
            try:
                probe.request("GET", "/api/v1/health")
                answered = probe.getresponse().status
            except (OSError, http.client.HTTPException):
                time.sleep(0.2)
            finally:
                probe.close()
        figures.extra["held_connections"] = len(held)
        figures.extra["locked_out_seconds"] = round(time.monotonic() - began, 1)
        figures.extra["closed_by_server"] = _closed_by_server(held)
        assert answered == 200, "the server answered nobody for 10 s"
    finally:
        for connection in held:
            connection.close()


# -- sequence numbers and log ids ------------------------------------------------------------


def _peak_rss_mb(pid: int) -> float:
    """The process's peak resident set (VmHWM), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


@pytest.mark.timeout(90)
def test_a_client_flooding_its_websocket_keeps_server_memory_flat(
    tmp_path: Path, figures: Figures
) -> None:
    """A client that sends 128 MB of batches as fast as the socket takes them, never
    waiting for an ack: the server reads only as fast as it stores (two batches in flight,
    64 MiB over all connections), its memory stays flat, and every batch is stored once."""
    server = ServerProcess(tmp_path / "server").start()
    wire = Wire(server.url)
    batches, per_batch = 64, 500  # 64 batches of 500 rows of 4 KB: 2 MB each
    payload = "x" * 4000

    async def flood() -> list[int]:
        log_id = uuid.uuid4().hex
        wire.start("flood", "flood", log_id)
        acks: list[int] = []
        url = f"{server.url}/api/v1/runs/local/flood/flood/stream?log_id={log_id}"
        async with (
            aiohttp.ClientSession(headers=CLIENT_HEADERS) as session,
            session.ws_connect(url, max_msg_size=0) as socket_,
        ):
            for batch in range(batches):
                first = batch * per_batch
                await socket_.send_bytes(
                    b"".join(
                        encode_record((seq, "row", seq, 1.0), {"x": seq, "p": payload}, "row")
                        for seq in range(first, first + per_batch)
                    )
                )
            while len(acks) < batches:
                message = await asyncio.wait_for(socket_.receive(), 60)
                acks.append(int(orjson.loads(message.data)["seq"]))
        return acks

    try:
        assert server.process is not None
        before = _peak_rss_mb(server.process.pid)
        began = time.monotonic()
        acks = asyncio.run(flood())
        figures.seconds = time.monotonic() - began
        growth = _peak_rss_mb(server.process.pid) - before
        stored = wire.xs("local/flood/flood")
        figures.rows_logged = batches * per_batch
        figures.rows_stored = len(stored)
        figures.lost = figures.rows_logged - len(stored)
        figures.rss_growth_mb = growth
        figures.extra["sent_mb"] = round(batches * per_batch * 4.05 / 1000)
        assert acks[-1] == batches * per_batch - 1
        assert sorted(stored) == list(range(batches * per_batch))
        assert growth < 100, f"the server's peak RSS grew {growth:.0f} MB"
    finally:
        wire.close()
        server.stop()


def test_resent_records_with_other_content_change_nothing(fortress: Fortress) -> None:
    """Records resent with other values are skipped, a batch that straddles the stored seq
    stores only its new records, and sequence numbers far ahead are refused (409 with the
    stored seq, or 400 beyond 64 bits): the stored history stays as first sent."""
    wire, log_id = fortress.wire, uuid.uuid4().hex
    path = "local/seqs/run"
    wire.start("seqs", "run", log_id)
    assert wire.batch(path, log_id, session_start() + rows(1, 10)) == (200, {"acked_seq": 10})
    first = wire.xs(path)
    assert first == {step: step for step in range(10)}
    assert wire.batch(path, log_id, rows(3, 4, x=-1)) == (200, {"acked_seq": 10})
    assert wire.batch(path, log_id, rows(5, 11, x=-1)) == (200, {"acked_seq": 15})
    assert wire.xs(path) == {**first, **dict.fromkeys(range(10, 15), -1)}
    for seq in (17, 2**62, 2**63 - 1):
        status, answer = wire.batch(path, log_id, rows(seq, 1))
        _error(status, answer)
        assert (status, answer["error"]["code"], answer["error"]["acked_seq"]) == (
            409,
            "seq_gap",
            15,
        )
    for seq in (2**63, 2**64 - 1):
        status, answer = wire.batch(path, log_id, b'[%d,"row",0,1.0,{"x":0}]\n' % seq)
        _error(status, answer)
        assert answer["error"]["code"] == "bad_batch"
    assert wire.xs(path) == {**first, **dict.fromkeys(range(10, 15), -1)}
    fortress.unchanged()


def test_resends_and_jumps_over_a_websocket_change_nothing(fortress: Fortress) -> None:
    """Over a websocket too: resent records with other values are acked and skipped; a jump
    ahead gets a seq_gap error with the stored seq and a close."""
    wire, log_id = fortress.wire, uuid.uuid4().hex
    path = "local/seqs/ws"
    wire.start("seqs", "ws", log_id)
    messages = [session_start() + rows(1, 5), rows(0 + 1, 3, x=-1), rows(6, 2), rows(40, 1)]
    received = asyncio.run(_websocket(fortress.server.url, path, log_id, messages))
    assert received[:3] == [
        {"type": "ack", "seq": 5},
        {"type": "ack", "seq": 5},
        {"type": "ack", "seq": 7},
    ]
    assert (received[3]["type"], received[3]["code"], received[3]["acked_seq"]) == (
        "error",
        "seq_gap",
        7,
    )
    assert wire.xs(path) == {step: step for step in range(7)}
    fortress.unchanged()


async def _websocket(
    url: str, path: str, log_id: str, messages: Sequence[bytes | str]
) -> list[Any]:
    """Send ``messages`` (bytes: binary, str: text) one by one, each answered by one message
    or a close; the decoded answers."""
    received: list[Any] = []
    async with (
        aiohttp.ClientSession(headers=CLIENT_HEADERS) as session,
        session.ws_connect(
            f"{url}/api/v1/runs/{path}/stream", params={"log_id": log_id}
        ) as socket_,
    ):
        for message in messages:
            if isinstance(message, bytes):
                await socket_.send_bytes(message)
            else:
                await socket_.send_str(message)
            answer = await socket_.receive(timeout=5)
            if answer.type is not aiohttp.WSMsgType.TEXT:
                break
            received.append(orjson.loads(answer.data))
    return received


def test_a_batch_sent_to_another_run_leaves_the_first_run_alone(fortress: Fortress) -> None:
    """Records of run A's log sent to run B are B's (a separate stream): A's history and its
    stored seq do not change; a run never started, or of another project, is 404."""
    wire, log_a, log_b = fortress.wire, uuid.uuid4().hex, uuid.uuid4().hex
    wire.start("pair", "a", log_a)
    wire.start("pair", "b", log_b)
    assert wire.batch("local/pair/a", log_a, session_start() + rows(1, 5)) == (
        200,
        {"acked_seq": 5},
    )
    status, answer = wire.batch("local/pair/b", log_a, session_start() + rows(1, 8, x=-1))
    assert (status, answer) == (200, {"acked_seq": 8})
    assert wire.xs("local/pair/a") == {step: step for step in range(5)}
    assert wire.batch("local/pair/a", log_a, rows(6, 1)) == (200, {"acked_seq": 6})
    for target in ("local/pair/never-started", "local/other/a"):
        status, answer = wire.batch(target, log_a, session_start() + rows(1, 1))
        _error(status, answer)
        assert answer["error"]["code"] == "run_not_found"
    assert wire.xs("local/pair/a") == {step: step for step in range(6)}
    fortress.unchanged()


@pytest.mark.parametrize(
    "line",
    [
        b'[0,"row",0,1.0,' + b'{"a":' * 3000 + b"1" + b"}" * 3000 + b"]",
        b'[0,"config",' + b"[" * 3000 + b"]" * 3000 + b"]",
        b'[0,"run",{"name":"' + b"\\ud800" + b'"}]',
        b'[0,"exit",{"state":["finished"]}]',
        b'[0,"exit",{"state":{"a":1},"exit_code":0}]',
    ],
    ids=["deep-row", "deep-config", "lone-surrogate", "exit-state-list", "exit-state-dict"],
)
def test_malformed_records_of_known_kinds_are_refused(fortress: Fortress, line: bytes) -> None:
    """Records nested thousands deep, holding a lone surrogate, or an exit record whose
    state is no str (found by the batch fuzzer below) are a 400, and nothing is stored."""
    wire, log_id = fortress.wire, uuid.uuid4().hex
    run_id = uuid.uuid4().hex[:8]
    wire.start("malformed", run_id, log_id)
    status, answer = wire.batch(f"local/malformed/{run_id}", log_id, line + b"\n")
    _error(status, answer)
    status, document = wire.request("GET", f"/api/v1/runs/local/malformed/{run_id}")
    assert decode_value(document)["state"] == "running"
    assert wire.xs(f"local/malformed/{run_id}") == {}
    fortress.unchanged()


# -- hypothesis --------------------------------------------------------------------------------

TEXT = st.text(st.characters(codec="utf-8"), max_size=24)
NAMES = st.one_of(
    TEXT,
    st.sampled_from(["..", ".", "a/b", "a\\b", " a", "a%2Fb", "x" * 129, "a'b", "a;b", "\x00"]),
).map(lambda name: "fz" + name)
JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False)
    | TEXT,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(TEXT, children, max_size=4),
    max_leaves=10,
)
HANDSHAKE_FIELDS = {
    "protocol": st.just(1) | JSON,
    "entity": st.none() | NAMES | JSON,
    "project": NAMES | JSON,
    "run_id": NAMES | JSON,
    "log_id": st.just(uuid.uuid4().hex) | TEXT | JSON,
    "mode": st.sampled_from(["new", "allow", "never", "must", "continue", "fork", "rewind"]) | JSON,
    "fork_from": st.none()
    | st.fixed_dictionaries({"run_id": NAMES, "step": st.integers(-3, 2**64 - 1)})
    | JSON,
    "rewind_to": st.none() | st.integers(-3, 2**64 - 1) | JSON,
    "heartbeat_interval": st.none() | st.floats(allow_nan=False) | JSON,
}
KINDS = st.sampled_from(
    [
        "row",
        "run",
        "config",
        "summary",
        "summary_delete",
        "metric",
        "file",
        "exit",
        "system",
        "unknown",
    ]
)
RECORD = st.builds(
    lambda seq, kind, rest: orjson.dumps([seq, kind, *rest]),
    st.integers(-2, 12) | st.sampled_from([2**63 - 1, 2**63]) | JSON,
    KINDS | JSON,
    st.lists(JSON, max_size=4),
)
ROW = st.builds(
    lambda seq, step, stamp, data: orjson.dumps([seq, "row", step, stamp, data]),
    st.integers(0, 12),
    st.integers(-2, 2**64 - 1) | JSON,
    st.floats() | JSON,
    st.dictionaries(TEXT, JSON, max_size=3) | JSON,
)
LINE = RECORD | ROW | st.binary(max_size=40).map(lambda raw: raw.replace(b"\n", b" "))
BATCH = st.lists(LINE, max_size=6).map(lambda lines: b"\n".join(lines) + b"\n")


def _maybe(good: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly a well-typed value, sometimes any JSON."""
    return st.one_of(good, good, good, JSON)


NUMBER = st.floats() | st.integers(-(2**63), 2**63 - 1)
PAYLOADS = st.one_of(
    st.tuples(
        st.just("row"),
        _maybe(st.integers(0, 60) | st.just(2**63 - 1)),
        _maybe(st.floats(0, 2e9)),
        _maybe(st.dictionaries(TEXT, JSON, max_size=3)),
    ),
    st.tuples(
        st.just("run"),
        _maybe(
            st.fixed_dictionaries(
                {},
                optional={
                    "name": _maybe(TEXT),
                    "start_time": _maybe(NUMBER),
                    "tags": _maybe(st.lists(TEXT, max_size=3)),
                    "notes": _maybe(TEXT | st.none()),
                    "group": _maybe(TEXT | st.none()),
                    "runtime_offset": _maybe(NUMBER),
                },
            )
        ),
    ),
    st.tuples(st.sampled_from(["config", "summary"]), _maybe(st.dictionaries(TEXT, JSON))),
    st.tuples(st.just("summary_delete"), _maybe(st.lists(TEXT, max_size=3))),
    st.tuples(
        st.just("metric"),
        _maybe(
            st.fixed_dictionaries(
                {"name": _maybe(TEXT | st.just("x*"))},
                optional={
                    "summary": _maybe(st.lists(st.sampled_from(["min", "max", "mean", "x"]))),
                    "step_metric": _maybe(TEXT | st.none()),
                    "goal": _maybe(st.sampled_from(["minimize", "maximize", "up"]) | st.none()),
                    "hidden": _maybe(st.booleans()),
                },
            )
        ),
    ),
    st.tuples(
        st.just("exit"),
        _maybe(
            st.fixed_dictionaries(
                {},
                optional={
                    "state": _maybe(st.sampled_from(["finished", "failed", "crashed", "odd"])),
                    "exit_code": _maybe(st.integers(-(2**63), 2**63 - 1) | st.none()),
                    "end_time": _maybe(NUMBER),
                    "runtime": _maybe(NUMBER),
                    "rows": _maybe(st.integers(0, 100)),
                },
            )
        ),
    ),
    st.tuples(
        st.just("file"),
        _maybe(
            st.fixed_dictionaries(
                {"name": _maybe(TEXT)},
                optional={"size": _maybe(st.integers(0, 10)), "sha256": _maybe(TEXT)},
            )
        ),
    ),
)
SEQUENCED = st.lists(PAYLOADS, min_size=1, max_size=6).map(
    lambda records: b"".join(
        orjson.dumps([seq, *record], option=orjson.OPT_APPEND_NEWLINE)
        for seq, record in enumerate(records)
    )
)
"""Batches of contiguous records from seq 0, well-formed or nearly: they reach the fold."""


@pytest.mark.timeout(120)
def test_random_handshakes_get_answers_not_failures(fortress: Fortress) -> None:
    """Hypothesis-made handshake bodies (valid fields mixed with wrong types, bad names,
    random JSON and bytes) are answered 200 or a 4xx in the error shape."""
    wire = fortress.wire

    valid = handshake("fz-start", "run", uuid.uuid4().hex, "allow")
    nearly_valid = st.fixed_dictionaries({}, optional=HANDSHAKE_FIELDS).map(
        lambda fields: {**valid, **fields}
    )

    @FUZZ
    @given(
        nearly_valid
        | st.fixed_dictionaries({}, optional=HANDSHAKE_FIELDS)
        | JSON
        | st.binary(max_size=64)
    )
    def check(body: Any) -> None:
        data = body if isinstance(body, bytes) else orjson.dumps(body)
        status, answer = wire.request("POST", START, data)
        if status != 200:
            _error(status, orjson.loads(answer))

    check()
    fortress.unchanged()


@pytest.mark.timeout(120)
def test_random_batches_get_answers_not_failures(fortress: Fortress) -> None:
    """Hypothesis-made batches (records of every kind, well-formed or with wrong fields, seq
    numbers out of range, random bytes), under good and bad log ids, are answered 200, 400,
    409 or 413; the run they were sent to still reads back."""
    wire, log_id = fortress.wire, uuid.uuid4().hex
    wire.start("fz-batches", "run", log_id)

    fresh_log = st.uuids().map(lambda value: value.hex)

    @settings(FUZZ, max_examples=300)
    @given(SEQUENCED | BATCH, st.just(log_id) | fresh_log | fresh_log | TEXT)
    def check(batch: bytes, log: str) -> None:
        status, answer = wire.batch("local/fz-batches/run", log, batch)
        assert status in (200, 400, 409, 413), (status, answer)
        if status != 200:
            _error(status, answer)

    check()
    for endpoint in ("", "/history", "/files"):
        status, body = wire.request("GET", f"/api/v1/runs/local/fz-batches/run{endpoint}")
        assert status == 200, body
    fortress.unchanged()


@pytest.mark.timeout(120)
def test_random_websocket_messages_get_answers_not_failures(fortress: Fortress) -> None:
    """Hypothesis-made websocket messages (batches as binary, JSON and text as text) get an
    ack or a 4xx error message, never a server failure."""
    wire, log_id = fortress.wire, uuid.uuid4().hex
    wire.start("fz-socket", "run", log_id)
    message = SEQUENCED | BATCH | JSON.map(lambda value: orjson.dumps(value).decode()) | TEXT

    @settings(FUZZ, max_examples=40)
    @given(st.lists(message, min_size=1, max_size=3))
    def check(messages: list[bytes | str]) -> None:
        answers = asyncio.run(
            _websocket(fortress.server.url, "local/fz-socket/run", log_id, messages)
        )
        for answer in answers:
            assert answer["type"] in ("ack", "error"), answer
            if answer["type"] == "error":
                assert 400 <= answer["status"] < 500, answer

    check()
    fortress.unchanged()


@pytest.mark.timeout(120)
def test_random_queries_and_edits_get_answers_not_failures(fortress: Fortress) -> None:
    """Hypothesis-made paths, query parameters and PATCH bodies on the read and edit
    endpoints are answered 200, 204 or a 4xx in the error shape."""
    wire, log_id = fortress.wire, uuid.uuid4().hex
    wire.start("fz-read", "run", log_id)
    wire.batch("local/fz-read/run", log_id, session_start() + rows(1, 20))
    quoted = (NAMES | TEXT).map(lambda text: quote(text, safe=""))
    query = st.dictionaries(
        st.sampled_from(
            [
                "keys",
                "min_step",
                "max_step",
                "samples",
                "filters",
                "order",
                "limit",
                "offset",
                "entity",
            ]
        ),
        TEXT | JSON.map(lambda value: orjson.dumps(value).decode()),
        max_size=4,
    )
    target = st.sampled_from(
        [
            "/api/v1/runs/local/fz-read/run/history",
            "/api/v1/runs/local/fz-read",
            "/api/v1/projects",
            "/api/v1/runs/local/fz-read/run/files",
        ]
    ) | st.builds(lambda e, p, r: f"/api/v1/runs/{e}/{p}/{r}", quoted, quoted, quoted)

    @FUZZ
    @given(target, query, JSON | st.binary(max_size=40))
    def check(path: str, parameters: dict[str, str], body: Any) -> None:
        status, answer = wire.request(
            "GET", f"{path}?{urlencode(parameters)}" if parameters else path
        )
        if status != 200:
            _error(status, orjson.loads(answer))
        data = body if isinstance(body, bytes) else orjson.dumps(body)
        status, answer = wire.request("PATCH", "/api/v1/runs/local/fz-read/run", data)
        if status != 200:
            _error(status, orjson.loads(answer))

    check()
    fortress.unchanged()

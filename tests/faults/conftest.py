"""Shared machinery of the fault tests: a real `tracker server` subprocess that can be killed,
frozen and restarted, proxies that break connections or answer errors, a logging thread
that times every call, and the figures every test prints.

Everything listens on 127.0.0.1 only, and every fixture stops what it started.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import orjson
import pytest
from aiohttp import web
from server_process import ROOT, ServerProcess, child_env, free_port
from yarl import URL

import tracker

__all__ = ["ROOT", "ServerProcess", "child_env", "free_port"]  # shared with tests/test_online.py

T = TypeVar("T")

FAST_RETRIES: dict[str, Any] = {
    "silent": True,
    "init_timeout": 15.0,
    "finish_timeout": 60.0,
    "retry_initial_wait_seconds": 0.02,
    "retry_max_wait_seconds": 0.25,
}
"""Client settings for fault tests: reconnect within a fraction of a second."""


# -- environment -----------------------------------------------------------------------


@pytest.fixture
def tracker_server(tmp_path: Path) -> Iterator[ServerProcess]:
    """A started `tracker server` subprocess with its own SQLite file; stopped afterwards."""
    server = ServerProcess(tmp_path / "server").start()
    try:
        yield server
    finally:
        server.stop()
        server.kill()


# -- an event loop in a thread, for the proxies ------------------------------------------


class _LoopThread:
    """An asyncio loop running in a daemon thread; coroutines are handed to it."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self._thread.start()

    def call(self, coroutine: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        """Run ``coroutine`` on the loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def close(self) -> None:
        """Cancel every task, stop the loop and join the thread."""
        self.call(_cancel_all())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


async def _cancel_all() -> None:
    current = asyncio.current_task()
    tasks = [task for task in asyncio.all_tasks() if task is not current]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


# -- a TCP proxy that cuts connections ---------------------------------------------------


class ChaosProxy:
    """A TCP proxy on loopback between a client and a server that, while ``cutting``, resets
    each connection after a random number of bytes in one direction: client to server (cuts
    requests and websocket frames mid-way) or server to client (cuts answers and acks)."""

    def __init__(
        self,
        upstream_port: int,
        seed: int,
        up_budget: tuple[int, int] = (1, 300_000),
        down_budget: tuple[int, int] = (1, 700),
    ) -> None:
        """Listen on a free port and forward to ``upstream_port``; nothing is cut yet."""
        self.upstream_port = upstream_port
        self.random = random.Random(seed)
        self.up_budget = up_budget
        self.down_budget = down_budget
        self.cutting = False
        self.max_cuts = 0
        self.connections = 0
        self.refused = 0
        self.cuts = {"up": 0, "down": 0}
        self._thread = _LoopThread("chaos-proxy")
        self._flowing: asyncio.Event | None = None
        self.port = self._thread.call(self._listen())
        self.url = f"http://127.0.0.1:{self.port}"

    async def _listen(self) -> int:
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def total_cuts(self) -> int:
        """Connections cut so far."""
        return self.cuts["up"] + self.cuts["down"]

    def cut(self, count: int) -> None:
        """Cut the next ``count`` connections at random points, then pass traffic through."""
        self.max_cuts = self.total_cuts + count
        self.cutting = True

    def pause(self) -> None:
        """Hold every byte in both directions (connections stay open) until `resume`."""
        assert self._flowing is not None
        self._thread.loop.call_soon_threadsafe(self._flowing.clear)

    def resume(self) -> None:
        """Let held bytes flow again."""
        assert self._flowing is not None
        self._thread.loop.call_soon_threadsafe(self._flowing.set)

    def close(self) -> None:
        """Stop listening, drop every connection, stop the thread."""
        self._server.close()
        self._thread.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            self.refused += 1
            writer.transport.abort()
            return
        link = _Link()
        pumps = [
            asyncio.ensure_future(self._pump(reader, up_writer, "up", link)),
            asyncio.ensure_future(self._pump(up_reader, writer, "down", link)),
        ]
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in pumps:
                task.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
        for side in (writer, up_writer):
            if link.cut:
                side.transport.abort()  # a reset, as when a cable or a NAT drops the flow
            else:
                side.close()

    def _plan(self, link: _Link) -> None:
        """Give a connection its cut (direction and byte budget) once cutting is on."""
        if link.direction or not self.cutting:
            return
        if self.random.random() < 0.6:
            link.direction, link.budget = "up", self.random.randint(*self.up_budget)
        else:
            link.direction, link.budget = "down", self.random.randint(*self.down_budget)

    async def _pump(
        self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, direction: str, link: _Link
    ) -> None:
        """Copy bytes until EOF, or until the connection's planned cut."""
        assert self._flowing is not None
        try:
            while not link.cut:
                data = await source.read(65536)
                await self._flowing.wait()
                if not data:
                    return
                self._plan(link)
                if link.direction == direction:
                    if len(data) >= link.budget and self._may_cut():
                        sink.write(data[: link.budget])
                        await sink.drain()
                        await _flushed(sink)
                        link.cut = True
                        self.cuts[direction] += 1
                        if self.total_cuts >= self.max_cuts:
                            self.cutting = False
                        return
                    link.budget -= len(data)
                sink.write(data)
                await sink.drain()
        except (ConnectionError, OSError):
            return

    def _may_cut(self) -> bool:
        return self.cutting and self.total_cuts < self.max_cuts


@dataclass
class _Link:
    """One proxied connection's cut: the direction, the bytes left before it, and whether
    it happened."""

    direction: str = ""
    budget: int = 0
    cut: bool = False


async def _flushed(writer: asyncio.StreamWriter) -> None:
    """Wait (briefly) until the transport has handed every buffered byte to the kernel."""
    for _ in range(100):
        if writer.transport.get_write_buffer_size() == 0:
            return
        await asyncio.sleep(0.001)


@pytest.fixture
def chaos_proxy() -> Iterator[Callable[..., ChaosProxy]]:
    """A factory of ChaosProxy instances; each is closed after the test."""
    proxies: list[ChaosProxy] = []

    def make(upstream_port: int, seed: int, **budgets: Any) -> ChaosProxy:
        proxy = ChaosProxy(upstream_port, seed, **budgets)
        proxies.append(proxy)
        return proxy

    yield make
    for proxy in proxies:
        proxy.close()


class ShortLinkProxy:
    """A TCP proxy on loopback whose every connection dies young: it is reset once it has
    carried a random number of bytes (both directions together) or lived a random time,
    as on a flaky mobile link or behind a NAT that drops flows. Counts what it forwarded."""

    def __init__(
        self,
        upstream_port: int,
        seed: int,
        byte_budget: tuple[int, int] = (20_000, 400_000),
        lifetime: tuple[float, float] = (0.2, 1.5),
    ) -> None:
        """Listen on a free port and forward to ``upstream_port``."""
        self.upstream_port = upstream_port
        self.random = random.Random(seed)
        self.byte_budget = byte_budget
        self.lifetime = lifetime
        self.connections = 0
        self.bytes_up = 0
        """Bytes forwarded from the client to the server."""
        self._thread = _LoopThread("short-link-proxy")
        self.port = self._thread.call(self._listen())
        self.url = f"http://127.0.0.1:{self.port}"

    async def _listen(self) -> int:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    def close(self) -> None:
        """Stop listening, drop every connection, stop the thread."""
        self._server.close()
        self._thread.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.transport.abort()
            return
        budget = [self.random.randint(*self.byte_budget)]
        pumps = [
            asyncio.ensure_future(self._pump(reader, up_writer, budget, up=True)),
            asyncio.ensure_future(self._pump(up_reader, writer, budget, up=False)),
        ]
        try:
            await asyncio.wait(
                pumps,
                timeout=self.random.uniform(*self.lifetime),
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            for task in pumps:
                task.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
            writer.transport.abort()
            up_writer.transport.abort()

    async def _pump(
        self,
        source: asyncio.StreamReader,
        sink: asyncio.StreamWriter,
        budget: list[int],
        *,
        up: bool,
    ) -> None:
        """Copy bytes until EOF or until the connection's byte budget is spent."""
        try:
            while True:
                data = await source.read(65536)
                if not data:
                    return
                data = data[: budget[0]]
                budget[0] -= len(data)
                if up:
                    self.bytes_up += len(data)
                sink.write(data)
                await sink.drain()
                if budget[0] <= 0:
                    await _flushed(sink)
                    return
        except (ConnectionError, OSError):
            return


@pytest.fixture
def short_link_proxy() -> Iterator[Callable[..., ShortLinkProxy]]:
    """A factory of ShortLinkProxy instances; each is closed after the test."""
    proxies: list[ShortLinkProxy] = []

    def make(upstream_port: int, seed: int) -> ShortLinkProxy:
        proxy = ShortLinkProxy(upstream_port, seed)
        proxies.append(proxy)
        return proxy

    yield make
    for proxy in proxies:
        proxy.close()


# -- an HTTP proxy that answers errors ---------------------------------------------------


@dataclass(frozen=True)
class Fault:
    """One error answer: ``status`` with ``Retry-After`` (seconds; None: no header).
    ``after_forward``: the server gets and handles the request first, then the client gets
    the error instead of the server's answer (stored, but the client does not know).
    ``path_end``: only a request whose path ends so gets this fault; others pass until one
    does."""

    status: int
    retry_after: int | None = 1
    after_forward: bool = False
    path_end: str = ""


@dataclass(frozen=True)
class Exchange:
    """One request the proxy saw: when it arrived and was answered, and how."""

    arrived: float
    answered: float
    method: str
    path: str
    status: int
    fault: Fault | None


class FaultyHttpProxy:
    """An HTTP and websocket reverse proxy (aiohttp, in a thread) that answers the next
    requests with queued faults (500/503/429 with Retry-After), then forwards again."""

    def __init__(self, upstream_url: str) -> None:
        """Listen on a free loopback port and forward to ``upstream_url``."""
        self.upstream = upstream_url.rstrip("/")
        self.exchanges: list[Exchange] = []
        self._faults: deque[Fault] = deque()
        self._sockets: set[web.WebSocketResponse] = set()
        self._lock = threading.Lock()
        self._thread = _LoopThread("faulty-http-proxy")
        self.port = self._thread.call(self._start())
        self.url = f"http://127.0.0.1:{self.port}"

    async def _start(self) -> int:
        self._session = aiohttp.ClientSession()
        app = web.Application(client_max_size=64 * 2**20)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        return int(self._runner.addresses[0][1])

    def add_faults(self, *faults: Fault) -> None:
        """Answer the next ``len(faults)`` requests with these faults, in order."""
        with self._lock:
            self._faults.extend(faults)

    @property
    def faults_left(self) -> int:
        """Queued faults not yet answered."""
        with self._lock:
            return len(self._faults)

    def gaps_after_faults(self) -> list[tuple[Exchange, float]]:
        """Each answered fault with a Retry-After, and the seconds until the next request."""
        with self._lock:
            exchanges = sorted(self.exchanges, key=lambda exchange: exchange.arrived)
        gaps = []
        for index, exchange in enumerate(exchanges[:-1]):
            if exchange.fault is not None and exchange.fault.retry_after is not None:
                gaps.append((exchange, exchanges[index + 1].arrived - exchange.answered))
        return gaps

    def drop_websockets(self) -> None:
        """Close every relayed websocket (code 1012, service restart), so clients reconnect."""
        self._thread.call(self._drop())

    async def _drop(self) -> None:
        await asyncio.gather(
            *(socket.close(code=aiohttp.WSCloseCode.SERVICE_RESTART) for socket in self._sockets),
            return_exceptions=True,
        )

    def close(self) -> None:
        """Stop serving and close the upstream session."""
        self._thread.call(self._stop())
        self._thread.close()

    async def _stop(self) -> None:
        await self._runner.cleanup()
        await self._session.close()

    def _next_fault(self, request: web.Request) -> Fault | None:
        with self._lock:
            if self._faults and request.path.endswith(self._faults[0].path_end):
                return self._faults.popleft()
            return None

    def _record(
        self, arrived: float, request: web.Request, status: int, fault: Fault | None
    ) -> None:
        with self._lock:
            self.exchanges.append(
                Exchange(arrived, time.monotonic(), request.method, request.path, status, fault)
            )

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        arrived = time.monotonic()
        fault = self._next_fault(request)
        if fault is not None and not fault.after_forward:
            await request.read()
            self._record(arrived, request, fault.status, fault)
            return _fault_response(fault)
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return await self._relay_websocket(request, arrived, fault)
        target = URL(self.upstream + request.raw_path, encoded=True)
        headers = {
            name: value
            for name, value in request.headers.items()
            if name.lower() in ("content-type", "authorization", "x-tracker-client")
        }
        try:
            # a BytesIO body: aiohttp warns about bytes bodies over 1 MiB (batches reach 16)
            async with self._session.request(
                request.method, target, data=io.BytesIO(await request.read()), headers=headers
            ) as answer:
                body = await answer.read()
                status = answer.status
                kept = {
                    name: value
                    for name, value in answer.headers.items()
                    if name.lower() in ("content-type", "retry-after")
                }
        except aiohttp.ClientError as exc:
            status, body, kept = 502, str(exc).encode(), {}
        if fault is not None:
            self._record(arrived, request, fault.status, fault)
            return _fault_response(fault)
        self._record(arrived, request, status, None)
        return web.Response(status=status, body=body, headers=kept)

    async def _relay_websocket(
        self, request: web.Request, arrived: float, fault: Fault | None
    ) -> web.StreamResponse:
        target = URL(self.upstream + request.raw_path, encoded=True)
        try:
            upstream = await self._session.ws_connect(
                target, max_msg_size=0, compress=0, headers=_client_headers(request)
            )
        except aiohttp.WSServerHandshakeError as exc:
            self._record(arrived, request, exc.status, None)
            return web.Response(status=exc.status, text=exc.message)
        if fault is not None:  # the upgrade reached the server; refuse it to the client
            await upstream.close()
            self._record(arrived, request, fault.status, fault)
            return _fault_response(fault)
        downstream = web.WebSocketResponse(max_msg_size=0, compress=False)
        await downstream.prepare(request)
        self._record(arrived, request, 101, None)
        self._sockets.add(downstream)
        relays = [
            asyncio.ensure_future(_relay(upstream, downstream)),
            asyncio.ensure_future(_relay(downstream, upstream)),
        ]
        try:
            await asyncio.wait(relays, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in relays:
                task.cancel()
            await asyncio.gather(*relays, return_exceptions=True)
            self._sockets.discard(downstream)
            await upstream.close()
            await downstream.close()
        return downstream


def _client_headers(request: web.Request) -> dict[str, str]:
    """The client's X-Tracker-Client header, for the relayed upgrade (the server wants it)."""
    return {
        name: value for name, value in request.headers.items() if name.lower() == "x-tracker-client"
    }


async def _relay(
    source: aiohttp.ClientWebSocketResponse[bool] | web.WebSocketResponse[bool],
    sink: aiohttp.ClientWebSocketResponse[bool] | web.WebSocketResponse[bool],
) -> None:
    async for message in source:
        if message.type is aiohttp.WSMsgType.BINARY:
            await sink.send_bytes(message.data)
        elif message.type is aiohttp.WSMsgType.TEXT:
            await sink.send_str(message.data)


def _fault_response(fault: Fault) -> web.Response:
    headers = {} if fault.retry_after is None else {"Retry-After": str(fault.retry_after)}
    body = {
        "error": {
            "status": fault.status,
            "code": "injected",
            "message": f"injected fault {fault.status}; retry later",
        }
    }
    return web.Response(
        status=fault.status,
        body=orjson.dumps(body),
        content_type="application/json",
        headers=headers,
    )


@pytest.fixture
def http_proxy() -> Iterator[Callable[[str], FaultyHttpProxy]]:
    """A factory of FaultyHttpProxy instances; each is closed after the test."""
    proxies: list[FaultyHttpProxy] = []

    def make(upstream_url: str) -> FaultyHttpProxy:
        proxy = FaultyHttpProxy(upstream_url)
        proxies.append(proxy)
        return proxy

    yield make
    for proxy in proxies:
        proxy.close()


# -- the client side: a logging thread, memory ---------------------------------------------


class Streamer:
    """Logs rows ``{"x": 0}, {"x": 1}, ...`` to a run from a thread, in bursts, timing every
    call, and watches ``status().connection`` to count reconnects."""

    def __init__(
        self,
        run: tracker.Run,
        *,
        burst: int = 100,
        pause: float = 0.001,
        limit: int | None = None,
        pad: str = "",
    ) -> None:
        """Prepare to log up to ``limit`` rows, ``burst`` at a time with ``pause`` between."""
        self.run = run
        self.burst = burst
        self.pause = pause
        self.limit = limit
        self.pad = pad
        self.logged = 0
        self.worst_call = 0.0
        self.reconnects = 0
        self.max_queued = 0
        self.states: list[str] = []
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="streamer", daemon=True)

    def start(self) -> Streamer:
        """Start logging."""
        self._thread.start()
        return self

    def stop(self) -> Streamer:
        """Stop logging (or wait until ``limit`` rows are logged) and re-raise any error."""
        if self.limit is None:
            self._stop.set()
        self._thread.join(120)
        assert not self._thread.is_alive(), "the logging thread is stuck"
        if self._error is not None:
            raise self._error
        return self

    def _main(self) -> None:
        try:
            self._log_rows()
        except BaseException as exc:
            self._error = exc

    def _log_rows(self) -> None:
        log, clock, pad = self.run.log, time.perf_counter, self.pad
        index, worst, seen_connected, last = 0, 0.0, False, ""
        while not self._stop.is_set() and (self.limit is None or index < self.limit):
            end = index + self.burst if self.limit is None else min(index + self.burst, self.limit)
            while index < end:
                row = {"x": index, "pad": pad} if pad else {"x": index}
                began = clock()
                log(row)
                took = clock() - began
                if took > worst:
                    worst = took
                index += 1
            self.logged = index
            self.worst_call = worst
            status = self.run.status()
            self.max_queued = max(self.max_queued, status.queued)
            state = status.connection
            if state != last:
                self.states.append(state)
                if state == "connected" and seen_connected:
                    self.reconnects += 1
                seen_connected = seen_connected or state == "connected"
                last = state
            if self.pause:
                time.sleep(self.pause)


class RssWatch:
    """The growth of this process's peak resident memory since the watch began."""

    def __init__(self) -> None:
        """Reset the kernel's peak-RSS mark (when allowed) and note the current RSS."""
        with contextlib.suppress(OSError):
            Path("/proc/self/clear_refs").write_text("5")
        self.base_kb = _status_kb("VmRSS")

    def growth_mb(self) -> float:
        """Peak RSS now minus RSS at the start, in MiB."""
        return (_status_kb("VmHWM") - self.base_kb) / 1024


def _status_kb(field_name: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1])
    raise AssertionError(f"/proc/self/status has no {field_name}")


# -- figures ---------------------------------------------------------------------------


@dataclass
class Figures:
    """What one fault test measured; printed by the test and listed at the end of the run."""

    scenario: str
    rows_logged: int = 0
    rows_stored: int = 0
    duplicates: int = 0
    lost: int = 0
    reconnects: int = 0
    rss_growth_mb: float | None = None
    worst_log_ms: float | None = None
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def line(self) -> str:
        """One line: the scenario and every figure."""
        parts = [
            f"rows_logged={self.rows_logged}",
            f"rows_stored={self.rows_stored}",
            f"lost={self.lost}",
            f"duplicates={self.duplicates}",
            f"reconnects={self.reconnects}",
        ]
        if self.rss_growth_mb is not None:
            parts.append(f"rss_growth_mb={self.rss_growth_mb:.1f}")
        if self.worst_log_ms is not None:
            parts.append(f"worst_log_ms={self.worst_log_ms:.2f}")
        parts.append(f"seconds={self.seconds:.1f}")
        parts += [f"{key}={value}" for key, value in self.extra.items()]
        return f"{self.scenario}: " + " ".join(parts)


_REPORTED: list[Figures] = []


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> Iterator[Figures]:
    """The test's Figures; printed (and kept for the end-of-run summary) when it ends."""
    began = time.monotonic()
    measured = Figures(request.node.name)
    yield measured
    measured.seconds = time.monotonic() - began
    print("FIGURES " + measured.line())
    _REPORTED.append(measured)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """List every fault test's figures at the end of the run."""
    if _REPORTED:
        terminalreporter.section("fault figures")
        for measured in _REPORTED:
            terminalreporter.write_line(measured.line())


def count_exactly_once(
    measured: Figures, server: ServerProcess, path: str, logged: int
) -> list[Any]:
    """Fill ``measured`` with what the server stored of rows ``{"x": 0..logged-1}`` of the run
    at ``path`` (``entity/project/id``); return the stored x values in step order."""
    stored = [row["x"] for row in tracker.Api(server.url).run(path).history(keys=["x"])]
    measured.rows_logged = logged
    measured.rows_stored = len(stored)
    measured.lost = logged - len(set(stored) & set(range(logged)))
    measured.duplicates = server.applied(path.rsplit("/", 1)[-1]) - len(stored)
    return stored

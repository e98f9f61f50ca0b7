"""The network between client and server breaks: connections cut at random points, error
answers with Retry-After. Nothing lost, nothing stored twice, Retry-After honoured."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

import tracker

from .conftest import (
    FAST_RETRIES,
    ChaosProxy,
    Fault,
    FaultyHttpProxy,
    Figures,
    RssWatch,
    ServerProcess,
    ShortLinkProxy,
    Streamer,
    count_exactly_once,
)

pytestmark = pytest.mark.faults

CUTS = 40
RETRY_AFTER_SLACK = 0.05
"""How much earlier than Retry-After a retry may come (clock granularity)."""


def _online(url: str, tmp_path: Path, **settings: object) -> tracker.Run:
    run = tracker.init(
        project="faults",
        dir=tmp_path / "runs",
        settings={**FAST_RETRIES, "base_url": url, **settings},
    )
    run.define_metric("x", summary="mean")
    return run


@pytest.mark.timeout(90)
@pytest.mark.parametrize("transport", ["websocket", "http"])
def test_connections_cut_at_random_points_lose_and_duplicate_nothing(
    transport: str,
    tracker_server: ServerProcess,
    chaos_proxy: Callable[..., ChaosProxy],
    tmp_path: Path,
    figures: Figures,
) -> None:
    """A TCP proxy resets 40 connections at random byte offsets (mid-request, mid-frame,
    mid-answer, mid-ack) while a thread logs: every row is stored exactly once."""
    proxy = chaos_proxy(tracker_server.port, seed=2024, up_budget=(1, 60_000))
    run = _online(proxy.url, tmp_path, transport=transport)
    rss = RssWatch()
    streamer = Streamer(run, burst=20, pause=0.002).start()
    time.sleep(0.2)
    proxy.cut(CUTS)
    deadline = time.monotonic() + 20
    while proxy.total_cuts < CUTS and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    streamer.stop()
    run.finish()
    figures.rss_growth_mb = rss.growth_mb()
    figures.worst_log_ms = streamer.worst_call * 1000
    figures.reconnects = proxy.connections - 1  # TCP connections opened after the first
    figures.extra.update(transport=transport, cuts_to_server=proxy.cuts["up"])
    figures.extra["cuts_to_client"] = proxy.cuts["down"]
    stored = count_exactly_once(figures, tracker_server, run.path, streamer.logged)
    assert proxy.total_cuts == CUTS
    assert stored == list(range(streamer.logged))
    assert figures.duplicates == 0
    assert tracker.Api(tracker_server.url).run(run.path).state == "finished"


@pytest.mark.timeout(120)
@pytest.mark.parametrize("transport", ["websocket", "http"])
def test_connections_that_die_young_still_carry_the_whole_run(
    transport: str,
    tracker_server: ServerProcess,
    short_link_proxy: Callable[..., ShortLinkProxy],
    tmp_path: Path,
    figures: Figures,
) -> None:
    """Every connection is reset after 20-400 KB or 0.2-1.5 s: 50k rows logged at once are
    all stored exactly once, and at least half the bytes the link carried were new rows
    (batches shrink after a failed connection and grow back with acks)."""
    proxy = short_link_proxy(tracker_server.port, seed=11)
    run = _online(proxy.url, tmp_path, transport=transport)
    rows = 50_000
    for x in range(rows):
        run.log({"x": x, "loss": 1 / (x + 1)})
    assert run.flush(timeout=100), run.status()
    run.finish()
    log = Path(run.dir).parent / "run.log"
    figures.reconnects = proxy.connections - 1
    figures.extra.update(transport=transport, connections=proxy.connections)
    goodput = log.stat().st_size / proxy.bytes_up  # the run log holds every record once
    figures.extra["goodput"] = f"{goodput:.2f}"
    stored = count_exactly_once(figures, tracker_server, run.path, rows)
    assert stored == list(range(rows))
    assert figures.duplicates == 0
    assert goodput >= 0.5


FAULT_PLANS = {
    # a streaming websocket sends no requests: the upgrade and the handshake get the faults
    "websocket": [
        Fault(503, path_end="/stream"),
        Fault(429, path_end="/stream"),
        Fault(500, path_end="/start"),
        Fault(503, path_end="/stream", after_forward=True),
        Fault(429, path_end="/start"),
    ],
    "http": [
        Fault(503, path_end="/records"),
        Fault(429, path_end="/start"),
        Fault(500, path_end="/records", after_forward=True),
        Fault(503, path_end="/start"),
        Fault(429, path_end="/records"),
    ],
}


@pytest.mark.timeout(90)
@pytest.mark.parametrize("transport", ["websocket", "http"])
def test_error_answers_with_retry_after_are_honoured_and_lose_nothing(
    transport: str,
    tracker_server: ServerProcess,
    http_proxy: Callable[[str], FaultyHttpProxy],
    tmp_path: Path,
    figures: Figures,
) -> None:
    """Handshakes, websocket upgrades and batches are answered 503, 429 and 500 with
    Retry-After: 1 (once after the server handled the request, so the records are stored
    but the answer is lost): the client waits at least Retry-After before its next request,
    and every row is stored exactly once."""
    proxy = http_proxy(tracker_server.url)
    proxy.add_faults(Fault(503))  # the handshake of init
    began = time.monotonic()
    run = _online(proxy.url, tmp_path, transport=transport, retry_max_wait_seconds=5.0)
    figures.extra["init_seconds"] = round(time.monotonic() - began, 2)
    streamer = Streamer(run, burst=100, pause=0.005).start()
    time.sleep(0.5)
    proxy.add_faults(*FAULT_PLANS[transport])
    if transport == "websocket":
        proxy.drop_websockets()  # a streaming websocket sends no requests: make it reconnect
    deadline = time.monotonic() + 15
    while proxy.faults_left and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    streamer.stop()
    run.finish()
    gaps = proxy.gaps_after_faults()
    figures.worst_log_ms = streamer.worst_call * 1000
    opened = "/stream" if transport == "websocket" else "/start"
    connections = sum(
        exchange.path.endswith(opened) and exchange.status in (101, 200)
        for exchange in proxy.exchanges
    )
    figures.reconnects = connections - 1
    figures.extra.update(transport=transport, faults=len(gaps))
    figures.extra["gaps_s"] = ",".join(
        f"{exchange.status}@{exchange.path.rsplit('/', 1)[-1]}:{gap:.2f}" for exchange, gap in gaps
    )
    stored = count_exactly_once(figures, tracker_server, run.path, streamer.logged)
    assert proxy.faults_left == 0
    assert stored == list(range(streamer.logged))
    assert figures.duplicates == 0
    assert tracker.Api(tracker_server.url).run(run.path).state == "finished"
    early = [
        (exchange.status, exchange.method, exchange.path, round(gap, 3))
        for exchange, gap in gaps
        if exchange.fault is not None
        and exchange.fault.retry_after is not None
        and gap < exchange.fault.retry_after - RETRY_AFTER_SLACK
    ]
    assert early == [], f"requests came sooner than Retry-After: {early}"


@pytest.mark.timeout(60)
def test_a_websocket_that_keeps_failing_falls_back_to_http(
    tracker_server: ServerProcess,
    http_proxy: Callable[[str], FaultyHttpProxy],
    tmp_path: Path,
    figures: Figures,
) -> None:
    """When every websocket upgrade is refused (a proxy that does not speak websocket),
    the client carries on over HTTP after three tries, and every row is stored once."""
    proxy = http_proxy(tracker_server.url)
    proxy.add_faults(*[Fault(400, retry_after=None, path_end="/stream")] * 3)
    run = _online(proxy.url, tmp_path, transport="websocket", retry_max_wait_seconds=0.2)
    for index in range(5000):
        run.log({"x": index})
    assert run.flush(timeout=30)
    run.finish()
    posts = [exchange for exchange in proxy.exchanges if exchange.path.endswith("/records")]
    figures.extra.update(refused_upgrades=3, http_batches=len(posts))
    assert proxy.faults_left == 0
    assert posts
    assert count_exactly_once(figures, tracker_server, run.path, 5000) == list(range(5000))

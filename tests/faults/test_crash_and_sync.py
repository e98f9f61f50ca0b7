"""A client process dies after flush(), and `tracker sync` runs while a run still streams or
twice at once: every flushed row reaches the server once, the run ends right."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import tracker

from .conftest import (
    FAST_RETRIES,
    ChaosProxy,
    Figures,
    ServerProcess,
    Streamer,
    child_env,
    count_exactly_once,
)

pytestmark = pytest.mark.faults

SYNC_SETTINGS = {"heartbeat_interval": 1.0, "retry_initial_wait_seconds": 0.05}
"""`tracker sync` in these tests: the server marks the run crashed 3 s after the sync."""

VICTIM = """
import os, signal, sys, time, tracker
url, root, death = sys.argv[1:4]
settings = {"base_url": url, "heartbeat_interval": 1.0, "retry_initial_wait_seconds": 0.05,
            "retry_max_wait_seconds": 0.25}
run = tracker.init(project="faults", id="victim", dir=root, settings=settings)
run.define_metric("x", summary="mean")
print(run.dir, flush=True)
for i in range(1000):
    run.log({"x": i})
run.flush()  # online: durable and acknowledged by the server
print("acknowledged", flush=True)
sys.stdin.readline()  # the server is down now: what follows is flushed, never acknowledged
for i in range(1000, 2000):
    run.log({"x": i})
# Online, flush() also waits for acks; with the server down it times out (False) once the
# rows are durable on disk, which is what a later `tracker sync` relies on.
print("flushed", run.flush(timeout=1.0), flush=True)
if death == "os._exit":
    os._exit(3)
time.sleep(60)
"""


def _sync(run_dir: str, url: str, tmp_path: Path) -> subprocess.Popen[str]:
    """Start `tracker sync RUN_DIR` in its own process."""
    return subprocess.Popen(
        [sys.executable, "-m", "tracker", "sync", run_dir, "--base-url", url],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=child_env(tmp_path, **SYNC_SETTINGS),
    )


def _finished(process: subprocess.Popen[str]) -> str:
    """Wait for a sync process; its output (it must exit 0)."""
    try:
        output, _ = process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        raise
    assert process.returncode == 0, output
    return output


def _sent(output: str) -> str:
    """How many records a `tracker sync` says it sent."""
    match = re.search(r"(\d+) records sent", output)
    assert match is not None, output
    return match.group(1)


def _wait_state(api: tracker.Api, path: str, state: str, timeout: float = 20.0) -> float:
    """Poll the server until the run is in ``state``; the seconds it took."""
    began = time.monotonic()
    while api.run(path).state != state:
        assert time.monotonic() - began < timeout, api.run(path).state
        time.sleep(0.1)
    return time.monotonic() - began


@pytest.mark.timeout(90)
@pytest.mark.parametrize("death", ["SIGKILL", "os._exit"])
def test_client_killed_after_flush_loses_no_flushed_row(
    death: str, tracker_server: ServerProcess, tmp_path: Path, figures: Figures
) -> None:
    """A client killed right after flush() while the server is down: once the server is
    back, `tracker sync` stores its flushed rows once, the run is crashed on disk and on the
    server, and a resumed run continues at the next step."""
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(VICTIM), tracker_server.url, str(tmp_path), death],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=child_env(tmp_path),
    )
    api = tracker.Api(tracker_server.url)
    try:
        assert child.stdin is not None
        assert child.stdout is not None
        run_dir = child.stdout.readline().strip()
        assert child.stdout.readline().strip() == "acknowledged"
        tracker_server.kill()
        child.stdin.write("go\n")
        child.stdin.flush()
        assert child.stdout.readline().strip() == "flushed False"
        if death == "SIGKILL":
            child.kill()
        child.wait(10)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(10)
        for stream in (child.stdin, child.stdout):
            if stream is not None:
                stream.close()
    tracker_server.start()
    before_sync = len(api.run("local/faults/victim").history())
    synced = _finished(_sync(run_dir, tracker_server.url, tmp_path))
    figures.extra["records_sent_by_sync"] = _sent(synced)
    assert tracker.read_run(run_dir).state == "crashed"
    figures.extra["stored_before_sync"] = before_sync
    figures.extra["seconds_to_crashed"] = round(
        _wait_state(api, "local/faults/victim", "crashed"), 2
    )
    resumed = tracker.init(
        project="faults",
        id="victim",
        resume="allow",
        dir=tmp_path / "resumed",
        settings={**FAST_RETRIES, "base_url": tracker_server.url},
    )
    figures.extra["resumed_at_step"] = resumed.step
    assert resumed.step == 2000, synced
    resumed.log({"x": 2000})
    resumed.finish()
    stored = count_exactly_once(figures, tracker_server, resumed.path, 2001)
    assert stored == list(range(2001))
    assert figures.duplicates == 0
    assert api.run("local/faults/victim").state == "finished"


@pytest.mark.timeout(90)
def test_sync_while_streaming_and_twice_at_once_stores_nothing_twice(
    tracker_server: ServerProcess,
    chaos_proxy: Callable[..., ChaosProxy],
    tmp_path: Path,
    figures: Figures,
) -> None:
    """While a run streams (its own connection held back by a stalled proxy, so the syncs
    race ahead of it), two `tracker sync` of its directory run at once; again once it streams
    freely, and twice more after it finished: every row is stored exactly once."""
    proxy = chaos_proxy(tracker_server.port, seed=6)
    run = tracker.init(
        project="faults",
        dir=tmp_path / "runs",
        settings={**FAST_RETRIES, "base_url": proxy.url},
    )
    run.define_metric("x", summary="mean")
    streamer = Streamer(run, burst=50, pause=0.002).start()
    time.sleep(0.5)
    proxy.pause()
    time.sleep(0.5)
    racing = [_sync(run.dir, tracker_server.url, tmp_path) for _ in range(2)]
    outputs = [_finished(process) for process in racing]
    proxy.resume()
    time.sleep(0.5)
    outputs += [_finished(process) for process in [_sync(run.dir, tracker_server.url, tmp_path)]]
    streamer.stop()
    run.finish()
    after = [_sync(run.dir, tracker_server.url, tmp_path) for _ in range(2)]
    outputs += [_finished(process) for process in after]
    figures.worst_log_ms = streamer.worst_call * 1000
    figures.extra["syncs"] = len(outputs)
    figures.extra["records_sent_by_syncs"] = "/".join(_sent(output) for output in outputs)
    stored = count_exactly_once(figures, tracker_server, run.path, streamer.logged)
    assert stored == list(range(streamer.logged))
    assert figures.duplicates == 0
    assert tracker.Api(tracker_server.url).run(run.path).state == "finished"

"""Runs streaming to a real `tracker server` subprocess on loopback, end to end."""

from __future__ import annotations

import math
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from exact import same
from server_process import ServerProcess, free_port

import tracker

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    """A fresh server with its own SQLite file."""
    running = ServerProcess(tmp_path / "server").start()
    yield running
    running.stop()


def _online(server: ServerProcess, tmp_path: Path, **kwargs: Any) -> tracker.Run:
    settings = {"silent": True, "base_url": server.url, "init_timeout": 10.0}
    settings.update(kwargs.pop("settings", {}))
    return tracker.init(project="p", dir=tmp_path / "runs", settings=settings, **kwargs)


def python(arguments: list[str]) -> subprocess.CompletedProcess[str]:
    """Run a Python of this checkout with ``arguments`` and wait for it (at most a minute)."""
    return subprocess.run(
        [sys.executable, *arguments],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def test_rows_stream_to_the_server_and_read_back_exactly(
    server: ServerProcess, tmp_path: Path
) -> None:
    """Every value type logged online reads back from the server exactly as logged."""
    rows = [
        {"f": 0.1, "i": 7, "big": 2**80, "neg": -(2**70), "nan": math.nan, "inf": math.inf},
        {"s": "héllo ✓ 日本", "none": None, "b": True, "list": [1, 2.5, [math.nan, "x"]]},
        {"nested": {"a": {"b": -math.inf}}, "zero": -0.0},
    ]
    run = _online(server, tmp_path, config={"lr": 0.1, "nan": math.nan})
    assert run.mode == "online"
    assert run.url is not None
    assert run.url.startswith(server.url)
    for row in rows:
        run.log(row)
    run.finish()
    stored = tracker.Api(server.url).run(run.path)
    history = stored.history()
    assert [row["_step"] for row in history] == [0, 1, 2]
    for logged, read in zip(rows, history, strict=True):
        assert same({k: v for k, v in read.items() if not k.startswith("_")}, logged)
    assert stored.state == "finished"
    assert stored.config["lr"] == 0.1
    assert math.isnan(stored.config["nan"])
    assert stored.summary["s"] == "héllo ✓ 日本"


def test_status_counts_acknowledged_records(
    server: ServerProcess, tmp_path: Path, metadata_recorded: Callable[[tracker.Run], None]
) -> None:
    """After flush and a moment, status() shows every record acknowledged by the server."""
    run = _online(server, tmp_path)
    metadata_recorded(run)
    for index in range(5000):
        run.log({"x": index})
    run.flush(timeout=10)  # online: durable and acknowledged
    status = run.status()
    assert status.acknowledged == status.written
    assert status.connection == "connected"
    assert status.last_error is None
    run.finish()


def test_many_rows_arrive_once(server: ServerProcess, tmp_path: Path) -> None:
    """100k rows logged as fast as possible are all stored, each once, in step order."""
    run = _online(server, tmp_path)
    for index in range(100_000):
        run.log({"x": index})
    run.finish()
    history = tracker.Api(server.url).run(run.path).history(keys=["x"])
    assert [row["x"] for row in history] == list(range(100_000))


def test_rows_logged_before_the_first_ack_are_acknowledged_without_waiting_a_heartbeat(
    server: ServerProcess, tmp_path: Path
) -> None:
    """A run that logged everything before its connection's first ack (one batch in flight
    until then) sends the rest when that ack comes, not after a heartbeat interval."""
    for _ in range(3):
        run = _online(server, tmp_path, settings={"heartbeat_interval": 30.0})
        for i in range(100_000):
            run.log({"x": i})
        began = time.monotonic()
        assert run.flush(timeout=20.0)
        assert time.monotonic() - began < 5.0
        run.finish(quiet=True)


def test_http_transport_streams_too(server: ServerProcess, tmp_path: Path) -> None:
    """settings transport='http' sends batches as POSTs, with the same result."""
    run = _online(server, tmp_path, settings={"transport": "http"})
    for index in range(1000):
        run.log({"x": index})
    run.finish()
    assert len(tracker.Api(server.url).run(run.path).history()) == 1000


@pytest.mark.parametrize("transport", ["websocket", "http"])
def test_rows_past_the_run_key_limit_are_refused_and_the_stream_goes_on(
    server: ServerProcess, tmp_path: Path, transport: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A run whose third wide row would take it past 20,000 keys: that row is refused, the
    rows after it are stored, status() and the log say which rows and what to do, the run
    counts it in rows_refused; an offline copy synced later is stored alike."""
    online = _online(server, tmp_path, settings={"transport": transport})
    offline = tracker.init(
        project="p",
        dir=tmp_path / "offline",
        mode="offline",
        settings={"silent": True},
        reinit="create_new",
    )
    for run in (online, offline):
        for wide in range(3):
            run.log({f"w{wide}_{index}": 1.0 for index in range(9000)})
        for step in range(100):
            run.log({"loss": step})
        run.flush()
    status = online.status()
    online.finish()
    offline.finish()
    assert status.connection == "connected"
    assert status.acknowledged == status.written
    assert status.last_error is not None
    assert "holds at most 20000 keys: 1 row(s) adding more, from step 2" in status.last_error
    assert [record.levelname for record in caplog.records if "at most 20000" in record.message] == [
        "ERROR"
    ]
    synced = python(["-m", "tracker", "sync", str(offline.dir), "--base-url", server.url])
    assert synced.returncode == 0, synced.stderr
    assert "at most 20000" in synced.stderr
    for run in (online, offline):
        stored = tracker.Api(server.url).run(run.path)
        assert [row["_step"] for row in stored.history(keys=["loss"])] == list(range(3, 103))
        assert stored.metadata["rows_refused"] == 1
        assert len(tracker.read_run(run.dir).history()) == 103  # the run directory keeps all


def test_server_restart_mid_run_loses_and_duplicates_nothing(
    server: ServerProcess, tmp_path: Path
) -> None:
    """A server killed mid-run and restarted on the same DB ends up with every row once."""
    run = _online(server, tmp_path, settings={"retry_max_wait_seconds": 0.5})
    for index in range(2000):
        run.log({"x": index})
    run.flush()
    server.kill()
    for index in range(2000, 4000):
        run.log({"x": index})
    time.sleep(0.3)
    server.start()
    for index in range(4000, 6000):
        run.log({"x": index})
    run.finish()
    history = tracker.Api(server.url).run(run.path).history(keys=["x"])
    assert [row["x"] for row in history] == list(range(6000))


def test_unreachable_server_at_init_raises_comm_error(tmp_path: Path) -> None:
    """With no server listening, init raises CommError after init_timeout, naming the URL."""
    url = f"http://127.0.0.1:{free_port()}"
    began = time.monotonic()
    with pytest.raises(tracker.CommError, match=r"127\.0\.0\.1") as caught:
        tracker.init(
            project="p",
            dir=tmp_path / "runs",
            settings={"silent": True, "base_url": url, "init_timeout": 1.0},
        )
    assert time.monotonic() - began < 10
    assert "offline" in str(caught.value)


def test_a_server_that_never_answers_cannot_hold_init_past_init_timeout(
    tmp_path: Path,
) -> None:
    """A server that takes the connection and never answers the handshake makes init raise
    CommError once init_timeout has passed, not after a request timeout of a minute."""
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts, never reads nor answers
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        began = time.monotonic()
        with pytest.raises(tracker.CommError, match=r"init_timeout=1\.0s"):
            tracker.init(
                project="p",
                dir=tmp_path / "runs",
                settings={"silent": True, "base_url": url, "init_timeout": 1.0},
            )
        assert time.monotonic() - began < 3


def test_server_gone_at_finish_keeps_rows_and_prints_sync_command(
    server: ServerProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """When the server is down at finish, finish returns within finish_timeout, says how many
    records wait and the exact `tracker sync` command; the sync later uploads them once."""
    run = tracker.init(
        project="p",
        dir=tmp_path / "runs",
        settings={
            "base_url": server.url,
            "finish_timeout": 1.0,
            "retry_initial_wait_seconds": 0.1,
            "retry_max_wait_seconds": 0.2,
        },
    )
    run.log({"x": 0})
    run.flush()
    server.kill()
    for index in range(1, 500):
        run.log({"x": index})
    began = time.monotonic()
    run.finish()
    assert time.monotonic() - began < 5
    err = capsys.readouterr().err
    assert f"tracker sync {Path(run.dir).parent}" in err
    server.start()
    result = python(["-m", "tracker", "sync", str(run.dir), "--base-url", server.url])
    assert result.returncode == 0, result.stderr
    history = tracker.Api(server.url).run(run.path).history(keys=["x"])
    assert [row["x"] for row in history] == list(range(500))
    assert tracker.Api(server.url).run(run.path).state == "finished"


def test_sync_of_an_offline_run_is_idempotent(server: ServerProcess, tmp_path: Path) -> None:
    """Syncing an offline run twice stores every row once; the second sync sends nothing."""
    run = tracker.init(
        project="p", dir=tmp_path / "runs", mode="offline", settings={"silent": True}
    )
    for index in range(3000):
        run.log({"x": index, "nan": math.nan})
    run.summary["best"] = 3
    run.finish()
    settings = tracker.Settings(base_url=server.url)
    from tracker._sync import sync_run_dir

    first = sync_run_dir(Path(run.dir), settings)
    second = sync_run_dir(Path(run.dir), settings)
    assert first.records > 3000
    assert second.records == 0
    assert second.already_stored == first.records
    stored = tracker.Api(server.url).run(first.path)
    assert [row["x"] for row in stored.history(keys=["x"])] == list(range(3000))
    assert stored.summary["best"] == 3
    assert stored.state == "finished"


def test_sync_of_a_streamed_run_sends_nothing_again(server: ServerProcess, tmp_path: Path) -> None:
    """A run that streamed fine, synced afterwards, stores nothing twice."""
    run = _online(server, tmp_path)
    for index in range(1000):
        run.log({"x": index})
    run.finish()
    from tracker._sync import sync_run_dir

    report = sync_run_dir(Path(run.dir), tracker.Settings(base_url=server.url))
    assert report.records == 0
    assert len(tracker.Api(server.url).run(run.path).history()) == 1000


def test_resume_modes_online(server: ServerProcess, tmp_path: Path) -> None:
    """never/must/allow behave as W&B's; a resumed run continues at the next step."""
    first = _online(server, tmp_path, id="r1", config={"lr": 0.1}, tags=["a"])
    for index in range(10):
        first.log({"x": index})
    first.finish()
    with pytest.raises(tracker.UsageError, match="r1"):
        _online(server, tmp_path, id="r1", resume="never")
    with pytest.raises(tracker.UsageError, match="nope"):
        _online(server, tmp_path, id="nope", resume="must")
    again = _online(server, tmp_path, id="r1", resume="allow")
    assert again.resumed
    assert again.step == 10
    assert again.config["lr"] == 0.1
    assert again.tags == ("a",)
    again.log({"x": 10})
    again.finish()
    stored = tracker.Api(server.url).run(again.path)
    assert [row["x"] for row in stored.history(keys=["x"])] == list(range(11))


def test_resume_none_replaces_an_existing_run(server: ServerProcess, tmp_path: Path) -> None:
    """resume=None with an existing id: the new run replaces the old run's data."""
    old = _online(server, tmp_path, id="same")
    old.log({"old": 1})
    old.finish()
    new = _online(server, tmp_path, id="same")
    assert not new.resumed
    new.log({"new": 1})
    new.finish()
    history = tracker.Api(server.url).run(new.path).history()
    assert [sorted(k for k in row if not k.startswith("_")) for row in history] == [["new"]]


def test_fork_from_copies_history_up_to_the_step(server: ServerProcess, tmp_path: Path) -> None:
    """fork_from='ID?_step=N' starts a new run with the parent's rows up to N, at N+1."""
    parent = _online(server, tmp_path, id="parent")
    for index in range(10):
        parent.log({"x": index})
    parent.finish()
    child = _online(server, tmp_path, fork_from="parent?_step=4")
    assert child.step == 5
    child.log({"x": 100})
    child.finish()
    stored = tracker.Api(server.url).run(child.path)
    assert [row["x"] for row in stored.history(keys=["x"])] == [0, 1, 2, 3, 4, 100]
    assert stored.parent == {"run_id": "parent", "step": 4}
    with pytest.raises(tracker.UsageError, match="step"):
        _online(server, tmp_path, fork_from="parent?_step=99")


def test_resume_from_rewinds_and_archives(server: ServerProcess, tmp_path: Path) -> None:
    """resume_from='ID?_step=N' drops later rows from the run, keeps them in an archived fork."""
    run = _online(server, tmp_path, id="rw")
    for index in range(10):
        run.log({"x": index})
    run.finish()
    rewound = _online(server, tmp_path, resume_from="rw?_step=5")
    assert rewound.step == 6
    rewound.log({"x": 60})
    rewound.finish()
    api = tracker.Api(server.url)
    assert [row["x"] for row in api.run(rewound.path).history(keys=["x"])] == [
        *range(6),
        60,
    ]
    archived = [run for run in api.runs("local/p") if run.id.startswith("rw-rewind-")]
    assert len(archived) == 1
    assert [row["x"] for row in archived[0].history(keys=["x"])] == [6, 7, 8, 9]
    assert archived[0].parent == {"run_id": "rw", "step": 5}


def test_several_runs_at_once_stream_separately(server: ServerProcess, tmp_path: Path) -> None:
    """reinit='create_new' runs in one process each stream their own rows."""
    runs = [_online(server, tmp_path, reinit="create_new") for _ in range(3)]
    for index in range(300):
        for number, run in enumerate(runs):
            run.log({"x": index, "run": number})
    for run in runs:
        run.finish()
    api = tracker.Api(server.url)
    for number, run in enumerate(runs):
        history = api.run(run.path).history(keys=["run"])
        assert [row["run"] for row in history] == [number] * 300


def test_saved_files_are_uploaded(server: ServerProcess, tmp_path: Path) -> None:
    """run.save() uploads the file; Api().run(...).files() reads it back."""
    weights = tmp_path / "model.bin"
    weights.write_bytes(b"\x00\x01weights")
    run = _online(server, tmp_path)
    run.save(str(weights))
    run.finish()
    (stored,) = tracker.Api(server.url).run(run.path).files()
    assert stored.name == "model.bin"
    assert stored.read() == b"\x00\x01weights"


def test_api_keys_and_auth_errors(tmp_path: Path) -> None:
    """A server with keys refuses a wrong or missing key with AuthenticationError at init."""
    keyed = ServerProcess(tmp_path / "keyed", "--api-key", "alice:s3cret-0123456789").start()
    try:
        with pytest.raises(tracker.AuthenticationError, match="tracker login"):
            tracker.init(
                project="p",
                dir=tmp_path / "runs",
                settings={"silent": True, "base_url": keyed.url, "api_key": "wrong"},
            )
        with pytest.raises(tracker.AuthenticationError):
            tracker.init(
                project="p", dir=tmp_path / "runs", settings={"silent": True, "base_url": keyed.url}
            )
        run = tracker.init(
            project="p",
            dir=tmp_path / "runs",
            settings={"silent": True, "base_url": keyed.url, "api_key": "s3cret-0123456789"},
        )
        assert run.entity == "alice"
        run.log({"x": 1})
        run.finish()
        with pytest.raises(tracker.AuthenticationError):
            tracker.Api(keyed.url, api_key="wrong").run("alice/p/" + run.id)
        assert tracker.Api(keyed.url, api_key="s3cret-0123456789").run(run.path).state == "finished"
    finally:
        keyed.stop()


def test_killed_client_becomes_crashed_and_resumes_at_the_right_step(
    server: ServerProcess, tmp_path: Path
) -> None:
    """A client SIGKILLed after flush: its flushed rows are stored, the server marks the run
    crashed once heartbeats stop, and a resumed run continues after the last stored step."""
    script = f"""
import sys, time, tracker
settings = {{"silent": True, "base_url": {server.url!r}, "heartbeat_interval": 0.5}}
run = tracker.init(project="p", id="victim", dir={str(tmp_path / "runs")!r}, settings=settings)
for i in range(1000):
    run.log({{"x": i}})
run.flush()  # online: durable and acknowledged by the server
print("ready", flush=True)
time.sleep(60)
"""
    child = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
        child.send_signal(signal.SIGKILL)
        child.wait(10)
        api = tracker.Api(server.url)
        deadline = time.monotonic() + 15
        while api.run("local/p/victim").state != "crashed" and time.monotonic() < deadline:
            time.sleep(0.2)
        assert api.run("local/p/victim").state == "crashed"
        run = _online(server, tmp_path, id="victim", resume="allow")
        assert run.step == 1000
        run.log({"x": 1000})
        run.finish()
        assert len(api.run("local/p/victim").history()) == 1001
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(10)
        if child.stdout is not None:
            child.stdout.close()


def test_login_and_runs_commands(server: ServerProcess, tmp_path: Path) -> None:
    """`tracker login` saves the server; `tracker runs` then lists the project's runs."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TRACKER_CONFIG_DIR": str(tmp_path / "cfg")}
    login = subprocess.run(
        [sys.executable, "-m", "tracker", "login", "--base-url", server.url],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        stdin=subprocess.DEVNULL,
    )
    assert login.returncode == 0, login.stderr
    assert "local" in login.stdout
    run = _online(server, tmp_path, name="listed-run")
    run.finish()
    listing = subprocess.run(
        [sys.executable, "-m", "tracker", "runs", "local/p"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert listing.returncode == 0, listing.stderr
    assert "listed-run" in listing.stdout


def test_anonymous_runs_need_a_server_that_allows_them(tmp_path: Path) -> None:
    """anonymous='must' logs without a key to a server started with --allow-anonymous; a keyed
    server without that flag refuses it."""
    open_server = ServerProcess(
        tmp_path / "anon", "--api-key", "k" * 16, "--allow-anonymous"
    ).start()
    closed_server = ServerProcess(tmp_path / "closed", "--api-key", "k" * 16).start()
    try:
        run = tracker.init(
            project="p",
            dir=tmp_path / "runs",
            anonymous="must",
            settings={"silent": True, "base_url": open_server.url, "api_key": "k" * 16},
        )
        assert run.entity == "anonymous"
        run.log({"x": 1})
        run.finish()
        with pytest.raises(tracker.AuthenticationError):
            tracker.init(
                project="p",
                dir=tmp_path / "runs",
                anonymous="must",
                settings={"silent": True, "base_url": closed_server.url},
            )
    finally:
        open_server.stop()
        closed_server.stop()


def test_api_filters_runs_and_downsamples_history(server: ServerProcess, tmp_path: Path) -> None:
    """Api.runs filters by state, tag and config; history(samples=N) keeps the extremes."""
    spiky = _online(server, tmp_path, tags=["spiky"], config={"lr": 0.1})
    for index in range(5000):
        spiky.log({"loss": 1000.0 if index == 2345 else 1.0, "x": index})
    spiky.finish()
    failed = _online(server, tmp_path, config={"lr": 0.2})
    failed.finish(exit_code=1)
    api = tracker.Api(server.url)
    assert [run.id for run in api.runs("local/p", filters={"tags": "spiky"})] == [spiky.id]
    assert [run.id for run in api.runs("p", filters={"state": "failed"})] == [failed.id]
    assert [run.id for run in api.runs("local/p", filters={"config.lr": 0.2})] == [failed.id]
    sampled = api.run(spiky.path).history(keys=["loss"], samples=100)
    assert len(sampled) <= 110
    assert max(row["loss"] for row in sampled) == 1000.0
    assert sampled[0]["_step"] == 0
    assert sampled[-1]["_step"] == 4999
    local = tracker.read_run(spiky.dir).history(keys=["loss"], samples=100)
    assert max(row["loss"] for row in local) == 1000.0
    with pytest.raises(tracker.UsageError, match="form"):
        api.run("just-an-id-with/too/many/parts")


def test_online_init_leaves_aiohttp_to_the_io_thread(server: ServerProcess, tmp_path: Path) -> None:
    """An online init handshakes from the caller's thread without aiohttp; aiohttp is first
    imported by the "tracker-io" thread, and the run streams every row."""
    script = f"""
import builtins, sys, threading
first = []
original = builtins.__import__
def spy(name, *args, **kwargs):
    if name.startswith("aiohttp") and "aiohttp" not in sys.modules and not first:
        first.append(threading.current_thread().name)
    return original(name, *args, **kwargs)
builtins.__import__ = spy
import tracker
run = tracker.init(dir={str(tmp_path)!r}, settings={{"base_url": {server.url!r}, "silent": True}})
for i in range(100):
    run.log({{"i": i}})
run.finish()
print(first[0], run.status().acknowledged)
"""
    result = python(["-c", script])
    assert result.returncode == 0, result.stderr
    # the run record, the metadata thread's run record, 100 rows, the exit record
    assert result.stdout.split() == ["tracker-io", "103"]


def test_fork_right_after_an_online_init_leaves_the_child_able_to_import(
    server: ServerProcess, tmp_path: Path
) -> None:
    """A fork just after an online init waits for the I/O thread's imports (aiohttp among
    them): the child imports aiohttp instead of hanging on a lock held by a thread it
    does not have; the parent's run streams every row."""
    script = f"""
import os, tracker
run = tracker.init(dir={str(tmp_path)!r}, settings={{"base_url": {server.url!r}, "silent": True}})
pid = os.fork()
if pid == 0:
    import aiohttp
    os._exit(0)
run.log({{"p": 1}})
_, status = os.waitpid(pid, 0)
run.finish()
print(os.waitstatus_to_exitcode(status), run.status().acknowledged)
"""
    result = python(["-c", script])
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["0", "4"]  # two run records, the row, the exit record

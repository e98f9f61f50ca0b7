"""Measure streaming to a real `tracker server`: rows/s acknowledged, log() cost, init, finish.

Starts ``python -m tracker server`` on a free loopback port with a fresh SQLite file in a
temporary directory (stopped and deleted at the end, error or not), or on the database
``--db`` names (a SQLite path or ``postgresql://...``); ``--replicas N`` starts N servers
on that database behind nginx (the configuration of tests/balancer.py). Everything
client-side runs in this process except the concurrent-clients measurement, which starts
one process per client and releases them together. Every stream is read back through
`tracker.Api`; server CPU is the sum over the replicas. While the one run streams, another
run's one-row batches time the server's acks (tests/ack_probe.py): the ack latency.

Usage: ``python benchmarks/stream.py [--rows N] [--rows-per-client N] [--clients N]
[--db URL] [--replicas N] [--quick] [--json PATH]``
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import importlib
import json
import math
import os
import select
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from array import array
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from types import ModuleType
from typing import IO, Any, Protocol

import _common

DEFAULT_JSON = _common.RESULTS_DIR / "stream.json"
POOL_SIZE = 1000
TIMED_ROWS = 100_000
FINISH_ROWS = 100_000
INIT_RUNS = 10
QUICK_ROWS = 30_000
QUICK_ROWS_PER_CLIENT = 5_000
SERVER_START_SECONDS = 30.0
SERVER_STOP_SECONDS = 15.0
CLIENT_READY_SECONDS = 60.0
CLIENT_REPORT_SECONDS = 600.0
ACK_TIMEOUT_SECONDS = 120.0

# One concurrent client: init, say "ready", wait for "go", log, wait for every ack, finish,
# then report. argv: base_url, run dir, rows, pool seed, ack timeout seconds.
_CLIENT = """\
import dataclasses, json, random, sys, time
import tracker

url, run_dir, rows, seed = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
ack_timeout = float(sys.argv[5])
rng = random.Random(seed)
pool = [{f"m{k}": rng.random() for k in range(10)} for _ in range(1000)]
run = tracker.init(project="bench", dir=run_dir, settings={"silent": True, "base_url": url})
print("ready", flush=True)
if sys.stdin.readline().strip() != "go":
    sys.exit("expected 'go' on stdin")
start, cpu = time.time(), time.process_time()
log = run.log
for i in range(rows):
    log(pool[i % 1000])
logged = time.time()
complete = run.flush(timeout=ack_timeout)  # online: durable and acknowledged
end, cpu = time.time(), time.process_time() - cpu
status = dataclasses.asdict(run.status())
run.finish(quiet=True)
print(json.dumps({"path": run.path, "rows": rows, "start": start, "logged": logged,
                  "end": end, "cpu": cpu, "complete": complete, "status": status}), flush=True)
"""


class RunLike(_common.LoggingRun, Protocol):
    """The part of `tracker.Run` this benchmark drives: the common part and the run's path."""

    @property
    def path(self) -> str:
        """``"entity/project/id"``."""
        ...


@dataclass(frozen=True)
class Server:
    """The running ``tracker server`` subprocesses (one, or the replicas behind nginx), the
    URL clients use, and where the servers' stderr goes."""

    url: str
    processes: list[subprocess.Popen[bytes]]
    log_paths: list[Path]
    balancer_pid: int | None = None
    db_url: str | None = None
    """A PostgreSQL database, whose sessions' CPU `database_cpu_seconds` reads."""

    def cpu_readings(self) -> dict[str, float | None]:
        """CPU seconds so far of the servers, nginx's workers and the database's sessions
        (None: not read here); subtract two readings with `cpu_used`."""
        return {
            "server": self.cpu_seconds(),
            "balancer": self.balancer_cpu_seconds(),
            "database": self.database_cpu_seconds(),
        }

    def cpu_seconds(self) -> float | None:
        """User + system CPU seconds the servers have used so far (Linux /proc; else None)."""
        seconds = [process_cpu_seconds(process.pid) for process in self.processes]
        return None if None in seconds else sum(filter(None, seconds))

    def balancer_cpu_seconds(self) -> float | None:
        """CPU seconds of nginx's worker processes so far (None without a balancer)."""
        if self.balancer_pid is None:
            return None
        children = Path(f"/proc/{self.balancer_pid}/task/{self.balancer_pid}/children")
        try:
            pids = [int(pid) for pid in children.read_text().split()]
        except OSError:
            return None
        return sum(filter(None, map(process_cpu_seconds, pids)))

    def database_cpu_seconds(self) -> float | None:
        """CPU seconds so far of the PostgreSQL backends serving the database (the
        sessions open now: a session closed meanwhile is not counted); None on SQLite,
        whose work is in the server processes."""
        if self.db_url is None:
            return None
        pids = asyncio.run(_database_pids(self.db_url))
        return sum(filter(None, map(process_cpu_seconds, pids)))

    def exited(self) -> list[int]:
        """The exit codes of servers that exited."""
        return [code for code in (process.poll() for process in self.processes) if code is not None]

    def stderr_tail(self, limit: int = 2000) -> str:
        """The last ``limit`` characters the servers wrote to stderr."""
        texts = []
        for path in self.log_paths:
            try:
                texts.append(path.read_text(errors="replace")[-limit:])
            except OSError:
                continue
        return "".join(texts)[-limit:]


async def _database_pids(db_url: str) -> list[int]:
    """The pids of the PostgreSQL backends connected to the database of ``db_url``."""
    import asyncpg

    conn = await asyncpg.connect(db_url)
    try:
        rows = await conn.fetch(
            "SELECT pid FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    finally:
        await conn.close()
    return [int(row["pid"]) for row in rows]


def cpu_used(before: dict[str, float | None], after: dict[str, float | None]) -> dict[str, Any]:
    """CPU seconds per reading of `Server.cpu_readings` between two readings."""
    return {name: _common.delta(before[name], after[name]) for name in before}


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of process ``pid`` from ``/proc/PID/stat`` (None elsewhere)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            # the command name (field 2) may hold spaces; the fields after ")" do not
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def stop_process(process: subprocess.Popen[Any], seconds: float = SERVER_STOP_SECONDS) -> None:
    """SIGTERM ``process`` (a graceful stop), then SIGKILL it if it is still there."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(seconds)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def database_url(db: str | None, root: Path) -> str:
    """The server's ``--db``: a fresh SQLite file under ``root`` when ``db`` is None, a
    SQLite path as a ``sqlite:///`` URL, any URL as it is."""
    if db is None:
        return f"sqlite:///{root / 'tracker.db'}"
    if "://" in db:
        return db
    return f"sqlite:///{Path(db).resolve()}"


def database_kind(db: str | None) -> str:
    """``sqlite`` or ``postgresql`` (the URL's scheme): what the report names, no password."""
    return "sqlite" if db is None or "://" not in db else db.split("://", 1)[0]


def start_server(root: Path, db_url: str, port: int, name: str) -> tuple[Path, Path, Any]:
    """Start one ``tracker server`` on ``127.0.0.1:port`` (0: a free one); its output
    files and process."""
    out_path, err_path = root / f"{name}.out", root / f"{name}.err"
    with out_path.open("wb") as out, err_path.open("wb") as err:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tracker",
                "server",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--db",
                db_url,
            ],
            cwd=root,
            env=_common.child_env(),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
        )
    return out_path, err_path, process


@contextmanager
def running_server(root: Path, db_url: str, replicas: int = 1) -> Iterator[Server]:
    """Start ``tracker server`` on ``db_url``: one on ``127.0.0.1:0``, or ``replicas`` of
    them behind nginx. Each server's first stdout line names its URL; everything is
    stopped on exit, error or not."""
    postgres = db_url if db_url.startswith(("postgresql://", "postgres://")) else None
    with ExitStack() as stack:
        processes, urls, err_paths = [], [], []
        for index in range(replicas):
            port = 0 if replicas == 1 else free_port()
            out_path, err_path, process = start_server(root, db_url, port, f"server-{index}")
            stack.callback(stop_process, process)
            processes.append(process)
            err_paths.append(err_path)
            urls.append(wait_for_url(process, out_path, err_path))
        if replicas == 1:
            yield Server(urls[0], processes, err_paths, db_url=postgres)
            return
        balancer = _tests_module("balancer")
        binary = balancer.nginx_binary()
        if binary is None:
            raise RuntimeError("--replicas needs nginx (apt-get install nginx)")
        ports = [int(url.rsplit(":", 1)[1]) for url in urls]
        nginx = stack.enter_context(balancer.Balancer(binary, root / "nginx", free_port(), ports))
        assert nginx.process is not None
        yield Server(nginx.url, processes, err_paths, nginx.process.pid, postgres)


def _tests_module(name: str) -> ModuleType:
    """A helper module of tests/: ``balancer`` (the nginx the replica tests run, with the
    configuration docs/server.md shows) or ``ack_probe`` (another run's one-row batches,
    their acks timed, as the writer hold test measures them)."""
    sys.path.insert(0, str(_common.ROOT / "tests"))
    return importlib.import_module(name)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for_url(process: subprocess.Popen[bytes], out_path: Path, err_path: Path) -> str:
    """The URL from the server's first stdout line, once it is written in full."""
    deadline = time.monotonic() + SERVER_START_SECONDS
    while time.monotonic() < deadline:
        first, newline, _ = out_path.read_text(errors="replace").partition("\n")
        if newline:
            marker = "listening on "
            if marker not in first:
                raise RuntimeError(f"tracker server: unexpected first line {first!r}")
            return first.split(marker, 1)[1].split()[0]
        if process.poll() is not None:
            raise RuntimeError(
                f"tracker server exited with {process.returncode} before listening: "
                f"{err_path.read_text(errors='replace')[-2000:]}"
            )
        time.sleep(0.02)
    raise RuntimeError(f"tracker server did not print its URL within {SERVER_START_SECONDS}s")


def log_rows(run: RunLike, pool: list[_common.Row], n: int, timed: int) -> _common.Latency:
    """Log ``n`` rows, timing each of the first ``timed`` calls, the rest untimed."""
    samples = array("q", bytes(8 * timed))
    _common.log_timed(run.log, pool, samples)
    # continue in the pool where the timed loop stopped, so every run logs the same rows
    offset = timed % len(pool)
    _common.log_untimed(run.log, pool[offset:] + pool[:offset], n - timed)
    return _common.Latency.from_samples(samples)


def wait_acknowledged(run: RunLike, notes: list[str], label: str) -> dict[str, Any]:
    """Wait until the server acknowledged every record the run appended: an online
    ``flush()``; notes it when that takes over ACK_TIMEOUT_SECONDS."""
    if not run.flush(timeout=ACK_TIMEOUT_SECONDS):
        notes.append(f"{label}: not all acknowledged within {ACK_TIMEOUT_SECONDS:.0f}s")
    return _common.status_dict(run)


def check_acknowledged(label: str, status: dict[str, Any], notes: list[str]) -> None:
    """Note anything left queued, unacknowledged or dropped, or an error."""
    unacked = status["written"] + status["queued"] - status["acknowledged"]
    if status["queued"] or status["dropped"] or status["last_error"] or unacked > 0:
        notes.append(f"{label}: status {status}")


def verify_history(
    api: Any, path: str, expected: int, pool: list[_common.Row] | None, notes: list[str]
) -> int:
    """Read ``path``'s history (key m0) back from the server; return how many rows it holds.

    With ``pool``, also check every row's step and value against the rows logged.
    """
    try:
        history = api.run(path).history(keys=["m0"])
    except Exception as exc:  # a benchmark reports any read failure as a note, not a crash
        notes.append(f"{path}: reading history back failed: {exc!r}")
        return 0
    if len(history) != expected:
        notes.append(f"{path}: {len(history)} rows stored, expected {expected}")
    if pool is not None:
        size = len(pool)
        bad = sum(
            1
            for i, row in enumerate(history)
            if row.get("_step") != i or row.get("m0") != pool[i % size]["m0"]
        )
        if bad:
            notes.append(f"{path}: {bad} rows differ from what was logged (step or m0)")
    return len(history)


class StreamBench:
    """Every in-process measurement against one server, a fresh run per measurement."""

    def __init__(
        self,
        tracker: ModuleType,
        server: Server,
        root: Path,
        pool: list[_common.Row],
        notes: list[str],
    ) -> None:
        """Stream to ``server`` from runs kept under ``root``, logging rows of ``pool``."""
        self.tracker = tracker
        self.server = server
        self.runs_dir = root / "runs"
        self.runs_dir.mkdir(exist_ok=True)
        self.pool = pool
        self.notes = notes

    @cached_property
    def api(self) -> Any:
        """The read API of the server; made on first use, so the first init() is a cold one."""
        return self.tracker.Api(self.server.url)

    def online_run(self) -> RunLike:
        """Start a fresh run that streams to the server."""
        run: RunLike = self.tracker.init(
            project="bench",
            dir=str(self.runs_dir),
            settings={"silent": True, "base_url": self.server.url},
        )
        return run

    def offline_run(self) -> RunLike:
        """Start a fresh offline run (the run log only): the baseline for log()'s cost."""
        run: RunLike = self.tracker.init(
            mode="offline", project="bench", dir=str(self.runs_dir), settings={"silent": True}
        )
        return run

    def init_times(self, runs: int = INIT_RUNS) -> dict[str, Any]:
        """Time ``init()`` of ``runs`` online runs, each finished before the next."""
        return _common.time_inits(self.online_run, lambda run: run.finish(quiet=True), runs)

    def offline_latency(self, n: int, timed: int) -> dict[str, Any]:
        """log() cost of the first ``timed`` of ``n`` calls to an offline run."""
        run = self.offline_run()
        start = time.perf_counter()
        latency = log_rows(run, self.pool, n, timed)
        logged = time.perf_counter()
        run.flush(timeout=None)
        flushed = time.perf_counter()
        status = _common.status_dict(run)
        run.finish(quiet=True)
        _common.check_flushed("offline run", status, self.notes)
        return {
            "log_us": dataclasses.asdict(latency),
            "calls_per_s": n / (logged - start),
            "rows_per_s_on_disk": n / (flushed - start),
        }

    def stream(self, n: int, timed: int) -> dict[str, Any]:
        """Rows/s from the first log() until the server acknowledged all ``n`` rows.

        The first ``timed`` calls are timed one by one (log()'s cost while streaming).
        """
        run = self.online_run()
        probe = _tests_module("ack_probe").AckProbe(self.server.url, f"probe-{os.getpid()}").start()
        cpu_servers, cpu_client = self.server.cpu_readings(), time.process_time()
        start = time.perf_counter()
        latency = log_rows(run, self.pool, n, timed)
        logged = time.perf_counter()
        at_logged = _common.status_dict(run)
        status = wait_acknowledged(run, self.notes, "one run")
        acked = time.perf_counter()
        acks = probe.stop()
        cpu_client = time.process_time() - cpu_client
        cpu_servers = cpu_used(cpu_servers, self.server.cpu_readings())
        check_acknowledged("one run after acks", status, self.notes)
        run.finish(quiet=True)
        seconds = acked - start
        return {
            "rows": n,
            "rows_per_s_acked": n / seconds,
            "seconds_to_acked": seconds,
            "calls_per_s": n / (logged - start),
            "seconds_logging": logged - start,
            "status_when_logged": at_logged,
            "status_when_acked": status,
            "log_us": dataclasses.asdict(latency),
            "probe_acks_ms": acks,
            "cpu_seconds": {"client": cpu_client, **cpu_servers},
            "stored": verify_history(self.api, run.path, n, self.pool, self.notes),
        }

    def finish_time(self, n: int) -> dict[str, Any]:
        """Seconds ``finish()`` takes right after ``n`` rows were logged, and the rows stored."""
        run = self.online_run()
        _common.log_untimed(run.log, self.pool, n)
        in_flight = _common.status_dict(run)
        start = time.perf_counter()
        run.finish(quiet=True)
        seconds = time.perf_counter() - start
        after = _common.status_dict(run)
        check_acknowledged("finish run after finish()", after, self.notes)
        unacked = in_flight["written"] + in_flight["queued"] - in_flight["acknowledged"]
        return {
            "rows": n,
            "finish_seconds": seconds,
            "unacknowledged_at_finish": unacked,
            "status_before_finish": in_flight,
            "status_after_finish": after,
            "stored": verify_history(self.api, run.path, n, self.pool, self.notes),
        }


def start_client(
    index: int, server: Server, root: Path, rows: int, stack: ExitStack
) -> subprocess.Popen[str]:
    """Start concurrent client ``index``: it inits its run, prints "ready", waits for "go"."""
    run_dir = root / f"client-{index}"
    run_dir.mkdir()
    err: IO[str] = stack.enter_context((root / f"client-{index}.err").open("w"))
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            _CLIENT,
            server.url,
            str(run_dir),
            str(rows),
            str(index + 1),
            str(ACK_TIMEOUT_SECONDS),
        ],
        cwd=root,
        env=_common.child_env(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=err,
        text=True,
    )
    stack.callback(stop_process, process, 5.0)
    return process


def read_line(process: subprocess.Popen[str], what: str, deadline: float) -> str:
    """One line of ``process``'s stdout; an error naming ``what`` when it ended instead, or
    printed nothing by ``deadline`` (``time.monotonic()``).

    Waiting on the pipe itself is safe: a client writes each line whole and nothing after it
    until told, so no unread line sits in the reader's buffer.
    """
    assert process.stdout is not None
    readable, _, _ = select.select([process.stdout], [], [], max(0.0, deadline - time.monotonic()))
    if not readable:
        raise RuntimeError(f"a client printed no {what} in time; stopping every client")
    line = process.stdout.readline()
    if not line:
        process.wait()
        raise RuntimeError(f"a client exited ({process.returncode}) before printing {what}")
    return line.strip()


@dataclass(frozen=True)
class Released:
    """What `release_together` saw: when the clients went, how long they took to get
    ready, their reports, and the CPU seconds of the servers (`cpu_used`) from "go" to
    the last exit."""

    go: float
    ready_seconds: float
    reports: list[dict[str, Any]]
    cpu_seconds: dict[str, Any]


def release_together(
    processes: list[subprocess.Popen[str]],
    server: Server,
    ready_seconds: float,
    report_seconds: float,
    exit_seconds: float,
) -> Released:
    """Wait until every client printed "ready", release them all with "go", and collect
    the JSON report each prints when done."""
    started = time.monotonic()
    for process in processes:
        if read_line(process, '"ready"', started + ready_seconds) != "ready":
            raise RuntimeError("a client printed something other than 'ready' first")
    ready = time.monotonic() - started
    cpu = server.cpu_readings()
    go = time.time()
    for process in processes:
        assert process.stdin is not None
        process.stdin.write("go\n")
        process.stdin.flush()
        process.stdin.close()
    deadline = time.monotonic() + report_seconds
    reports = [json.loads(read_line(process, "report", deadline)) for process in processes]
    for process in processes:
        process.wait(exit_seconds)
    return Released(go, ready, reports, cpu_used(cpu, server.cpu_readings()))


def concurrent_clients(
    api: Any, server: Server, root: Path, clients: int, rows: int, notes: list[str]
) -> dict[str, Any]:
    """``clients`` processes each stream ``rows`` rows, released together by a barrier.

    Aggregate rows/s = all rows / (the last client's all-acked time - the "go" time).
    """
    with ExitStack() as stack:
        processes = [start_client(i, server, root, rows, stack) for i in range(clients)]
        released = release_together(
            processes, server, CLIENT_READY_SECONDS, CLIENT_REPORT_SECONDS, ACK_TIMEOUT_SECONDS
        )
    go, reports = released.go, released.reports
    for i, report in enumerate(reports):
        if not report["complete"]:
            notes.append(f"client {i}: not all acknowledged: {report['status']}")
    end = max(report["end"] for report in reports)
    total = sum(int(report["rows"]) for report in reports)
    stored = sum(verify_history(api, r["path"], int(r["rows"]), None, notes) for r in reports)
    per_client = [r["rows"] / (r["end"] - r["start"]) for r in reports]
    return {
        "clients": clients,
        "rows_per_client": rows,
        "rows": total,
        "rows_per_s_acked": total / (end - go),
        "seconds_to_acked": end - go,
        "seconds_to_ready": released.ready_seconds,
        "client_rows_per_s": {
            "min": min(per_client),
            "median": statistics.median(per_client),
            "max": max(per_client),
        },
        "last_logged_after_go": max(r["logged"] for r in reports) - go,
        "cpu_seconds": {
            **released.cpu_seconds,
            # each client from "go" to its last ack, the I/O thread included
            "clients": sum(float(r["cpu"]) for r in reports),
        },
        "stored": stored,
    }


def target_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per metric: its value, the target, and whether it is met."""
    one, off, init = report["one_run"], report["offline"], report["init_seconds"]
    fin, many = report["finish"], report["concurrent"]
    on_l, off_l = one["log_us"], off["log_us"]
    ratio = report["ratio"]["p50"]
    clients = f"{many['clients']} clients x {many['rows_per_client']:,} rows"
    rows: list[tuple[str, Any, str, str, bool | None]] = [
        (
            f"one run: rows/s acked ({one['rows']:,} rows)",
            one["rows_per_s_acked"],
            "rate",
            ">= 300,000/s",
            one["rows_per_s_acked"] >= 300_000,
        ),
        ("offline: rows/s on disk (same rows)", off["rows_per_s_on_disk"], "rate", "", None),
        (
            "one run: acked / offline rate",
            one["rows_per_s_acked"] / off["rows_per_s_on_disk"],
            "x",
            ">= 0.8x",
            one["rows_per_s_acked"] >= 0.8 * off["rows_per_s_on_disk"],
        ),
        (
            "ack latency p50 (another run's 1-row batches, while streaming)",
            one["probe_acks_ms"].get("p50_ms", math.nan) / 1000,
            "ms",
            "<= 50 ms",
            one["probe_acks_ms"].get("p50_ms", math.inf) <= 50,
        ),
        (
            "ack latency p99, same",
            one["probe_acks_ms"].get("p99_ms", math.nan) / 1000,
            "ms",
            "",
            None,
        ),
        (
            "ack latency worst, same",
            one["probe_acks_ms"].get("max_ms", math.nan) / 1000,
            "ms",
            "",
            None,
        ),
        ("one run: log() calls/s", one["calls_per_s"], "rate", "", None),
        ("one run: seconds to all acked", one["seconds_to_acked"], "s", "", None),
        ("one run: server CPU while streaming", one["cpu_seconds"]["server"], "s", "", None),
        (
            "one run: server CPU per row",
            _per_row(one["cpu_seconds"]["server"], one),
            "us",
            "",
            None,
        ),
        (
            "one run: database CPU per row (PostgreSQL)",
            _per_row(one["cpu_seconds"]["database"], one),
            "us",
            "",
            None,
        ),
        ("one run: client CPU while streaming", one["cpu_seconds"]["client"], "s", "", None),
        (
            "one run: rows stored (read back)",
            one["stored"],
            "rows",
            f"{one['rows']:,}",
            one["stored"] == one["rows"],
        ),
        ("log() p50 online", on_l["p50_us"], "us", "", None),
        ("log() p50 offline", off_l["p50_us"], "us", "", None),
        ("log() p50 online/offline", ratio, "x", "<= 1.2x", ratio <= 1.2),
        ("log() p99 online", on_l["p99_us"], "us", "", None),
        ("log() p99 offline", off_l["p99_us"], "us", "", None),
        ("log() mean online", on_l["mean_us"], "us", "", None),
        ("log() mean offline", off_l["mean_us"], "us", "", None),
        ("log() max online", on_l["max_us"], "us", "", None),
        (
            f"online init() (median of {INIT_RUNS})",
            init["median"],
            "ms",
            "<= 150 ms",
            init["median"] <= 0.15,
        ),
        ("online init() first", init["first"], "ms", "", None),
        (
            f"finish() after {fin['rows']:,} rows",
            fin["finish_seconds"],
            "ms",
            "<= 1000 ms",
            fin["finish_seconds"] <= 1.0,
        ),
        (
            "finish(): records unacked when called",
            fin["unacknowledged_at_finish"],
            "rows",
            "",
            None,
        ),
        (
            "finish(): rows stored (read back)",
            fin["stored"],
            "rows",
            f"{fin['rows']:,}",
            fin["stored"] == fin["rows"],
        ),
        (
            f"{clients}: aggregate rows/s acked",
            many["rows_per_s_acked"],
            "rate",
            ">= 300,000/s",
            many["rows_per_s_acked"] >= 300_000,
        ),
        (f"{clients}: seconds go to all acked", many["seconds_to_acked"], "s", "", None),
        (f"{clients}: server CPU", many["cpu_seconds"]["server"], "s", "", None),
        (
            f"{clients}: server CPU per row",
            _per_row(many["cpu_seconds"]["server"], many),
            "us",
            "",
            None,
        ),
        (
            f"{clients}: database CPU per row (PostgreSQL)",
            _per_row(many["cpu_seconds"]["database"], many),
            "us",
            "",
            None,
        ),
        (f"{clients}: clients' CPU (sum)", many["cpu_seconds"]["clients"], "s", "", None),
        (
            f"{clients}: rows stored (read back)",
            many["stored"],
            "rows",
            f"{many['rows']:,}",
            many["stored"] == many["rows"],
        ),
    ]
    return [
        {"metric": name, "value": _common.fmt_value(value, unit), "target": target, "met": met}
        for name, value, unit, target, met in rows
    ]


def _per_row(seconds: float | None, measured: dict[str, Any]) -> float | None:
    """Microseconds of CPU per row acknowledged (None when the CPU was not read)."""
    return None if seconds is None else seconds * 1e6 / measured["rows"]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line: ``--rows``, ``--rows-per-client``, ``--clients``, ``--db``,
    ``--replicas``, ``--quick``, ``--json``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=300_000, help="rows of the one-run stream")
    parser.add_argument(
        "--rows-per-client", type=int, default=50_000, help="rows each concurrent client logs"
    )
    parser.add_argument("--clients", type=int, default=16, help="concurrent client processes")
    parser.add_argument(
        "--db",
        help="the servers' database: a SQLite path or postgresql://USER@HOST:PORT/DATABASE "
        "(default: a fresh SQLite file in a temporary directory)",
    )
    parser.add_argument(
        "--replicas", type=int, default=1, help="servers on the database, behind nginx when > 1"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"smoke run: --rows {QUICK_ROWS} --rows-per-client {QUICK_ROWS_PER_CLIENT}",
    )
    parser.add_argument(
        "--json", type=Path, default=DEFAULT_JSON, help=f"where to write results ({DEFAULT_JSON})"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.rows = QUICK_ROWS
        args.rows_per_client = QUICK_ROWS_PER_CLIENT
    for flag in ("rows", "rows_per_client", "clients", "replicas"):
        value = getattr(args, flag)
        if value < 1:
            parser.error(f"--{flag.replace('_', '-')} must be at least 1, got {value}")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run every measurement, print the table, write the JSON; exit 1 if rows went missing."""
    args = parse_args(argv)
    n: int = args.rows
    timed = min(TIMED_ROWS, n)
    finish_rows = min(FINISH_ROWS, n)
    pool = _common.make_pool(POOL_SIZE)
    notes: list[str] = []
    env = _common.environment(_common.timer_overhead_ns())
    tracker = _common.import_tracker()
    with (
        tempfile.TemporaryDirectory(prefix="tracker-stream-") as tmp,
        running_server(Path(tmp), database_url(args.db, Path(tmp)), args.replicas) as server,
    ):
        root = Path(tmp)
        bench = StreamBench(tracker, server, root, pool, notes)
        # first: the first online init() also imports aiohttp and starts the I/O thread
        init = bench.init_times()
        offline = bench.offline_latency(n, timed)
        one = bench.stream(n, timed)
        finish = bench.finish_time(finish_rows)
        many = concurrent_clients(
            bench.api, server, root, args.clients, args.rows_per_client, notes
        )
        if server.exited():
            notes.append(f"a server exited early ({server.exited()})")
        stderr = server.stderr_tail()
        if stderr.strip():
            notes.append(f"server stderr (tail): {stderr.strip()[-500:]}")
    report: dict[str, Any] = {
        "environment": env,
        "settings": {
            "rows": n,
            "timed_rows": timed,
            "finish_rows": finish_rows,
            "clients": args.clients,
            "rows_per_client": args.rows_per_client,
            "database": database_kind(args.db),
            "replicas": args.replicas,
            "pool_size": POOL_SIZE,
            "init_runs": INIT_RUNS,
            "ack_timeout_seconds": ACK_TIMEOUT_SECONDS,
        },
        "one_run": one,
        "offline": offline,
        "ratio": _common.latency_ratio(one["log_us"], offline["log_us"]),
        "init_seconds": init,
        "finish": finish,
        "concurrent": many,
        "loadavg_1m_at_end": _common.load_average(),
        "notes": notes,
    }
    report["targets"] = target_rows(report)
    settings = (
        f"rows={n:,} timed={timed:,} finish rows={finish_rows:,} "
        f"clients={args.clients} x {args.rows_per_client:,} pool={POOL_SIZE} "
        f"db={database_kind(args.db)} replicas={args.replicas}"
    )
    _common.print_report(report, settings, ("metric", "value", "target"))
    _common.write_json(args.json, report)
    verified = one["stored"] == n and finish["stored"] == finish_rows
    return 0 if verified and many["stored"] == many["rows"] else 1


if __name__ == "__main__":
    sys.exit(main())

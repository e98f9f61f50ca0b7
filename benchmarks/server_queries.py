"""Measure the server's queries and ingest as the data grows: history of long runs, the runs
table of big projects, many clients streaming at once.

Builds a SQLite database through the storage API (``tracker._server.storage.open_storage``,
the server's own ingest path minus HTTP): runs of 10k, 100k and 1M rows of 10 floats, and
projects of 1k and 10k short runs, and a run of `WIDE_KEYS` keys; the build waits until
the store's compactor has folded every batch (the build's time includes it). Then starts
``tracker server`` on it and times, from this process:

- ``Api().run(path).history(keys=["m0"], samples=1000)`` (target <= 100 ms at 1M rows), and
  the same without ``samples``;
- the dashboard's chart of every key of the wide run (``GET
  /api/v1/dashboard/series/E/P/RUN``, target < 1 s);
- the runs table: ``GET /api/v1/runs/E/P?limit=100`` (target <= 200 ms at 10k runs) on a
  kept-alive connection, and ``Api().runs("E/P")`` (every page);
- 1, 16 and 64 client processes streaming at once (each ``--rows-per-client`` rows of 10
  floats): aggregate rows/s until every row is acknowledged, and the ack latency: each
  client notes when its every 1000th row was logged, and polls ``status()`` every 10 ms
  (the latency's resolution) once done logging.

Usage: ``python benchmarks/server_queries.py [--quick] [--json PATH]``
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import math
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from bisect import bisect_left
from collections.abc import Callable
from contextlib import ExitStack
from functools import partial
from pathlib import Path
from typing import IO, Any, Final
from urllib.parse import urlsplit

import _common
import orjson
import stream

DEFAULT_JSON: Final = _common.RESULTS_DIR / "server_queries.json"
ENTITY: Final = "local"  # a loopback server without API keys serves entity "local"
HISTORY_PROJECT: Final = "history"
RUN_SIZES: Final = (10_000, 100_000, 1_000_000)
PROJECT_SIZES: Final = (1_000, 10_000)
CLIENTS: Final = (1, 16, 64)
ROWS_PER_CLIENT: Final = 20_000
QUICK_RUN_SIZES: Final = (1_000, 10_000, 100_000)
QUICK_PROJECT_SIZES: Final = (100, 1_000)
QUICK_CLIENTS: Final = (1, 4, 8)
QUICK_ROWS_PER_CLIENT: Final = 5_000
INGEST_BATCH: Final = 10_000
REPEATS: Final = 10
SAMPLES: Final = 1000
PAGE: Final = 100
CHECK_EVERY: Final = 1000
ACK_POLL_SECONDS: Final = 0.01
STALL_SECONDS: Final = 60.0
READY_SECONDS: Final = 120.0
REPORT_SECONDS: Final = 900.0
HISTORY_TARGET: Final = 0.1
WIDE_KEYS: Final = 10_000
"""Keys of the wide run: rows of `WIDE_ROW_KEYS` keys, the groups in turn, `WIDE_STEPS` steps."""
WIDE_ROW_KEYS: Final = 1_000
WIDE_STEPS: Final = 1_000
WIDE_PROJECT: Final = "wide"
CHART_TARGET: Final = 1.0
RUNS_TARGET: Final = 0.2
AGGREGATE_TARGET: Final = 500_000


# -- building the database -------------------------------------------------------------------


def run_record(run_id: str, project: str, now: float) -> list[Any]:
    """The session-opening ``run`` record (seq 0) a client sends first."""
    return [
        0,
        "run",
        {
            "id": run_id,
            "name": f"bench-{run_id}",
            "project": project,
            "entity": ENTITY,
            "group": None,
            "job_type": "train",
            "tags": ["bench"],
            "notes": None,
            "mode": "online",
            "created_at": now,
            "log_id": uuid.uuid4().hex,
            "start_time": now,
        },
    ]


async def start(storage: Any, project: str, run_id: str, now: float) -> tuple[Any, str]:
    """Create run ``run_id`` in ``project``; return its key and log id."""
    from tracker._server.storage import RunKey, StartRequest

    key = RunKey(ENTITY, project, run_id)
    log_id = uuid.uuid4().hex
    await storage.start_run(StartRequest(key, log_id, "new", None, None, 10.0, now))
    return key, log_id


async def build_long_run(storage: Any, rows: int, pool: list[_common.Row]) -> dict[str, Any]:
    """One run of ``rows`` rows, ingested in batches of ``INGEST_BATCH`` records."""
    now = time.time()
    run_id = f"rows{rows}"
    key, log_id = await start(storage, HISTORY_PROJECT, run_id, now)
    began = time.perf_counter()
    records: list[list[Any]] = [run_record(run_id, HISTORY_PROJECT, now)]
    records.append([1, "config", {"lr": 0.001, "batch_size": 64, "rows": rows}])
    seq = 2
    for step in range(rows):
        records.append([seq, "row", step, now + step * 1e-3, pool[step % len(pool)]])
        seq += 1
        if len(records) >= INGEST_BATCH:
            await storage.ingest(key, log_id, records, time.time())
            records = []
    records.append([seq, "exit", {"state": "finished", "exit_code": 0, "end_time": time.time()}])
    await storage.ingest(key, log_id, records, time.time())
    took = time.perf_counter() - began
    return {"rows": rows, "path": f"{ENTITY}/{HISTORY_PROJECT}/{run_id}", "ingest_seconds": took}


async def build_wide_run(storage: Any) -> dict[str, Any]:
    """One run of `WIDE_KEYS` keys over `WIDE_STEPS` steps, each row `WIDE_ROW_KEYS` of them."""
    now = time.time()
    run_id = f"keys{WIDE_KEYS}"
    key, log_id = await start(storage, WIDE_PROJECT, run_id, now)
    groups = WIDE_KEYS // WIDE_ROW_KEYS
    began = time.perf_counter()
    records: list[list[Any]] = []
    for step in range(WIDE_STEPS):
        group = step % groups
        data = {f"g{group}/k{k}": math.sin(step / 50 + k) for k in range(WIDE_ROW_KEYS)}
        records.append([step, "row", step, now + step * 1e-3, data])
        if len(records) >= 20:
            await storage.ingest(key, log_id, records, time.time())
            records = []
    if records:
        await storage.ingest(key, log_id, records, time.time())
    return {
        "keys": WIDE_KEYS,
        "steps": WIDE_STEPS,
        "path": f"{ENTITY}/{WIDE_PROJECT}/{run_id}",
        "ingest_seconds": time.perf_counter() - began,
    }


async def build_project(storage: Any, runs: int, rng: random.Random) -> dict[str, Any]:
    """A project of ``runs`` short runs: config, 10 rows, finished."""
    project = f"runs{runs}"
    began = time.perf_counter()
    for i in range(runs):
        now = time.time()
        run_id = f"r{i:06d}"
        key, log_id = await start(storage, project, run_id, now)
        config = {
            "lr": rng.random(),
            "batch_size": rng.choice([32, 64, 128]),
            "optimizer": {"name": "adam", "betas": [0.9, 0.999]},
            "seed": i,
        }
        records: list[list[Any]] = [run_record(run_id, project, now), [1, "config", config]]
        records += [
            [2 + step, "row", step, now, {f"m{k}": rng.random() for k in range(10)}]
            for step in range(10)
        ]
        records.append([12, "exit", {"state": "finished", "exit_code": 0, "end_time": now}])
        await storage.ingest(key, log_id, records, now)
    return {
        "runs": runs,
        "path": f"{ENTITY}/{project}",
        "build_seconds": time.perf_counter() - began,
    }


async def build(db: Path, run_sizes: tuple[int, ...], project_sizes: tuple[int, ...]) -> Any:
    """Fill the database at ``db``; return what was built and how long it took."""
    from tracker._server.storage import open_storage

    storage = await open_storage(f"sqlite:///{db}")
    pool = _common.make_pool(1000)
    try:
        long_runs = []
        for rows in run_sizes:
            print(f"  ingesting a run of {rows:,} rows ...", flush=True)
            long_runs.append(await build_long_run(storage, rows, pool))
        projects = []
        for runs in project_sizes:
            print(f"  creating a project of {runs:,} runs ...", flush=True)
            projects.append(await build_project(storage, runs, random.Random(runs)))
        print(f"  ingesting a run of {WIDE_KEYS:,} keys ...", flush=True)
        wide = await build_wide_run(storage)
        print("  waiting for the compactor ...", flush=True)
        began = time.perf_counter()
        await storage.compacted()
        compaction_tail = time.perf_counter() - began
    finally:
        await storage.close()
    return long_runs, projects, wide, compaction_tail


# -- queries ---------------------------------------------------------------------------------


def timed(call: Callable[[], object], repeats: int = REPEATS) -> dict[str, Any]:
    """Seconds of the first (cold) call, then the median and max of ``repeats`` more."""
    began = time.perf_counter()
    call()
    first = time.perf_counter() - began
    seconds = []
    for _ in range(repeats):
        began = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - began)
    return {"first": first, "median": statistics.median(seconds), "max": max(seconds)}


def sampled_history(api: Any, path: str) -> list[dict[str, Any]]:
    """What a chart does: the run, then one key's history downsampled to ``SAMPLES`` points."""
    rows: list[dict[str, Any]] = api.run(path).history(keys=["m0"], samples=SAMPLES)
    return rows


def full_history(api: Any, path: str) -> list[dict[str, Any]]:
    """The run, then every row of one key."""
    rows: list[dict[str, Any]] = api.run(path).history(keys=["m0"])
    return rows


def history_queries(api: Any, long_runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Sampled and full history of key m0 of every long run (the first call cold)."""
    return [
        {
            **run,
            "ingest_rows_per_s": run["rows"] / run["ingest_seconds"],
            "sampled": timed(partial(sampled_history, api, run["path"])),
            "sampled_rows": len(sampled_history(api, run["path"])),
            "full": timed(partial(full_history, api, run["path"]), repeats=3),
            "full_rows": len(full_history(api, run["path"])),
        }
        for run in long_runs
    ]


def chart_query(url: str, wide: dict[str, Any]) -> dict[str, Any]:
    """The dashboard's chart of every key of the wide run (raw GET, kept alive)."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port)
    path = f"/api/v1/dashboard/series/{wide['path']}"
    try:
        answer = orjson.loads(get(connection, path))
        return {
            **wide,
            "chart": timed(partial(get, connection, path), repeats=3),
            "charted_keys": len(answer["series"]),
        }
    finally:
        connection.close()


def get(connection: http.client.HTTPConnection, path: str) -> bytes:
    """One GET on a kept-alive connection; the body (an error for any status but 200)."""
    connection.request("GET", path)
    response = connection.getresponse()
    body = response.read()
    if response.status != 200:
        raise RuntimeError(f"GET {path}: {response.status} {body[:300]!r}")
    return body


def runs_queries(api: Any, url: str, projects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The first page of each project's runs table (raw GET), and ``Api.runs`` (all pages)."""
    from tracker._records.codec import decode_value

    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port)
    out = []
    try:
        for project in projects:
            path = f"/api/v1/runs/{project['path']}?limit={PAGE}&order=-created_at"
            page_time = timed(partial(get, connection, path))
            page = decode_value(get(connection, path))  # exactly encoded: [value, specials]
            out.append(
                {
                    **project,
                    "page": page_time,
                    "page_runs": len(page["runs"]),
                    "page_total": page["total"],
                    "api_runs": timed(partial(api.runs, project["path"]), repeats=3),
                    "api_runs_count": len(api.runs(project["path"])),
                }
            )
    finally:
        connection.close()
    return out


# -- clients ---------------------------------------------------------------------------------


def client(url: str, run_dir: str, rows: int, seed: int) -> None:
    """One streaming client: init, "ready", wait for "go", log, wait for every ack, report.

    Ack latency: every ``CHECK_EVERY`` rows the client notes the time and how many records
    it has appended; it notes (time, acknowledged) then too, and every ``ACK_POLL_SECONDS``
    once logging is done (no polling thread: 64 of them would eat the CPU they measure).
    """
    tracker = _common.import_tracker()
    pool = _common.make_pool(1000, seed)
    run = tracker.init(project="clients", dir=run_dir, settings={"silent": True, "base_url": url})
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        sys.exit("expected 'go' on stdin")
    acks: list[tuple[float, int]] = []
    marks: list[tuple[float, int]] = []
    log = run.log
    start = time.time()
    for i in range(rows):
        log(pool[i % 1000])
        if i % CHECK_EVERY == CHECK_EVERY - 1:
            status = run.status()
            now = time.time()
            marks.append((now, status.written + status.queued))
            acks.append((now, status.acknowledged))
    logged = time.time()
    complete, progress, last = True, time.monotonic(), -1
    while True:
        status = run.status()
        acks.append((time.time(), status.acknowledged))
        if status.acknowledged >= status.written + status.queued:
            break
        if status.acknowledged != last:
            last, progress = status.acknowledged, time.monotonic()
        elif time.monotonic() - progress > STALL_SECONDS:
            complete = False
            break
        time.sleep(ACK_POLL_SECONDS)
    end = time.time()
    acked_counts = [count for _, count in acks]
    latencies = []
    for mark_time, target in marks:
        at = bisect_left(acked_counts, target)
        if at < len(acks):
            latencies.append(max(0.0, acks[at][0] - mark_time))
    run.finish(quiet=True)
    report = {
        "path": run.path,
        "rows": rows,
        "start": start,
        "logged": logged,
        "end": end,
        "complete": complete,
        "latencies": latencies,
    }
    print(json.dumps(report), flush=True)


def start_client(
    index: int, url: str, root: Path, rows: int, stack: ExitStack
) -> subprocess.Popen[str]:
    """Start client ``index`` (this script with ``--client``); it prints "ready" when set."""
    run_dir = root / f"client-{index}"
    run_dir.mkdir(parents=True)
    err: IO[str] = stack.enter_context((root / f"client-{index}.err").open("w"))
    process = subprocess.Popen(
        [sys.executable, __file__, "--client", url, str(run_dir), str(rows), str(index + 1)],
        cwd=root,
        env=_common.child_env(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=err,
        text=True,
    )
    stack.callback(stream.stop_process, process, 5.0)
    return process


def percentile(values: list[float], q: float) -> float | None:
    """The nearest-rank ``q`` quantile of ``values`` (None when empty)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def clients_stream(
    api: Any, server: stream.Server, root: Path, clients: int, rows: int, notes: list[str]
) -> dict[str, Any]:
    """``clients`` processes stream ``rows`` rows each, released together."""
    print(f"  {clients} client(s) x {rows:,} rows ...", flush=True)
    with ExitStack() as stack:
        processes = [start_client(i, server.url, root, rows, stack) for i in range(clients)]
        released = stream.release_together(
            processes, server, READY_SECONDS, REPORT_SECONDS, STALL_SECONDS
        )
    go, reports = released.go, released.reports
    for i, report in enumerate(reports):
        if not report["complete"]:
            notes.append(f"{clients} clients: client {i} saw its acks stall")
    end = max(report["end"] for report in reports)
    total = sum(int(report["rows"]) for report in reports)
    latencies = [value for report in reports for value in report["latencies"]]
    stored = sum(
        stream.verify_history(api, report["path"], int(report["rows"]), None, notes)
        for report in reports
    )
    return {
        "clients": clients,
        "rows_per_client": rows,
        "rows": total,
        "rows_per_s_acked": total / (end - go),
        "seconds_to_acked": end - go,
        "ack_latency_seconds": {
            "p50": percentile(latencies, 0.5),
            "p99": percentile(latencies, 0.99),
            "max": max(latencies, default=None),
            "samples": len(latencies),
        },
        "server_cpu_seconds": released.server_cpu_seconds,
        "stored": stored,
    }


# -- report ----------------------------------------------------------------------------------


def tables(report: dict[str, Any]) -> str:
    """The three scaling tables, as Markdown."""
    ms = "ms"
    history = _common.markdown_table(
        (
            "rows in the run",
            "storage ingest",
            f"history(keys=[m0], samples={SAMPLES}): first / median",
            "rows returned",
            "history(keys=[m0]): median",
            "rows returned",
        ),
        [
            (
                f"{h['rows']:,}",
                _common.fmt_value(h["ingest_rows_per_s"], "rate"),
                f"{_common.fmt_value(h['sampled']['first'], ms)} / "
                f"{_common.fmt_value(h['sampled']['median'], ms)}",
                f"{h['sampled_rows']:,}",
                _common.fmt_value(h["full"]["median"], ms),
                f"{h['full_rows']:,}",
            )
            for h in report["history"]
        ],
    )
    runs = _common.markdown_table(
        (
            "runs in the project",
            f"GET ...?limit={PAGE}: first / median",
            "Api().runs() (every page): median",
            "runs listed",
        ),
        [
            (
                f"{r['runs']:,}",
                f"{_common.fmt_value(r['page']['first'], ms)} / "
                f"{_common.fmt_value(r['page']['median'], ms)}",
                _common.fmt_value(r["api_runs"]["median"], ms),
                f"{r['api_runs_count']:,}",
            )
            for r in report["runs"]
        ],
    )
    clients = _common.markdown_table(
        (
            "clients x rows",
            "aggregate rows/s acked",
            "ack latency p50 / p99",
            "server CPU",
            "rows stored",
        ),
        [
            (
                f"{c['clients']} x {c['rows_per_client']:,}",
                _common.fmt_value(c["rows_per_s_acked"], "rate"),
                f"{_common.fmt_value(c['ack_latency_seconds']['p50'], ms)} / "
                f"{_common.fmt_value(c['ack_latency_seconds']['p99'], ms)}",
                _common.fmt_value(c["server_cpu_seconds"], "s"),
                f"{c['stored']:,} / {c['rows']:,}",
            )
            for c in report["clients"]
        ],
    )
    return f"{history}\n\n{runs}\n\n{clients}\n"


def target_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets for the largest sizes measured."""
    longest, biggest, most = report["history"][-1], report["runs"][-1], report["clients"][-1]
    chart = report["chart"]
    sampled = longest["sampled"]["median"]
    page = biggest["page"]["median"]
    rate = most["rows_per_s_acked"]
    return [
        {
            "metric": f"history, {longest['rows']:,} rows, samples={SAMPLES} (median)",
            "value": _common.fmt_value(sampled, "ms"),
            "target": "<= 100 ms",
            "met": sampled <= HISTORY_TARGET,
        },
        {
            "metric": f"chart of a run of {chart['keys']:,} keys, every key (median)",
            "value": _common.fmt_value(chart["chart"]["median"], "ms"),
            "target": "< 1 s",
            "met": chart["chart"]["median"] < CHART_TARGET,
        },
        {
            "metric": f"runs table, {biggest['runs']:,} runs, first page of {PAGE} (median)",
            "value": _common.fmt_value(page, "ms"),
            "target": "<= 200 ms",
            "met": page <= RUNS_TARGET,
        },
        {
            "metric": f"{most['clients']} clients: aggregate rows/s acked",
            "value": _common.fmt_value(rate, "rate"),
            "target": ">= 500,000/s",
            "met": rate >= AGGREGATE_TARGET,
        },
        {
            "metric": f"{most['clients']} clients: ack latency p99",
            "value": _common.fmt_value(most["ack_latency_seconds"]["p99"], "ms"),
            "target": "",
            "met": None,
        },
    ]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line: ``--quick``, ``--rows-per-client``, ``--json``."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller runs, projects, clients")
    parser.add_argument("--rows-per-client", type=int, default=None, help="rows each client logs")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="(%(default)s)")
    args = parser.parse_args(argv)
    if args.rows_per_client is None:
        args.rows_per_client = QUICK_ROWS_PER_CLIENT if args.quick else ROWS_PER_CLIENT
    if args.rows_per_client < CHECK_EVERY:
        parser.error(f"--rows-per-client must be at least {CHECK_EVERY}")
    return args


def main(argv: list[str] | None = None) -> int:
    """Build, start the server, query, stream; print the tables and write the JSON."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--client"]:
        client(argv[1], argv[2], int(argv[3]), int(argv[4]))
        return 0
    args = parse_args(argv)
    run_sizes = QUICK_RUN_SIZES if args.quick else RUN_SIZES
    project_sizes = QUICK_PROJECT_SIZES if args.quick else PROJECT_SIZES
    client_counts = QUICK_CLIENTS if args.quick else CLIENTS
    env = _common.environment(_common.timer_overhead_ns())
    tracker = _common.import_tracker()
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="tracker-server-queries-") as tmp:
        root = Path(tmp)
        print("building the database:")
        began = time.perf_counter()
        long_runs, projects, wide, compaction_tail = asyncio.run(
            build(root / "tracker.db", run_sizes, project_sizes)
        )
        build_seconds = time.perf_counter() - began
        db_mb = (root / "tracker.db").stat().st_size / 2**20
        with stream.running_server(root, stream.database_url(None, root)) as server:
            api = tracker.Api(server.url)
            print("querying:")
            history = history_queries(api, long_runs)
            runs = runs_queries(api, server.url, projects)
            chart = chart_query(server.url, wide)
            print("streaming:")
            clients = [
                clients_stream(api, server, root / f"c{n}", n, args.rows_per_client, notes)
                for n in client_counts
            ]
            stderr = server.stderr_tail()
            if stderr.strip():
                notes.append(f"server stderr (tail): {stderr.strip()[-500:]}")
    report: dict[str, Any] = {
        "environment": env,
        "settings": {
            "quick": args.quick,
            "run_sizes": run_sizes,
            "project_sizes": project_sizes,
            "clients": client_counts,
            "rows_per_client": args.rows_per_client,
            "repeats": REPEATS,
        },
        "build_seconds": build_seconds,
        "compaction_seconds_after_ingest": compaction_tail,
        "chart": chart,
        "database_mb": db_mb,
        "history": history,
        "runs": runs,
        "clients": clients,
        "loadavg_1m_at_end": _common.load_average(),
        "notes": notes,
    }
    report["targets"] = target_rows(report)
    report["markdown"] = tables(report)
    print("\n" + report["markdown"])
    _common.print_report(
        report,
        f"database {db_mb:,.0f} MB built in {build_seconds:.0f} s",
        ("metric", "value", "target"),
    )
    _common.write_json(args.json, report)
    complete = all(c["stored"] == c["rows"] for c in clients)
    return 0 if complete else 1


if __name__ == "__main__":
    sys.exit(main())

"""Measure what `run.log()` costs the caller, next to the cheapest durable logger we know.

The floor (FIELD-NOTES "The floor") is ``orjson.dumps`` of the row appended to a shared
``bytearray`` under a lock, with a thread that swaps the buffer out every ~2 ms and
``os.write``s it to a file. Everything but ``import tracker`` is measured in this one
process, with the same pool of rows; read-back checks run in subprocesses so that
reading 200k rows does not count towards this process's peak RSS.

Usage: ``python benchmarks/log_overhead.py [--rows N] [--quick] [--json PATH]``
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from array import array
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol

import _common
import orjson

DEFAULT_JSON = _common.RESULTS_DIR / "log_overhead.json"
POOL_SIZE = 1000
WARMUP_ROWS = 20_000
FINISH_ROWS = 100_000
INIT_RUNS = 10
IMPORT_RUNS = 5
FLOOR_SWAP_SECONDS = 0.002
QUICK_ROWS = 50_000
ALTERNATING_BLOCKS = 10

_IMPORT_PROBE = """\
import sys, time
t = time.perf_counter()
import tracker
elapsed = time.perf_counter() - t
print(elapsed, 'aiohttp' in sys.modules)
"""

# Reads a run back and compares every history row with the pool it was logged from.
_VERIFY_PROBE = """\
import sys, orjson, tracker
with open(sys.argv[2], 'rb') as f:
    pool = orjson.loads(f.read())
history = tracker.read_run(sys.argv[1]).history()
size = len(pool)
bad_steps = sum(1 for i, r in enumerate(history) if r['_step'] != i)
bad_values = sum(
    1 for i, r in enumerate(history)
    if any(r.get(k) != v for k, v in pool[i % size].items())
)
found = {'rows': len(history), 'bad_steps': bad_steps, 'bad_values': bad_values}
print(orjson.dumps(found).decode())
"""


class RunLike(_common.LoggingRun, Protocol):
    """The part of `tracker.Run` this benchmark drives: the common part and the run's folder."""

    @property
    def dir(self) -> str | os.PathLike[str]:
        """The run directory."""
        ...


class Floor:
    """The cheapest durable logger: orjson into a locked ``bytearray``, a thread writes it out.

    "Durable" means in the file (the OS page cache); no fsync. The tracker's ``flush`` also
    fsyncs (``fsync_policy="flush"``, the default), so "rows/s until on disk" charges the
    tracker an fsync the floor skips; "until in the file" runs it with
    ``fsync_policy="never"``, like for like.
    """

    def __init__(self, path: Path, swap_seconds: float = FLOOR_SWAP_SECONDS) -> None:
        """Open ``path`` for appending and start the writer thread."""
        self._buffer = bytearray()
        self._lock = threading.Lock()
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._swap_seconds = swap_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._write_loop, name="floor-writer", daemon=True)
        self._thread.start()

    def log(self, row: _common.Row) -> None:
        """Encode ``row`` as one JSON line and append it to the shared buffer."""
        line = orjson.dumps(row, option=orjson.OPT_APPEND_NEWLINE)
        with self._lock:
            self._buffer += line

    def close(self) -> None:
        """Stop the writer after it has written everything logged, and close the file."""
        self._stop.set()
        self._thread.join()
        os.close(self._fd)

    def _write_loop(self) -> None:
        while not self._stop.wait(self._swap_seconds):
            self._drain()
        self._drain()

    def _drain(self) -> None:
        with self._lock:
            data, self._buffer = self._buffer, bytearray()
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view) :]


def vmrss_mb() -> float | None:
    """The process's current resident set size in MB, from /proc (None elsewhere)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def peak_rss_mb() -> float:
    """The process's peak resident set size in MB (ru_maxrss is KB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def measure_import(cwd: Path, runs: int = IMPORT_RUNS) -> dict[str, Any]:
    """Time ``import tracker`` in ``runs`` fresh interpreters; note whether aiohttp came along."""
    seconds: list[float] = []
    aiohttp = False
    for _ in range(runs):
        out = subprocess.run(
            [sys.executable, "-c", _IMPORT_PROBE],
            cwd=cwd,
            env=_common.child_env(),
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        seconds.append(float(out[0]))
        aiohttp = aiohttp or out[1] == "True"
    return {"median": statistics.median(seconds), "samples": seconds, "aiohttp": aiohttp}


def verify_run(run_dir: Path, pool_file: Path, expected: int, notes: list[str]) -> bool:
    """Read ``run_dir`` back in a subprocess; True when it holds exactly the rows logged."""
    proc = subprocess.run(
        [sys.executable, "-c", _VERIFY_PROBE, str(run_dir), str(pool_file)],
        env=_common.child_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        notes.append(f"reading {run_dir.name} back failed: {proc.stderr.strip()[-500:]}")
        return False
    found: dict[str, int] = json.loads(proc.stdout)
    ok = found == {"rows": expected, "bad_steps": 0, "bad_values": 0}
    if not ok:
        notes.append(f"{run_dir.name}: expected {expected} rows read back, got {found}")
    return ok


def verify_floor_file(path: Path, pool: list[_common.Row], n: int, notes: list[str]) -> bool:
    """True when the floor's file holds ``n`` lines and exactly the bytes of ``n`` rows."""
    sizes = [len(orjson.dumps(row, option=orjson.OPT_APPEND_NEWLINE)) for row in pool]
    expected_bytes = sum(sizes) * (n // len(pool)) + sum(sizes[: n % len(pool)])
    lines = 0
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            lines += chunk.count(b"\n")
    size = path.stat().st_size
    ok = lines == n and size == expected_bytes
    if not ok:
        notes.append(f"floor file: {lines} lines / {size} bytes, expected {n} / {expected_bytes}")
    return ok


class TrackerBench:
    """Runs every tracker measurement in one root directory, a fresh run per measurement."""

    def __init__(
        self, tracker: ModuleType, root: Path, pool: list[_common.Row], notes: list[str]
    ) -> None:
        """Measure ``tracker`` with ``pool``, keeping runs under ``root``."""
        self.tracker = tracker
        self.runs_dir = root / "runs"
        self.pool = pool
        self.pool_file = root / "pool.json"
        self.pool_file.write_bytes(orjson.dumps(pool))
        self.notes = notes
        self._last_dir: Path | None = None

    def new_run(self, fsync_policy: str = "flush") -> RunLike:
        """Start a fresh offline run; note it if init handed back the previous run."""
        run: RunLike = self.tracker.init(
            mode="offline",
            dir=str(self.runs_dir),
            project="bench",
            settings={"silent": True, "fsync_policy": fsync_policy},
        )
        if self._last_dir is not None and Path(run.dir).parent == self._last_dir:
            self.notes.append(f"init() returned the previous run {run.dir} after its finish()")
        self._last_dir = Path(run.dir).parent
        return run

    def close_and_verify(self, run: RunLike, expected: int) -> bool:
        """Finish ``run``, check it holds ``expected`` rows, then delete its directory."""
        run.finish(quiet=True)
        run_dir = Path(run.dir).parent
        ok = verify_run(run_dir, self.pool_file, expected, self.notes)
        shutil.rmtree(run_dir, ignore_errors=True)
        return ok

    def init_times(self, runs: int = INIT_RUNS) -> dict[str, Any]:
        """Time ``init()`` of ``runs`` fresh runs; the first also starts the I/O thread."""
        return _common.time_inits(self.new_run, self.discard, runs)

    def discard(self, run: RunLike) -> None:
        """Finish ``run`` and delete its directory, unread."""
        run.finish(quiet=True)
        shutil.rmtree(Path(run.dir).parent, ignore_errors=True)

    def latency(self, n: int) -> dict[str, Any]:
        """Per-call cost of ``n`` timed calls after a warm-up, and RSS growth over them (MB)."""
        run = self.new_run()
        _common.log_untimed(run.log, self.pool, WARMUP_ROWS)
        samples = array("q", bytes(8 * n))
        before = vmrss_mb()
        _common.log_timed(run.log, self.pool, samples)
        after = vmrss_mb()
        run.flush(timeout=None)
        _common.check_flushed("tracker timed run", _common.status_dict(run), self.notes)
        return {
            "log_us": dataclasses.asdict(_common.Latency.from_samples(samples)),
            "rss_growth_mb": _common.delta(before, after),
            "verified": self.close_and_verify(run, WARMUP_ROWS + n),
        }

    def throughput(self, n: int, fsync_policy: str = "flush") -> dict[str, Any]:
        """Untimed loop of ``n`` calls: calls/s, and rows/s until ``flush()`` returns (with
        ``fsync_policy="never"``, once the rows are in the file, as the floor's are)."""
        run = self.new_run(fsync_policy)
        start = time.perf_counter()
        _common.log_untimed(run.log, self.pool, n)
        logged = time.perf_counter()
        run.flush(timeout=None)
        flushed = time.perf_counter()
        status = _common.status_dict(run)
        _common.check_flushed("tracker throughput run", status, self.notes)
        return {
            "calls_per_s": n / (logged - start),
            "rows_per_s_on_disk": n / (flushed - start),
            "flush_seconds": flushed - logged,
            "status_after_flush": status,
            "verified": self.close_and_verify(run, n),
        }

    def finish_time(self, n: int = FINISH_ROWS) -> dict[str, Any]:
        """Seconds ``finish()`` takes right after ``n`` rows were logged, and the read-back."""
        run = self.new_run()
        _common.log_untimed(run.log, self.pool, n)
        start = time.perf_counter()
        run.finish(quiet=True)
        seconds = time.perf_counter() - start
        run_dir = Path(run.dir).parent
        verified = verify_run(run_dir, self.pool_file, n, self.notes)
        shutil.rmtree(run_dir, ignore_errors=True)
        return {"finish_seconds": seconds, "verified": verified}


def bench_floor(root: Path, pool: list[_common.Row], n: int, notes: list[str]) -> dict[str, Any]:
    """The floor's per-call cost, calls/s, and rows/s until its file holds everything."""
    timed_path = root / "floor-timed.jsonl"
    floor = Floor(timed_path)
    _common.log_untimed(floor.log, pool, WARMUP_ROWS)
    samples = array("q", bytes(8 * n))
    before = vmrss_mb()
    _common.log_timed(floor.log, pool, samples)
    after = vmrss_mb()
    floor.close()
    timed_ok = verify_floor_file(timed_path, pool, WARMUP_ROWS + n, notes)

    path = root / "floor-throughput.jsonl"
    floor = Floor(path)
    start = time.perf_counter()
    _common.log_untimed(floor.log, pool, n)
    logged = time.perf_counter()
    floor.close()
    joined = time.perf_counter()
    return {
        "log_us": dataclasses.asdict(_common.Latency.from_samples(samples)),
        "calls_per_s": n / (logged - start),
        "rows_per_s_on_disk": n / (joined - start),
        "flush_seconds": joined - logged,
        "rss_growth_mb": _common.delta(before, after),
        "verified": verify_floor_file(path, pool, n, notes) and timed_ok,
    }


def alternating_p50(bench: TrackerBench, root: Path, n: int) -> dict[str, Any]:
    """p50 of tracker and floor in alternating blocks of ``n / ALTERNATING_BLOCKS`` calls,
    both alive in this process: a change in the machine's load hits both alike, which the
    one-after-the-other figures cannot promise on a shared machine."""
    run = bench.new_run()
    floor = Floor(root / "floor-alternating.jsonl")
    _common.log_untimed(run.log, bench.pool, WARMUP_ROWS)
    _common.log_untimed(floor.log, bench.pool, WARMUP_ROWS)
    samples = array("q", bytes(8 * max(1, n // ALTERNATING_BLOCKS)))
    tracker_ns: list[float] = []
    floor_ns: list[float] = []
    for _ in range(ALTERNATING_BLOCKS):
        _common.log_timed(run.log, bench.pool, samples)
        tracker_ns.append(statistics.median(samples))
        _common.log_timed(floor.log, bench.pool, samples)
        floor_ns.append(statistics.median(samples))
    bench.discard(run)
    floor.close()
    ratios = [t / f for t, f in zip(tracker_ns, floor_ns, strict=True)]
    return {
        "tracker_p50_us": statistics.median(tracker_ns) / 1000,
        "floor_p50_us": statistics.median(floor_ns) / 1000,
        "p50_ratio": statistics.median(ratios),
        "block_ratios": ratios,
    }


def target_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per metric: tracker value, floor value, target, and whether it is met."""
    t, f, ratio = report["tracker"], report["floor"], report["ratio"]
    tl, fl = t["log_us"], f["log_us"]
    imp, init = t["import_seconds"], t["init_seconds"]
    rows: list[tuple[str, Any, Any, str, str, bool | None]] = [
        ("log() p50", tl["p50_us"], fl["p50_us"], "us", "<= 1 µs", tl["p50_us"] <= 1),
        ("log() p99", tl["p99_us"], fl["p99_us"], "us", "<= 10 µs", tl["p99_us"] <= 10),
        ("log() p99.9", tl["p999_us"], fl["p999_us"], "us", "", None),
        ("log() mean", tl["mean_us"], fl["mean_us"], "us", "", None),
        ("log() max", tl["max_us"], fl["max_us"], "us", "", None),
        ("p50 tracker/floor", ratio["p50"], None, "x", "", None),
        (
            "p50 in alternating blocks",
            report["alternating"]["tracker_p50_us"],
            report["alternating"]["floor_p50_us"],
            "us",
            "",
            None,
        ),
        (
            "p50 tracker/floor, alternating blocks (median)",
            report["alternating"]["p50_ratio"],
            None,
            "x",
            "<= 2x",
            report["alternating"]["p50_ratio"] <= 2,
        ),
        ("mean tracker/floor", ratio["mean"], None, "x", "", None),
        ("calls/s (untimed loop)", t["calls_per_s"], f["calls_per_s"], "rate", "", None),
        (
            "rows/s until on disk",
            t["rows_per_s_on_disk"],
            f["rows_per_s_on_disk"],
            "rate",
            ">= 500,000/s",
            t["rows_per_s_on_disk"] >= 500_000,
        ),
        (
            "rows/s until in the file (no fsync)",
            t["rows_per_s_in_file"],
            f["rows_per_s_on_disk"],
            "rate",
            "",
            None,
        ),
        ("flush() after the loop", t["flush_seconds"], f["flush_seconds"], "ms", "", None),
        ("read back verified", t["verified"], f["verified"], "", "all rows", t["verified"]),
        ("import tracker (median)", imp["median"], None, "ms", "<= 100 ms", imp["median"] <= 0.1),
        ("aiohttp imported", imp["aiohttp"], None, "", "no", not imp["aiohttp"]),
        (
            f"init() (median of {INIT_RUNS})",
            init["median"],
            None,
            "ms",
            "<= 20 ms",
            init["median"] <= 0.02,
        ),
        ("init() first (starts thread)", init["first"], None, "ms", "", None),
        (
            f"finish() after {FINISH_ROWS:,} rows",
            t["finish_seconds"],
            None,
            "ms",
            "<= 50 ms",
            t["finish_seconds"] <= 0.05,
        ),
        (
            "peak RSS (before the floor)",
            t["peak_rss_mb"],
            None,
            "MB",
            "<= 60 MB",
            t["peak_rss_mb"] <= 60,
        ),
        ("RSS growth over timed rows", t["rss_growth_mb"], f["rss_growth_mb"], "MB", "", None),
    ]
    return [
        {
            "metric": name,
            "tracker": _common.fmt_value(tv, unit),
            "floor": _common.fmt_value(fv, unit),
            "target": target,
            "met": met,
        }
        for name, tv, fv, unit, target, met in rows
    ]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line: ``--rows``, ``--quick``, ``--json``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000, help="rows per measurement")
    parser.add_argument("--quick", action="store_true", help=f"CI smoke run: --rows {QUICK_ROWS}")
    parser.add_argument(
        "--json", type=Path, default=DEFAULT_JSON, help=f"where to write results ({DEFAULT_JSON})"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.rows = QUICK_ROWS
    if args.rows < 1:
        parser.error(f"--rows must be at least 1, got {args.rows}")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run every measurement, print the table, write the JSON; exit 1 if a read-back failed."""
    args = parse_args(argv)
    n: int = args.rows
    pool = _common.make_pool(POOL_SIZE)
    notes: list[str] = []
    env = _common.environment(_common.timer_overhead_ns())
    with tempfile.TemporaryDirectory(prefix="tracker-bench-") as tmp:
        root = Path(tmp)
        imported = measure_import(root)
        bench = TrackerBench(_common.import_tracker(), root, pool, notes)
        init = bench.init_times()
        timed = bench.latency(n)
        loop = bench.throughput(n)
        unsynced = bench.throughput(n, fsync_policy="never")
        finish = bench.finish_time()
        peak = peak_rss_mb()  # before the floor runs, so the figure is the tracker's alone
        floor = bench_floor(root, pool, n, notes)
        alternating = alternating_p50(bench, root, n)
    tracker = {
        "log_us": timed["log_us"],
        "calls_per_s": loop["calls_per_s"],
        "rows_per_s_on_disk": loop["rows_per_s_on_disk"],
        "rows_per_s_in_file": unsynced["rows_per_s_on_disk"],
        "flush_seconds": loop["flush_seconds"],
        "verified": timed["verified"]
        and loop["verified"]
        and unsynced["verified"]
        and finish["verified"],
        "import_seconds": imported,
        "init_seconds": init,
        "finish_seconds": finish["finish_seconds"],
        "peak_rss_mb": peak,
        "peak_rss_mb_after_floor": peak_rss_mb(),
        "rss_growth_mb": timed["rss_growth_mb"],
        "status_after_flush": loop["status_after_flush"],
    }
    report: dict[str, Any] = {
        "environment": env,
        "settings": {
            "rows": n,
            "warmup_rows": WARMUP_ROWS,
            "pool_size": POOL_SIZE,
            "finish_rows": FINISH_ROWS,
            "init_runs": INIT_RUNS,
            "import_runs": IMPORT_RUNS,
            "floor_swap_seconds": FLOOR_SWAP_SECONDS,
        },
        "tracker": tracker,
        "floor": floor,
        "ratio": _common.latency_ratio(tracker["log_us"], floor["log_us"]),
        "alternating": alternating,
        "notes": notes,
    }
    report["targets"] = target_rows(report)
    settings = f"rows={n:,} warm-up={WARMUP_ROWS:,} pool={POOL_SIZE}"
    _common.print_report(report, settings, ("metric", "tracker", "floor", "target"))
    _common.write_json(args.json, report)
    return 0 if tracker["verified"] and floor["verified"] else 1


if __name__ == "__main__":
    sys.exit(main())

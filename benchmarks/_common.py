"""What the benchmark scripts share: this checkout's ``tracker``, the row pool and the timed
loops, latency percentiles, the machine's facts, and the printed table and JSON file.

The scripts run as ``python3 benchmarks/X.py``, so this folder is ``sys.path[0]`` and
``import _common`` finds this module whatever the working directory.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
import os
import platform
import random
import statistics
import sys
import time
from array import array
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from itertools import cycle, islice
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol, TypeVar

import orjson

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = ROOT / "benchmarks" / "results"

Row = dict[str, float]
LogCall = Callable[[Row], object]
R = TypeVar("R")


class LoggingRun(Protocol):
    """The part of `tracker.Run` every benchmark drives."""

    def log(self, data: Row, /) -> object:
        """Log one row."""
        ...

    def flush(self, timeout: float | None = None) -> object:
        """Return when everything logged so far is in the run log (and acknowledged, online)."""
        ...

    def status(self) -> object:
        """A snapshot of the run's counters."""
        ...

    def finish(self, *, quiet: bool) -> object:
        """Flush (online: wait for the server's acks) and close the run."""
        ...


@dataclass(frozen=True)
class Latency:
    """Per-call latency percentiles of one timed loop, in microseconds."""

    p50_us: float
    p99_us: float
    p999_us: float
    mean_us: float
    max_us: float

    @classmethod
    def from_samples(cls, samples_ns: Iterable[int]) -> Latency:
        """Summarise nanosecond samples with nearest-rank percentiles.

        Counts distinct values instead of sorting: a sorted list of 200k ints would add
        ~8 MB to the peak RSS a benchmark reports.
        """
        counts = sorted(Counter(samples_ns).items())
        n = sum(count for _, count in counts)
        total = sum(value * count for value, count in counts)

        def rank(q: float) -> float:
            # round() first: 0.99 * 200_000 is 198000.00000000003 in floating point.
            wanted = max(1, math.ceil(round(q * n, 6)))
            seen = 0
            for value, count in counts:
                seen += count
                if seen >= wanted:
                    return value / 1000
            return counts[-1][0] / 1000

        return cls(
            p50_us=rank(0.5),
            p99_us=rank(0.99),
            p999_us=rank(0.999),
            mean_us=total / n / 1000,
            max_us=counts[-1][0] / 1000,
        )


def latency_ratio(log_us: dict[str, float], baseline_us: dict[str, float]) -> dict[str, float]:
    """p50 and mean of one `Latency` (as a dict) over a baseline's: the cost relative to it."""
    return {
        "p50": log_us["p50_us"] / baseline_us["p50_us"],
        "mean": log_us["mean_us"] / baseline_us["mean_us"],
    }


def make_pool(size: int, seed: int = 0) -> list[Row]:
    """Build ``size`` distinct rows of 10 floats, so no row is built inside a timed loop."""
    rng = random.Random(seed)
    return [{f"m{k}": rng.random() for k in range(10)} for _ in range(size)]


def log_untimed(log: LogCall, pool: list[Row], n: int) -> None:
    """Call ``log`` on ``n`` rows of the pool, cyclically, with nothing else in the loop."""
    for row in islice(cycle(pool), n):
        log(row)


def log_timed(log: LogCall, pool: list[Row], samples: array[int]) -> None:
    """Call ``log`` once per slot of ``samples`` and store each call's duration in ns."""
    clock = time.perf_counter_ns
    for i, row in enumerate(islice(cycle(pool), len(samples))):
        start = clock()
        log(row)
        samples[i] = clock() - start


def timer_overhead_ns(n: int = 100_000) -> float:
    """Median cost of two back-to-back ``perf_counter_ns`` calls: included in every sample."""
    clock = time.perf_counter_ns
    samples = array("q", bytes(8 * n))
    for i in range(n):
        start = clock()
        samples[i] = clock() - start
    return statistics.median(samples)


def time_inits(start: Callable[[], R], close: Callable[[R], object], runs: int) -> dict[str, Any]:
    """Time ``start()`` (an ``init()``) ``runs`` times, calling ``close`` untimed after each."""
    seconds: list[float] = []
    for _ in range(runs):
        began = time.perf_counter()
        run = start()
        seconds.append(time.perf_counter() - began)
        close(run)
    return {
        "median": statistics.median(seconds),
        "first": seconds[0],
        "max": max(seconds),
        "samples": seconds,
    }


def delta(before: float | None, after: float | None) -> float | None:
    """``after - before``, or None when either reading was unavailable on this platform."""
    return None if before is None or after is None else after - before


def child_env() -> dict[str, str]:
    """The environment for subprocesses: this checkout's ``tracker`` first on the path, and
    bytecode cached (no ``PYTHONDONTWRITEBYTECODE``), as for a package pip installed, so
    that import times do not include compiling this checkout's sources every time."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return env


def import_tracker() -> ModuleType:
    """Import this checkout's ``tracker`` (ahead of any installed copy)."""
    sys.path.insert(0, str(ROOT))
    return importlib.import_module("tracker")


def status_dict(run: LoggingRun) -> dict[str, Any]:
    """The run's status snapshot as a plain dict."""
    status = run.status()
    if dataclasses.is_dataclass(status) and not isinstance(status, type):
        return dataclasses.asdict(status)
    return dict(vars(status))


def check_flushed(label: str, status: dict[str, Any], notes: list[str]) -> None:
    """Note anything left queued or dropped, or an error, after a flush."""
    if status.get("queued") or status.get("dropped") or status.get("last_error"):
        notes.append(f"{label}: status after flush {status}")


def load_average() -> float | None:
    """The 1-minute load average (None where the OS has none): how busy the machine was."""
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else None


def environment(timer_ns: float) -> dict[str, Any]:
    """The facts a reader needs to compare this result with another machine's."""
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "orjson": orjson.__version__,
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "timer_overhead_ns": timer_ns,
        # other processes on the machine skew latencies; this says how busy it was
        "loadavg_1m": load_average(),
    }


def fmt_value(value: float | bool | None, unit: str) -> str:
    """One table cell: ``value`` in ``unit`` (us, ms, s, rate, x, MB, rows), "-" when None."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if unit == "us":
        return f"{value:.2f} µs"
    if unit == "ms":
        return f"{value * 1000:.1f} ms"
    if unit == "s":
        return f"{value:.2f} s"
    if unit == "rate":
        return f"{value:,.0f}/s"
    if unit == "x":
        return f"{value:.2f}x"
    if unit == "MB":
        return f"{value:.1f} MB"
    if unit == "rows":
        return f"{value:,.0f}"
    return str(value)


def print_report(report: dict[str, Any], settings: str, columns: tuple[str, ...]) -> None:
    """Print the environment, ``settings`` (one line), the targets table and any notes.

    ``columns`` are the keys of each ``report["targets"]`` row shown before its "met?" cell.
    """
    env = report["environment"]
    print(
        f"Python {env['python']} ({env['implementation']}), orjson {env['orjson']}, "
        f"{env['cpu_count']} CPUs, {env['platform']}, {env['date']}"
    )
    print(
        f"{settings} "
        f"timer overhead={env['timer_overhead_ns']:.0f} ns (included in each sample), "
        f"load average at start={env['loadavg_1m']}\n"
    )
    header = (*columns, "met?")
    lines = [
        (*(r[c] for c in columns), {True: "yes", False: "NO"}.get(r["met"], ""))
        for r in report["targets"]
    ]
    widths = [max(len(str(row[i])) for row in [header, *lines]) for i in range(len(header))]
    for row in [header, tuple("-" * w for w in widths), *lines]:
        print(" | ".join(str(cell).ljust(w) for cell, w in zip(row, widths, strict=True)))
    for note in report["notes"]:
        print(f"note: {note}")


def write_json(path: Path, report: dict[str, Any]) -> None:
    """Write ``report`` as indented JSON to ``path`` (creating its folder) and say where."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2) + b"\n")
    print(f"\nwrote {path}")


def current_rss_mb(pid: int | str = "self") -> float | None:
    """Resident set size of process ``pid`` in MB, from /proc (None elsewhere or if gone)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        return None
    return None


def peak_rss_mb() -> float:
    """This process's peak resident set size in MB (ru_maxrss: KB on Linux, bytes on macOS)."""
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def process_tree(pid: int) -> list[int]:
    """``pid`` and every descendant still running (Linux /proc; just ``[pid]`` elsewhere)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        try:
            tasks = os.listdir(f"/proc/{current}/task")
        except OSError:
            continue
        for task in tasks:
            try:
                with open(f"/proc/{current}/task/{task}/children", encoding="ascii") as children:
                    todo += [int(child) for child in children.read().split()]
            except OSError:
                continue
    return found


class TreeRssSampler:
    """Samples the summed RSS of a process and its descendants on a thread; keeps the peak.

    A tool's helper processes (W&B's ``wandb-core`` service) count towards its memory.
    """

    def __init__(self, pid: int, interval: float = 0.02) -> None:
        """Start sampling ``pid``'s tree every ``interval`` seconds."""
        import threading

        self.pid = pid
        self.interval = interval
        self.peak_mb = 0.0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            total = sum(filter(None, map(current_rss_mb, process_tree(self.pid))))
            self.peak_mb = max(self.peak_mb, total)
            self.samples += 1
            self._stop.wait(self.interval)

    def stop(self) -> float:
        """Stop sampling; return the peak summed RSS in MB."""
        self._stop.set()
        self._thread.join()
        return self.peak_mb


def markdown_table(header: tuple[str, ...], rows: Iterable[tuple[str, ...]]) -> str:
    """A GitHub Markdown table of ``rows`` under ``header`` (cells are already text)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)

"""Measure what system metrics cost: one sample's CPU time, and an idle run's CPU share.

Three measurements: the CPU time of one sample (``time.process_time`` over many samples in
this process, with psutil and without it); ``init()``'s first call in fresh processes with
stats on and off, alternately; and the share of one core an idle run uses with stats off,
at the default 15 s interval and at 1 s, from each child's own CPU time (``getrusage``)
over the same idle seconds, after its first sample (whose one-time cost, the import of
psutil included, is reported apart). The budget is 0.1 % of one core at 15 s.

Usage: ``python benchmarks/system_overhead.py [--seconds S] [--samples N] [--quick] [--json PATH]``
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import _common

DEFAULT_JSON = _common.RESULTS_DIR / "system_overhead.json"
INIT_RUNS = 10
BUDGET_PERCENT = 0.1
WARMUP_SECONDS = 2.0
"""How long each idle child runs before its CPU time is read: its first sample is in."""

# One idle run: prints the CPU seconds of init() and the first sample, then of `seconds`
# idle ones, and init()'s wall time.
_IDLE_PROBE = """\
import json, resource, sys, time
def cpu():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime
import tracker
stats, seconds, warmup, root = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
settings = {"silent": True, "console": "off"}
if stats == "off":
    settings["disable_stats"] = True
else:
    settings["stats_interval_seconds"] = float(stats)
began, start_cpu = time.perf_counter(), cpu()
run = tracker.init(project="bench", mode="offline", dir=root, settings=settings)
init_seconds = time.perf_counter() - began
time.sleep(warmup)
warm_cpu = cpu()
time.sleep(seconds)
idle_cpu = cpu() - warm_cpu
run.finish(quiet=True)
samples = len(tracker.read_run(run.dir).history(stream="system"))
print(json.dumps({"init_seconds": init_seconds, "start_cpu": warm_cpu - start_cpu,
                  "idle_cpu": idle_cpu, "samples": samples}))
"""


def sample_cost(root: Path, samples: int) -> dict[str, Any]:
    """CPU and wall time of one sample, through psutil and without it (µs)."""
    _common.import_tracker()
    from tracker._system import new_sampler
    from tracker._system._sampler import OsCounters, Sampler, find_cgroup_memory

    psutil_sampler, full = new_sampler(root)
    samplers = {"os": Sampler(OsCounters(), root, find_cgroup_memory())}
    if full:
        samplers["psutil"] = psutil_sampler
    results: dict[str, Any] = {}
    for name, sampler in samplers.items():
        for _ in range(10):
            sampler.sample()
        cpu, wall = time.process_time(), time.perf_counter()
        for _ in range(samples):
            metrics = sampler.sample()
        results[name] = {
            "cpu_us": (time.process_time() - cpu) / samples * 1e6,
            "wall_us": (time.perf_counter() - wall) / samples * 1e6,
            "metrics": len(metrics),
        }
    return results


def idle_run(root: Path, stats: str, seconds: float, warmup: float) -> dict[str, Any]:
    """One idle child run with ``stats`` ("off" or an interval); its JSON line."""
    done = subprocess.run(
        [sys.executable, "-c", _IDLE_PROBE, stats, str(seconds), str(warmup), str(root)],
        env=_common.child_env(),
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 120,
    )
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def init_times(root: Path) -> dict[str, float]:
    """Median first ``init()`` of fresh processes, stats on (15 s) and off, alternately."""
    times: dict[str, list[float]] = {"on": [], "off": []}
    for _ in range(INIT_RUNS):
        for label, stats in (("on", "15"), ("off", "off")):
            times[label].append(idle_run(root, stats, 0.0, 0.0)["init_seconds"])
    return {label: statistics.median(values) for label, values in times.items()}


def cpu_shares(root: Path, seconds: float) -> dict[str, dict[str, Any]]:
    """The idle children, stats off, every 15 s and every 1 s, run side by side (they
    sleep: they barely compete): each one's CPU over ``seconds`` idle seconds."""
    configs = {"off": "off", "15 s": "15", "1 s": "1"}
    with concurrent.futures.ThreadPoolExecutor(len(configs)) as pool:
        futures = {
            label: pool.submit(idle_run, root, stats, seconds, WARMUP_SECONDS)
            for label, stats in configs.items()
        }
        results = {label: future.result() for label, future in futures.items()}
    off = results["off"]
    for result in results.values():
        result["share_percent"] = (result["idle_cpu"] - off["idle_cpu"]) / seconds * 100
        result["start_cpu_extra"] = result["start_cpu"] - off["start_cpu"]
    return results


def target_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The printed table: one row per figure, with the budget where there is one."""
    rows: list[dict[str, Any]] = []
    for name, cost in report["sample"].items():
        rows.append(
            {
                "metric": f"one sample, {name} ({cost['metrics']} metrics): CPU",
                "value": _common.fmt_value(cost["cpu_us"], "us"),
                "target": "",
                "met": None,
            }
        )
    init = report["init_seconds"]
    for label in ("off", "on"):
        rows.append(
            {
                "metric": f"first init(), stats {label} (median of {INIT_RUNS})",
                "value": _common.fmt_value(init[label], "ms"),
                "target": "",
                "met": None,
            }
        )
    shares = report["idle"]
    for label in ("15 s", "1 s"):
        share = shares[label]
        rows.append(
            {
                "metric": f"CPU share of one core, every {label} ({share['samples']} samples)",
                "value": f"{share['share_percent']:.4f} %",
                "target": f"<= {BUDGET_PERCENT} %" if label == "15 s" else "",
                "met": share["share_percent"] <= BUDGET_PERCENT if label == "15 s" else None,
            }
        )
    rows.append(
        {
            "metric": "start: init() and the first sample, CPU beyond stats off",
            "value": _common.fmt_value(shares["15 s"]["start_cpu_extra"], "ms"),
            "target": "",
            "met": None,
        }
    )
    return rows


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line: ``--seconds``, ``--samples``, ``--quick``, ``--json``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=120.0, help="idle seconds measured")
    parser.add_argument("--samples", type=int, default=500, help="samples timed in-process")
    parser.add_argument("--quick", action="store_true", help="smoke run: 16 s, 50 samples")
    parser.add_argument(
        "--json", type=Path, default=DEFAULT_JSON, help=f"where to write results ({DEFAULT_JSON})"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds, args.samples = 16.0, 50
    if args.seconds <= 0 or args.samples < 1:
        parser.error("--seconds must be > 0 and --samples at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    """Measure, print the table, write the JSON; exit 1 when the 15 s share is over budget."""
    args = parse_args(argv)
    env = _common.environment(_common.timer_overhead_ns())
    with tempfile.TemporaryDirectory(prefix="tracker-bench-") as tmp:
        root = Path(tmp)
        report: dict[str, Any] = {
            "environment": env,
            "seconds": args.seconds,
            "sample": sample_cost(root, args.samples),
            "init_seconds": init_times(root),
            "idle": cpu_shares(root, args.seconds),
            "notes": [],
        }
    report["targets"] = target_rows(report)
    settings = f"idle seconds={args.seconds:g} samples={args.samples}"
    _common.print_report(report, settings, ("metric", "value", "target"))
    _common.write_json(args.json, report)
    return 0 if report["idle"]["15 s"]["share_percent"] <= BUDGET_PERCENT else 1


if __name__ == "__main__":
    sys.exit(main())

"""Measure what logging costs a training loop: ``run.log()`` on the caller's thread plus the
I/O thread's share of the GIL, against the same loop not logging.

A step is one numpy matmul sized to take ``--step-ms`` (1 ms; BLAS on one thread, so the
second core is free for the I/O thread, as on a machine with cores to spare), followed by
``run.log()`` of 10 floats. A second case runs tiny steps (~50 µs: 20k steps/s). Each case
runs in a fresh process: short blocks of steps that log alternate with blocks that call a
no-op instead (same loop), so the load other processes put on the machine hits both alike.
The slowdown is the median, over rounds, of (logging block time / the neighbouring
not-logging block's time) - 1; the ratio of the fastest blocks of each kind is shown too
(the least disturbed by other processes), and the extra CPU time per step (this process,
every thread: log() and the I/O thread), which other processes' load does not inflate.
Offline (run log only) and online (to a local ``tracker server``).

Usage: ``python benchmarks/training_loop.py [--quick] [--rounds N] [--modes offline,online]
[--batch-linger SECONDS] [--json PATH]``
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import _common

DEFAULT_JSON: Final = _common.RESULTS_DIR / "training_loop.json"
CASES: Final = (("1 ms steps", 1e-3), ("tiny steps (20k/s)", 50e-6))
BLOCK_SECONDS: Final = 0.05
ROUNDS: Final = 200
QUICK_ROUNDS: Final = 30
TARGET_SLOWDOWN: Final = 0.02
CHILD_TIMEOUT_SECONDS: Final = 600.0
ONE_THREAD: Final = {
    "OPENBLAS_NUM_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}


def calibrate(seconds: float) -> tuple[int, float]:
    """The side ``n`` of a square float64 matmul taking about ``seconds``, and its time.

    Each trial keeps the fastest of several timed batches: other processes only slow a batch.
    """
    import numpy as np

    n = measured = 64
    took = 0.0
    for _ in range(6):
        a, b = np.random.rand(n, n), np.random.rand(n, n)
        reps = max(5, int(0.01 / max(seconds, 1e-6)))
        batches = []
        for _ in range(7):
            began = time.perf_counter()
            for _ in range(reps):
                a @ b
            batches.append((time.perf_counter() - began) / reps)
        took = min(batches)
        measured, n = n, max(4, round(n * (seconds / took) ** (1 / 3)))
    return measured, took


def run_block(
    steps: int, a: Any, b: Any, log: Callable[[dict[str, float]], object], row: dict[str, float]
) -> tuple[float, float]:
    """``steps`` steps of ``a @ b`` then ``log(row)``: wall seconds and process CPU seconds."""
    cpu = time.process_time()
    began = time.perf_counter()
    for _ in range(steps):
        a @ b
        log(row)
    return time.perf_counter() - began, time.process_time() - cpu


def noop(row: dict[str, float]) -> None:
    """The baseline's stand-in for ``run.log``: a call that does nothing."""


def child(spec: dict[str, Any]) -> dict[str, Any]:
    """One case in this (fresh) process: calibrate, baseline, then alternate blocks."""
    import numpy as np

    tracker = _common.import_tracker()
    n, step_seconds = calibrate(spec["step_seconds"])
    a, b = np.random.rand(n, n), np.random.rand(n, n)
    steps = max(10, int(BLOCK_SECONDS / step_seconds))
    row = _common.make_pool(1)[0]
    rounds = int(spec["rounds"])
    before_init = [run_block(steps, a, b, noop, row)[0] for _ in range(min(rounds, 20))]
    settings: dict[str, Any] = {"silent": True}
    if spec["linger"] is not None:
        settings["batch_linger_seconds"] = spec["linger"]
    if spec["url"]:
        settings["base_url"] = spec["url"]
    run = tracker.init(
        mode="online" if spec["url"] else "offline",
        project="bench",
        dir=spec["dir"],
        settings=settings,
    )
    run_block(steps, a, b, run.log, row)  # warm-up: the first wake-ups, the connection
    base: list[tuple[float, float]] = []
    logged: list[tuple[float, float]] = []
    for i in range(rounds):
        order = ((base, noop), (logged, run.log))
        for into, log in order if i % 2 == 0 else order[::-1]:
            into.append(run_block(steps, a, b, log, row))
    run.flush()
    status = _common.status_dict(run)
    run.finish(quiet=True)
    ratios = [log[0] / not_log[0] for log, not_log in zip(logged, base, strict=True)]
    base_wall = statistics.median(wall for wall, _ in base)
    log_wall = statistics.median(wall for wall, _ in logged)
    base_cpu = statistics.median(cpu for _, cpu in base)
    log_cpu = statistics.median(cpu for _, cpu in logged)
    return {
        "matmul_n": n,
        "step_seconds_calibrated": step_seconds,
        "steps_per_block": steps,
        "rounds": rounds,
        "rows_logged": steps * (rounds + 1),
        "block_seconds": {
            "before_init_median": statistics.median(before_init),
            "not_logging_median": base_wall,
            "logging_median": log_wall,
            "not_logging_min": min(wall for wall, _ in base),
            "logging_min": min(wall for wall, _ in logged),
        },
        "steps_per_s_not_logging": steps / base_wall,
        "steps_per_s_logging": steps / log_wall,
        "slowdown": statistics.median(ratios) - 1,
        "slowdown_quartiles": [q - 1 for q in statistics.quantiles(ratios, n=4)],
        "slowdown_fastest_blocks": min(w for w, _ in logged) / min(w for w, _ in base) - 1,
        "extra_cpu_us_per_step": (log_cpu - base_cpu) / steps * 1e6,
        "status": status,
    }


def measure(
    label: str, step_seconds: float, url: str | None, root: Path, args: argparse.Namespace
) -> dict[str, Any]:
    """Run one case in a fresh process and return what it measured."""
    spec = {
        "step_seconds": step_seconds,
        "url": url,
        "dir": str(root / "runs"),
        "rounds": args.rounds,
        "linger": args.batch_linger,
    }
    out = root / "case.json"
    env = _common.child_env()
    env.update(ONE_THREAD)
    env["TRACKER_CONFIG_DIR"] = str(root / "config")
    print(f"  {label} ({'online' if url else 'offline'}) ...", flush=True)
    proc = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(spec), str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT_SECONDS,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{label}: the measuring process failed: {proc.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(out.read_text())
    return result


def target_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per case and mode: steps/s, slowdown (and its split), the target."""
    rows = []
    for key, result in report["cases"].items():
        label, mode = key.rsplit(" / ", 1)
        one_ms = label == CASES[0][0]
        low, _, high = result["slowdown_quartiles"]
        for metric, value in (
            ("steps/s not logging", _common.fmt_value(result["steps_per_s_not_logging"], "rate")),
            ("steps/s logging", _common.fmt_value(result["steps_per_s_logging"], "rate")),
            (
                "extra CPU per step (log() + I/O thread)",
                f"{result['extra_cpu_us_per_step']:.1f} µs",
            ),
            ("slowdown, fastest blocks", f"{result['slowdown_fastest_blocks'] * 100:.2f} %"),
            ("slowdown, quartiles over rounds", f"{low * 100:.2f} % .. {high * 100:.2f} %"),
        ):
            rows.append(
                {"metric": f"{label}, {mode}: {metric}", "value": value, "target": "", "met": None}
            )
        slowdown = result["slowdown"]
        rows.append(
            {
                "metric": f"{label}, {mode}: slowdown (median of rounds)",
                "value": f"{slowdown * 100:.2f} %",
                "target": "<= 2 %" if one_ms else "",
                "met": slowdown <= TARGET_SLOWDOWN if one_ms else None,
            }
        )
    return rows


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line: ``--quick``, ``--rounds``, ``--json``."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="blocks of each kind")
    parser.add_argument("--quick", action="store_true", help=f"--rounds {QUICK_ROUNDS}")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="(%(default)s)")
    parser.add_argument(
        "--modes", default="offline,online", help="comma-separated: offline, online (both)"
    )
    parser.add_argument(
        "--batch-linger",
        type=float,
        default=None,
        help="the runs' batch_linger_seconds setting (default: tracker's default)",
    )
    args = parser.parse_args(argv)
    args.modes = [mode.strip() for mode in args.modes.split(",") if mode.strip()]
    if not args.modes or set(args.modes) - {"offline", "online"}:
        parser.error(f"--modes {args.modes}: use offline, online or offline,online")
    if args.quick:
        args.rounds = QUICK_ROUNDS
    if args.rounds < 1:
        parser.error(f"--rounds must be at least 1, got {args.rounds}")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the four cases (two step sizes, offline and online); print and write the results."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        Path(argv[2]).write_text(json.dumps(child(json.loads(argv[1]))))
        return 0
    args = parse_args(argv)
    import stream

    env = _common.environment(_common.timer_overhead_ns())
    cases: dict[str, Any] = {}
    with (
        tempfile.TemporaryDirectory(prefix="tracker-training-") as tmp,
        stream.running_server(Path(tmp)) as server,
    ):
        for label, seconds in CASES:
            for mode, url in (("offline", None), ("online", server.url)):
                if mode in args.modes:
                    root = Path(tempfile.mkdtemp(dir=tmp))
                    cases[f"{label} / {mode}"] = measure(label, seconds, url, root, args)
    report: dict[str, Any] = {
        "environment": env,
        "settings": {
            "rounds": args.rounds,
            "batch_linger_seconds": args.batch_linger,
            "block_seconds": BLOCK_SECONDS,
            "blas_threads": 1,
            "cpu_count": os.cpu_count(),
        },
        "cases": cases,
        "loadavg_1m_at_end": _common.load_average(),
        "notes": [],
    }
    report["targets"] = target_rows(report)
    linger = "default" if args.batch_linger is None else f"{args.batch_linger}s"
    settings = f"rounds={args.rounds} block={BLOCK_SECONDS}s BLAS threads=1 linger={linger}"
    _common.print_report(report, settings, ("metric", "value", "target"))
    _common.write_json(args.json, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())

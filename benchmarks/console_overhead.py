"""Measure what console capture costs a program that prints, and how much of it is kept.

Each mode runs in a child process whose stdout and stderr are ``/dev/null`` (what a
terminal costs is not ours to measure): no run, then an offline run with
``settings.console`` "off", "auto" and "redirect". The child prints ``--lines`` lines of
a training loop's length in blocks, timing each block, then finishes the run and
counts the lines its run log kept (``read_run(...).console()``). The modes are
interleaved ``--rounds`` times, so a busy moment of the machine does not land on one.

Usage: ``python benchmarks/console_overhead.py [--lines N] [--rounds R] [--json PATH]``
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import _common

DEFAULT_JSON = _common.RESULTS_DIR / "console_overhead.json"
MODES = ("no run", "off", "auto", "redirect")
BLOCK = 1000

_CHILD = """\
import json, sys, time
from pathlib import Path
import tracker
mode, lines, out, runs = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3]), sys.argv[4]
run = None
if mode != "no run":
    run = tracker.init(project="console-bench", mode="offline", dir=runs,
                       settings={"console": mode, "silent": True})
block, per_print = int(sys.argv[5]), []
for start in range(0, lines, block):
    began = time.perf_counter_ns()
    for i in range(start, start + block):
        print(f"step {i:>7} loss {1 / (i + 1):.6f} lr 0.000300 tokens/s 51234.5")
    per_print.append((time.perf_counter_ns() - began) / block)
kept = None
if run is not None:
    run.finish(quiet=True)
    kept = len(tracker.read_run(run.dir).console())
out.write_text(json.dumps({"per_print_ns": per_print, "kept": kept}))
"""


def _measure(mode: str, lines: int, scratch: Path) -> dict[str, Any]:
    """One child's figures: the median ns per print over its blocks, lines kept."""
    out = scratch / "out.json"
    subprocess.run(
        [sys.executable, "-c", _CHILD, mode, *map(str, (lines, out, scratch / "runs", BLOCK))],
        env=_common.child_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=True,
    )
    figures = json.loads(out.read_text())
    return {"print_us": statistics.median(figures["per_print_ns"]) / 1000, "kept": figures["kept"]}


def main() -> None:
    """Measure every mode ``--rounds`` times, print the table, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=100_000, help="lines printed per child")
    parser.add_argument("--rounds", type=int, default=3, help="children per mode, interleaved")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    args = parser.parse_args()
    results: dict[str, list[dict[str, Any]]] = {mode: [] for mode in MODES}
    with tempfile.TemporaryDirectory() as scratch:
        for _ in range(args.rounds):
            for mode in MODES:
                results[mode].append(_measure(mode, args.lines, Path(scratch)))
    base = statistics.median(r["print_us"] for r in results["no run"])
    targets = []
    for mode in MODES:
        print_us = statistics.median(r["print_us"] for r in results[mode])
        kept = [r["kept"] for r in results[mode]]
        targets.append(
            {
                "mode": mode,
                "print": _common.fmt_value(print_us, "us"),
                "extra": _common.fmt_value(print_us - base, "us"),
                "lines kept": "-" if kept[0] is None else f"{min(kept):,}/{args.lines:,}",
                "met": None,
            }
        )
    report = {
        "environment": _common.environment(_common.timer_overhead_ns()),
        "lines": args.lines,
        "rounds": args.rounds,
        "results": results,
        "targets": targets,
        "notes": [],
    }
    _common.print_report(
        report,
        f"lines={args.lines} rounds={args.rounds}",
        ("mode", "print", "extra", "lines kept"),
    )
    _common.write_json(args.json, report)


if __name__ == "__main__":
    main()

"""Show that the memory of a process logging many rows offline stays flat.

Logs ``--rows`` (10M) rows of 10 floats to one offline run as fast as the caller can, and
samples the process's RSS (VmRSS) after every tenth of them. Then flushes, finishes, and
reads the run log back in another process with tracker's own frame reader (CRC-checked),
counting the row records and decoding the last one.

Usage: ``python benchmarks/memory.py [--rows N] [--quick] [--json PATH]``
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Final

import _common

DEFAULT_JSON: Final = _common.RESULTS_DIR / "memory.json"
ROWS: Final = 10_000_000
QUICK_ROWS: Final = 1_000_000
SAMPLES: Final = 10
POOL_SIZE: Final = 1000
FLAT_MB: Final = 5.0
"""The most the highest RSS sample of the second half may exceed the first half's (flat).

A single sample moves by a few MB with how many rows wait in the outbox at that moment
(bounded by ``queue_max_events``/``queue_max_bytes``); a leak shows as a rising trend."""

# Counts the row records of a run log with tracker's frame reader; decodes the last one.
_COUNT_PROBE = """\
import json, sys
from pathlib import Path
from tracker._records.kinds import decode_record
from tracker._runlog import RunLogReader
reader = RunLogReader(Path(sys.argv[1]))
rows = frames = 0
last = None
for payload in reader.frames():
    frames += 1
    rows += bytes(payload).count(b',"row",')
    for line in reversed(bytes(payload[-4096:]).splitlines()):
        if b',"row",' in line:
            last = decode_record(line)
            break
print(json.dumps({"rows": rows, "frames": frames, "torn": reader.torn,
                  "last_step": None if last is None else last[2]}))
"""


def count_rows(log_path: Path) -> dict[str, Any]:
    """Read ``log_path`` back in a fresh process (so its memory is not this one's)."""
    proc = subprocess.run(
        [sys.executable, "-c", _COUNT_PROBE, str(log_path)],
        env=_common.child_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        return {"error": proc.stderr.strip()[-1000:]}
    found: dict[str, Any] = json.loads(proc.stdout)
    return found


def measure(rows: int, root: Path) -> dict[str, Any]:
    """Log ``rows`` rows in ``SAMPLES`` equal parts, sampling RSS after each part."""
    tracker = _common.import_tracker()
    pool = _common.make_pool(POOL_SIZE)
    run = tracker.init(
        mode="offline", project="bench", dir=str(root / "runs"), settings={"silent": True}
    )
    part = rows // SAMPLES
    samples: list[dict[str, Any]] = [
        {"rows": 0, "rss_mb": _common.current_rss_mb(), "rows_per_s": None}
    ]
    start = time.perf_counter()
    for i in range(1, SAMPLES + 1):
        began = time.perf_counter()
        _common.log_untimed(run.log, pool, part)
        took = time.perf_counter() - began
        status = _common.status_dict(run)
        samples.append(
            {
                "rows": i * part,
                "rss_mb": _common.current_rss_mb(),
                "rows_per_s": part / took,
                "queued": status["queued"],
            }
        )
        print(
            f"  {i * part:>12,} rows  RSS {samples[-1]['rss_mb']:7.1f} MB  "
            f"{part / took:>10,.0f} rows/s  queued {status['queued']:,}",
            flush=True,
        )
    logged = time.perf_counter()
    run.flush()
    flushed = time.perf_counter()
    status = _common.status_dict(run)
    run.finish(quiet=True)
    log_path = Path(run.dir).parent / "run.log"
    return {
        "rows": part * SAMPLES,
        "samples": samples,
        "rows_per_s_durable": part * SAMPLES / (flushed - start),
        "flush_seconds": flushed - logged,
        "status_after_flush": status,
        "peak_rss_mb": _common.peak_rss_mb(),
        "run_log_mb": log_path.stat().st_size / 2**20,
        "read_back": count_rows(log_path),
    }


def target_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The RSS samples, the growth, and the read-back as table rows."""
    result = report["result"]
    samples = result["samples"]
    rows: list[dict[str, Any]] = [
        {
            "metric": f"RSS after {s['rows']:,} rows ({s.get('queued', 0):,} queued)",
            "value": _common.fmt_value(s["rss_mb"], "MB"),
            "target": "",
            "met": None,
        }
        for s in samples
    ]
    logged = samples[1:]
    half = len(logged) // 2
    growth = max(s["rss_mb"] for s in logged[half:]) - max(s["rss_mb"] for s in logged[:half])
    read = result["read_back"]
    rows += [
        {
            "metric": "highest RSS, second half of the samples minus first half",
            "value": _common.fmt_value(growth, "MB"),
            "target": f"<= {FLAT_MB:.0f} MB (flat)",
            "met": growth <= FLAT_MB,
        },
        {
            "metric": "peak RSS",
            "value": _common.fmt_value(result["peak_rss_mb"], "MB"),
            "target": "",
            "met": None,
        },
        {
            "metric": "rows/s until flushed",
            "value": _common.fmt_value(result["rows_per_s_durable"], "rate"),
            "target": "",
            "met": None,
        },
        {
            "metric": "run log size",
            "value": _common.fmt_value(result["run_log_mb"], "MB"),
            "target": "",
            "met": None,
        },
        {
            "metric": "row records read back (last step)",
            "value": f"{read.get('rows', 0):,} ({read.get('last_step')})",
            "target": f"{result['rows']:,} ({result['rows'] - 1})",
            "met": read.get("rows") == result["rows"]
            and read.get("last_step") == result["rows"] - 1
            and not read.get("torn"),
        },
    ]
    return rows


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line: ``--rows``, ``--quick``, ``--json``."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rows", type=int, default=ROWS, help="rows to log (%(default)s)")
    parser.add_argument("--quick", action="store_true", help=f"--rows {QUICK_ROWS}")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="(%(default)s)")
    args = parser.parse_args(argv)
    if args.quick:
        args.rows = QUICK_ROWS
    if args.rows < SAMPLES:
        parser.error(f"--rows must be at least {SAMPLES}, got {args.rows}")
    return args


def main(argv: list[str] | None = None) -> int:
    """Log, sample, verify; print the table and write the JSON; exit 1 if rows are missing."""
    args = parse_args(argv)
    env = _common.environment(_common.timer_overhead_ns())
    with tempfile.TemporaryDirectory(prefix="tracker-memory-") as tmp:
        result = measure(args.rows, Path(tmp))
    report: dict[str, Any] = {
        "environment": env,
        "settings": {"rows": args.rows, "samples": SAMPLES, "pool_size": POOL_SIZE},
        "result": result,
        "loadavg_1m_at_end": _common.load_average(),
        "notes": [],
    }
    report["targets"] = target_rows(report)
    _common.print_report(report, f"rows={args.rows:,}", ("metric", "value", "target"))
    _common.write_json(args.json, report)
    return 0 if report["targets"][-1]["met"] else 1


if __name__ == "__main__":
    sys.exit(main())

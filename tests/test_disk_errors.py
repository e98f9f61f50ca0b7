"""A disk that refuses writes: no row lost, no corrupt run log, the training loop keeps going."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import tracker

ROOT = Path(__file__).resolve().parent.parent

SCRIPT = """
import os, resource, signal, sys, time, tracker
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # over the limit, write() fails with EFBIG
run = tracker.init(dir=sys.argv[1], settings={"silent": True, "batch_linger_seconds": 0.001})
run.log({"x": -1})
run.flush()
size = os.path.getsize(os.path.join(os.path.dirname(run.dir), "run.log"))
resource.setrlimit(resource.RLIMIT_FSIZE, (size + 3000, resource.RLIM_INFINITY))
began = time.monotonic()
for index in range(2000):
    run.log({"x": index, "pad": "y" * 50})
print("log_seconds", time.monotonic() - began)
print("flushed_while_full", run.flush(timeout=1.5))
print("error_reported", run.status().last_error is not None)
resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
print("flushed_after", run.flush(timeout=10))
run.finish()
"""


def test_a_full_disk_delays_rows_but_loses_none(tmp_path: Path) -> None:
    """While the disk refuses writes, log() keeps returning, status() reports the error and
    flush() says not yet; once the disk takes writes again, every row is in the run log
    exactly once and the run reads back finished."""
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 0, result.stderr
    lines = dict(line.split(" ", 1) for line in result.stdout.splitlines())
    assert float(lines["log_seconds"]) < 1.0
    assert lines["flushed_while_full"] == "False"
    assert lines["error_reported"] == "True"
    assert lines["flushed_after"] == "True"
    stored = tracker.read_run(tmp_path)
    assert [row["x"] for row in stored.history(keys=["x"])] == list(range(-1, 2000))
    assert stored.state == "finished"
    assert not stored.torn

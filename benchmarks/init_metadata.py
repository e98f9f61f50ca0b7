"""What recording run metadata (git state and diff, installed packages) costs `init()` and
`finish()`: two checkouts of tracker measured alternately in fresh processes.

Each process starts offline runs in a git repository this script makes (200 tracked
files, one of them changed, a remote) and times: its first `init()` and how long after
it the metadata is collected; `finish()` right after a later `init()` and a row (it
waits for the metadata thread) and 0.5 s after one (nothing left to wait for); and five
later `init()`s.

Usage: ``python benchmarks/init_metadata.py --before /work/main --after . [--processes 8]``
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

_PROBE = """\
import json, sys, time
import tracker
settings = {"silent": True, "console": "off"}
began = time.perf_counter()
run = tracker.init(mode="offline", project="bench", dir=sys.argv[1], settings=settings)
first = time.perf_counter() - began
collecting = getattr(run, "_metadata", None)  # None before: nothing to wait for
if collecting is not None:
    collecting.wait(30)
collected = time.perf_counter() - began if collecting is not None else 0.0
run.finish()
began = time.perf_counter()
run = tracker.init(mode="offline", project="bench", dir=sys.argv[1], settings=settings,
                   reinit=True)
run.log({"x": 1})
began = time.perf_counter()
run.finish()
finish = time.perf_counter() - began
run = tracker.init(mode="offline", project="bench", dir=sys.argv[1], settings=settings,
                   reinit=True)
time.sleep(0.5)
began = time.perf_counter()
run.finish()
finish_later = time.perf_counter() - began
later = []
for _ in range(5):
    began = time.perf_counter()
    run = tracker.init(mode="offline", project="bench", dir=sys.argv[1], settings=settings,
                       reinit=True)
    later.append(time.perf_counter() - began)
    run.finish()
print(json.dumps({"first": first, "collected": collected, "finish": finish,
                  "finish_later": finish_later, "later": sorted(later)[2]}))
"""
_GIT_ENV = {
    "GIT_AUTHOR_NAME": "bench",
    "GIT_AUTHOR_EMAIL": "bench@example.com",
    "GIT_COMMITTER_NAME": "bench",
    "GIT_COMMITTER_EMAIL": "bench@example.com",
}


def make_repo(path: Path) -> None:
    """A repository of 200 committed files, one changed since, with an ``origin``."""
    env = {**os.environ, **_GIT_ENV}
    for index in range(200):
        (path / f"module_{index}.py").write_text(f"VALUE = {index}\n" * 50)
    for command in (
        ["init", "-q", "-b", "main"],
        ["add", "."],
        ["commit", "-q", "-m", "bench"],
        ["remote", "add", "origin", "https://example.com/bench.git"],
    ):
        subprocess.run(["git", *command], cwd=path, env=env, check=True)
    (path / "module_0.py").write_text("VALUE = -1\n")


def measure(checkout: Path, repo: Path, runs: Path) -> dict[str, float]:
    """One fresh process of ``checkout``'s tracker, started in ``repo``."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("TRACKER_")}
    env["PYTHONPATH"] = str(checkout)
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, str(runs)],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    result: dict[str, float] = json.loads(done.stdout)
    return result


def summary(samples: list[dict[str, float]], key: str) -> str:
    """``median (min-max)`` of one measure, in milliseconds."""
    values = [sample[key] * 1000 for sample in samples]
    return f"{statistics.median(values):.1f} ({min(values):.1f}-{max(values):.1f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, required=True, help="checkout without it")
    parser.add_argument("--after", type=Path, required=True, help="checkout with it")
    parser.add_argument("--processes", type=int, default=8, help="fresh processes per side")
    arguments = parser.parse_args()
    results: dict[str, list[dict[str, float]]] = {"before": [], "after": []}
    with tempfile.TemporaryDirectory() as folder:
        repo = Path(folder) / "repo"
        repo.mkdir()
        make_repo(repo)
        for index in range(arguments.processes):
            for side in ("before", "after") if index % 2 == 0 else ("after", "before"):
                checkout = getattr(arguments, side).resolve()
                results[side].append(measure(checkout, repo, Path(folder) / side))
    rows = [
        ("first init() of a process", "first"),
        ("a later init() (median of 5)", "later"),
        ("metadata collected, from init()", "collected"),
        ("finish() right after init() and a row", "finish"),
        ("finish() 0.5 s after init()", "finish_later"),
    ]
    print("| ms, median (min-max) | before | after |")
    print("|---|---|---|")
    for label, key in rows:
        before, after = summary(results["before"], key), summary(results["after"], key)
        print(f"| {label} | {before} | {after} |")


if __name__ == "__main__":
    main()

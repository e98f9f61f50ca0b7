"""Benchmark suites' test helpers: git projects made here, real pytest-benchmark sessions
and `tracker` commands in subprocesses with a hermetic environment, and synthetic
histories stored the plugin's way."""

from __future__ import annotations

import math
import os
import random
import subprocess
import sys
from pathlib import Path

from tracker._bench._counter import HARDWARE, INSTRUCTIONS, PerfCounter
from tracker._bench._fingerprint import Machine
from tracker._bench._git import CiContext, Commit
from tracker._bench._results import Benchmark, ResultSet
from tracker._bench._upload import Upload, bench_settings, upload
from tracker._errors import UsageError
from tracker._server._runner import EmbeddedServer

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent.parent
QUIET = ["-p", "no:cacheprovider", "-p", "no:hypothesispytest", "-q"]
"""Options of every child session: no cache, no hypothesis plugin (most of a second)."""
GIT_ENV = {
    "GIT_AUTHOR_NAME": "Ada",
    "GIT_AUTHOR_EMAIL": "ada@example.com",
    "GIT_COMMITTER_NAME": "Ada",
    "GIT_COMMITTER_EMAIL": "ada@example.com",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
}
MACHINES = (
    Machine("AMD EPYC 7B13", 2, "performance", "Linux 6.1.0", "CPython 3.11.7 (main)"),
    Machine("Intel Xeon 8375C", 4, "performance", "Linux 6.1.0", "CPython 3.11.7 (main)"),
)


def _clean_environ() -> dict[str, str]:
    """This process's environment without CI or tracker variables (the CI running these
    tests must not leak its pull request into them), with a hermetic git identity."""
    dropped = ("TRACKER_", "GITHUB_", "GITLAB_", "CI_", "GIT_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(dropped) and k != "CI"}
    return {**env, **GIT_ENV}


def git(where: Path, *arguments: str) -> str:
    """Run git in ``where`` with a fixed identity; its output."""
    done = subprocess.run(
        ["git", *arguments],
        cwd=where,
        env=_clean_environ(),
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    return done.stdout.strip()


def commit_all(where: Path, message: str) -> str:
    """Commit every change in ``where``; the new sha."""
    git(where, "add", "-A")
    git(where, "commit", "-q", "-m", message)
    return git(where, "rev-parse", "HEAD")


def make_project(where: Path, work: int = 200) -> Path:
    """A git repository holding a pytest-benchmark suite: ``test_sum`` sums ``work``
    numbers (set in ``calc.py``), ``test_sorted`` sorts a fixed list; 30 rounds of 10 calls
    each (pedantic mode, which skips pytest-benchmark's one-second timer calibration)."""
    where.mkdir(parents=True)
    write_calc(where, work)
    (where / "test_bench.py").write_text(
        "import calc\n\n\n"
        "def test_sum(benchmark):\n"
        "    benchmark.pedantic(calc.total, rounds=30, iterations=10)\n\n\n"
        "def test_sorted(benchmark):\n"
        "    data = list(range(300, 0, -1))\n"
        "    benchmark.pedantic(sorted, args=(data,), rounds=30, iterations=10)\n"
    )
    git(where, "init", "-q", "-b", "main")
    commit_all(where, "a first suite")
    return where


def write_calc(where: Path, work: int) -> None:
    """``calc.total()`` sums ``work`` numbers: more work, a slower ``test_sum``."""
    (where / "calc.py").write_text(f"def total():\n    return sum(range({work}))\n")


def entry_point_dir(where: Path) -> Path:
    """A folder holding a distribution whose only content is the ``pytest11`` entry points
    pyproject.toml declares: on PYTHONPATH it makes pytest load the plugin the way an
    installed tracker does, from this checkout."""
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"]
    info = where / "tracker_entry_points-0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: tracker-entry-points\nVersion: 0\n"
    )
    lines = ["[pytest11]", *(f"{k} = {v}" for k, v in declared["pytest11"].items())]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    return where


def child_env(tmp_path: Path, server: EmbeddedServer | None = None) -> dict[str, str]:
    """The environment of a child pytest or tracker: this checkout first on the path (after
    the entry points), its own settings folder, the server when given."""
    env = _clean_environ()
    points = tmp_path / "entry-points"
    if not points.exists():
        entry_point_dir(points)
    env["PYTHONPATH"] = os.pathsep.join([str(points), str(ROOT)])
    env["TRACKER_CONFIG_DIR"] = str(tmp_path / "child-config")
    env["TRACKER_DIR"] = str(tmp_path / "runs")
    if server is not None:
        env["TRACKER_BASE_URL"] = server.url
    return env


def python_module(
    module: str, where: Path, env: dict[str, str], *arguments: str
) -> subprocess.CompletedProcess[str]:
    """``python -m MODULE ARGUMENTS`` in ``where``, waited for (at most two minutes)."""
    command = [sys.executable, "-m", module, *arguments]
    return subprocess.run(
        command, cwd=where, env=env, capture_output=True, text=True, timeout=120, check=False
    )


def run_pytest(
    project: Path, env: dict[str, str], *arguments: str
) -> subprocess.CompletedProcess[str]:
    """``python -m pytest ARGUMENTS`` in ``project``."""
    return python_module("pytest", project, env, *arguments)


def run_tracker(
    where: Path, env: dict[str, str], *arguments: str
) -> subprocess.CompletedProcess[str]:
    """``python -m tracker ARGUMENTS`` in ``where``."""
    return python_module("tracker", where, env, *arguments)


def synthetic_samples(rng: random.Random, level: float, count: int = 40) -> list[float]:
    """``count`` timings around ``level`` with 3 % lognormal noise."""
    return [level * math.exp(rng.gauss(0, 0.03)) for _ in range(count)]


def store_history(
    server: EmbeddedServer,
    folder: Path,
    commits: int = 12,
    step_at: int = 8,
    factor: float = 1.3,
    project: str = "bench",
) -> list[Upload]:
    """Store a synthetic branch history the plugin's way: per commit and machine of
    `MACHINES`, a run with ``test_parse`` (1 ms, ``factor`` times slower from commit
    ``step_at`` on) and ``test_small`` (2 µs throughout), each with 40 raw samples. Commit
    ``i`` has sha ``f"{i:02x}" + "c" * 38`` and the message ``f"change {i}"``; run
    directories go under ``folder``."""
    rng = random.Random(16)
    settings = bench_settings(project, str(folder / "runs"), server.url)
    done = []
    for index in range(commits):
        commit = Commit(f"{index:02x}" + "c" * 38, index + 1, 1.7e9 + index, f"change {index}")
        for number, machine in enumerate(MACHINES):
            level = (1e-3 if number == 0 else 6e-4) * (factor if index >= step_at else 1.0)
            parse = Benchmark.of_samples("test_parse", "seconds", synthetic_samples(rng, level))
            small = Benchmark.of_samples("test_small", "seconds", synthetic_samples(rng, 2e-6))
            results = ResultSet(
                repo="example.org/bench",
                commit=commit,
                machine=machine,
                context=CiContext("main", None, None, "1"),
                benchmarks=(parse, small),
                source="synthetic",
            )
            done.append(upload(results, settings))
    return done


def instructions_countable() -> bool:
    """Whether this machine's kernel lets a process count its instructions."""
    try:
        PerfCounter(HARDWARE, INSTRUCTIONS).close()
    except UsageError:
        return False
    return True

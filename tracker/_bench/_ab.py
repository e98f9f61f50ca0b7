"""Interleaved A/B: base and head measured alternately on this machine, in one job.

A shared CI runner's speed drifts within a job and differs more than twofold between
runners, so comparing today's head with a base measured yesterday elsewhere mostly
measures the runners. Here the base is checked out next to the head (a detached
``git worktree``), and pytest-benchmark runs the same selection in each, alternating
base, head, head, base, ... for ``rounds`` pairs. Each pair ran back to back, so the
verdict ranks samples only within their pair (`_compare.compare_pairs`): what drifted
between pairs cancels out.

Each side runs ``python -m pytest`` in its own checkout, so the code it imports must
come from the checkout (a flat or ``pythonpath`` layout), not from an installed copy.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Final

import orjson

from tracker._bench._compare import Comparison, compare_pairs
from tracker._bench._counter import instructions
from tracker._bench._git import commit_info, git
from tracker._bench._importers import COUNTER_TIMER, benchmarks_of_session
from tracker._bench._results import Benchmark
from tracker._errors import Error, UsageError

__all__ = ["run_ab"]

_OUTPUT_TAIL: Final = 2000
"""How much of a failed pytest's output the error shows."""


def run_ab(
    root: Path,
    base: str,
    head: str | None,
    pytest_arguments: Sequence[str],
    *,
    rounds: int,
    counter: bool,
    alpha: float,
    threshold: float,
) -> list[Comparison]:
    """Measure ``base`` and ``head`` (None: the working tree as it is) in ``rounds`` pairs.

    Raises:
        UsageError: a ref git does not know, or a selection that runs no benchmark.
        Error: pytest failed on one side (its output is in the message).
    """
    if rounds < 1:
        raise UsageError(f"--rounds {rounds}: measure at least 1 pair (3 or more to judge)")
    if counter:
        instructions()  # fails now, with the reason, where there are no counters
    try:  # run in the same folder of each checkout as the caller is in this one
        offset = Path.cwd().resolve().relative_to(root.resolve())
    except ValueError:
        offset = Path()
    with tempfile.TemporaryDirectory(prefix="tracker-ab-") as folder:
        work = Path(folder)
        checkouts = {"base": _checkout(root, base, work / "base")}
        try:
            checkouts["head"] = root if head is None else _checkout(root, head, work / "head")
            pairs: dict[str, list[tuple[Benchmark, Benchmark]]] = {}
            for number in range(rounds):
                order = ("base", "head") if number % 2 == 0 else ("head", "base")
                measured = {
                    side: _measure(checkouts[side] / offset, pytest_arguments, counter, work)
                    for side in order
                }
                before, after = measured["base"], measured["head"]
                for name in before.keys() & after.keys():
                    pairs.setdefault(name, []).append((before[name], after[name]))
        finally:
            for path in checkouts.values():
                if path != root:
                    git(root, "worktree", "remove", "--force", str(path))
    if not pairs:
        raise UsageError(
            "base and head share no benchmark that ran; check the pytest arguments select "
            "pytest-benchmark tests present on both sides"
        )
    return compare_pairs(pairs, alpha, threshold)


def _checkout(root: Path, ref: str, path: Path) -> Path:
    """A detached work tree of ``ref`` at ``path``."""
    sha = commit_info(root, ref).sha
    git(root, "worktree", "add", "--detach", str(path), sha)
    return path


def _measure(
    where: Path, pytest_arguments: Sequence[str], counter: bool, work: Path
) -> dict[str, Benchmark]:
    """Run the benchmarks in ``where``; their results by name."""
    output = work / "benchmarks.json"
    command = [
        sys.executable,
        "-m",
        "pytest",
        *pytest_arguments,
        "--benchmark-only",
        f"--benchmark-json={output}",
        "-q",
        "-p",
        "no:cacheprovider",
    ]
    if counter:
        command.append(f"--benchmark-timer={COUNTER_TIMER}")
    done = subprocess.run(command, cwd=where, capture_output=True, text=True, check=False)
    if done.returncode == 5:
        raise UsageError(f"pytest collected no benchmark in {where}: {' '.join(pytest_arguments)}")
    if done.returncode != 0 or not output.exists():
        tail = (done.stdout + done.stderr)[-_OUTPUT_TAIL:]
        raise Error(f"pytest failed in {where} (exit status {done.returncode}):\n{tail}")
    entries = orjson.loads(output.read_bytes()).get("benchmarks") or []
    output.unlink()
    _, benchmarks = benchmarks_of_session(entries)
    return {bench.name: bench for bench in benchmarks if bench.samples}

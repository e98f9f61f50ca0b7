"""Results made by other tools, read into `ResultSet`s: pytest-benchmark and asv.

- pytest-benchmark: the JSON of ``--benchmark-json`` and the files ``--benchmark-save`` /
  ``--benchmark-autosave`` keep under ``.benchmarks/``. The same reader turns the live
  session's benchmarks into results for the pytest plugin (`benchmarks_of_session`).
  Raw samples are in ``stats.data`` (always with ``--benchmark-json``, with
  ``--benchmark-save-data`` under ``.benchmarks/``); without them only the statistics are
  kept, and rank tests cannot be run on that result.
- asv: a results folder (``results/MACHINE/COMMIT-ENV.json`` with ``machine.json``, and
  ``results/benchmarks.json`` for units); samples are there with ``asv run --record-samples``.
  A parameterized benchmark becomes one benchmark per combination, ``name(a, b)``.

The git checkout the import runs in supplies each commit's position and subject; a commit
it does not know keeps the date the file gives.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import product
from pathlib import Path
from typing import Any, Final

import orjson

from tracker._bench._fingerprint import UNKNOWN, Machine, clean, python_build
from tracker._bench._git import CiContext, Commit, commit_info
from tracker._bench._results import TIME, Benchmark, ResultSet
from tracker._errors import UsageError

__all__ = [
    "COUNTER_TIMER",
    "Imported",
    "benchmarks_of_session",
    "find_result_files",
    "read_result_file",
]

COUNTER_TIMER: Final = "tracker._bench._counter.instructions"
"""The pytest-benchmark timer (``--benchmark-timer``) that counts instructions."""
_STAT_NAMES: Final = ("rounds", "min", "q1", "median", "q3", "max", "mean", "stddev", "iqr", "ops")
_ASV_SKIPPED: Final = frozenset({"machine.json", "benchmarks.json"})


@dataclass(frozen=True)
class Imported:
    """A result file read: its results, or why it was left out."""

    path: Path
    results: ResultSet | None
    skipped: str = ""


def _measure_of(timer: object) -> str:
    """The measure of a pytest-benchmark timer, whose name its JSON records: ``time`` for
    the default clock, else the timer's name (``instructions`` for `COUNTER_TIMER`)."""
    name = str(timer or "perf_counter").rsplit(".", 1)[-1]
    return TIME if name == "perf_counter" else name


def benchmarks_of_session(
    entries: Sequence[Mapping[str, Any]],
) -> tuple[str, tuple[Benchmark, ...]]:
    """The measure and benchmarks of pytest-benchmark's JSON ``benchmarks`` list (each entry
    as ``Metadata.as_dict()`` gives it). A measure other than time suffixes each name:
    ``test_parse [instructions]``, so it is a benchmark of its own everywhere."""
    measures = {_measure_of((entry.get("options") or {}).get("timer")) for entry in entries}
    measure = measures.pop() if len(measures) == 1 else TIME
    unit = "instructions" if measure == "instructions" else "seconds"
    suffix = "" if measure == TIME else f" [{measure}]"
    benchmarks = []
    for entry in entries:
        name = str(entry.get("fullname") or entry.get("name")) + suffix
        stats = entry.get("stats") or entry  # a flat entry has its stats at the top
        data = stats.get("data")
        if isinstance(data, list) and data:
            benchmarks.append(Benchmark.of_samples(name, unit, [float(x) for x in data]))
        else:
            kept = {key: stats[key] for key in _STAT_NAMES if key in stats}
            benchmarks.append(Benchmark.of_summary(name, {"unit": unit, **kept}))
    return measure, tuple(benchmarks)


def find_result_files(path: Path) -> Iterator[Path]:
    """The result files under ``path``: itself if a file, else every ``*.json`` below it
    (pytest-benchmark's ``.benchmarks/`` tree, an asv ``results/`` folder)."""
    if path.is_file():
        yield path
        return
    if not path.is_dir():
        raise UsageError(f"{path} does not exist; pass result files or the folder holding them")
    for found in sorted(path.rglob("*.json")):
        if found.name not in _ASV_SKIPPED:
            yield found


def read_result_file(path: Path, repo: str, root: Path) -> Imported:
    """Read one pytest-benchmark or asv result file of the repository ``repo`` at ``root``.

    Raises:
        UsageError: the file is not JSON, or neither tool's format.
    """
    try:
        document = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        raise UsageError(f"cannot read {path} as JSON ({exc}); pass result files") from None
    if isinstance(document, dict) and "machine_info" in document and "benchmarks" in document:
        return _pytest_benchmark(path, document, repo, root)
    if isinstance(document, dict) and "result_columns" in document:
        return _asv(path, document, repo, root)
    raise UsageError(
        f"{path} is neither a pytest-benchmark JSON file (--benchmark-json, .benchmarks/) nor "
        "an asv result file (results/MACHINE/*.json)"
    )


def _pytest_benchmark(path: Path, document: dict[str, Any], repo: str, root: Path) -> Imported:
    commit = document.get("commit_info") or {}
    if commit.get("dirty"):
        return Imported(path, None, "measured on a working tree with uncommitted changes")
    sha = str(commit.get("id") or "")
    info = document.get("machine_info") or {}
    cpu: dict[str, Any] = info["cpu"] if isinstance(info.get("cpu"), dict) else {}
    machine = Machine(
        cpu=clean(cpu.get("brand_raw") or info.get("processor")),
        cores=int(cpu.get("count") or 0),
        governor=clean(info.get("cpu_governor")),
        kernel=clean(f"{info.get('system', '')} {info.get('release', '')}"),
        python=python_build(
            info.get("python_implementation", ""),
            info.get("python_version", ""),
            info.get("python_build", ""),
            info.get("python_compiler", ""),
        ),
    )
    measure, benchmarks = benchmarks_of_session(document.get("benchmarks") or [])
    branch = commit.get("branch")
    results = ResultSet(
        repo=repo,
        commit=_commit(root, sha, _seconds(commit.get("time"))),
        machine=machine,
        # every saved session is its own attempt; importing the same file again is not
        context=CiContext(
            branch if branch and not str(branch).startswith("(") else None,
            None,
            None,
            str(document.get("datetime") or "1"),
        ),
        benchmarks=benchmarks,
        source=f"pytest-benchmark {document.get('version', '')} json".replace("  ", " "),
        measure=measure,
    )
    return Imported(path, results)


def _asv(path: Path, document: dict[str, Any], repo: str, root: Path) -> Imported:
    machine_file = path.parent / "machine.json"
    try:
        machine_info = orjson.loads(machine_file.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        machine_info = {}
    params = document.get("params") or {}
    python = str(document.get("python") or params.get("python") or "")
    machine = Machine(
        cpu=clean(machine_info.get("cpu") or params.get("cpu")),
        cores=int(machine_info.get("num_cpu") or params.get("num_cpu") or 0),
        governor=UNKNOWN,
        kernel=clean(machine_info.get("os") or params.get("os")),
        python=clean(f"Python {python}" if python else ""),
    )
    units = _asv_units(path.parent.parent / "benchmarks.json")
    columns = list(document.get("result_columns") or [])
    benchmarks: list[Benchmark] = []
    for name, row in (document.get("results") or {}).items():
        values = dict(zip(columns, row, strict=False))  # asv drops trailing empty columns
        unit = units.get(name) or _asv_unit_of(name)
        benchmarks += _asv_benchmarks(name, unit, values)
    date = document.get("date")
    results = ResultSet(
        repo=repo,
        commit=_commit(
            root,
            str(document.get("commit_hash") or ""),
            date / 1000 if isinstance(date, int | float) else None,
        ),
        machine=machine,
        context=CiContext(None, None, None, "1"),
        benchmarks=tuple(benchmarks),
        source="asv",
        env=str(document.get("env_name") or ""),
    )
    return Imported(path, results)


def _asv_benchmarks(name: str, unit: str, values: Mapping[str, Any]) -> list[Benchmark]:
    """One benchmark per parameter combination of an asv result row."""
    params = values.get("params") or []
    names = [name] if not params else [f"{name}({', '.join(combo)})" for combo in product(*params)]
    results = values.get("result") or []
    samples = values.get("samples") or []
    q1s = values.get("stats_q_25") or []
    q3s = values.get("stats_q_75") or []
    found = []
    for index, full_name in enumerate(names):
        value = _at(results, index)
        if not _is_number(value) or math.isnan(value):
            continue  # a failed or skipped combination
        sample = _at(samples, index)
        if isinstance(sample, list) and sample:
            found.append(Benchmark.of_samples(full_name, unit, [float(x) for x in sample]))
            continue
        stats: dict[str, float | int] = {"median": float(value)}
        q1, q3 = _at(q1s, index), _at(q3s, index)
        if _is_number(q1) and _is_number(q3):
            stats.update(q1=float(q1), q3=float(q3), iqr=float(q3) - float(q1))
        found.append(Benchmark(full_name, unit, (), stats))
    return found


def _asv_units(path: Path) -> dict[str, str]:
    try:
        described = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return {}
    return {
        name: str(entry["unit"])
        for name, entry in described.items()
        if isinstance(entry, dict) and isinstance(entry.get("unit"), str)
    }


def _asv_unit_of(name: str) -> str:
    """asv's unit by benchmark prefix, when benchmarks.json is not there."""
    leaf = name.rsplit(".", 1)[-1]
    if leaf.startswith("time_"):
        return "seconds"
    if leaf.startswith(("mem_", "peakmem_")):
        return "bytes"
    return "unit"


def _commit(root: Path, sha: str, time: float | None) -> Commit:
    """The commit as the checkout knows it, else what the file says (sha and time)."""
    if not sha or sha in ("unversioned", "unknown"):
        raise UsageError("the results name no commit; import results measured in a git checkout")
    try:
        return commit_info(root, sha)
    except UsageError:
        return Commit(sha=sha, position=None, time=time, message="")


def _seconds(stamp: object) -> float | None:
    """Seconds since the epoch of an ISO 8601 time, or None."""
    try:
        return datetime.fromisoformat(str(stamp)).timestamp()
    except ValueError:
        return None


def _at(values: object, index: int) -> Any:
    return values[index] if isinstance(values, list) and index < len(values) else None


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)

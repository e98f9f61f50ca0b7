"""Benchmark results and how a run stores them: written and read in this one place.

One run holds the results of one (repository, commit, machine, environment, measure,
CI attempt); its id is a digest of those, so uploading the same results twice finds the
run already there. The layout (docs/benchmark-suites.md, "What a benchmark run holds"):

- ``job_type="benchmark"``, ``group`` the commit sha, tags ``benchmark``,
  ``branch:NAME``, ``pr:N``, ``machine:ID``;
- ``config["bench"]``: format, repo, commit, position, commit_time, message, branch, pr,
  base, attempt, env, measure, source, and the machine's fingerprint;
- ``summary["benchmarks"]``: per benchmark its unit and statistics (`_stats.describe`);
- the file `SAMPLES_FILE`: per benchmark its unit and raw samples, in seconds per call
  for times (a row of history per benchmark would chart as noise on the run page).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

from tracker._bench._fingerprint import Machine
from tracker._bench._git import CiContext, Commit
from tracker._bench._stats import describe
from tracker._wire.limits import MAX_TAG_CHARS

__all__ = [
    "FORMAT",
    "JOB_TYPE",
    "SAMPLES_FILE",
    "BenchRun",
    "Benchmark",
    "ResultSet",
    "decode_samples",
]

FORMAT: Final = 1
JOB_TYPE: Final = "benchmark"
SAMPLES_FILE: Final = "benchmark-samples.json"
TIME: Final = "time"
"""The measure of wall-clock timings; counters (``instructions``) name themselves."""


@dataclass(frozen=True)
class Benchmark:
    """One benchmark's result: its unit, raw samples (may be empty) and statistics."""

    name: str
    unit: str
    samples: tuple[float, ...]
    stats: Mapping[str, float | int]

    @classmethod
    def of_samples(cls, name: str, unit: str, samples: Sequence[float]) -> Benchmark:
        """A benchmark whose statistics are computed from its samples (not empty)."""
        return cls(name, unit, tuple(samples), describe(samples))

    @classmethod
    def of_summary(cls, name: str, entry: Mapping[str, Any]) -> Benchmark:
        """A benchmark without samples, from its entry in a run's summary (unit, statistics)."""
        stats = {
            key: value
            for key, value in entry.items()
            if isinstance(value, int | float) and not isinstance(value, bool)
        }
        return cls(name, str(entry.get("unit", "")), (), stats)


@dataclass(frozen=True)
class ResultSet:
    """The results of one benchmark session, and what they were measured on."""

    repo: str
    commit: Commit
    machine: Machine
    context: CiContext
    benchmarks: tuple[Benchmark, ...]
    source: str
    """What produced them: ``pytest-benchmark 5.2.3``, ``asv``, ..."""
    env: str = ""
    """A label for the software environment beyond Python (``numpy2``), or empty."""
    measure: str = TIME

    @property
    def run_id(self) -> str:
        """``bench-`` + 10 characters of the sha + 16 hex digits of the identity's digest."""
        identity = "\n".join(
            [
                self.repo,
                self.commit.sha,
                self.machine.id,
                self.env,
                self.measure,
                self.context.attempt,
            ]
        )
        digest = hashlib.sha256(identity.encode()).hexdigest()[:16]
        return f"bench-{self.commit.sha[:10]}-{digest}"

    @property
    def name(self) -> str:
        """The run's display name: short sha and machine id."""
        return f"{self.commit.sha[:10]} {self.machine.id}"

    def tags(self) -> list[str]:
        """``benchmark``, ``branch:NAME``, ``pr:N`` and ``machine:ID`` (each at most 64 chars)."""
        tags = [JOB_TYPE, f"machine:{self.machine.id}"]
        if self.context.branch:
            tags.append(f"branch:{self.context.branch}"[:MAX_TAG_CHARS])
        if self.context.pr:
            tags.append(f"pr:{self.context.pr}"[:MAX_TAG_CHARS])
        return tags

    def config(self) -> dict[str, Any]:
        """The run's config: everything about where the results come from, under ``bench``."""
        return {
            "bench": {
                "format": FORMAT,
                "repo": self.repo,
                "commit": self.commit.sha,
                "position": self.commit.position,
                "commit_time": self.commit.time,
                "message": self.commit.message,
                "branch": self.context.branch,
                "pr": self.context.pr,
                "base": self.context.base,
                "attempt": self.context.attempt,
                "env": self.env,
                "measure": self.measure,
                "source": self.source,
                "machine": self.machine.as_dict(),
            }
        }

    def summary(self) -> dict[str, Any]:
        """The run's summary: unit and statistics per benchmark, under ``benchmarks``."""
        return {
            "benchmarks": {
                bench.name: {"unit": bench.unit, **bench.stats} for bench in self.benchmarks
            }
        }

    def samples_file(self) -> bytes:
        """The contents of `SAMPLES_FILE`: unit and raw samples per benchmark."""
        return orjson.dumps(
            {
                "format": FORMAT,
                "benchmarks": {
                    bench.name: {"unit": bench.unit, "samples": bench.samples}
                    for bench in self.benchmarks
                },
            }
        )


@dataclass(frozen=True)
class BenchRun:
    """A benchmark run as read back from its run document (config, summary): what the
    server's view, `compare` and `history` work from."""

    run_id: str
    commit: Commit
    branch: str | None
    pr: str | None
    base: str | None
    env: str
    machine: Machine
    stats: Mapping[str, Mapping[str, Any]] = field(repr=False)
    """Per benchmark: ``unit`` and the statistics of `_stats.describe`."""

    @property
    def series_key(self) -> str:
        """What a series is per: see `series_key`."""
        return series_key(self.machine, self.env)

    @property
    def series_label(self) -> str:
        """The machine (and environment) for people."""
        return series_label(self.machine, self.env)

    @classmethod
    def from_document(
        cls, run_id: str, config: Mapping[str, Any], summary: Mapping[str, Any]
    ) -> BenchRun | None:
        """The benchmark run in a run's config and summary; None when it is not one."""
        bench = config.get("bench")
        benchmarks = summary.get("benchmarks")
        if not isinstance(bench, dict) or not isinstance(benchmarks, dict):
            return None
        if not isinstance(bench.get("commit"), str) or not isinstance(bench.get("machine"), dict):
            return None
        position, commit_time = bench.get("position"), bench.get("commit_time")
        return cls(
            run_id=run_id,
            commit=Commit(
                sha=bench["commit"],
                position=position if isinstance(position, int) else None,
                time=float(commit_time) if isinstance(commit_time, int | float) else None,
                message=str(bench.get("message") or ""),
            ),
            branch=bench.get("branch"),
            pr=bench.get("pr"),
            base=bench.get("base"),
            env=str(bench.get("env") or ""),
            machine=Machine.from_dict(bench["machine"]),
            stats={name: value for name, value in benchmarks.items() if isinstance(value, dict)},
        )


def series_key(machine: Machine, env: str) -> str:
    """What results are compared within: the machine, and the environment when named."""
    return f"{machine.id}+{env}" if env else machine.id


def series_label(machine: Machine, env: str) -> str:
    """`series_key` for people: the machine's label, and the environment in brackets."""
    return f"{machine.label} [{env}]" if env else machine.label


def decode_samples(content: bytes) -> dict[str, tuple[str, list[float]]]:
    """The unit and samples per benchmark of a `SAMPLES_FILE` (empty if malformed)."""
    try:
        document = orjson.loads(content)
    except orjson.JSONDecodeError:
        return {}
    benchmarks = document.get("benchmarks") if isinstance(document, dict) else None
    if not isinstance(benchmarks, dict):
        return {}
    decoded = {}
    for name, entry in benchmarks.items():
        samples = entry.get("samples") if isinstance(entry, dict) else None
        if isinstance(samples, list):
            values = [float(x) for x in samples if isinstance(x, int | float)]
            decoded[name] = (str(entry.get("unit", "")), values)
    return decoded

"""The results of a commit for `tracker bench compare` and `check`: from a server or a file.

A reference is a result file (pytest-benchmark JSON, an asv result file), or a commit:
anything git resolves in the current checkout, else a sha or a prefix of one, looked up
among the project's benchmark runs on the server. The runs of one commit are grouped by
machine (and environment); the raw samples of a group's runs (CI attempts) are pooled.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tracker._bench._git import commit_info, repo_identity
from tracker._bench._importers import read_result_file
from tracker._bench._results import (
    JOB_TYPE,
    SAMPLES_FILE,
    Benchmark,
    BenchRun,
    ResultSet,
    decode_samples,
    series_key,
    series_label,
)
from tracker._errors import UsageError
from tracker._settings import Settings

__all__ = ["Measured", "ServerResults", "load"]

_HEX: re.Pattern[str] = re.compile(r"^[0-9a-f]{4,40}$")


@dataclass(frozen=True)
class Measured:
    """A commit's results on one machine (and environment)."""

    key: str
    label: str
    commit: str
    message: str
    base: str | None
    """The pull request's base commit, when the runs recorded one."""
    benchmarks: dict[str, Benchmark]


class ServerResults:
    """The benchmark runs of a project on a tracker server (read with `tracker.Api`)."""

    def __init__(self, settings: Settings) -> None:
        """Read from the server and project of ``settings`` (from `bench_settings`).

        Raises:
            UsageError: no server is configured.
        """
        from tracker._api import Api

        if not settings.base_url:
            raise UsageError(
                "benchmark results are read from a tracker server: pass --base-url, set "
                "TRACKER_BASE_URL or run `tracker login` (or compare result files)"
            )
        self._api = Api(settings.base_url, settings.api_key)
        self.project = str(settings.project)

    def runs(self, **filters: Any) -> list[tuple[BenchRun, Any]]:
        """The project's benchmark runs matching ``filters``, oldest first, with their
        `tracker.ApiRun` (for their files)."""
        found = []
        wanted = {"job_type": JOB_TYPE, **filters}
        for run in self._api.runs(self.project, filters=wanted, order="created_at"):
            stored = BenchRun.from_document(run.id, run.config, run.summary)
            if stored is not None:
                found.append((stored, run))
        return found

    def at_commit(self, ref: str) -> list[Measured]:
        """The results of the commit ``ref`` (a sha, or a prefix of one), per machine.

        Raises:
            UsageError: no run of that commit, or a prefix of several commits.
        """
        if len(ref) == 40:
            runs = self.runs(**{"config.bench.commit": ref})
        else:
            runs = [(s, run) for s, run in self.runs() if s.commit.sha.startswith(ref)]
        commits = {stored.commit.sha for stored, _ in runs}
        if len(commits) > 1:
            raise UsageError(
                f"{ref!r} is the start of several commits with results "
                f"({', '.join(sorted(commits))}); give more of the sha"
            )
        if not runs:
            raise UsageError(
                f"project {self.project!r} has no benchmark results of commit {ref!r}; store "
                "them with `pytest --tracker` or `tracker bench import`"
            )
        return _grouped(runs)


def _grouped(runs: Iterable[tuple[BenchRun, Any]]) -> list[Measured]:
    """The results of one commit's runs, per machine (and environment)."""
    groups: dict[str, list[tuple[BenchRun, Any]]] = {}
    for stored, run in runs:
        groups.setdefault(stored.series_key, []).append((stored, run))
    return [_pooled(key, members) for key, members in sorted(groups.items())]


def _pooled(key: str, members: list[tuple[BenchRun, Any]]) -> Measured:
    """One machine's results of a commit: the raw samples of all its runs together (where
    no run has samples of a benchmark, the first run's statistics)."""
    pooled: dict[str, list[float]] = {}
    for _, run in members:
        for file in run.files():
            if file.name == SAMPLES_FILE:
                for name, (_, found) in decode_samples(file.read()).items():
                    pooled.setdefault(name, []).extend(found)
    benchmarks: dict[str, Benchmark] = {}
    for stored, _ in members:
        for name, entry in stored.stats.items():
            if name not in benchmarks:
                values = pooled.get(name, [])
                unit = str(entry.get("unit", ""))
                benchmarks[name] = (
                    Benchmark.of_samples(name, unit, values)
                    if values
                    else Benchmark.of_summary(name, entry)
                )
    first = members[0][0]
    base = next((stored.base for stored, _ in members if stored.base), None)
    return Measured(
        key, first.series_label, first.commit.sha, first.commit.message, base, benchmarks
    )


def resolve(ref: str, root: Path | None) -> str:
    """The full sha of ``ref`` when git knows it in ``root``, else ``ref`` if it looks like
    the start of a sha.

    Raises:
        UsageError: neither.
    """
    if root is not None:
        try:
            return commit_info(root, ref).sha
        except UsageError:
            pass
    if _HEX.match(ref):
        return ref
    raise UsageError(
        f"{ref!r} is neither a result file nor a commit git knows here; pass a sha, a ref of "
        "this checkout, or the path of a result file"
    )


def _from_file(path: Path, root: Path | None) -> list[Measured]:
    repo = repo_identity(root) if root is not None else path.stem
    imported = read_result_file(path, repo, root or Path.cwd())
    if imported.results is None:
        raise UsageError(f"{path} cannot be compared: {imported.skipped}")
    return [_measured(imported.results)]


def _measured(results: ResultSet) -> Measured:
    return Measured(
        series_key(results.machine, results.env),
        series_label(results.machine, results.env),
        results.commit.sha,
        results.commit.message,
        results.context.base,
        {bench.name: bench for bench in results.benchmarks},
    )


def load(ref: str, root: Path | None, server: ServerResults | None) -> list[Measured]:
    """The results ``ref`` names: a result file's, else a commit's on the server.

    Raises:
        UsageError: nothing matches (the message says what was tried).
    """
    path = Path(ref)
    if path.is_file():
        return _from_file(path, root)
    sha = resolve(ref, root)
    if server is None:
        raise UsageError(f"{ref!r} is a commit; its results are read from a tracker server")
    return server.at_commit(sha)

"""A benchmark's history on one branch: a series per machine over the commits, and its steps.

The x axis is commit order, not time: the commits of the branch that have results, in
first-parent order (by commit time when some commit's position is unknown, as after a
shallow clone). Runs of pull requests are left out: they are judged against their base
(`tracker bench check`), not placed in the branch's history. Each machine (with its
environment) is a series of its own, and change points are found per series: timings of
two machines are never mixed. Several runs of one commit on one machine (CI attempts)
make one point: the median of their medians, and the widest of their quartiles.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from tracker._bench._compare import IMPROVEMENT, REGRESSION, lower_is_better
from tracker._bench._detect import DEFAULT_PENALTY, DEFAULT_THRESHOLD, change_points
from tracker._bench._git import Commit
from tracker._bench._results import BenchRun
from tracker._bench._stats import median

__all__ = ["Change", "History", "Point", "Series", "benchmark_units", "branches", "history"]


@dataclass(frozen=True)
class Point:
    """One commit's result in a series."""

    commit: int
    """The commit's index in `History.commits`."""
    median: float
    q1: float
    q3: float
    low: float
    high: float
    run_id: str
    """The newest run behind the point (the one whose samples a click shows)."""


@dataclass(frozen=True)
class Change:
    """A change point of a series: from the point ``before`` to the point ``after``."""

    before: Point
    after: Point
    ratio: float
    """The level after the step over the level before it."""
    kind: str
    """`REGRESSION` or `IMPROVEMENT`, from the unit's direction."""


@dataclass
class Series:
    """The points of one machine (and environment), and the steps found in them."""

    key: str
    label: str
    points: list[Point] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)


@dataclass(frozen=True)
class History:
    """A benchmark's history on a branch: the commits, in order, and a series per machine."""

    benchmark: str
    unit: str
    branch: str | None
    commits: list[Commit]
    series: list[Series]


def benchmark_units(runs: Iterable[BenchRun]) -> dict[str, str]:
    """Every benchmark name in ``runs``, sorted, with its unit."""
    units: dict[str, str] = {}
    for run in runs:
        for name, stats in run.stats.items():
            units.setdefault(name, str(stats.get("unit", "")))
    return dict(sorted(units.items()))


def branches(runs: Iterable[BenchRun]) -> list[str]:
    """The branches with history (runs that are not of a pull request), most runs first."""
    counts = Counter(run.branch for run in runs if run.branch and not run.pr)
    return [name for name, _ in counts.most_common()]


def history(
    runs: Sequence[BenchRun],
    benchmark: str,
    branch: str | None,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    penalty: float = DEFAULT_PENALTY,
) -> History:
    """The history of ``benchmark`` on ``branch`` (None: runs without a branch), with change
    points per series. ``runs`` in the order they were made (the newest run wins a point)."""
    kept = [run for run in runs if run.branch == branch and not run.pr and benchmark in run.stats]
    commits = _in_commit_order({run.commit.sha: run.commit for run in kept}.values())
    index = {commit.sha: position for position, commit in enumerate(commits)}
    unit = ""
    grouped: dict[str, dict[int, list[BenchRun]]] = {}
    labels: dict[str, str] = {}
    for run in kept:
        unit = unit or str(run.stats[benchmark].get("unit", ""))
        grouped.setdefault(run.series_key, {}).setdefault(index[run.commit.sha], []).append(run)
        labels[run.series_key] = run.series_label
    series = []
    for key in sorted(grouped, key=labels.__getitem__):
        points = [
            point
            for commit, at in sorted(grouped[key].items())
            if (point := _point(commit, [run.stats[benchmark] for run in at], at[-1].run_id))
        ]
        series.append(Series(key, labels[key], points, _changes(points, unit, threshold, penalty)))
    return History(benchmark, unit, branch, commits, series)


def _in_commit_order(commits: Iterable[Commit]) -> list[Commit]:
    listed = list(commits)
    if all(commit.position is not None for commit in listed):
        return sorted(listed, key=lambda commit: (commit.position, commit.time or 0.0))
    return sorted(listed, key=lambda commit: commit.time or 0.0)


def _point(commit: int, stats: Sequence[Any], run_id: str) -> Point | None:
    """One point from the statistics of a commit's runs; None when they hold no median."""
    medians = [s["median"] for s in stats if _positive(s.get("median"))]
    if not medians:
        return None
    middle = median(medians)

    def widest(name: str, pick: Any) -> float:
        values = [float(s[name]) for s in stats if _positive(s.get(name))]
        return float(pick(values)) if values else middle

    return Point(
        commit=commit,
        median=middle,
        q1=widest("q1", min),
        q3=widest("q3", max),
        low=widest("min", min),
        high=widest("max", max),
        run_id=run_id,
    )


def _changes(points: list[Point], unit: str, threshold: float, penalty: float) -> list[Change]:
    found = change_points([p.median for p in points], threshold=threshold, penalty=penalty)
    worse_up = lower_is_better(unit)
    return [
        Change(
            points[step.index - 1],
            points[step.index],
            step.ratio,
            REGRESSION if (step.ratio > 1) == worse_up else IMPROVEMENT,
        )
        for step in found
    ]


def _positive(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value > 0

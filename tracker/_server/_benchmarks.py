"""The dashboard's benchmarks view, server side: series over commits, change points, samples.

Two read endpoints under ``/api/v1/dashboard/`` (docs/dashboard.md), both built from the
project's benchmark runs (``job_type="benchmark"``, docs/benchmark-suites.md) as any
storage lists them:

- ``bench/ENTITY/PROJECT?benchmark=NAME&branch=NAME&threshold=0.05``: the benchmarks and
  branches there are, and for the chosen benchmark and branch its commits in order and a
  series per machine with the change points `tracker._bench._history` finds;
- ``bench-samples/ENTITY/PROJECT?runs=ID,ID&benchmark=NAME&threshold=0.05``: its raw
  samples in two runs (the two commits around a change point), and their comparison.

The fit is CPU work (O(m^2) in the commits of a series); it runs in a worker thread so
the event loop keeps serving.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any, Final

import orjson
from aiohttp import web

from tracker._bench._compare import DEFAULT_ALPHA, compare, lower_is_better
from tracker._bench._detect import DEFAULT_THRESHOLD
from tracker._bench._history import History, benchmark_units, branches, history
from tracker._bench._results import JOB_TYPE, SAMPLES_FILE, Benchmark, BenchRun, decode_samples
from tracker._server._auth import ApiError
from tracker._server._params import checked_name, clip, project_of
from tracker._server.storage import RunKey, Store, parse_order

__all__ = ["BenchmarkViews"]

RUNS_PER_READ: Final = 1000
"""Run documents asked of the storage at a time while reading a project's benchmark runs."""
MAX_SHOWN_SAMPLES: Final = 2000
"""Samples sent per run at most: beyond, evenly spaced order statistics stand for them."""


class BenchmarkViews:
    """The handlers of the benchmarks view's two endpoints."""

    def __init__(self, storage: Store) -> None:
        """Serve from ``storage``."""
        self._storage = storage

    def routes(self) -> list[web.RouteDef]:
        """The two endpoints."""
        base = "/api/v1/dashboard"
        return [
            web.get(base + "/bench/{entity}/{project}", self.series, name="dashboard.bench"),
            web.get(
                base + "/bench-samples/{entity}/{project}",
                self.samples,
                name="dashboard.bench_samples",
            ),
        ]

    async def _runs(self, entity: str, project: str) -> list[BenchRun]:
        """Every benchmark run of the project, oldest first."""
        found: list[BenchRun] = []
        offset = 0
        while True:
            documents, total = await self._storage.list_runs(
                entity,
                project,
                {"job_type": JOB_TYPE},
                parse_order("created_at"),
                RUNS_PER_READ,
                offset,
            )
            for document in documents:
                run = BenchRun.from_document(
                    document["id"], document.get("config") or {}, document.get("summary") or {}
                )
                if run is not None:
                    found.append(run)
            offset += len(documents)
            if not documents or offset >= total:
                return found

    async def series(self, request: web.Request) -> web.Response:
        """The benchmarks and branches of a project, and one benchmark's history on a branch."""
        entity, project = project_of(request)
        threshold = _fraction(request, "threshold", DEFAULT_THRESHOLD)
        runs = await self._runs(entity, project)
        units = benchmark_units(runs)
        known = branches(runs)
        benchmark = request.query.get("benchmark") or next(iter(units), None)
        if benchmark is not None and benchmark not in units:
            raise ApiError(
                404,
                "not_found",
                f"project {project!r} has no benchmark {clip(benchmark)!r}; pick one of "
                "those listed without ?benchmark=",
            )
        branch = request.query.get("branch") or next(iter(known), None)
        answer: dict[str, Any] = {
            "benchmarks": [{"name": name, "unit": unit} for name, unit in units.items()],
            "branches": known,
            "benchmark": benchmark,
            "branch": branch,
            "threshold": threshold,
        }
        if benchmark is not None:
            past = await asyncio.to_thread(history, runs, benchmark, branch, threshold=threshold)
            answer.update(_history_json(past))
        return web.Response(body=orjson.dumps(answer), content_type="application/json")

    async def samples(self, request: web.Request) -> web.Response:
        """One benchmark's raw samples in two runs, and the rank test's verdict on them."""
        entity, project = project_of(request)
        threshold = _fraction(request, "threshold", DEFAULT_THRESHOLD)
        benchmark = request.query.get("benchmark", "")
        run_ids = [part for part in request.query.get("runs", "").split(",") if part]
        if len(run_ids) != 2 or not benchmark:
            raise ApiError(
                400,
                "bad_request",
                "pass ?runs=BEFORE_ID,AFTER_ID and ?benchmark=NAME: the two runs to compare",
            )
        found = []
        for run_id in run_ids:
            key = RunKey(entity, project, checked_name(run_id, "run id in runs"))
            document = await self._storage.get_run(key)
            run = None
            if document is not None:
                run = BenchRun.from_document(
                    key.run_id, document.get("config") or {}, document.get("summary") or {}
                )
            if run is None or benchmark not in run.stats:
                raise ApiError(
                    404,
                    "not_found",
                    f"run {run_id!r} of {project!r} holds no benchmark {clip(benchmark)!r}",
                )
            content = await self._storage.get_file(key, SAMPLES_FILE)
            unit, values = decode_samples(content or b"").get(benchmark, ("", []))
            found.append((run, _benchmark(benchmark, run, unit, values)))
        (_, before), (_, after) = found
        verdict = compare({benchmark: before}, {benchmark: after}, DEFAULT_ALPHA, threshold)[0]
        answer = {
            "benchmark": benchmark,
            "unit": after.unit,
            "runs": [
                {
                    "id": run.run_id,
                    "commit": run.commit.sha,
                    "message": run.commit.message,
                    "machine": run.series_label,
                    "stats": dict(bench.stats),
                    "count": len(bench.samples),
                    "samples": _shown(bench.samples),
                }
                for run, bench in found
            ],
            "comparison": {
                "ratio": verdict.ratio,
                "p_value": verdict.p_value,
                "kind": verdict.kind,
                "alpha": DEFAULT_ALPHA,
                "threshold": threshold,
            },
        }
        return web.Response(body=orjson.dumps(answer), content_type="application/json")


def _benchmark(name: str, run: BenchRun, unit: str, values: list[float]) -> Benchmark:
    """The benchmark of a run: from its samples, else the statistics its summary holds."""
    if values:
        return Benchmark.of_samples(name, unit, values)
    return Benchmark.of_summary(name, run.stats[name])


def _shown(samples: tuple[float, ...]) -> list[float]:
    """At most `MAX_SHOWN_SAMPLES` of ``samples``, sorted; evenly spaced ranks when more."""
    ordered = sorted(samples)
    if len(ordered) <= MAX_SHOWN_SAMPLES:
        return ordered
    step = (len(ordered) - 1) / (MAX_SHOWN_SAMPLES - 1)
    return [ordered[round(i * step)] for i in range(MAX_SHOWN_SAMPLES)]


def _history_json(past: History) -> dict[str, Any]:
    return {
        "unit": past.unit,
        "lower_is_better": lower_is_better(past.unit),
        "commits": [
            {"sha": c.sha, "message": c.message, "position": c.position, "time": c.time}
            for c in past.commits
        ],
        "series": [
            {
                "key": series.key,
                "label": series.label,
                "points": {
                    field: [getattr(point, attribute) for point in series.points]
                    for field, attribute in (
                        ("commit", "commit"),
                        ("median", "median"),
                        ("q1", "q1"),
                        ("q3", "q3"),
                        ("min", "low"),
                        ("max", "high"),
                        ("run", "run_id"),
                    )
                },
                "changes": [
                    {
                        "before": change.before.commit,
                        "after": change.after.commit,
                        "before_run": change.before.run_id,
                        "after_run": change.after.run_id,
                        "ratio": change.ratio,
                        "kind": change.kind,
                    }
                    for change in series.changes
                ],
            }
            for series in past.series
        ],
    }


def _fraction(request: web.Request, name: str, default: float) -> float:
    text = request.query.get(name)
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 <= value <= 10:
        raise ApiError(
            400,
            "bad_request",
            f"query parameter {name}={clip(text)!r} must be a number from 0 to 10",
        )
    return value

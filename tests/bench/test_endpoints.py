"""The benchmarks view's endpoints, against a real server holding a synthetic history."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from bench.projects import MACHINES, store_history
from tracker._bench._git import CiContext, Commit
from tracker._bench._results import Benchmark, ResultSet
from tracker._bench._upload import bench_settings, upload
from tracker._server._runner import EmbeddedServer

STEP = "08" + "c" * 38


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    """A server holding 12 commits of two machines; ``test_parse`` 30 % slower from 8 on."""
    folder = tmp_path_factory.mktemp("endpoints")
    with EmbeddedServer(f"sqlite:///{folder / 'tracker.db'}") as server:
        store_history(server, folder, commits=12, step_at=8, factor=1.3)
        yield server


def _get(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            body = response.read()
            if response.headers["Content-Type"].startswith("text/html"):
                return response.status, body.decode()
            return response.status, json.loads(body)
    except urllib.error.HTTPError as error:
        with error:
            return error.code, json.loads(error.read())


def _bench(server: EmbeddedServer, **query: str) -> tuple[int, Any]:
    return _get(f"{server.url}/api/v1/dashboard/bench/local/bench?{urlencode(query)}")


def test_a_benchmarks_history_comes_in_commit_order_with_steps_per_machine(
    history: EmbeddedServer,
) -> None:
    """Commits in order, a series per machine with median, quartiles and extremes per
    commit, and the step at commit 8 found on each machine, with its two runs."""
    status, answer = _bench(history)
    assert status == 200
    assert answer["benchmarks"] == [
        {"name": "test_parse", "unit": "seconds"},
        {"name": "test_small", "unit": "seconds"},
    ]
    assert (answer["benchmark"], answer["branch"], answer["branches"]) == (
        "test_parse",
        "main",
        ["main"],
    )
    assert answer["lower_is_better"] is True
    assert [c["position"] for c in answer["commits"]] == list(range(1, 13))
    assert answer["commits"][8] == {
        "sha": STEP,
        "message": "change 8",
        "position": 9,
        "time": 1.7e9 + 8,
    }
    assert sorted(s["key"] for s in answer["series"]) == sorted(m.id for m in MACHINES)
    for series in answer["series"]:
        points = series["points"]
        assert points["commit"] == list(range(12))
        for low, q1, middle, q3, high in zip(
            points["min"], points["q1"], points["median"], points["q3"], points["max"], strict=True
        ):
            assert low <= q1 <= middle <= q3 <= high
        [change] = series["changes"]
        assert (change["before"], change["after"], change["kind"]) == (7, 8, "regression")
        assert change["ratio"] == pytest.approx(1.3, rel=0.05)
        assert change["after_run"] == points["run"][8]
    status, small = _bench(history, benchmark="test_small")
    assert status == 200
    assert [s["changes"] for s in small["series"]] == [[], []]


def test_the_samples_of_two_commits_come_with_the_rank_tests_verdict(
    history: EmbeddedServer,
) -> None:
    """Both runs' raw samples (sorted), statistics and commits, and the comparison."""
    [series, _] = _bench(history)[1]["series"]
    runs = f"{series['points']['run'][7]},{series['points']['run'][8]}"
    status, answer = _get(
        f"{history.url}/api/v1/dashboard/bench-samples/local/bench?"
        + urlencode({"runs": runs, "benchmark": "test_parse"})
    )
    assert status == 200
    before, after = answer["runs"]
    assert (before["message"], after["message"]) == ("change 7", "change 8")
    assert before["count"] == after["count"] == 40
    assert after["samples"] == sorted(after["samples"])
    assert after["stats"]["median"] == pytest.approx(series["points"]["median"][8])
    assert answer["comparison"]["kind"] == "regression"
    assert answer["comparison"]["p_value"] < 0.002


def test_pull_request_runs_stay_out_of_the_branch_history(
    server: EmbeddedServer, tmp_path: Path
) -> None:
    """A PR's runs are judged against their base, not drawn in a branch's history."""
    store_history(server, tmp_path, commits=4, step_at=99, project="bench")
    pr = ResultSet(
        repo="example.org/bench",
        commit=Commit("ff" * 20, 5, 1.8e9, "a pull request"),
        machine=MACHINES[0],
        context=CiContext("feature", "5", "03" + "c" * 38, "1"),
        benchmarks=(Benchmark.of_samples("test_parse", "seconds", [1e-3, 1.1e-3]),),
        source="synthetic",
    )
    assert upload(pr, bench_settings("bench", None, server.url)).stored
    status, answer = _bench(server)
    assert status == 200
    assert answer["branches"] == ["main"]
    assert [c["message"] for c in answer["commits"]] == [f"change {i}" for i in range(4)]


@pytest.mark.parametrize(
    ("query", "status", "code"),
    [
        ({"threshold": "lots"}, 400, "bad_request"),
        ({"threshold": "-1"}, 400, "bad_request"),
        ({"benchmark": "test_nothing"}, 404, "not_found"),
    ],
)
def test_bad_queries_are_refused_with_what_to_do(
    history: EmbeddedServer, query: dict[str, str], status: int, code: str
) -> None:
    """A threshold that is not a fraction, an unknown benchmark: 4xx with a message."""
    got, answer = _bench(history, **query)
    assert got == status
    assert answer["error"]["code"] == code


def test_samples_need_two_runs_holding_the_benchmark(history: EmbeddedServer) -> None:
    """One run, or a run without the benchmark: 400 and 404."""
    [series, _] = _bench(history)[1]["series"]
    run_id = series["points"]["run"][0]
    base = f"{history.url}/api/v1/dashboard/bench-samples/local/bench?"
    status, _ = _get(base + urlencode({"runs": run_id, "benchmark": "test_parse"}))
    assert status == 400
    both = f"{run_id},{run_id}"
    status, answer = _get(base + urlencode({"runs": both, "benchmark": "test_nothing"}))
    assert status == 404
    assert "holds no benchmark" in answer["error"]["message"]


def test_a_project_without_benchmarks_has_an_empty_view(server: EmbeddedServer) -> None:
    """No benchmark runs: no benchmark to show, and the page is still served."""
    status, answer = _bench(server)
    assert status == 200
    assert answer == {
        "benchmarks": [],
        "branches": [],
        "benchmark": None,
        "branch": None,
        "threshold": 0.05,
    }
    status, page = _get(f"{server.url}/local/bench/benchmarks")
    assert status == 200
    assert '<script type="module" src="/static/app.js">' in page

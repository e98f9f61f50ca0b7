"""asv results, and results stored offline, through `tracker bench import` and the upload."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

import tracker
from bench.projects import MACHINES, commit_all, git, make_project
from tracker._bench._git import CiContext, Commit
from tracker._bench._results import SAMPLES_FILE, Benchmark, ResultSet, decode_samples
from tracker._bench._upload import bench_settings, upload
from tracker._cli import main
from tracker._server._runner import EmbeddedServer

COLUMNS = [
    "result",
    "params",
    "version",
    "started_at",
    "duration",
    "stats_ci_99_a",
    "stats_ci_99_b",
    "stats_q_25",
    "stats_q_75",
    "stats_number",
    "stats_repeat",
    "samples",
    "profile",
]


def _asv_results(folder: Path, shas: list[str]) -> Path:
    """An asv results folder in asv's format (version 2): machine ``ci-box``, one result file
    per commit; ``time_parse`` has a parameter ``n`` and raw samples on the newer commit."""
    machine = {
        "arch": "x86_64",
        "cpu": "AMD EPYC 7B13",
        "machine": "ci-box",
        "num_cpu": "2",
        "os": "Linux 6.1.0",
        "ram": "8000000",
        "version": 1,
    }
    (folder / "ci-box").mkdir(parents=True)
    (folder / "ci-box" / "machine.json").write_bytes(orjson.dumps(machine))
    described = {
        "bench.TimeSuite.time_parse": {"unit": "seconds", "params": [["10", "100"]]},
        "bench.MemSuite.mem_list": {"unit": "bytes", "params": []},
        "version": 2,
    }
    (folder / "benchmarks.json").write_bytes(orjson.dumps(described))
    for number, sha in enumerate(shas):
        samples = [[1e-3, 1.01e-3, 0.99e-3], [1e-2, 1.01e-2, 0.99e-2]] if number else None
        document = {
            "commit_hash": sha,
            "env_name": "virtualenv-py3.11",
            "date": 1_700_000_000_000 + number,
            "params": {**machine, "python": "3.11"},
            "python": "3.11",
            "requirements": {},
            "env_vars": {},
            "result_columns": COLUMNS,
            "results": {
                "bench.TimeSuite.time_parse": [
                    [1e-3, 1e-2],
                    [["10", "100"]],
                    "v1",
                    1_700_000_000_000,
                    1.5,
                    [0.9e-3, 0.9e-2],
                    [1.1e-3, 1.1e-2],
                    [0.95e-3, 0.95e-2],
                    [1.05e-3, 1.05e-2],
                    [100, 10],
                    [10, 10],
                    samples,
                ],
                "bench.MemSuite.mem_list": [[4096.0], [], "v1", 1_700_000_000_000, 0.1],
            },
            "durations": {},
            "version": 2,
        }
        path = folder / "ci-box" / f"{sha[:8]}-virtualenv-py3.11.json"
        path.write_bytes(orjson.dumps(document))
    return folder


def test_asv_results_import_one_run_per_commit_machine_and_env(
    server: EmbeddedServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    """Each asv result file is a run: parameterized benchmarks one per combination, units
    from benchmarks.json, samples when recorded, the commit's position and subject from git."""
    project = make_project(tmp_path / "proj")
    first = git(project, "rev-parse", "HEAD")
    (project / "notes.txt").write_text("more\n")
    second = commit_all(project, "a second commit")
    results = _asv_results(tmp_path / "results", [first, second])
    monkeypatch.chdir(project)
    arguments = ["bench", "import", str(results), "--project", "asv", "--base-url", server.url]
    assert main(arguments) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2  # machine.json and benchmarks.json are not results
    assert all(": stored, 3 benchmarks, run bench-" in line for line in lines)
    assert main(arguments) == 0
    assert all(": already stored," in line for line in capsys.readouterr().out.splitlines())
    runs = {run.config["bench"]["commit"]: run for run in tracker.Api(server.url).runs("asv")}
    assert set(runs) == {first, second}
    newer = runs[second]
    bench = newer.config["bench"]
    assert (bench["position"], bench["message"], bench["env"]) == (
        2,
        "a second commit",
        "virtualenv-py3.11",
    )
    assert bench["machine"]["cpu"] == "AMD EPYC 7B13"
    assert bench["machine"]["cores"] == 2
    summary = newer.summary["benchmarks"]
    assert sorted(summary) == [
        "bench.MemSuite.mem_list",
        "bench.TimeSuite.time_parse(10)",
        "bench.TimeSuite.time_parse(100)",
    ]
    assert summary["bench.MemSuite.mem_list"]["unit"] == "bytes"
    assert summary["bench.MemSuite.mem_list"]["median"] == 4096.0
    [file] = [f for f in newer.files() if f.name == SAMPLES_FILE]
    assert decode_samples(file.read())["bench.TimeSuite.time_parse(100)"] == (
        "seconds",
        [1e-2, 1.01e-2, 0.99e-2],
    )
    older = runs[first].summary["benchmarks"]["bench.TimeSuite.time_parse(10)"]
    assert (older["q1"], older["median"], older["q3"]) == (0.95e-3, 1e-3, 1.05e-3)


def _results(attempt: str) -> ResultSet:
    return ResultSet(
        repo="example.org/bench",
        commit=Commit("ab" * 20, 3, 1.7e9, "a commit"),
        machine=MACHINES[0],
        context=CiContext("main", None, None, attempt),
        benchmarks=(Benchmark.of_samples("test_parse", "seconds", [1.0, 1.1, 1.2]),),
        source="synthetic",
    )


def test_offline_uploads_are_idempotent_too(tmp_path: Path) -> None:
    """With no server, the run is stored in the run directory, once; another attempt is
    another run."""
    settings = bench_settings("offline", str(tmp_path / "runs"))
    first = upload(_results("1"), settings)
    assert first.stored
    assert first.where.startswith(str(tmp_path / "runs" / "tracker-runs" / "offline-run-"))
    again = upload(_results("1"), settings)
    assert (again.stored, again.run_id, again.where) == (False, first.run_id, first.where)
    retried = upload(_results("2"), settings)
    assert retried.stored
    assert retried.run_id != first.run_id
    stored = tracker.read_run(first.where)
    assert stored.summary["benchmarks"]["test_parse"]["median"] == 1.1


def test_an_upload_that_did_not_finish_is_replaced(server: EmbeddedServer, tmp_path: Path) -> None:
    """A run of the same id left failed (a job killed mid-upload) is replaced, not added to."""
    results = _results("1")
    broken = tracker.init(
        project="bench",
        id=results.run_id,
        dir=tmp_path / "runs",
        settings={"base_url": server.url, "silent": True},
    )
    broken.log({"half": 1})
    broken.finish(exit_code=1, quiet=True)
    done = upload(results, bench_settings("bench", str(tmp_path / "runs"), server.url))
    assert done.stored
    [run] = tracker.Api(server.url).runs("bench")
    assert (run.id, run.state) == (results.run_id, "finished")
    assert run.history() == []
    assert run.summary["benchmarks"]["test_parse"]["rounds"] == 3

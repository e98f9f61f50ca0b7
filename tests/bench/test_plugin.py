"""`pytest --tracker` in real pytest-benchmark sessions, in git projects made by the tests.

The child pytest finds the plugin through the ``pytest11`` entry point pyproject.toml
declares (see `conftest.entry_point_dir`), as it would with tracker installed.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

import tracker
from bench.projects import (
    QUIET,
    child_env,
    git,
    instructions_countable,
    make_project,
    run_pytest,
    run_tracker,
    write_calc,
)
from tracker._bench._fingerprint import this_machine
from tracker._bench._git import CiContext, ci_context
from tracker._bench._results import SAMPLES_FILE, decode_samples
from tracker._bench._stats import describe
from tracker._server._runner import EmbeddedServer

NAMES = ["test_bench.py::test_sorted", "test_bench.py::test_sum"]


@dataclass
class Session:
    """A project measured once with ``--tracker``, the server it stored to, the output."""

    root: Path
    project: Path
    server: EmbeddedServer
    env: dict[str, str]
    output: str
    sha: str

    def runs(self) -> list[Any]:
        """The runs of the project ``proj`` on the server."""
        return tracker.Api(self.server.url).runs("proj")


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Session]:
    """One pytest-benchmark session with --tracker (and its JSON outputs) in a new project."""
    root = tmp_path_factory.mktemp("plugin")
    with EmbeddedServer(f"sqlite:///{root / 'tracker.db'}") as server:
        project = make_project(root / "proj")
        env = child_env(root, server)
        done = run_pytest(
            project, env, "--tracker", "--benchmark-json=out.json", "--benchmark-autosave", *QUIET
        )
        assert done.returncode == 0, done.stdout + done.stderr
        yield Session(root, project, server, env, done.stdout, git(project, "rev-parse", "HEAD"))


def test_a_session_stores_one_run_with_stats_samples_and_context(session: Session) -> None:
    """One run per session: per benchmark its statistics and raw samples, the commit, the
    branch, the machine fingerprint, pytest-benchmark's version."""
    assert "tracker: stored 2 benchmarks as run bench-" in session.output
    [run] = [r for r in session.runs() if r.config["bench"]["source"].startswith("pytest-bench")]
    assert run.state == "finished"
    assert run.job_type == "benchmark"
    assert run.group == session.sha
    assert set(run.tags) == {"benchmark", "branch:main", f"machine:{this_machine().id}"}
    bench = run.config["bench"]
    assert (bench["commit"], bench["position"], bench["message"]) == (
        session.sha,
        1,
        "a first suite",
    )
    assert (bench["branch"], bench["pr"], bench["base"], bench["attempt"]) == (
        "main",
        None,
        None,
        "1",
    )
    assert bench["machine"] == this_machine().as_dict()
    assert bench["source"] == "pytest-benchmark 5.2.3"
    summary = run.summary["benchmarks"]
    assert sorted(summary) == NAMES
    [samples_file] = [f for f in run.files() if f.name == SAMPLES_FILE]
    samples = decode_samples(samples_file.read())
    for name in NAMES:
        unit, values = samples[name]
        assert unit == summary[name]["unit"] == "seconds"
        assert len(values) == summary[name]["rounds"] == 30
        assert {k: v for k, v in summary[name].items() if k != "unit"} == describe(values)


def test_a_second_session_on_the_same_commit_stores_nothing(session: Session) -> None:
    """The run id derives from repo, commit, machine, env and attempt: a rerun (a retried
    CI job) finds its run stored and sends nothing."""
    before = {run.id: run.summary for run in session.runs()}
    again = run_pytest(session.project, session.env, "--tracker", *QUIET)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "tracker: already stored as run bench-" in again.stdout
    assert {run.id: run.summary for run in session.runs()} == before


def test_json_and_saved_results_import_once(session: Session) -> None:
    """`tracker bench import` stores --benchmark-json output (with samples) and .benchmarks/
    files (statistics only); importing them again stores nothing."""
    first = run_tracker(session.project, session.env, "bench", "import", "out.json", ".benchmarks")
    assert first.returncode == 0, first.stderr
    lines = first.stdout.splitlines()
    assert len(lines) == 2
    assert all(": stored, 2 benchmarks, run bench-" in line for line in lines)
    again = run_tracker(session.project, session.env, "bench", "import", "out.json", ".benchmarks")
    assert [line.split(",")[0].split(": ")[1] for line in again.stdout.splitlines()] == [
        "already stored",
        "already stored",
    ]
    imported = [r for r in session.runs() if r.config["bench"]["source"].endswith(" json")]
    assert len(imported) == 2
    for run in imported:
        assert run.config["bench"]["commit"] == session.sha
        assert run.config["bench"]["message"] == "a first suite"
        assert sorted(run.summary["benchmarks"]) == NAMES
    with_samples = [
        run
        for run in imported
        if any(decode_samples(f.read())[NAMES[0]][1] for f in run.files() if f.name == SAMPLES_FILE)
    ]
    assert len(with_samples) == 1  # out.json; the autosaved file holds statistics only


def test_without_tracker_the_plugin_stays_inert(tmp_path: Path) -> None:
    """Without --tracker nothing is stored, nothing printed, and neither pytest-benchmark
    (here disabled) nor the rest of tracker's benchmark code is imported."""
    project = tmp_path / "plain"
    project.mkdir()
    (project / "test_plain.py").write_text("def test_one():\n    assert True\n")
    (project / "conftest.py").write_text(
        "import sys\n\n\ndef pytest_sessionfinish(session):\n"
        "    names = sorted(m for m in sys.modules if m.startswith(('tracker', 'pytest_bench')))\n"
        "    open('modules.txt', 'w').write('\\n'.join(names))\n"
    )
    done = run_pytest(project, child_env(tmp_path), "-p", "no:benchmark", *QUIET)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "tracker:" not in done.stdout
    loaded = (project / "modules.txt").read_text().split()
    assert "tracker._bench._plugin" in loaded  # loaded through the entry point
    assert [m for m in loaded if m.startswith(("tracker._bench.", "pytest_benchmark"))] == [
        "tracker._bench._plugin"
    ]
    assert not (tmp_path / "runs").exists()


def test_tracker_without_pytest_benchmark_is_a_usage_error(tmp_path: Path) -> None:
    """--tracker with pytest-benchmark missing stops the session at once, saying what to do."""
    project = make_project(tmp_path / "proj")
    done = run_pytest(project, child_env(tmp_path), "-p", "no:benchmark", "--tracker")
    assert done.returncode == pytest.ExitCode.USAGE_ERROR
    assert "pip install pytest-benchmark" in done.stderr


def test_uncommitted_changes_are_refused(tmp_path: Path) -> None:
    """Results of a modified working tree belong to no commit: the session refuses to start."""
    project = make_project(tmp_path / "proj")
    write_calc(project, 300)
    done = run_pytest(project, child_env(tmp_path), "--tracker", *QUIET)
    assert done.returncode == pytest.ExitCode.USAGE_ERROR
    assert "uncommitted changes" in done.stderr
    assert "tracker bench ab" in done.stderr


def test_github_pull_request_context_comes_from_the_environment(tmp_path: Path) -> None:
    """On GitHub Actions the PR number, head branch, base sha and attempt are read from the
    job's environment and event file."""
    project = make_project(tmp_path / "proj")
    base = git(project, "rev-parse", "HEAD")
    event = tmp_path / "event.json"
    event.write_bytes(orjson.dumps({"pull_request": {"base": {"sha": base}}}))
    environ = {
        "GITHUB_ACTIONS": "true",
        "GITHUB_EVENT_NAME": "pull_request",
        "GITHUB_REF": "refs/pull/7/merge",
        "GITHUB_HEAD_REF": "faster-parse",
        "GITHUB_REF_NAME": "7/merge",
        "GITHUB_RUN_ATTEMPT": "2",
        "GITHUB_EVENT_PATH": str(event),
    }
    assert ci_context(project, environ) == CiContext("faster-parse", "7", base, "2")
    pushed = {**environ, "GITHUB_EVENT_NAME": "push", "GITHUB_REF_NAME": "main"}
    del pushed["GITHUB_HEAD_REF"]
    assert ci_context(project, pushed) == CiContext("main", None, None, "2")
    gitlab = {"GITLAB_CI": "true", "CI_COMMIT_BRANCH": "main"}
    assert ci_context(project, gitlab) == CiContext("main", None, None, "1")
    git(project, "checkout", "-q", "-b", "local-work")
    assert ci_context(project, {}) == CiContext("local-work", None, None, "1")


def test_instruction_counts_are_stored_or_refused_with_the_reason(tmp_path: Path) -> None:
    """--tracker-counter instructions: per-call counts stored as benchmarks of their own
    where the kernel exposes counters; elsewhere the session stops at start, saying why."""
    project = make_project(tmp_path / "proj")
    done = run_pytest(
        project, child_env(tmp_path), "--tracker", "--tracker-counter=instructions", *QUIET
    )
    if not instructions_countable():
        assert done.returncode == pytest.ExitCode.USAGE_ERROR
        assert "perf_event_open" in done.stderr
        return
    assert done.returncode == 0, done.stdout + done.stderr
    [run_dir] = (tmp_path / "runs").glob("offline-run-*")
    summary = tracker.read_run(run_dir).summary["benchmarks"]
    assert sorted(summary) == [f"{name} [instructions]" for name in NAMES]
    assert {stats["unit"] for stats in summary.values()} == {"instructions"}

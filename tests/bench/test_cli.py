"""`tracker bench compare`, `check` and `history` on results stored by real sessions."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest

from bench.projects import (
    QUIET,
    child_env,
    commit_all,
    git,
    make_project,
    run_pytest,
    run_tracker,
    store_history,
    write_calc,
)
from tracker._server._runner import EmbeddedServer


@dataclass
class PullRequest:
    """A base commit and a pull request's head (ten times more work in ``test_sum``), both
    measured with --tracker (and --benchmark-json into ``root``)."""

    root: Path
    project: Path
    env: dict[str, str]
    base: str
    head: str


@pytest.fixture(scope="module")
def pull_request(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PullRequest]:
    """The base measured on main, then the head measured as pull request 12."""
    root = tmp_path_factory.mktemp("pr")
    with EmbeddedServer(f"sqlite:///{root / 'tracker.db'}") as server:
        project = make_project(root / "proj", work=200)
        env = child_env(root, server)
        base = git(project, "rev-parse", "HEAD")
        done = run_pytest(project, env, "--tracker", f"--benchmark-json={root}/base.json", *QUIET)
        assert done.returncode == 0, done.stdout + done.stderr
        git(project, "checkout", "-q", "-b", "slower-sum")
        write_calc(project, 2000)
        head = commit_all(project, "sum ten times more numbers")
        done = run_pytest(
            project,
            env,
            "--tracker",
            "--tracker-pr=12",
            f"--tracker-base={base}",
            f"--benchmark-json={root}/head.json",
            *QUIET,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        yield PullRequest(root, project, env, base, head)


def _row(output: str, name: str) -> str:
    [row] = [line for line in output.splitlines() if line.endswith(name)]
    return row


def test_check_fails_on_the_pull_requests_regression(pull_request: PullRequest) -> None:
    """`check` compares HEAD with the base its results recorded, exits 1 on the slower
    benchmark, and writes the Markdown summary for the PR comment."""
    comment = pull_request.root / "comment.md"
    done = run_tracker(
        pull_request.project, pull_request.env, "bench", "check", "--markdown", str(comment)
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"{pull_request.base[:10]}..{pull_request.head[:10]} on " in done.stdout
    row = _row(done.stdout, "test_bench.py::test_sum")
    assert row.startswith("+")
    assert "<0.001" in row
    assert re.search(r"tracker bench check: [1-9]\d* regressions?", done.stderr)
    text = comment.read_text()
    assert text.startswith(f"### Benchmarks: `HEAD` against its base `{pull_request.base[:10]}`")
    assert "| :red_circle: regression | `test_bench.py::test_sum` |" in text
    assert "Mann-Whitney U" in text


def test_check_passes_when_nothing_regressed(pull_request: PullRequest) -> None:
    """The same results on both sides: no regression, exit status 0."""
    head = pull_request.head
    done = run_tracker(
        pull_request.project, pull_request.env, "bench", "check", "--head", head, "--base", head
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "tracker bench check: 0 regressions" in done.stderr


def test_compare_prints_an_asv_like_table(pull_request: PullRequest) -> None:
    """`compare BASE HEAD` shows before, after, ratio and p per benchmark, and exits 0."""
    done = run_tracker(
        pull_request.project,
        pull_request.env,
        "bench",
        "compare",
        pull_request.base[:12],
        "slower-sum",
    )
    assert done.returncode == 0, done.stderr
    header = done.stdout.splitlines()[2].split()
    assert header == ["before", "after", "ratio", "p", "benchmark"]
    ratio = float(_row(done.stdout, "test_bench.py::test_sum").split()[3])
    assert ratio > 3


def test_compare_reads_result_files_without_a_server(pull_request: PullRequest) -> None:
    """Two --benchmark-json files compare with no server configured."""
    env = {k: v for k, v in pull_request.env.items() if k != "TRACKER_BASE_URL"}
    root = pull_request.root
    done = run_tracker(
        pull_request.project, env, "bench", "compare", f"{root}/base.json", f"{root}/head.json"
    )
    assert done.returncode == 0, done.stderr
    assert _row(done.stdout, "test_bench.py::test_sum").startswith("+")


def test_results_of_different_machines_are_never_compared(pull_request: PullRequest) -> None:
    """A head measured on another CPU is refused, with the A/B command to run instead."""
    other = orjson.loads((pull_request.root / "head.json").read_bytes())
    other["machine_info"]["cpu"]["brand_raw"] = "Some Other CPU"
    (pull_request.root / "other.json").write_bytes(orjson.dumps(other))
    done = run_tracker(
        pull_request.project,
        pull_request.env,
        "bench",
        "compare",
        str(pull_request.root / "base.json"),
        str(pull_request.root / "other.json"),
    )
    assert done.returncode == 2
    assert "different machines" in done.stderr
    assert "tracker bench ab --base" in done.stderr


def test_check_without_a_recorded_base_asks_for_one(pull_request: PullRequest) -> None:
    """The base commit's own results record no base: `check --head` on it says to pass --base."""
    done = run_tracker(
        pull_request.project, pull_request.env, "bench", "check", "--head", pull_request.base
    )
    assert done.returncode == 2
    assert "pass --base REF" in done.stderr


def test_history_lists_the_change_points_of_a_branch(
    server: EmbeddedServer, tmp_path: Path
) -> None:
    """`history` fits each benchmark per machine and names the commit of each step."""
    store_history(server, tmp_path, commits=12, step_at=8, factor=1.3)
    done = run_tracker(
        tmp_path, child_env(tmp_path, server), "bench", "history", "--project", "bench"
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[-1] == "2 change points in 2 benchmarks on branch main"
    for line in lines[:-1]:
        assert line.startswith("test_parse on ")
        assert ": regression at 08cccccccc 'change 8' (after 07cccccccc): " in line

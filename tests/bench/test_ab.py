"""`tracker bench ab`: base and head measured alternately in one job, judged on pairs."""

from __future__ import annotations

from pathlib import Path

from bench.projects import (
    QUIET,
    child_env,
    git,
    instructions_countable,
    make_project,
    run_tracker,
    write_calc,
)


def test_ab_finds_the_slower_working_tree_measured_next_to_its_base(tmp_path: Path) -> None:
    """Two interleaved pairs on this machine: the uncommitted change that sums ten times more
    numbers is a regression (exit status 1), and the base's work tree is removed afterwards."""
    project = make_project(tmp_path / "proj", work=200)
    write_calc(project, 2000)  # not committed: the working tree is the head
    done = run_tracker(
        project, child_env(tmp_path), "bench", "ab", "--base", "HEAD", "--rounds", "2", "--", *QUIET
    )
    assert done.returncode == 1, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("HEAD..the working tree, 2 interleaved pairs on ")
    [row] = [line for line in lines if line.endswith("test_bench.py::test_sum")]
    assert row.startswith("+")
    assert float(row.split()[3]) > 3
    # the same code on both sides: compared too (its verdict is at the mercy of this machine)
    assert any(line.endswith("test_bench.py::test_sorted") for line in lines)
    assert git(project, "worktree", "list").count("\n") == 0  # only the main work tree


def test_ab_counts_instructions_or_says_why_not(tmp_path: Path) -> None:
    """--counter instructions where the kernel exposes no counters fails at once, saying why."""
    project = make_project(tmp_path / "proj")
    arguments = ["bench", "ab", "--base", "HEAD", "--rounds", "1", "--counter", "instructions"]
    done = run_tracker(project, child_env(tmp_path), *arguments, "--", *QUIET)
    if instructions_countable():
        assert done.returncode in (0, 1), done.stderr
        assert " instr" in done.stdout
    else:
        assert done.returncode == 2
        assert "perf_event_open" in done.stderr

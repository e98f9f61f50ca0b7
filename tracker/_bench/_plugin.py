"""The pytest plugin: ``pytest --tracker`` stores the session's pytest-benchmark results.

Registered as the entry point ``tracker`` of the group ``pytest11``, so pytest loads it in
every session where tracker is installed. Without ``--tracker`` it only adds its options:
no hook does anything, and neither pytest-benchmark nor any other part of tracker is
imported. With it, the session fails at start when the results could not belong to a
commit (no git checkout, uncommitted changes) or pytest-benchmark is missing; at the end,
the benchmarks pytest-benchmark ran are stored as one run (`tracker._bench._upload`),
and the terminal summary says where.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from pathlib import Path

    from tracker._bench._fingerprint import Machine
    from tracker._bench._git import CiContext, Commit
    from tracker._bench._upload import Upload

__all__ = [
    "pytest_addoption",
    "pytest_configure",
    "pytest_sessionfinish",
    "pytest_terminal_summary",
]


@dataclass
class _Capture:
    """What a ``--tracker`` session measures on, read at its start, and how storing went."""

    root: Path
    repo: str
    commit: Commit
    machine: Machine
    context: CiContext
    env: str
    project: str | None
    root_dir: str | None
    report: list[str] = field(default_factory=list)


_CAPTURE = pytest.StashKey[_Capture]()


def pytest_addoption(parser: pytest.Parser) -> None:
    """The ``--tracker`` options (inert unless ``--tracker`` is given)."""
    group = parser.getgroup("tracker", "store pytest-benchmark results with tracker")
    group.addoption(
        "--tracker",
        action="store_true",
        help="store the benchmark results as a tracker run (one per commit, machine, env, "
        "attempt); needs pytest-benchmark and a clean git checkout",
    )
    group.addoption(
        "--tracker-project",
        metavar="NAME",
        help="default: TRACKER_PROJECT, else the git folder's name",
    )
    group.addoption(
        "--tracker-env",
        metavar="NAME",
        default="",
        help="a label of the software environment beyond Python (e.g. numpy2); results of "
        "different envs are never compared",
    )
    group.addoption(
        "--tracker-attempt",
        metavar="N",
        help="the CI job's attempt (default: GITHUB_RUN_ATTEMPT, else 1)",
    )
    group.addoption(
        "--tracker-branch",
        metavar="NAME",
        help="default: from the CI environment, else the checked-out branch",
    )
    group.addoption(
        "--tracker-pr", metavar="N", help="the pull request (default: from the CI environment)"
    )
    group.addoption(
        "--tracker-base",
        metavar="REF",
        help="the pull request's base commit (default: from the CI environment)",
    )
    group.addoption(
        "--tracker-counter",
        choices=["instructions"],
        help="count instructions per call (Linux perf_event) instead of timing",
    )
    group.addoption(
        "--tracker-dir",
        metavar="DIR",
        help="where runs are stored offline (default: TRACKER_DIR, else ./tracker)",
    )


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    """With ``--tracker``: check that results can be stored, and read what they belong to."""
    if not config.getoption("tracker"):
        return
    if not config.pluginmanager.hasplugin("benchmark"):
        raise pytest.UsageError(
            "pytest --tracker stores pytest-benchmark's results, and pytest-benchmark is not "
            "installed (or disabled with -p no:benchmark): pip install pytest-benchmark"
        )
    from tracker._errors import UsageError

    try:
        config.stash[_CAPTURE] = _start(config)
    except UsageError as exc:
        raise pytest.UsageError(f"pytest --tracker: {exc}") from None


def _start(config: pytest.Config) -> _Capture:
    from tracker._bench import _git
    from tracker._bench._counter import instructions
    from tracker._bench._fingerprint import this_machine
    from tracker._bench._importers import COUNTER_TIMER
    from tracker._errors import UsageError

    root = _git.repo_root(config.rootpath)
    if _git.is_dirty(root):
        raise UsageError(
            f"{root} has uncommitted changes, so the results would belong to no commit; "
            "commit or stash them (or compare the working tree with `tracker bench ab`)"
        )
    if config.getoption("tracker_counter"):
        instructions()  # fails now, with the reason, where there are no counters
        config.option.benchmark_timer = COUNTER_TIMER
    found = _git.ci_context(root, os.environ)
    base = config.getoption("tracker_base")
    context = _git.CiContext(
        branch=config.getoption("tracker_branch") or found.branch,
        pr=config.getoption("tracker_pr") or found.pr,
        base=_git.commit_info(root, base).sha if base else found.base,
        attempt=config.getoption("tracker_attempt") or found.attempt,
    )
    return _Capture(
        root=root,
        repo=_git.repo_identity(root),
        commit=_git.commit_info(root, "HEAD"),
        machine=this_machine(),
        context=context,
        env=config.getoption("tracker_env"),
        project=config.getoption("tracker_project"),
        root_dir=config.getoption("tracker_dir"),
    )


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """With ``--tracker``: store the benchmarks that ran (after pytest-benchmark's own end)."""
    capture = session.config.stash.get(_CAPTURE, None)
    if capture is None:
        return
    from tracker._errors import Error

    # pytest-benchmark keeps the session's benchmarks on the config; each as_dict() is an
    # entry of its --benchmark-json output, raw samples included
    benchmark_session: Any = getattr(session.config, "_benchmarksession", None)
    entries = [
        bench.as_dict(include_data=True)
        for bench in getattr(benchmark_session, "benchmarks", [])
        if not getattr(bench, "has_error", False)
    ]
    if not entries:
        capture.report.append("no benchmark ran, nothing stored")
        return
    try:
        done = _store(capture, entries)
    except Error as exc:
        capture.report.append(f"storing the results failed: {exc}")
        session.exitstatus = pytest.ExitCode.INTERNAL_ERROR
        return
    if not done.stored:
        capture.report.append(f"already stored as run {done.run_id}: {done.where}")
    elif done.complete:
        capture.report.append(
            f"stored {len(entries)} benchmarks as run {done.run_id}: {done.where}"
        )
    else:
        capture.report.append(
            f"the server did not acknowledge all of run {done.run_id}; upload the rest with "
            f"`tracker sync {done.where}` (or rerun the job)"
        )
        session.exitstatus = pytest.ExitCode.INTERNAL_ERROR


def _store(capture: _Capture, entries: list[dict[str, Any]]) -> Upload:
    from importlib.metadata import version

    from tracker._bench._importers import benchmarks_of_session
    from tracker._bench._results import ResultSet
    from tracker._bench._upload import bench_settings, upload

    measure, benchmarks = benchmarks_of_session(entries)
    results = ResultSet(
        repo=capture.repo,
        commit=capture.commit,
        machine=capture.machine,
        context=capture.context,
        benchmarks=benchmarks,
        source=f"pytest-benchmark {version('pytest-benchmark')}",
        env=capture.env,
        measure=measure,
    )
    return upload(results, bench_settings(capture.project, capture.root_dir, root=capture.root))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """With ``--tracker``: one line saying where the results went, or why not."""
    capture = terminalreporter.config.stash.get(_CAPTURE, None)
    if capture is not None:
        for line in capture.report:
            terminalreporter.write_line(f"tracker: {line}")

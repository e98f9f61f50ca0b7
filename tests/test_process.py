"""Tests for how a process ends a run: atexit, uncaught errors, exit codes, crashes, fork.

Every test runs a real Python process and reads the run back from disk afterwards.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import tracker

PACKAGE_ROOT = Path(tracker.__file__).resolve().parent.parent
TIMEOUT = 30


HOLD_BACK_THE_LOOP = """
import threading, tracker
from tracker._io import _thread

release = threading.Event()
build = _thread._new_loop

def held_back_loop():
    release.wait(10)
    return build()

_thread._new_loop = held_back_loop  # the I/O thread builds no loop until release is set
"""
"""A script's start: the process's I/O thread is held back until it sets ``release``."""


def child_env(tmp_path: Path) -> dict[str, str]:
    """The environment of a child Python that imports this tracker, silent, isolated."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("TRACKER_")}
    env["TRACKER_SILENT"] = "1"
    env["TRACKER_CONFIG_DIR"] = str(tmp_path / "config")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PACKAGE_ROOT), env.get("PYTHONPATH")]))
    return env


def run_script(tmp_path: Path, script: str) -> subprocess.CompletedProcess[str]:
    """Run ``script`` with ``python -c`` in ``tmp_path`` and wait for it (with a timeout)."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        cwd=tmp_path,
        env=child_env(tmp_path),
        timeout=TIMEOUT,
        capture_output=True,
        text=True,
        check=False,
    )


def values(stored: tracker.StoredRun, key: str) -> list[tuple[int, object]]:
    """(step, value) of every history row holding ``key``."""
    return [(row["_step"], row[key]) for row in stored.history(keys=[key])]


def test_exit_without_finish_finishes_run_with_every_row(tmp_path: Path) -> None:
    """A script that logs 1000 rows and ends without finish() leaves a finished, complete run."""
    result = run_script(
        tmp_path,
        """
        import tracker
        run = tracker.init(dir="runs", config={"lr": 0.1})
        for i in range(1000):
            run.log({"i": i, "sq": i * i})
        """,
    )
    assert result.returncode == 0, result.stderr
    stored = tracker.read_run(tmp_path / "runs")
    assert stored.state == "finished"
    assert values(stored, "i") == [(i, i) for i in range(1000)]
    assert values(stored, "sq")[-1] == (999, 999 * 999)
    assert stored.config == {"lr": 0.1}
    assert stored.summary["i"] == 999


@pytest.mark.parametrize(
    ("ending", "returncode", "state", "exit_code"),
    [
        ("raise ValueError('boom')", 1, "failed", None),
        ("raise KeyboardInterrupt", None, "killed", None),
        ("import sys; sys.exit(3)", 3, "failed", 3),
        ("import sys; sys.exit(0)", 0, "finished", None),
    ],
    ids=["exception", "keyboard-interrupt", "sys-exit-3", "sys-exit-0"],
)
def test_how_the_script_ends_sets_the_run_state(
    tmp_path: Path, ending: str, returncode: int | None, state: str, exit_code: int | None
) -> None:
    """An uncaught error fails the run, KeyboardInterrupt kills it, exit codes decide the rest."""
    result = run_script(
        tmp_path,
        f"""
        import tracker
        run = tracker.init(dir="runs")
        for i in range(5):
            run.log({{"i": i}})
        {ending}
        """,
    )
    if returncode is not None:
        assert result.returncode == returncode, result.stderr
    else:
        assert result.returncode != 0
    stored = tracker.read_run(tmp_path / "runs")
    assert stored.state == state
    if exit_code is not None:
        assert stored.exit_code == exit_code
    assert values(stored, "i") == [(i, i) for i in range(5)]


def test_hard_exit_after_flush_reads_back_crashed_with_flushed_rows(tmp_path: Path) -> None:
    """os._exit after run.flush(): the run reads back as crashed with every flushed row."""
    result = run_script(
        tmp_path,
        """
        import os, tracker
        run = tracker.init(dir="runs")
        for i in range(500):
            run.log({"i": i})
        run.flush()
        os._exit(1)
        """,
    )
    assert result.returncode == 1, result.stderr
    stored = tracker.read_run(tmp_path / "runs")
    assert stored.state == "crashed"
    assert values(stored, "i") == [(i, i) for i in range(500)]


def test_sigkill_reads_back_crashed_with_flushed_rows(tmp_path: Path) -> None:
    """A SIGKILLed process leaves a crashed run holding every row it flushed."""
    script = """
        import time, tracker
        run = tracker.init(dir="runs")
        for i in range(300):
            run.log({"i": i})
        run.flush()
        print("ready", flush=True)
        time.sleep(30)
        """
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script)],
        cwd=tmp_path,
        env=child_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
        assert tracker.read_run(tmp_path / "runs").state == "running"
        child.send_signal(signal.SIGKILL)
        assert child.wait(timeout=TIMEOUT) == -signal.SIGKILL
    finally:
        child.kill()
        child.wait(timeout=TIMEOUT)
        child.stdout.close()  # type: ignore[union-attr]
    stored = tracker.read_run(tmp_path / "runs")
    assert stored.state == "crashed"
    assert values(stored, "i") == [(i, i) for i in range(300)]


def test_forked_child_must_start_its_own_run(tmp_path: Path) -> None:
    """After fork the child cannot log to the parent's run, but its own run works; both
    runs read back complete and separate."""
    result = run_script(
        tmp_path,
        """
        import os, tracker
        run = tracker.init(dir="runs", id="parent")
        for i in range(5):
            run.log({"p": i})
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                run.log({"p": -1})
                code = 10
            except tracker.UsageError as exc:
                message = str(exc)
                if "tracker.init()" not in message or "child" not in message:
                    print("message:", message, flush=True)
                    code = 11
            try:
                if tracker.run is not None:
                    code = 12
                child = tracker.init(dir="runs", id="child")
                for i in range(7):
                    child.log({"c": i})
                child.finish()
            except BaseException as exc:
                print("child run:", repr(exc), flush=True)
                code = 13
            os._exit(code)
        for i in range(5, 10):
            run.log({"p": i})
        _, status = os.waitpid(pid, 0)
        print("child exit", os.waitstatus_to_exitcode(status), flush=True)
        run.finish()
        """,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "child exit 0", result.stdout
    (parent_dir,) = (tmp_path / "runs" / "tracker-runs").glob("*-parent")
    (child_dir,) = (tmp_path / "runs" / "tracker-runs").glob("*-child")
    parent = tracker.read_run(parent_dir)
    child = tracker.read_run(child_dir)
    assert (parent.state, child.state) == ("finished", "finished")
    assert values(parent, "p") == [(i, i) for i in range(10)]
    assert values(child, "c") == [(i, i) for i in range(7)]
    assert values(parent, "c") == []
    assert values(child, "p") == []


def test_process_exits_promptly_with_live_runs(tmp_path: Path) -> None:
    """A process that leaves runs live exits within a few seconds, runs finished."""
    started = time.monotonic()
    result = run_script(
        tmp_path,
        """
        import tracker
        first = tracker.init(dir="runs", id="first")
        second = tracker.init(dir="runs", id="second", reinit="create_new")
        for i in range(20000):
            first.log({"i": i})
            second.log({"i": i})
        """,
    )
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    assert elapsed < 5, f"the process took {elapsed:.1f}s to exit"
    for run_id in ("first", "second"):
        (run_dir,) = (tmp_path / "runs" / "tracker-runs").glob(f"*-{run_id}")
        stored = tracker.read_run(run_dir)
        assert stored.state == "finished"
        assert len(stored.history()) == 20000


def test_fork_right_after_the_first_init_leaves_the_child_able_to_import(
    tmp_path: Path,
) -> None:
    """A fork just after a process's first init (its I/O thread may still be importing
    asyncio) waits for those imports: the child imports asyncio, runs a loop and its own
    run, instead of hanging on an import lock held by a thread it does not have."""
    result = run_script(
        tmp_path,
        """
        import os, tracker
        run = tracker.init(dir="runs", id="parent")
        pid = os.fork()
        if pid == 0:
            import asyncio
            asyncio.run(asyncio.sleep(0))
            child = tracker.init(dir="runs", id="child")
            child.log({"c": 1})
            child.finish()
            os._exit(0)
        run.log({"p": 1})
        _, status = os.waitpid(pid, 0)
        print("child exit", os.waitstatus_to_exitcode(status), flush=True)
        run.finish()
        """,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "child exit 0", result.stdout
    for run_id in ("parent", "child"):
        (run_dir,) = (tmp_path / "runs" / "tracker-runs").glob(f"*-{run_id}")
        assert tracker.read_run(run_dir).state == "finished"


def test_offline_init_does_not_wait_for_the_io_thread(tmp_path: Path) -> None:
    """The first offline init returns, and log() takes rows, while the I/O thread has not
    started its loop yet (here held back on purpose); the rows reach the run log once it
    does."""
    result = run_script(
        tmp_path,
        HOLD_BACK_THE_LOOP
        + textwrap.dedent(
            """
        run = tracker.init(dir="runs", id="early")
        for i in range(100):
            run.log({"i": i})
        print("started", _thread.io_thread()._loop is not None, flush=True)
        release.set()
        run.finish()
        """
        ),
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[0] == "started False", result.stdout
    (run_dir,) = (tmp_path / "runs" / "tracker-runs").glob("*-early")
    stored = tracker.read_run(run_dir)
    assert stored.state == "finished"
    assert values(stored, "i") == [(i, i) for i in range(100)]


def test_logging_before_the_writer_runs_waits_at_a_small_bound_and_drops_nothing(
    tmp_path: Path,
) -> None:
    """Until the I/O thread's writer runs, the outbox holds at most STARTUP_MAX_BYTES:
    a caller logging more waits for the writer (even under queue_full_policy="drop"),
    then every row is written, none dropped."""
    result = run_script(
        tmp_path,
        HOLD_BACK_THE_LOOP
        + textwrap.dedent(
            """
        import time
        from tracker._io import _outbox
        run = tracker.init(dir="runs", id="early", settings={"queue_full_policy": "drop"})
        threading.Timer(0.3, release.set).start()
        began = time.monotonic()
        most = 0
        for i in range(20000):
            run.log({"i": i, "pad": "x" * 200})
            if _thread.io_thread()._loop is None:  # the writer cannot have started
                most = max(most, len(run._outbox.data))
        waited = time.monotonic() - began
        run.finish()
        print(waited >= 0.25, most <= _outbox.STARTUP_MAX_BYTES + 300, run.status().dropped)
        """
        ),
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "True", "0"], result.stdout
    (run_dir,) = (tmp_path / "runs" / "tracker-runs").glob("*-early")
    assert [i for _, i in values(tracker.read_run(run_dir), "i")] == list(range(20000))

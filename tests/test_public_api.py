"""The public surface: what `import tracker` offers, and what it must not load."""

from __future__ import annotations

import subprocess
import sys

import tracker


def test_public_names_are_pinned() -> None:
    """`tracker.__all__` is exactly the documented public surface, sorted."""
    assert tracker.__all__ == [
        "Api",
        "ApiRun",
        "Audio",
        "AuthenticationError",
        "CommError",
        "Config",
        "Error",
        "Histogram",
        "Html",
        "Image",
        "Run",
        "RunFile",
        "RunStatus",
        "Settings",
        "StoredRun",
        "Summary",
        "Table",
        "UsageError",
        "Video",
        "ainit",
        "define_metric",
        "finish",
        "init",
        "log",
        "log_code",
        "login",
        "read_run",
        "save",
        "unwatch",
        "watch",
    ]


def test_testing_module_names_are_pinned() -> None:
    """`tracker.testing`, the helpers for users' tests, offers exactly its documented names."""
    import tracker.testing

    assert tracker.testing.__all__ == [
        "CapturedRuns",
        "MemoryServer",
        "capture_runs",
        "memory_server",
    ]


def test_public_classes_read_as_tracker_names() -> None:
    """Re-exported classes show as `tracker.X` in reprs and tracebacks."""
    assert tracker.Run.__module__ == "tracker"
    assert repr(tracker.UsageError) == "<class 'tracker.UsageError'>"


def test_error_tree() -> None:
    """Every error derives from tracker.Error."""
    for error in (tracker.UsageError, tracker.CommError, tracker.AuthenticationError):
        assert issubclass(error, tracker.Error)


def test_import_loads_no_network_or_event_loop_modules() -> None:
    """`import tracker` loads neither aiohttp nor asyncio, yaml, anyio, numpy, torch nor PIL
    (they load on use)."""
    modules = ("aiohttp", "asyncio", "yaml", "anyio", "numpy", "torch", "PIL")
    code = f"import sys, tracker; print(','.join(m for m in {modules!r} if m in sys.modules))"
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True
    )
    assert loaded.stdout.strip() == ""


def test_cli_demo_runs_and_exits_zero(tmp_path: object) -> None:
    """`python -m tracker demo` runs a short training and prints the runs' summary."""
    result = subprocess.run(
        [sys.executable, "-m", "tracker", "demo", "--steps", "200", "--dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "finished" in result.stdout
    assert str(tmp_path) in result.stdout


def test_cli_usage_error_exits_two() -> None:
    """A usage error on the command line exits with status 2 and says what was wrong."""
    result = subprocess.run(
        [sys.executable, "-m", "tracker", "demo", "--steps", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "--steps" in result.stderr

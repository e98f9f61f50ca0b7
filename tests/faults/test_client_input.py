"""Bad input to the client API: every init argument with a wrong type, values the server
cannot take, calls after finish and from a forked child. Each is a clear UsageError (or is
stored and delivered in full), and nothing already logged is lost."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import tracker

from .conftest import FAST_RETRIES, Figures, ServerProcess, child_env

pytestmark = pytest.mark.faults

WRONG_TYPES: dict[str, Any] = {
    "job_type": 5,
    "dir": 5,
    "config": 5,
    "project": ["p"],
    "entity": 5,
    "reinit": 2.5,
    "tags": 5,
    "group": 5,
    "name": 5,
    "notes": 5,
    "magic": 1,
    "config_exclude_keys": 5,
    "config_include_keys": 5,
    "anonymous": 5,
    "mode": 5,
    "allow_val_change": "yes",
    "resume": 5,
    "force": "yes",
    "tensorboard": "yes",
    "sync_tensorboard": 5,  # a str is the folder of event files to mirror
    "monitor_gym": "yes",
    "save_code": "yes",
    "id": 5,
    "fork_from": 5,
    "resume_from": 5,
    "settings": 5,
}


def test_every_init_parameter_is_covered() -> None:
    """WRONG_TYPES holds a wrong value for each of init's 26 keyword parameters (newer W&B
    releases' arguments, caught by **kwargs, only warn)."""
    import inspect

    parameters = inspect.signature(tracker.init).parameters.values()
    named = [p.name for p in parameters if p.kind is not inspect.Parameter.VAR_KEYWORD]
    assert list(WRONG_TYPES) == named
    assert len(WRONG_TYPES) == 26


@pytest.mark.parametrize(("parameter", "value"), list(WRONG_TYPES.items()))
def test_a_wrongly_typed_init_argument_is_a_usage_error_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, parameter: str, value: Any
) -> None:
    """init with one argument of a wrong type raises UsageError naming that argument and
    creates nothing."""
    monkeypatch.chdir(tmp_path)
    arguments: dict[str, Any] = {"dir": tmp_path / "runs", "settings": {"silent": True}}
    arguments[parameter] = value
    with pytest.raises(tracker.UsageError, match=parameter):
        tracker.init(**arguments)
    assert tracker.run is None
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("parameter", "value"),
    [("project", "a/b"), ("project", "x" * 129), ("entity", "a/b"), ("entity", "a#b")],
)
def test_an_offline_run_the_server_would_refuse_is_refused_at_init(
    tmp_path: Path, parameter: str, value: str
) -> None:
    """A project or entity name the server refuses (docs/protocol.md, Identifiers) is a
    UsageError at init offline too: else the run could never be synced."""
    arguments: dict[str, Any] = {"dir": tmp_path / "runs", "mode": "offline", parameter: value}
    with pytest.raises(tracker.UsageError, match=parameter):
        tracker.init(settings={"silent": True}, **arguments)
    assert not (tmp_path / "runs").exists()


def _big_row(run: tracker.Run) -> None:
    run.log({"big": "y" * 20_000_000})


def _big_summary(run: tracker.Run) -> None:
    run.summary["big"] = "y" * 20_000_000


def _step_beyond_64_bits(run: tracker.Run) -> None:
    run.log({"x": 1}, step=2**63)


def _nested_250_deep(run: tracker.Run) -> None:
    value: Any = 1
    for _ in range(250):
        value = {"a": value}
    run.log({"deep": value})


def _row_of_15_mb(run: tracker.Run) -> None:
    run.log({"big": "y" * 15_000_000})


def _row_of_100k_keys(run: tracker.Run) -> None:
    run.log({f"k{index}": index for index in range(100_000)})


EXTREMES: dict[str, Callable[[tracker.Run], None]] = {
    "row-20MB-string": _big_row,
    "summary-20MB-string": _big_summary,
    "step-2**63": _step_beyond_64_bits,
    "row-nested-250-deep": _nested_250_deep,
    "row-15MB-string": _row_of_15_mb,
    "row-100k-keys": _row_of_100k_keys,
}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("case", list(EXTREMES))
def test_what_log_accepts_online_reaches_the_server(
    case: str, tracker_server: ServerProcess, tmp_path: Path, figures: Figures
) -> None:
    """An extreme call between two plain rows either raises UsageError (and the rest is
    delivered) or is stored too: after finish every record is acknowledged and the run is
    finished on the server; never a stream that silently stops."""
    run = tracker.init(
        project="faults",
        dir=tmp_path / "runs",
        settings={**FAST_RETRIES, "base_url": tracker_server.url, "finish_timeout": 20.0},
    )
    run.log({"x": 0})
    try:
        EXTREMES[case](run)
        refused = None
    except tracker.UsageError as exc:
        refused = str(exc)
    run.log({"x": 2})
    run.finish()
    status = run.status()
    stored = tracker.Api(tracker_server.url).run(run.path)
    figures.rows_stored = len(stored.history())
    figures.extra.update(refused=refused is not None, connection=status.connection)
    if status.last_error:
        figures.extra["last_error"] = status.last_error[:100]
    assert status.acknowledged == status.written, status
    assert stored.state == "finished"
    assert [row["x"] for row in stored.history(keys=["x"])][:1] == [0]


def test_a_row_too_big_for_a_server_is_refused_offline_too(tmp_path: Path) -> None:
    """Offline, a row over the 16 MB record limit is refused with a UsageError that says
    what to do, so every offline run stays syncable; rows around it are kept."""
    run = tracker.init(dir=tmp_path / "runs", mode="offline", settings={"silent": True})
    run.log({"x": 0})
    with pytest.raises(tracker.UsageError, match=r"at most 16 MB.*run\.save\(\)"):
        run.log({"big": "y" * 20_000_000})
    run.log({"x": 2})
    run.finish()
    history = tracker.read_run(run.dir).history()
    assert [row.get("x") for row in history] == [0, 2]


# -- after finish ---------------------------------------------------------------------------

AFTER_FINISH: dict[str, Callable[[tracker.Run, Path], Any]] = {
    "log": lambda run, _: run.log({"a": 2}),
    "log-step": lambda run, _: run.log({"a": 2}, step=9, commit=True),
    "alog": lambda run, _: asyncio.run(run.alog({"a": 2})),
    "config-update": lambda run, _: run.config.update({"z": 1}),
    "config-item": lambda run, _: run.config.__setitem__("z", 1),
    "config-attribute": lambda run, _: setattr(run.config, "z", 1),
    "summary-item": lambda run, _: run.summary.__setitem__("best", 2),
    "summary-delete": lambda run, _: run.summary.__delitem__("a"),
    "summary-update": lambda run, _: run.summary.update({"c": 1}),
    "define-metric": lambda run, _: run.define_metric("a", summary="max"),
    "save": lambda run, path: run.save(str(path)),
    "name": lambda run, _: setattr(run, "name", "renamed"),
    "tags": lambda run, _: setattr(run, "tags", ("t",)),
    "notes": lambda run, _: setattr(run, "notes", "n"),
}


@pytest.mark.parametrize("call", list(AFTER_FINISH))
def test_a_change_after_finish_is_a_usage_error_and_loses_nothing(
    tmp_path: Path, call: str
) -> None:
    """Every call that would change a finished run raises UsageError saying it is
    finished; the run reads back exactly as it was finished."""
    kept = tmp_path / "kept.txt"
    kept.write_text("x")
    run = tracker.init(dir=tmp_path / "runs", config={"lr": 0.1}, settings={"silent": True})
    run.log({"a": 1})
    run.finish()
    with pytest.raises(tracker.UsageError, match=rf"finish.*{run.id}"):
        AFTER_FINISH[call](run, kept)
    assert run.flush(timeout=1)
    run.finish()
    stored = tracker.read_run(run.dir)
    assert [row["a"] for row in stored.history()] == [1]
    assert stored.summary == {"a": 1}
    assert stored.config == {"lr": 0.1}
    assert stored.state == "finished"


# -- a forked child ---------------------------------------------------------------------------

FORKED = """
import asyncio, os, signal, sys, time, tracker

class Hung(Exception):
    pass

def alarm(signum, frame):
    raise Hung()

signal.signal(signal.SIGALRM, alarm)
open("kept.txt", "w").write("x")
run = tracker.init(dir="runs", id="parent", settings={"silent": True})
run.log({"p": 0})
calls = {
    "log": lambda: run.log({"p": -1}),
    "log-step": lambda: run.log({"p": -1}, step=7),
    "alog": lambda: asyncio.run(run.alog({"p": -1})),
    "config-update": lambda: run.config.update({"z": 1}),
    "summary-item": lambda: run.summary.__setitem__("best", 1),
    "summary-delete": lambda: run.summary.__delitem__("p"),
    "define-metric": lambda: run.define_metric("p", summary="max"),
    "save": lambda: run.save("kept.txt"),
    "name": lambda: setattr(run, "name", "child"),
    "tags": lambda: setattr(run, "tags", ("child",)),
    "notes": lambda: setattr(run, "notes", "child"),
    "flush-with-timeout": lambda: run.flush(timeout=2),
    "flush": lambda: run.flush(),
}
pid = os.fork()
if pid == 0:
    for name, call in calls.items():
        began = time.monotonic()
        signal.alarm(4)
        try:
            outcome = "returned " + repr(call())
        except tracker.UsageError as exc:
            outcome = "UsageError" if "tracker.init()" in str(exc) else "unclear: " + str(exc)
        except Hung:
            outcome = "hung"
        except BaseException as exc:
            outcome = type(exc).__name__ + ": " + str(exc)
        signal.alarm(0)
        print(name, round(time.monotonic() - began, 1), outcome, sep="|", flush=True)
    began = time.monotonic()
    run.finish()
    print("finish", round(time.monotonic() - began, 1), "returned", sep="|", flush=True)
    os._exit(0)
for index in range(1, 5):
    run.log({"p": index})
os.waitpid(pid, 0)
run.finish()
"""


@pytest.mark.timeout(90)
def test_every_call_on_an_inherited_run_in_a_forked_child_is_refused_at_once(
    tmp_path: Path,
) -> None:
    """In a forked child, every call that would change or flush the parent's run raises a
    UsageError telling to call tracker.init() in the child, without waiting; finish() there
    leaves the parent's run alone, which ends complete."""
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(FORKED)],
        cwd=tmp_path,
        env=child_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=80,
    )
    assert result.returncode == 0, result.stderr
    outcomes = {
        name: (float(seconds), outcome)
        for name, seconds, outcome in (line.split("|") for line in result.stdout.splitlines())
    }
    print(outcomes)
    # "at once": under 1.9 s even on a loaded machine, yet below the 2 s that a
    # flush(timeout=2) waiting for a writer that is not there would take
    assert outcomes.pop("finish")[0] < 1.9
    wrong = {name: outcome for name, outcome in outcomes.items() if outcome[1] != "UsageError"}
    slow = {name: outcome for name, outcome in outcomes.items() if outcome[0] >= 1.9}
    assert (wrong, slow) == ({}, {})
    stored = tracker.read_run(next((tmp_path / "runs" / "tracker-runs").glob("*-parent")))
    assert [row["p"] for row in stored.history()] == [0, 1, 2, 3, 4]
    assert stored.state == "finished"
    assert stored.config == {}
    assert stored.summary == {"p": 4}

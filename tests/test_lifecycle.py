"""Tests for the run lifecycle through the public API: init, finish, reinit, resume, save."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import tracker

SILENT: dict[str, Any] = {"silent": True}
PACKAGE_ROOT = Path(tracker.__file__).resolve().parent.parent


def subprocess_env(tmp_path: Path) -> dict[str, str]:
    """The environment of a child Python that imports this tracker, silent, isolated."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("TRACKER_")}
    env["TRACKER_SILENT"] = "1"
    env["TRACKER_CONFIG_DIR"] = str(tmp_path / "config")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PACKAGE_ROOT), env.get("PYTHONPATH")]))
    return env


def rows(stored: tracker.StoredRun, key: str) -> list[tuple[int, Any]]:
    """(step, value) of every history row holding ``key``."""
    return [(row["_step"], row[key]) for row in stored.history(keys=[key])]


# -- finish -------------------------------------------------------------------------


def test_finish_marks_run_finished(tmp_path: Path) -> None:
    """finish() stores the run as finished, with its rows."""
    run = tracker.init(dir=tmp_path, settings=SILENT)
    run.log({"loss": 1.0})
    run.finish()
    stored = tracker.read_run(run.dir)
    assert stored.state == "finished"
    assert rows(stored, "loss") == [(0, 1.0)]


def test_finish_with_nonzero_exit_code_marks_run_failed(tmp_path: Path) -> None:
    """finish(exit_code=1) stores the run as failed with exit code 1."""
    run = tracker.init(dir=tmp_path, settings=SILENT)
    run.finish(exit_code=1)
    stored = tracker.read_run(run.dir)
    assert stored.state == "failed"
    assert stored.exit_code == 1


def test_finish_twice_is_harmless(tmp_path: Path) -> None:
    """A second finish() does nothing: no error, the first outcome stays."""
    run = tracker.init(dir=tmp_path, settings=SILENT)
    run.log({"a": 1})
    run.finish()
    run.finish()
    run.finish(exit_code=1)
    stored = tracker.read_run(run.dir)
    assert stored.state == "finished"
    assert rows(stored, "a") == [(0, 1)]


def test_summary_delete_after_finish_says_the_run_is_finished(tmp_path: Path) -> None:
    """Deleting a summary key of a finished run is a UsageError saying so, whether or not
    the key is there (a forked child's inherited run answers the same, never KeyError)."""
    run = tracker.init(dir=tmp_path, settings=SILENT)
    run.log({"a": 1})
    run.finish()
    for key in ("a", "never-logged"):
        with pytest.raises(tracker.UsageError, match="finished"):
            del run.summary[key]


def test_finish_rejects_non_int_exit_code(tmp_path: Path) -> None:
    """finish(exit_code='x') is a UsageError naming exit_code; the run stays usable."""
    run = tracker.init(dir=tmp_path, settings=SILENT)
    with pytest.raises(tracker.UsageError, match="exit_code"):
        run.finish(exit_code="x")  # type: ignore[arg-type]
    run.log({"a": 1})
    run.finish()
    assert tracker.read_run(run.dir).state == "finished"


def test_with_block_finishes_run(tmp_path: Path) -> None:
    """Leaving `with run:` normally finishes the run."""
    with tracker.init(dir=tmp_path, settings=SILENT) as run:
        run.log({"a": 1})
    assert tracker.run is None
    assert tracker.read_run(run.dir).state == "finished"


def test_exception_escaping_with_block_marks_run_failed(tmp_path: Path) -> None:
    """An exception escaping `with run:` marks the run failed and still propagates."""

    def train() -> None:
        with tracker.init(dir=tmp_path, settings=SILENT) as run:
            run.log({"a": 1})
            raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        train()
    assert tracker.run is None
    stored = tracker.read_run(tmp_path)
    assert stored.state == "failed"
    assert rows(stored, "a") == [(0, 1)]


def test_keyboard_interrupt_escaping_with_block_marks_run_killed(tmp_path: Path) -> None:
    """KeyboardInterrupt escaping `with run:` marks the run killed and still propagates."""
    caught = False
    try:
        with tracker.init(dir=tmp_path, settings=SILENT) as run:
            run.log({"a": 1})
            raise KeyboardInterrupt
    except KeyboardInterrupt:
        caught = True
    assert caught
    assert tracker.read_run(run.dir).state == "killed"


# -- tracker.run and the module-level functions -------------------------------------


def test_tracker_run_follows_init_and_finish(tmp_path: Path) -> None:
    """tracker.run is None before init, the run init returned, and None after finish."""
    assert tracker.run is None
    run = tracker.init(dir=tmp_path, settings=SILENT)
    assert run is tracker.run
    run.finish()
    assert tracker.run is None


def test_module_level_functions_act_on_current_run(tmp_path: Path) -> None:
    """tracker.log, tracker.config, tracker.summary and tracker.finish use the current run."""
    run = tracker.init(dir=tmp_path, config={"lr": 0.1}, settings=SILENT)
    tracker.log({"loss": 0.5})
    tracker.log({"loss": 0.25})
    assert tracker.config["lr"] == 0.1
    tracker.config.update({"epochs": 3})
    tracker.summary["best"] = 0.9
    assert run.config["epochs"] == 3
    assert run.summary["best"] == 0.9
    tracker.finish()
    assert tracker.run is None
    stored = tracker.read_run(run.dir)
    assert stored.state == "finished"
    assert rows(stored, "loss") == [(0, 0.5), (1, 0.25)]
    assert stored.config == {"lr": 0.1, "epochs": 3}
    assert stored.summary["best"] == 0.9
    assert stored.summary["loss"] == 0.25


def test_module_level_log_without_run_is_usage_error() -> None:
    """tracker.log with no current run is a UsageError telling to call tracker.init()."""
    with pytest.raises(tracker.UsageError, match=r"tracker\.init\(\)"):
        tracker.log({"a": 1})


def test_module_level_config_and_summary_without_run_are_usage_errors() -> None:
    """tracker.config / tracker.summary with no run raise UsageError; hasattr says False."""
    with pytest.raises(tracker.UsageError, match=r"tracker\.config.*tracker\.init\(\)"):
        tracker.config
    with pytest.raises(tracker.UsageError, match=r"tracker\.summary.*tracker\.init\(\)"):
        tracker.summary
    assert not hasattr(tracker, "config")
    assert not hasattr(tracker, "summary")


def test_module_level_finish_without_run_does_nothing() -> None:
    """tracker.finish() with no current run is a no-op."""
    tracker.finish()
    assert tracker.run is None


# -- reinit -------------------------------------------------------------------------


@pytest.mark.parametrize("reinit", [None, False, "return_previous"])
def test_reinit_returning_previous_gives_active_run(tmp_path: Path, reinit: Any) -> None:
    """init while a run is active returns that same run under the default reinit."""
    first = tracker.init(dir=tmp_path, settings=SILENT)
    second = tracker.init(dir=tmp_path, reinit=reinit, settings=SILENT)
    assert second is first
    assert tracker.run is first
    runs = tmp_path / "tracker-runs"
    assert len([p for p in runs.iterdir() if p.name.startswith("offline-run-")]) == 1


@pytest.mark.parametrize("reinit", [True, "finish_previous"])
def test_reinit_finishing_previous_starts_new_run(tmp_path: Path, reinit: Any) -> None:
    """reinit=True / 'finish_previous' finishes the active run and starts a new current one."""
    first = tracker.init(dir=tmp_path, settings=SILENT)
    first.log({"a": 1})
    second = tracker.init(dir=tmp_path, reinit=reinit, settings=SILENT)
    assert second is not first
    assert second.id != first.id
    assert second.dir != first.dir
    assert tracker.run is second
    assert tracker.read_run(first.dir).state == "finished"
    with pytest.raises(tracker.UsageError, match="finish"):
        first.log({"a": 2})
    second.log({"b": 1})
    second.finish()
    assert rows(tracker.read_run(second.dir), "b") == [(0, 1)]


def test_reinit_create_new_keeps_several_runs_live(tmp_path: Path) -> None:
    """create_new runs live side by side, each with its own rows, and never become tracker.run."""
    first = tracker.init(dir=tmp_path, settings=SILENT)
    second = tracker.init(dir=tmp_path, reinit="create_new", settings=SILENT)
    third = tracker.init(dir=tmp_path, reinit="create_new", settings=SILENT)
    assert len({first.dir, second.dir, third.dir}) == 3
    assert tracker.run is first
    for step in range(3):
        tracker.log({"first": step})
        second.log({"second": step * 10})
        third.log({"third": step * 100})
    assert tracker.run is first
    second.finish()
    assert tracker.run is first
    tracker.log({"first": 3})
    third.finish()
    first.finish()
    stored = [tracker.read_run(run.dir) for run in (first, second, third)]
    assert [s.state for s in stored] == ["finished"] * 3
    assert rows(stored[0], "first") == [(0, 0), (1, 1), (2, 2), (3, 3)]
    assert rows(stored[1], "second") == [(0, 0), (1, 10), (2, 20)]
    assert rows(stored[2], "third") == [(0, 0), (1, 100), (2, 200)]
    assert rows(stored[0], "second") == []
    assert rows(stored[1], "first") == []


def test_reinit_rejects_unknown_value(tmp_path: Path) -> None:
    """reinit='bogus' is a UsageError naming reinit."""
    with pytest.raises(tracker.UsageError, match="reinit"):
        tracker.init(dir=tmp_path, reinit="bogus", settings=SILENT)


# -- every UsageError of init -------------------------------------------------------

BAD_INIT_ARGUMENTS: list[tuple[dict[str, Any], str]] = [
    ({"id": "a/b"}, "id"),
    ({"id": ""}, "id"),
    ({"id": "x" * 129}, "id"),
    ({"project": 1}, "project"),
    ({"tags": "abc"}, "tags"),
    ({"tags": [""]}, "tags"),
    ({"reinit": "x"}, "reinit"),
    ({"anonymous": "x"}, "anonymous"),
    ({"mode": "x"}, "mode"),
    ({"resume": "x"}, "resume"),
    ({"config": 1}, "config"),
    ({"config": {"a.b": 1}}, "a.b"),
    (
        {"config": {"a": 1}, "config_include_keys": ["a"], "config_exclude_keys": ["b"]},
        "config_include_keys and config_exclude_keys",
    ),
    ({"config": "missing-config.yaml"}, "missing-config.yaml"),
    ({"tensorboard": "yes"}, "tensorboard"),
    ({"sync_tensorboard": 3}, "sync_tensorboard"),
    ({"monitor_gym": "yes"}, "monitor_gym"),
    ({"fork_from": "bad"}, "fork_from"),
    ({"resume_from": "abc?_step=x"}, "resume_from"),
    ({"fork_from": "a1?_step=1", "resume_from": "b2?_step=2"}, "fork_from and resume_from"),
    ({"settings": {"silent": True, "bogus": 1}}, "bogus"),
    ({"settings": {"silent": True, "queue_max_events": 0}}, "queue_max_events"),
    ({"force": True}, "force"),
    ({"magic": "yes"}, "magic"),
]


@pytest.mark.parametrize(
    ("arguments", "named"),
    BAD_INIT_ARGUMENTS,
    ids=[f"{'+'.join(arguments)}={named}"[:60] for arguments, named in BAD_INIT_ARGUMENTS],
)
def test_bad_init_argument_is_usage_error_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, arguments: dict[str, Any], named: str
) -> None:
    """A bad init argument raises UsageError naming it, and leaves no run directory behind."""
    monkeypatch.chdir(tmp_path)
    root = tmp_path / "runs"
    arguments = {"settings": SILENT, **arguments}
    with pytest.raises(tracker.UsageError) as raised:
        tracker.init(dir=root, **arguments)
    assert named in str(raised.value)
    assert not root.exists()
    assert tracker.run is None
    assert [p.name for p in tmp_path.iterdir()] == []


# -- config sources -----------------------------------------------------------------


def test_config_from_argparse_namespace(tmp_path: Path) -> None:
    """init(config=argparse.Namespace(...)) stores the namespace's attributes."""
    run = tracker.init(dir=tmp_path, config=argparse.Namespace(lr=0.1, batch=32), settings=SILENT)
    assert run.config["lr"] == 0.1
    assert run.config.batch == 32
    run.finish()
    assert tracker.read_run(run.dir).config == {"lr": 0.1, "batch": 32}


def test_config_from_yaml_file(tmp_path: Path) -> None:
    """init(config='path.yaml') loads the YAML mapping, nested values included."""
    path = tmp_path / "config.yaml"
    path.write_text("lr: 0.1\nlayers: [64, 32]\noptim:\n  name: adam\n", encoding="utf-8")
    run = tracker.init(dir=tmp_path / "runs", config=str(path), settings=SILENT)
    assert run.config["optim"]["name"] == "adam"
    run.finish()
    assert tracker.read_run(run.dir).config == {
        "lr": 0.1,
        "layers": [64, 32],
        "optim": {"name": "adam"},
    }


def test_config_from_wandb_config_defaults_yaml(tmp_path: Path) -> None:
    """A W&B config-defaults.yaml loads as plain values, without wandb_version or desc."""
    path = tmp_path / "config-defaults.yaml"
    path.write_text(
        "wandb_version: 1\n\nlr:\n  desc: learning rate\n  value: 0.01\nepochs:\n  value: 5\n",
        encoding="utf-8",
    )
    run = tracker.init(dir=tmp_path / "runs", config=path, settings=SILENT)
    assert dict(run.config) == {"lr": 0.01, "epochs": 5}
    run.finish()
    assert tracker.read_run(run.dir).config == {"lr": 0.01, "epochs": 5}


def test_config_include_keys_keeps_only_those(tmp_path: Path) -> None:
    """config_include_keys keeps only the listed top-level keys."""
    run = tracker.init(
        dir=tmp_path,
        config={"lr": 0.1, "batch": 32, "seed": 1},
        config_include_keys=["lr", "seed"],
        settings=SILENT,
    )
    assert dict(run.config) == {"lr": 0.1, "seed": 1}
    run.finish()
    assert tracker.read_run(run.dir).config == {"lr": 0.1, "seed": 1}


def test_config_exclude_keys_drops_those(tmp_path: Path) -> None:
    """config_exclude_keys drops the listed top-level keys."""
    run = tracker.init(
        dir=tmp_path,
        config={"lr": 0.1, "batch": 32, "seed": 1},
        config_exclude_keys=["seed"],
        settings=SILENT,
    )
    assert dict(run.config) == {"lr": 0.1, "batch": 32}
    run.finish()
    assert tracker.read_run(run.dir).config == {"lr": 0.1, "batch": 32}


def test_magic_captures_argparse_results_into_config(tmp_path: Path) -> None:
    """init(magic=True): what argparse parses afterwards lands in run.config."""
    run = tracker.init(dir=tmp_path, magic=True, settings=SILENT)
    parser = argparse.ArgumentParser()
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--epochs", type=int, default=3)
    parsed = parser.parse_args(["--lr", "0.5"])
    assert parsed.lr == 0.5
    assert run.config["lr"] == 0.5
    assert run.config["epochs"] == 3
    run.finish()
    assert tracker.read_run(run.dir).config == {"lr": 0.5, "epochs": 3}


# -- save ---------------------------------------------------------------------------


def test_save_copies_file_into_run_files(tmp_path: Path) -> None:
    """run.save(path) copies the file into <run dir>/files/ and read_run lists it."""
    source = tmp_path / "src" / "model.txt"
    source.parent.mkdir()
    source.write_text("weights", encoding="utf-8")
    run = tracker.init(dir=tmp_path / "runs", settings=SILENT)
    stored_paths = run.save(str(source))
    target = Path(run.dir) / "model.txt"
    assert stored_paths == [str(target)]
    assert target.read_text(encoding="utf-8") == "weights"
    run.finish()
    assert [file.name for file in tracker.read_run(run.dir).files()] == ["model.txt"]
    assert tracker.read_run(run.dir).files()[0].read() == b"weights"


def test_save_glob_with_base_path_keeps_sub_paths(tmp_path: Path) -> None:
    """run.save(glob, base_path=...) stores each match under its path relative to base_path."""
    base = tmp_path / "ckpt"
    for sub in ("a/x.pt", "b/c/y.pt", "b/notes.txt"):
        (base / sub).parent.mkdir(parents=True, exist_ok=True)
        (base / sub).write_text(sub, encoding="utf-8")
    run = tracker.init(dir=tmp_path / "runs", settings=SILENT)
    run.save(str(base / "**" / "*.pt"), base_path=str(base))
    run.finish()
    files = Path(run.dir)
    stored = tracker.read_run(run.dir).files()
    assert [file.name for file in stored] == ["a/x.pt", "b/c/y.pt"]
    assert (files / "a" / "x.pt").is_file()
    assert (files / "b" / "c" / "y.pt").read_text(encoding="utf-8") == "b/c/y.pt"


def test_save_live_policy_stores_final_version(tmp_path: Path) -> None:
    """A file saved with policy='live' and changed afterwards is stored as it is at finish."""
    source = tmp_path / "log.txt"
    source.write_text("v1", encoding="utf-8")
    run = tracker.init(dir=tmp_path / "runs", settings=SILENT)
    run.save(str(source), policy="live")
    source.write_text("v2, longer", encoding="utf-8")
    run.finish()
    (stored,) = tracker.read_run(run.dir).files()
    assert stored.read() == b"v2, longer"


def test_save_missing_path_is_usage_error(tmp_path: Path) -> None:
    """run.save of a path that matches nothing is a UsageError naming the path."""
    run = tracker.init(dir=tmp_path / "runs", settings=SILENT)
    missing = str(tmp_path / "nothing-here.txt")
    with pytest.raises(tracker.UsageError, match=r"nothing-here\.txt"):
        run.save(missing)


def test_save_bad_policy_is_usage_error(tmp_path: Path) -> None:
    """run.save(policy='x') is a UsageError naming policy."""
    source = tmp_path / "a.txt"
    source.write_text("a", encoding="utf-8")
    run = tracker.init(dir=tmp_path / "runs", settings=SILENT)
    with pytest.raises(tracker.UsageError, match="policy"):
        run.save(str(source), policy="x")


def test_save_code_stores_main_script(tmp_path: Path) -> None:
    """save_code=True stores the main script under files/code/."""
    script = tmp_path / "train.py"
    script.write_text(
        "import tracker\n"
        "run = tracker.init(dir='runs', save_code=True)\n"
        "run.log({'a': 1})\n"
        "run.finish()\n",
        encoding="utf-8",
    )
    result = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=subprocess_env(tmp_path),
        timeout=30,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    stored = tracker.read_run(tmp_path / "runs")
    code = stored.dir / "files" / "code" / "train.py"
    assert [file.name for file in stored.files()] == ["code/train.py", "requirements.txt"]
    assert code.read_text(encoding="utf-8") == script.read_text(encoding="utf-8")


# -- offline resume -----------------------------------------------------------------


def finished_run(root: Path, run_id: str) -> tracker.Run:
    """A finished run with config, three rows and an explicit summary value."""
    run = tracker.init(dir=root, id=run_id, config={"lr": 0.1}, settings=SILENT)
    for step in range(3):
        run.log({"loss": 1.0 / (step + 1)})
    run.summary["best"] = 0.9
    run.finish()
    return run


def test_resume_allow_continues_existing_run(tmp_path: Path) -> None:
    """resume='allow' on a finished id continues it: next step, config, summary, history kept."""
    first = finished_run(tmp_path, "r1")
    run = tracker.init(dir=tmp_path, id="r1", resume="allow", settings=SILENT)
    assert run.resumed
    assert run.dir == first.dir
    assert run.step == 3
    assert run.config["lr"] == 0.1
    assert run.summary["best"] == 0.9
    assert run.summary["loss"] == pytest.approx(1 / 3)
    run.log({"loss": 0.1})
    run.finish()
    stored = tracker.read_run(run.dir)
    assert stored.state == "finished"
    assert [step for step, _ in rows(stored, "loss")] == [0, 1, 2, 3]
    assert stored.config == {"lr": 0.1}
    assert stored.summary["loss"] == 0.1
    assert stored.summary["best"] == 0.9


def test_resume_allow_unknown_id_starts_new_run(tmp_path: Path) -> None:
    """resume='allow' on an id that does not exist starts a new run with that id."""
    run = tracker.init(dir=tmp_path, id="fresh", resume="allow", settings=SILENT)
    assert not run.resumed
    assert run.id == "fresh"
    assert run.step == 0


def test_resume_must_unknown_id_is_usage_error(tmp_path: Path) -> None:
    """resume='must' on an id that does not exist is a UsageError naming resume and the id."""
    with pytest.raises(tracker.UsageError, match=r"resume='must'.*'nope'"):
        tracker.init(dir=tmp_path, id="nope", resume="must", settings=SILENT)
    assert tracker.run is None


def test_resume_never_existing_id_is_usage_error(tmp_path: Path) -> None:
    """resume='never' on an id that exists is a UsageError naming resume and the id."""
    finished_run(tmp_path, "r1")
    with pytest.raises(tracker.UsageError, match=r"resume='never'.*r1"):
        tracker.init(dir=tmp_path, id="r1", resume="never", settings=SILENT)


def test_resume_none_with_existing_id_starts_new_run_dir(tmp_path: Path) -> None:
    """resume=None with an existing id starts afresh in a new run dir; the old one stays."""
    first = finished_run(tmp_path, "r1")
    run = tracker.init(dir=tmp_path, id="r1", settings=SILENT)
    assert not run.resumed
    assert run.dir != first.dir
    assert run.step == 0
    assert "lr" not in run.config
    run.log({"other": 1})
    run.finish()
    assert len(tracker.read_run(first.dir).history()) == 3
    stored = tracker.read_run(run.dir)
    assert rows(stored, "other") == [(0, 1)]
    assert rows(stored, "loss") == []
    assert tracker.read_run(tmp_path).dir == Path(run.dir).parent


def test_resume_of_run_live_in_another_process_is_usage_error(tmp_path: Path) -> None:
    """A run still running in another process cannot be resumed from this one."""
    script = (
        "import time, tracker\n"
        "run = tracker.init(dir='runs', id='busy')\n"
        "run.log({'a': 1})\n"
        "run.flush()\n"
        "print('ready', flush=True)\n"
        "time.sleep(30)\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env=subprocess_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
        with pytest.raises(tracker.UsageError, match=r"busy.*still running"):
            tracker.init(dir=tmp_path / "runs", id="busy", resume="allow", settings=SILENT)
        assert tracker.run is None
        assert tracker.read_run(tmp_path / "runs").state == "running"
    finally:
        child.kill()
        child.wait(timeout=30)
        child.stdout.close()  # type: ignore[union-attr]
    assert tracker.read_run(tmp_path / "runs").state == "crashed"


def test_resume_auto_continues_crashed_run_then_starts_new(tmp_path: Path) -> None:
    """resume='auto' resumes the run that crashed in dir; after a clean finish it starts anew."""
    script = (
        "import os, tracker\n"
        "run = tracker.init(dir='runs', config={'lr': 0.1})\n"
        "for i in range(3):\n"
        "    run.log({'loss': i})\n"
        "run.flush()\n"
        "print(run.id, flush=True)\n"
        "os._exit(1)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env=subprocess_env(tmp_path),
        timeout=30,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1, result.stderr
    crashed_id = result.stdout.strip()
    assert tracker.read_run(tmp_path / "runs").state == "crashed"
    run = tracker.init(dir=tmp_path / "runs", resume="auto", settings=SILENT)
    assert run.id == crashed_id
    assert run.resumed
    assert run.step == 3
    assert run.config["lr"] == 0.1
    run.log({"loss": 3})
    run.finish()
    stored = tracker.read_run(run.dir)
    assert stored.state == "finished"
    assert rows(stored, "loss") == [(0, 0), (1, 1), (2, 2), (3, 3)]
    fresh = tracker.init(dir=tmp_path / "runs", resume="auto", settings=SILENT)
    assert fresh.id != crashed_id
    assert not fresh.resumed
    assert fresh.step == 0


# -- environment and defaults -------------------------------------------------------


def test_environment_variables_are_honoured(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """TRACKER_PROJECT, TRACKER_TAGS, TRACKER_RUN_ID and TRACKER_DIR set the run's fields."""
    monkeypatch.setenv("TRACKER_PROJECT", "envproject")
    monkeypatch.setenv("TRACKER_TAGS", "a, b")
    monkeypatch.setenv("TRACKER_RUN_ID", "envid")
    monkeypatch.setenv("TRACKER_DIR", str(tmp_path / "envdir"))
    run = tracker.init(settings=SILENT)
    assert run.project == "envproject"
    assert run.tags == ("a", "b")
    assert run.id == "envid"
    assert Path(run.dir).parent.parent == tmp_path / "envdir" / "tracker-runs"
    run.finish()
    stored = tracker.read_run(tmp_path / "envdir")
    assert (stored.project, stored.id, stored.tags) == ("envproject", "envid", ("a", "b"))


def test_environment_mode_disabled_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """TRACKER_MODE=disabled gives a run with the same API that writes nothing."""
    monkeypatch.setenv("TRACKER_MODE", "disabled")
    root = tmp_path / "runs"
    run = tracker.init(dir=root, config={"lr": 0.1}, settings=SILENT)
    assert run.mode == "disabled"
    assert tracker.run is run
    run.log({"a": 1})
    tracker.log({"a": 2})
    run.summary["best"] = 1.0
    run.finish()
    assert tracker.run is None
    assert not root.exists()


def test_runs_of_a_script_never_shadow_the_package(tmp_path: Path) -> None:
    """A script run twice from its folder keeps its runs in ./tracker-runs: a ./tracker
    folder would be a namespace package that shadows an editable install of tracker."""
    project = tmp_path / "project"
    project.mkdir()
    script = project / "train.py"
    script.write_text(
        "import tracker\n"
        "with tracker.init(project='p', mode='offline') as run:\n"
        "    run.log({'loss': 1.0})\n"
    )
    for _ in range(2):
        done = subprocess.run(
            [sys.executable, str(script)],
            cwd=project,
            env=subprocess_env(tmp_path),
            capture_output=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr.decode()
    assert sorted(p.name for p in project.iterdir()) == ["tracker-runs", "train.py"]
    assert len(list((project / "tracker-runs").glob("offline-run-*"))) == 2
    assert tracker.read_run(project).state == "finished"


def test_dir_is_the_folder_that_holds_the_runs_folder(tmp_path: Path) -> None:
    """init(dir=D) puts runs in D/tracker-runs, also for dir="." (W&B's dir= and ./wandb)."""
    os.chdir(tmp_path)
    try:
        with tracker.init(dir=".", settings=SILENT) as run:
            run.log({"a": 1})
    finally:
        os.chdir(PACKAGE_ROOT)
    assert Path(run.dir).parent.parent == tmp_path / "tracker-runs"
    assert tracker.read_run(tmp_path).history(keys=["a"]) == [{"_step": 0, "a": 1}]


def test_default_project_is_git_root_folder_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no project given, a run inside a git checkout takes the checkout folder's name."""
    checkout = tmp_path / "my-experiment"
    (checkout / ".git").mkdir(parents=True)
    (checkout / "src").mkdir()
    monkeypatch.chdir(checkout / "src")
    run = tracker.init(dir=tmp_path / "runs", settings=SILENT)
    assert run.project == "my-experiment"
    run.finish()
    assert tracker.read_run(run.dir).project == "my-experiment"

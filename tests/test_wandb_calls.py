"""W&B's calls that scripts make besides log(): module-level helpers, unknown init
arguments, log() with no data, define_metric's newer arguments, run.dir as the files folder."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import tracker
from tracker._sync import run_dirs_under

SILENT = {"silent": True}


def _run(tmp_path: Path, **kwargs: object) -> tracker.Run:
    return tracker.init(project="calls", dir=tmp_path, settings=SILENT, **kwargs)


def test_module_level_helpers_act_on_the_current_run(tmp_path: Path) -> None:
    """tracker.define_metric, save and log_code act on tracker.run, as wandb's do."""
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "train.py").write_text("print('train')\n")
    (tmp_path / "code" / "notes.txt").write_text("not code\n")
    (tmp_path / "code" / ".hidden").mkdir()
    (tmp_path / "code" / ".hidden" / "skip.py").write_text("")
    (tmp_path / "weights.bin").write_bytes(b"w")
    run = _run(tmp_path)
    rule = tracker.define_metric("val/*", summary="min", step_sync=True, overwrite=True)
    assert rule.summary == frozenset({"min"})
    tracker.save(str(tmp_path / "weights.bin"))
    tracker.log_code(tmp_path / "code")
    tracker.log({"val/loss": 2.0})
    tracker.log({"val/loss": 1.0})
    run.finish()
    stored = tracker.read_run(run.dir)
    assert stored.summary["val/loss"] == {"min": 1.0}
    assert sorted(file.name for file in stored.files()) == ["code/train.py", "weights.bin"]


@pytest.mark.parametrize("call", ["define_metric", "save", "watch", "log_code"])
def test_module_level_helpers_without_a_run_are_usage_errors(call: str) -> None:
    """tracker.define_metric/save/watch/log_code with no current run say to call init()."""
    arguments = {"define_metric": ("x",), "save": ("x",), "watch": (None,), "log_code": (".",)}
    with pytest.raises(tracker.UsageError, match=r"call tracker\.init"):
        getattr(tracker, call)(*arguments[call])
    tracker.unwatch()  # nothing to unwatch: nothing happens


def test_unknown_init_arguments_warn_naming_them(tmp_path: Path) -> None:
    """Arguments of newer wandb.init releases are ignored with a UserWarning naming them."""
    with pytest.warns(UserWarning, match=r"ignoring sync_code=, tensorboard_x="):
        run = _run(tmp_path, tensorboard_x=True, sync_code=True)
    assert run is tracker.run
    run.finish()


def test_log_with_no_data_commits_the_pending_row_or_does_nothing(tmp_path: Path) -> None:
    """log() and log({}) commit the pending row; with none pending they log nothing and the
    step stays, as in W&B."""
    run = _run(tmp_path)
    run.log({"a": 1})
    run.log({})
    run.log()
    assert run.step == 1
    run.log({"b": 2}, commit=False)
    run.log()
    tracker.log({"c": 3}, commit=False)
    tracker.log({})
    run.log({}, step=5)
    run.log({"d": 4})
    run.finish()
    rows = [
        {k: v for k, v in row.items() if not k.startswith("_") or k == "_step"}
        for row in tracker.read_run(run.dir).history()
    ]
    assert rows == [
        {"_step": 0, "a": 1},
        {"_step": 1, "b": 2},
        {"_step": 2, "c": 3},
        {"_step": 5, "d": 4},
    ]


def test_define_metric_refuses_a_non_bool_step_sync(tmp_path: Path) -> None:
    """define_metric(step_sync=...) takes True, False or None."""
    run = _run(tmp_path)
    with pytest.raises(tracker.UsageError, match="step_sync"):
        run.define_metric("x", step_sync="yes")  # type: ignore[arg-type]


def test_run_dir_is_the_files_folder_and_reads_back_as_the_run(tmp_path: Path) -> None:
    """run.dir is <run directory>/files; a file written there is stored at finish (and a
    file saved from there is not copied); read_run(run.dir) and sync's folder walk take it
    for its run directory."""
    run = _run(tmp_path)
    files = Path(run.dir)
    assert files.name == "files"
    assert (files.parent / "run.log").is_file()
    (files / "model.ckpt").write_bytes(b"v1")
    tracker.save(str(files / "model.ckpt"))
    (files / "model.ckpt").write_bytes(b"v2")
    (files / "sub").mkdir()
    (files / "sub" / "late.txt").write_text("late")
    run.finish()
    stored = tracker.read_run(run.dir)
    assert stored.dir == files.parent
    assert {file.name: file.read() for file in stored.files()} == {
        "model.ckpt": b"v2",
        "sub/late.txt": b"late",
    }
    assert run_dirs_under(files) == [files.parent]


def test_import_tracker_as_wandb_runs_a_wandb_script_unchanged(tmp_path: Path) -> None:
    """A script written for wandb (init, config, log with media, summary, save, finish)
    runs with `import tracker as wandb` and its run reads back."""
    script = tmp_path / "train.py"
    script.write_text(
        "import os, numpy as np\n"
        "import tracker as wandb\n"
        "run = wandb.init(project='drop-in', config={'lr': 0.1, 'layers': {0: 64}},\n"
        "                 mode='offline', dir='out')\n"
        "wandb.config.update({'epochs': 2})\n"
        "wandb.define_metric('epoch')\n"
        "wandb.define_metric('val/*', step_metric='epoch', summary='min')\n"
        "for epoch in range(2):\n"
        "    wandb.log({'val/loss': 1.0 / (epoch + 1), 'epoch': epoch})\n"
        "wandb.log({'samples': wandb.Image(np.zeros((4, 4, 3), np.uint8)),\n"
        "           'dist': wandb.Histogram(np.arange(10))})\n"
        "wandb.run.summary['best'] = 0.5\n"
        "open(os.path.join(wandb.run.dir, 'model.pt'), 'wb').write(b'w')\n"
        "wandb.save(os.path.join(wandb.run.dir, 'model.pt'))\n"
        "wandb.finish()\n"
        "print(run.dir)\n"
    )
    env = {"PYTHONPATH": str(Path(tracker.__file__).parent.parent), "TRACKER_SILENT": "1"}
    done = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env={**env, "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    stored = tracker.read_run(done.stdout.strip())
    assert stored.config == {"lr": 0.1, "layers": {"0": 64}, "epochs": 2}
    assert stored.summary["val/loss"] == {"min": 0.5}
    assert stored.summary["best"] == 0.5
    assert stored.summary["samples"]["_type"] == "image-file"
    assert "model.pt" in [file.name for file in stored.files()]

"""Tests for tracker.testing: capturing what code under test logs, with nothing left behind."""

from __future__ import annotations

from pathlib import Path

import pytest

import tracker
from tracker.testing import capture_runs, memory_server


def train(steps: int) -> None:
    """Code under test: a training loop as users write it."""
    run = tracker.init(project="mnist", config={"lr": 0.1})
    for step in range(steps):
        run.log({"loss": 1 / (step + 1)})
    run.finish()


def test_capture_runs_reads_back_what_code_under_test_logged() -> None:
    """Runs started in the block are offline and silent, and read back whole after it."""
    with capture_runs() as captured:
        train(5)
    (run,) = captured.runs
    assert run.config == {"lr": 0.1}
    assert [row["loss"] for row in run.history(keys=["loss"])] == [1, 1 / 2, 1 / 3, 1 / 4, 1 / 5]
    assert run.state == "finished"
    assert not captured.dir.exists()  # the temporary folder is gone, the runs are kept


def test_captured_live_runs_hold_their_metadata(monkeypatch: pytest.MonkeyPatch) -> None:
    """A live captured run is read back with the metadata collected after init() (the OS,
    the GPUs, the packages), not only what init() wrote."""
    monkeypatch.setenv("TRACKER_SAVE_REQUIREMENTS", "1")
    with capture_runs() as captured:
        tracker.init(project="mnist")
        (run,) = captured.runs
        assert "os" in run.metadata
        assert isinstance(run.metadata["gpus"], list)
        assert [file.name for file in run.files()] == ["requirements.txt"]


def test_capture_runs_overrides_settings_and_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A configured server and TRACKER_DIR do not apply inside the block: nothing streams,
    nothing is written outside it, nothing is printed."""
    monkeypatch.setenv("TRACKER_BASE_URL", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("TRACKER_DIR", str(tmp_path / "elsewhere"))
    with capture_runs(tmp_path / "captured") as captured:
        run = tracker.init(project="p", settings={"mode": "online"})
        run.log({"a": 1})
        assert run.mode == "offline"
        (stored,) = captured.runs
        assert stored.history()[0]["a"] == 1
        run.finish()
    assert not (tmp_path / "elsewhere").exists()
    assert (tmp_path / "captured" / "tracker-runs").is_dir()
    assert capsys.readouterr().err == ""


def test_capture_runs_finishes_runs_left_open() -> None:
    """A run the code under test never finished is finished at the end of the block."""
    with capture_runs() as captured:
        run = tracker.init(project="p")
        run.log({"a": 1})
    assert [stored.state for stored in captured.runs] == ["finished"]
    assert tracker.run is None


def test_memory_server_takes_online_runs_and_reads_them_back(tmp_path: Path) -> None:
    """Online runs stream to a memory server over the real transports; its Api reads them."""
    with memory_server() as server:
        run = tracker.init(
            project="p", dir=tmp_path, settings={"base_url": server.url, "silent": True}
        )
        for step in range(100):
            run.log({"loss": 1 / (step + 1)})
        run.finish()
        stored = server.api().run(run.path)
        assert stored.state == "finished"
        assert len(stored.history(keys=["loss"])) == 100


def test_memory_server_keeps_nothing_once_stopped(tmp_path: Path) -> None:
    """A second memory server knows nothing of the first one's runs."""
    with memory_server() as server:
        run = tracker.init(
            project="p", dir=tmp_path, settings={"base_url": server.url, "silent": True}
        )
        run.finish()
    with memory_server() as server, pytest.raises(tracker.UsageError, match="does not exist"):
        server.api().run(run.path)

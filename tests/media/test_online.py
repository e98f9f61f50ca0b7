"""Media and run.dir files of an online run: uploaded with the run, read back through Api."""

from __future__ import annotations

from pathlib import Path

import numpy as np

import tracker
from tracker._server._runner import EmbeddedServer


def test_media_files_and_run_dir_files_reach_the_server(
    server: EmbeddedServer, tmp_path: Path
) -> None:
    """An online run's media files are uploaded as they are logged, a checkpoint written
    into run.dir at finish; Api().run() has the same references and bytes as read_run."""
    settings = {"silent": True, "base_url": server.url}
    run = tracker.init(project="media", dir=tmp_path, settings=settings)
    run.log({"sample": tracker.Image(np.eye(4, dtype=np.uint8) * 255), "loss": 0.5})
    run.log({"table": tracker.Table(columns=["a"], data=[[1], [2]])})
    (Path(run.dir) / "checkpoints").mkdir()
    (Path(run.dir) / "checkpoints" / "model.pt").write_bytes(b"weights")
    run.finish()
    local = tracker.read_run(run.dir)
    remote = tracker.Api(server.url).run(run.path)
    assert remote.history() == local.history()
    names = [file.name for file in local.files()]
    assert "checkpoints/model.pt" in names
    assert local.history()[0]["sample"]["path"] in names
    assert {file.name: file.read() for file in remote.files()} == {
        file.name: file.read() for file in local.files()
    }

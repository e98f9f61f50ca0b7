"""init(sync_tensorboard=True): real TensorBoard writers mirrored into the run, read back."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

import tracker
from tests.integrations.conftest import plain
from tracker._server._runner import EmbeddedServer

Start = Callable[..., tracker.Run]

pytest.importorskip("tensorboard", reason='pip install -e ".[integrations]" (tensorboard)')


def test_torch_summary_writer_rows_histograms_images_and_files(offline: Start) -> None:
    """A torch SummaryWriter made after init: one row per TensorBoard step with global_step
    (a step that goes back gets its own row), histograms and images as media, new-style
    scalars too; the event file is stored under tensorboard/ and every key plots against
    global_step."""
    pytest.importorskip("torch", reason='pip install -e ".[integrations]" (torch)')
    from torch.utils.tensorboard import SummaryWriter

    run = offline(sync_tensorboard=True)
    writer = SummaryWriter(log_dir="runs/exp")
    for step in (0, 1, 2, 1):
        writer.add_scalar("loss", 1.0 / (step + 1), step)
        writer.add_scalar("acc", step / 4, step)
    writer.add_histogram("weights", np.array([0.0, 1.0, 1.0, 2.0]), 3)
    writer.add_image("sample", np.ones((3, 4, 5)), 3)
    writer.add_scalar("lr", 0.5, 4, new_style=True)
    run.finish()  # the writer is neither flushed nor closed: finish flushes it
    stored = tracker.read_run(run.dir)
    rows = plain(stored.history())
    assert [(row["_step"], row["global_step"]) for row in rows] == [
        (0, 0),
        (1, 1),
        (2, 2),
        (3, 1),
        (4, 3),
        (5, 4),
    ]
    assert rows[3] == {"_step": 3, "global_step": 1, "loss": 0.5, "acc": 0.25}
    histogram = rows[4]["weights"]
    assert histogram["_type"] == "histogram"
    assert sum(histogram["values"]) == 4
    assert len(histogram["bins"]) == len(histogram["values"]) + 1
    image = rows[4]["sample"]
    assert (image["_type"], image["width"], image["height"]) == ("image-file", 5, 4)
    assert rows[5] == {"_step": 5, "global_step": 4, "lr": 0.5}
    names = [file.name for file in stored.files()]
    assert image["path"] in names
    assert [name for name in names if name.startswith("tensorboard/exp/events.out.tfevents")]
    keys = ("loss", "acc", "weights", "sample", "lr")
    rules = {rule.name: rule.step_metric for rule in stored.metric_rules}
    assert rules == dict.fromkeys(keys, "global_step")


def test_tensorboardx_sub_writers_get_their_folder_as_prefix(offline: Start) -> None:
    """tensorboardX's add_scalars writes one file per series in sub-folders (logs/loss/train,
    logs/loss/val); each series is a key prefixed with its folder."""
    tensorboardx = pytest.importorskip("tensorboardX", reason="pip install tensorboardX")
    run = offline(sync_tensorboard=True)
    writer = tensorboardx.SummaryWriter(logdir="logs")
    for step in range(3):
        writer.add_scalars("loss", {"train": 1.0 - step / 10, "val": 2.0 - step / 10}, step)
    writer.close()
    run.finish()
    rows = plain(tracker.read_run(run.dir).history())
    keys = {key for row in rows for key in row}
    assert {"loss/train/loss", "loss/val/loss"} <= keys
    assert sorted(row["global_step"] for row in rows if "loss/val/loss" in row) == [0, 1, 2]


def test_a_folder_given_as_sync_tensorboard_is_read_with_tf_summary_tensors(
    offline: Start, tmp_path: Path
) -> None:
    """sync_tensorboard="DIR" mirrors event files already there, written with
    TensorBoard's own protobufs as tf.summary writes them (tensor scalars, histograms and
    images), keys prefixed with their sub-folder."""
    from tensorboard.compat.proto import event_pb2, summary_pb2, tensor_pb2, tensor_shape_pb2
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    from tracker._media._png import encode_png

    def value(tag: str, plugin: str, tensor: tensor_pb2.TensorProto) -> summary_pb2.Summary.Value:
        metadata = summary_pb2.SummaryMetadata(
            plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name=plugin)
        )
        return summary_pb2.Summary.Value(tag=tag, metadata=metadata, tensor=tensor)

    shape = tensor_shape_pb2.TensorShapeProto(
        dim=[
            tensor_shape_pb2.TensorShapeProto.Dim(size=2),
            tensor_shape_pb2.TensorShapeProto.Dim(size=3),
        ]
    )
    png = encode_png(bytes(12), 4, 3, 1)
    writer = EventFileWriter(str(tmp_path / "tb" / "train"))
    for step in range(2):
        values = [
            value("loss", "scalars", tensor_pb2.TensorProto(dtype=1, float_val=[step / 2])),
            value(
                "dist",
                "histograms",
                tensor_pb2.TensorProto(dtype=2, tensor_shape=shape, double_val=[0, 1, 5, 1, 2, 7]),
            ),
            value("pic", "images", tensor_pb2.TensorProto(dtype=7, string_val=[b"4", b"3", png])),
        ]
        writer.add_event(event_pb2.Event(step=step, summary=summary_pb2.Summary(value=values)))
    writer.close()
    run = offline(sync_tensorboard=str(tmp_path / "tb"))
    run.finish()
    stored = tracker.read_run(run.dir)
    rows = plain(stored.history())
    assert [row["train/loss"] for row in rows] == [0.0, 0.5]
    assert rows[1]["train/dist"] == {"_type": "histogram", "values": [5, 7], "bins": [0, 1, 2]}
    assert (rows[1]["train/pic"]["width"], rows[1]["train/pic"]["height"]) == (4, 3)
    assert [f.name for f in stored.files() if f.name.startswith("tensorboard/")] == [
        f"tensorboard/tb/train/{path.name}" for path in (tmp_path / "tb" / "train").iterdir()
    ]


def test_a_writer_imported_after_init_is_caught_when_its_module_loads(tmp_path: Path) -> None:
    """A script that imports tensorboardX only after init(sync_tensorboard=True) is
    mirrored: the writer's constructor is wrapped as its module loads."""
    pytest.importorskip("tensorboardX", reason="pip install tensorboardX")
    script = textwrap.dedent(
        """
        import sys, tracker
        run = tracker.init(project="p", dir=".", mode="offline", sync_tensorboard=True)
        assert "tensorboardX" not in sys.modules
        from tensorboardX import SummaryWriter
        writer = SummaryWriter("logs")
        writer.add_scalar("late", 3.0, 10)
        run.finish()
        print(run.dir)
        """
    )
    env = {**os.environ, "PYTHONPATH": str(Path(tracker.__file__).parent.parent)}
    env["TRACKER_SILENT"] = "1"
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    rows = plain(tracker.read_run(done.stdout.strip()).history())
    assert rows == [{"_step": 0, "global_step": 10, "late": 3.0}]


def test_tensorboard_rows_and_event_files_reach_the_server(
    server: EmbeddedServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Online, the mirrored rows stream and the event files upload like any run's."""
    tensorboardx = pytest.importorskip("tensorboardX", reason="pip install tensorboardX")
    monkeypatch.chdir(tmp_path)
    settings = {"silent": True, "base_url": server.url}
    run = tracker.init(project="tb", dir=tmp_path, settings=settings, sync_tensorboard=True)
    writer = tensorboardx.SummaryWriter(logdir="logs")
    writer.add_scalar("loss", 0.5, 0)
    writer.close()
    run.finish()
    remote = tracker.Api(server.url).run(run.path)
    assert plain(remote.history()) == [{"_step": 0, "global_step": 0, "loss": 0.5}]
    assert [f.name for f in remote.files() if f.name.startswith("tensorboard/logs/")]

"""``init(sync_tensorboard=True)``: TensorBoard's scalars, histograms and images mirrored
into the run, with no TensorFlow or protobuf package.

- `_records`: TFRecord framing and its CRC-32C, read as files grow;
- `_proto`: the protobuf wire format, decoded by hand;
- `_events`: ``Event`` messages and the summaries they carry;
- `_writers`: the writers' constructors, wrapped to learn where they write;
- `_watcher`: the thread that tails event files into the run.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from tracker._tensorboard._watcher import STEP_KEY, Watcher

if TYPE_CHECKING:
    from tracker._run import Run

__all__ = ["STEP_KEY", "sync_tensorboard"]


def sync_tensorboard(run: Run, root: Path | None) -> Watcher:
    """Mirror into ``run`` what TensorBoard writers write (and the event files under
    ``root``, when given) until it finishes."""
    watcher = Watcher(run, root)
    run._before_finish.append(watcher.close)
    return watcher

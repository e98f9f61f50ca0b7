"""``init(monitor_gym=True)``: the videos gymnasium's ``RecordVideo`` writes, logged as
they close, as W&B's gym integration does.

``RecordVideo`` saves each video in one method: ``stop_recording`` since gymnasium 1.0,
``close_video_recorder`` in 0.29. Wrapping that method on the class (once per process)
catches every wrapper of every environment; after the original has written the file,
each live run that asked for gym videos logs it as ``{"videos": tracker.Video(path)}``
with ``commit=False``, so it joins the row the training loop logs next, and stores it.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from tracker._lifecycle import Lifecycle
from tracker._media import Video

if TYPE_CHECKING:
    from tracker._run import Run

__all__ = ["record_gym_videos"]


VIDEO_KEY: Final = "videos"
"""The key videos are logged under (W&B's)."""

_runs: list[Run] = []
_lock = threading.Lock()
_wrapped = False


def record_gym_videos(run: Run) -> None:
    """Log to ``run`` the videos every gymnasium ``RecordVideo`` saves until it finishes."""
    global _wrapped
    with _lock:
        if not _wrapped:
            _wrap_record_video()
            _wrapped = True
        _runs.append(run)
    run._before_finish.append(functools.partial(_forget, run))


def _forget(run: Run) -> None:
    with _lock:
        if run in _runs:
            _runs.remove(run)


def _wrap_record_video() -> None:
    from gymnasium.wrappers import RecordVideo as record_video_class

    RecordVideo: Any = record_video_class  # its methods differ between 0.29 and 1.x
    if hasattr(RecordVideo, "stop_recording"):  # gymnasium >= 1.0
        original = RecordVideo.stop_recording

        @functools.wraps(original)
        def stop_recording(self: Any, *args: Any, **kwargs: Any) -> Any:
            name = getattr(self, "_video_name", None)
            path = None if name is None else os.path.join(self.video_folder, f"{name}.mp4")
            result = original(self, *args, **kwargs)
            _log_video(path)
            return result

        RecordVideo.stop_recording = stop_recording
    else:  # gymnasium 0.29
        original_close: Callable[..., Any] = RecordVideo.close_video_recorder

        @functools.wraps(original_close)
        def close_video_recorder(self: Any, *args: Any, **kwargs: Any) -> Any:
            recorder = getattr(self, "video_recorder", None)
            recording = recorder is not None and getattr(self, "recording", False)
            path = getattr(recorder, "path", None) if recording else None  # 0.29 calls it twice
            result = original_close(self, *args, **kwargs)
            _log_video(path)
            return result

        RecordVideo.close_video_recorder = close_video_recorder


def _log_video(path: str | None) -> None:
    """Log the video at ``path`` (if it was written) to every run that asked for them."""
    if path is None or not os.path.isfile(path):
        return
    with _lock:
        runs = [run for run in _runs if run._lifecycle is Lifecycle.LIVE]
    if not runs:
        return
    video = Video(path)
    for run in runs:
        run.log({VIDEO_KEY: video}, commit=False)

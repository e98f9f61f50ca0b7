"""`tracker.Video`: a video file, or frames from a numpy array or torch tensor (a GIF).

Frames are T x C x H x W (or N x T x C x H x W: N videos tiled into one, as W&B tiles
them); tracker writes them as an animated GIF itself (`tracker._media._gif`), W&B's
default format for arrays. A file (mp4, webm, gif, ogg) is stored as it is.
"""

from __future__ import annotations

import os
from typing import Any, Final

from tracker._errors import UsageError
from tracker._media._base import (
    FileMedia,
    array_of,
    check_caption,
    read_source,
)
from tracker._media._gif import encode_gif
from tracker._media._image import to_uint8
from tracker._media._png import image_size

__all__ = ["Video"]

_FILE_FORMATS: Final = frozenset({"gif", "mp4", "webm", "ogg"})


class Video(FileMedia):
    """A video to log: ``run.log({"rollout": tracker.Video("episode-3.mp4")})``.

    Args:
        data_or_path: the path of a video file (mp4, webm, gif, ogg), or frames: a numpy
            array or torch tensor of T x C x H x W (C = 1, 3 or 4) or N x T x C x H x W
            values, 0..255 (floats in [0, 1] are scaled).
        caption: text shown with the video.
        fps: frames a second of an array video (default 4, as W&B's).
        format: for an array, ``"gif"`` (the only array format here); for a file, it
            must match the file's extension when given.

    Raises:
        UsageError: another type or shape, another format for an array, or a file that
            cannot be read.
    """

    _log_type = "video-file"
    _folder = "videos"

    def __init__(
        self,
        data_or_path: Any,
        caption: str | None = None,
        fps: float | None = None,
        format: str | None = None,
    ) -> None:
        self.caption = check_caption(caption, "Video")
        self.width: int | None = None
        self.height: int | None = None
        if isinstance(data_or_path, (str, os.PathLike)):
            self._content, self._format = read_source(data_or_path, "Video")
            if self._format not in _FILE_FORMATS:
                raise UsageError(
                    f"Video({str(data_or_path)!r}): {self._format or 'no extension'} is not a "
                    f"video format; use one of {', '.join(sorted(_FILE_FORMATS))}"
                )
            size = image_size(self._content) if self._format == "gif" else None
            if size is not None:
                self.width, self.height = size
            return
        if format not in (None, "gif"):
            raise UsageError(
                f"Video(format={format!r}): frames are stored as 'gif'; write an {format} "
                "file yourself and log its path to keep that format"
            )
        expected = "the path of a video file, or frames as a numpy array or torch tensor"
        frames = _tile(array_of(data_or_path, "Video", expected + " (T x C x H x W)"))
        self._format = "gif"
        self._content = encode_gif(frames, 4.0 if fps is None else float(fps))
        self.height, self.width = int(frames.shape[1]), int(frames.shape[2])

    def _fields(self) -> dict[str, Any]:
        return {"width": self.width, "height": self.height, "caption": self.caption}

    def __repr__(self) -> str:
        return f"<tracker.Video {self._format}>"


def _tile(array: Any) -> Any:
    """T x H x W x C uint8 frames of a T x C x H x W array, or of N such videos tiled in a
    grid (rows a power of two, as W&B tiles them)."""
    import numpy as np

    video = np.asarray(array)
    if video.ndim == 4:
        video = video[np.newaxis]
    if video.ndim != 5 or video.shape[2] not in (1, 3, 4) or 0 in video.shape:
        raise UsageError(
            f"Video(): frames of shape {tuple(video.shape)} are not T x C x H x W (C = 1, 3 "
            "or 4) or N x T x C x H x W"
        )
    video = to_uint8(video, normalize=True)
    count, steps, channels, height, width = video.shape
    padded = 1 << (count - 1).bit_length()
    if padded != count:
        blank = np.zeros((padded - count, steps, channels, height, width), np.uint8)
        video = np.concatenate([video, blank])
    rows = 2 ** ((padded.bit_length() - 1) // 2)
    columns = padded // rows
    grid = video.reshape(rows, columns, steps, channels, height, width)
    return np.ascontiguousarray(
        grid.transpose(2, 0, 4, 1, 5, 3).reshape(steps, rows * height, columns * width, channels)
    )

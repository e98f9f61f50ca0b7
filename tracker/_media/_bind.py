"""Binding the media values of a logged row to its step: what `log()` stores for them.

`log()` meets a media value only on its exact encoding path (orjson refuses the object,
so the fast path of plain values never looks for media). There the codec hands every
value it does not know to a `MediaBinder`, with the value's key path: a media value
becomes its W&B reference and its files wait in the binder until the row is logged; a
list of images becomes W&B's ``images/separated`` reference.
"""

from __future__ import annotations

from typing import Any

from tracker._media._base import Media, MediaFile, media_key
from tracker._media._image import Image
from tracker._records.codec import NOT_CONVERTED

__all__ = ["MediaBinder"]


class MediaBinder:
    """Turns the media values of one row into references and keeps their files.

    One binder serves a run (under its outbox lock): `reset` it with the row's step
    before each encoding, then read ``bound`` (whether the row held media) and ``files``.
    """

    __slots__ = ("bound", "files", "step")

    def __init__(self) -> None:
        """A binder for step 0 holding no files."""
        self.step = 0
        self.bound = False
        self.files: list[MediaFile] = []

    def reset(self, step: int) -> MediaBinder:
        """Get ready for a row logged at ``step``."""
        self.step = step
        if self.bound:
            self.bound = False
            self.files = []
        return self

    def __call__(self, value: Any, path: list[str | int]) -> Any:
        """The reference of a media value (or of a list of images) at ``path``, else
        `NOT_CONVERTED`."""
        if isinstance(value, Media):
            reference, files = value._reference(media_key(path), self.step)
            self.files += files
            self.bound = True
            return reference
        if isinstance(value, (list, tuple)) and value and all(isinstance(v, Image) for v in value):
            self.bound = True
            return self._images(value, path)
        return NOT_CONVERTED

    def _images(self, images: list[Image] | tuple[Image, ...], path: list[str | int]) -> Any:
        """W&B's reference of a list of images: one file each, their sizes from the first."""
        names = []
        for image in images:
            reference, files = image._reference(media_key(path), self.step)
            self.files += files
            names.append(reference["path"])
        first = images[0]
        captions = [image.caption or "" for image in images]
        separated = {
            "_type": "images/separated",
            "width": first.width,
            "height": first.height,
            "format": first._format,
            "count": len(images),
            "filenames": names,
        }
        if any(captions):
            separated["captions"] = captions
        return separated

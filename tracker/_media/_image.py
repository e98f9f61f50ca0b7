"""`tracker.Image`: an image from a numpy array, a PIL image, a torch tensor or a file.

Arrays become PNG files with tracker's own encoder (`tracker._media._png`), so numpy
images need no Pillow; a PIL image is saved by PIL, a file is stored as it is. numpy,
torch and PIL are never imported here: a value is recognised by its type's module.
"""

from __future__ import annotations

import io
import os
from typing import TYPE_CHECKING, Any, Final

from tracker._errors import UsageError
from tracker._media._base import (
    FileMedia,
    array_of,
    check_caption,
    read_source,
)
from tracker._media._png import encode_png, image_size

if TYPE_CHECKING:
    import numpy as np

__all__ = ["Image", "to_uint8"]

_FORMATS: Final = frozenset({"png", "jpg", "jpeg", "gif", "bmp", "webp", "svg"})
_ACCEPTED: Final = (
    "a numpy array (H x W, or H x W x C with C = 1, 3 or 4), a torch tensor (C x H x W or "
    "H x W), a PIL image, or the path of an image file"
)


class Image(FileMedia):
    """An image to log: ``run.log({"sample": tracker.Image(array, caption="step 3")})``.

    Args:
        data_or_path: a numpy array (H x W grey, H x W x 3 RGB, H x W x 4 RGBA; also
            C x H x W), a torch tensor (C x H x W or H x W), a PIL image, or the path of
            an image file (PNG, JPEG, GIF, ...), stored as it is.
        mode: a PIL mode to convert a PIL image to first (e.g. ``"RGB"``).
        caption: text shown with the image.
        file_type: accepted for W&B compatibility; arrays are always stored as PNG.
        normalize: float arrays with values in [0, 1] are scaled to 0..255 (and arrays
            with negative values first to [0, 1]), as W&B does; False only clips.

    Raises:
        UsageError: the data is of another type or shape, or the file cannot be read.
    """

    _log_type = "image-file"
    _folder = "images"

    def __init__(
        self,
        data_or_path: Any,
        mode: str | None = None,
        caption: str | None = None,
        file_type: str | None = None,
        normalize: bool = True,
    ) -> None:
        self.caption = check_caption(caption, "Image")
        self._format = "png"
        size: tuple[int, int] | None
        module = type(data_or_path).__module__
        if isinstance(data_or_path, (str, os.PathLike)):
            self._content, extension = read_source(data_or_path, "Image")
            if extension not in _FORMATS:
                raise UsageError(
                    f"Image({str(data_or_path)!r}): {extension or 'no extension'} is not an "
                    f"image format; use one of {', '.join(sorted(_FORMATS))}"
                )
            self._format = "jpg" if extension == "jpeg" else extension
            size = image_size(self._content)
        elif module.startswith("PIL"):
            self._content, size = _from_pil(data_or_path, mode)
        else:
            array = array_of(data_or_path, "Image", _ACCEPTED)
            if module.startswith("torch") and array.ndim == 3:  # torch images: channels first
                array = array.transpose(1, 2, 0)
            self._content, size = _from_array(array, normalize)
        self.width: int | None = None if size is None else size[0]
        self.height: int | None = None if size is None else size[1]

    @classmethod
    def _from_encoded(cls, content: bytes, caption: str | None = None) -> Image:
        """An image from the bytes of an encoded PNG (or JPEG, GIF) file."""
        image = cls.__new__(cls)
        image.caption = caption
        image._content = content
        image._format = "jpg" if content.startswith(b"\xff\xd8") else "png"
        if content[:6] in (b"GIF87a", b"GIF89a"):
            image._format = "gif"
        size = image_size(content)
        image.width = None if size is None else size[0]
        image.height = None if size is None else size[1]
        return image

    def _fields(self) -> dict[str, Any]:
        return {
            "format": self._format,
            "width": self.width,
            "height": self.height,
            "caption": self.caption,
        }

    def __repr__(self) -> str:
        return f"<tracker.Image {self.width}x{self.height} {self._format}>"


def to_uint8(array: np.ndarray[Any, Any], normalize: bool) -> Any:
    """Samples as 0..255 bytes, as W&B scales them: floats with a negative value are first
    stretched to [0, 1], floats at most 1 are multiplied by 255; then clipped."""
    import numpy as np

    if array.dtype == np.uint8:
        return array
    if array.dtype == np.bool_:
        return np.asarray(array, dtype=np.uint8) * 255
    data = np.nan_to_num(array.astype(np.float64), nan=0.0, posinf=255.0, neginf=0.0)
    if normalize and np.issubdtype(array.dtype, np.floating) and data.size:
        low, high = float(data.min()), float(data.max())
        if low < 0:
            data = (data - low) / ((high - low) or 1.0)
        if float(data.max()) <= 1.0:
            data = data * 255
    return np.clip(data, 0, 255).astype(np.uint8)


def _from_array(array: Any, normalize: bool) -> tuple[bytes, tuple[int, int]]:
    """A PNG of an H x W, H x W x C or C x H x W array."""
    import numpy as np

    data = np.asarray(array)
    if data.ndim == 3 and data.shape[-1] not in (1, 3, 4) and data.shape[0] in (1, 3, 4):
        data = data.transpose(1, 2, 0)  # channels first
    if data.ndim == 3 and data.shape[-1] == 1:
        data = data[:, :, 0]
    if data.ndim not in (2, 3) or (data.ndim == 3 and data.shape[-1] not in (3, 4)):
        raise UsageError(
            f"Image(): an array of shape {tuple(data.shape)} is not an image; pass "
            "H x W (grey), H x W x 3 (RGB) or H x W x 4 (RGBA) values"
        )
    if 0 in data.shape:
        raise UsageError(f"Image(): the array of shape {tuple(data.shape)} holds no pixel")
    pixels = np.ascontiguousarray(to_uint8(data, normalize))
    height, width = pixels.shape[:2]
    channels = 1 if pixels.ndim == 2 else pixels.shape[2]
    return encode_png(pixels.tobytes(), width, height, channels), (width, height)


def _from_pil(image: Any, mode: str | None) -> tuple[bytes, tuple[int, int]]:
    """A PIL image saved as PNG by PIL (converted to ``mode`` first, when given)."""
    if mode is not None:
        image = image.convert(mode)
    if image.mode not in ("1", "L", "LA", "P", "RGB", "RGBA", "I", "I;16"):
        image = image.convert("RGBA")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    width, height = image.size
    return buffer.getvalue(), (int(width), int(height))

"""PNG without Pillow: an 8-bit encoder (zlib and a few chunks) and a header reader.

Logging a numpy array as `tracker.Image` must not need Pillow; a PNG of 8-bit samples is
a signature, an ``IHDR`` chunk, one ``IDAT`` chunk of zlib-compressed scanlines (each
behind a filter byte, here 0: none) and ``IEND``. The header readers give the size of
PNG, GIF and JPEG files logged by path, for the reference W&B stores with them.
"""

from __future__ import annotations

import struct
import zlib
from typing import Final

__all__ = ["encode_png", "image_size"]

_SIGNATURE: Final = b"\x89PNG\r\n\x1a\n"
_COLOR_TYPES: Final = {1: 0, 2: 4, 3: 2, 4: 6}
"""PNG colour type by channels: grey, grey + alpha, RGB, RGBA."""
_JPEG_SIZE_MARKERS: Final = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
"""JPEG's start-of-frame markers (SOF0 to SOF15 but DHT, JPG and DAC): they hold the size."""


def encode_png(pixels: bytes, width: int, height: int, channels: int) -> bytes:
    """A PNG of ``height`` rows of ``width`` pixels of ``channels`` 8-bit samples each,
    ``pixels`` row after row (row-major, channels last)."""
    stride = width * channels
    if len(pixels) != stride * height or channels not in _COLOR_TYPES:
        raise ValueError(f"{len(pixels)} bytes are not {height}x{width}x{channels} samples")
    scanlines = b"".join(
        b"\x00" + pixels[row * stride : (row + 1) * stride] for row in range(height)
    )
    header = struct.pack(">IIBBBBB", width, height, 8, _COLOR_TYPES[channels], 0, 0, 0)
    return (
        _SIGNATURE
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(scanlines, 6))
        + _chunk(b"IEND", b"")
    )


def _chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))


def image_size(content: bytes) -> tuple[int, int] | None:
    """``(width, height)`` of a PNG, GIF or JPEG file's bytes; None for other formats."""
    if content.startswith(_SIGNATURE) and content[12:16] == b"IHDR":
        width, height = struct.unpack(">II", content[16:24])
        return int(width), int(height)
    if content[:6] in (b"GIF87a", b"GIF89a") and len(content) >= 10:
        width, height = struct.unpack("<HH", content[6:10])
        return int(width), int(height)
    if content.startswith(b"\xff\xd8"):
        return _jpeg_size(content)
    return None


def _jpeg_size(content: bytes) -> tuple[int, int] | None:
    """Walk a JPEG's segments to the frame header (SOFn), which holds the size."""
    offset = 2
    while offset + 9 <= len(content):
        if content[offset] != 0xFF:
            return None
        marker = content[offset + 1]
        if marker == 0xFF:  # fill byte
            offset += 1
            continue
        (length,) = struct.unpack(">H", content[offset + 2 : offset + 4])
        if marker in _JPEG_SIZE_MARKERS:
            height, width = struct.unpack(">HH", content[offset + 5 : offset + 9])
            return int(width), int(height)
        offset += 2 + length
    return None

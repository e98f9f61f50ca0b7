"""Helpers of the media tests: reading back the PNGs tracker writes, without Pillow."""

from __future__ import annotations

import struct
import zlib


def png_pixels(content: bytes) -> tuple[int, int, int, bytes]:
    """Decode an 8-bit, unfiltered PNG (what tracker writes) with zlib alone: width,
    height, channels and the pixels row after row."""
    assert content[:8] == b"\x89PNG\r\n\x1a\n"
    position, chunks = 8, {}
    while position < len(content):
        (length,) = struct.unpack(">I", content[position : position + 4])
        tag = content[position + 4 : position + 8]
        data = content[position + 8 : position + 8 + length]
        (crc,) = struct.unpack(">I", content[position + 8 + length : position + 12 + length])
        assert zlib.crc32(tag + data) == crc, tag
        chunks[tag] = chunks.get(tag, b"") + data
        position += 12 + length
    width, height, depth, color, *_ = struct.unpack(">IIBBBBB", chunks[b"IHDR"])
    assert depth == 8
    channels = {0: 1, 4: 2, 2: 3, 6: 4}[color]
    raw = zlib.decompress(chunks[b"IDAT"])
    stride = width * channels
    rows = [raw[row * (stride + 1) : (row + 1) * (stride + 1)] for row in range(height)]
    assert all(row[0] == 0 for row in rows)  # filter type 0
    return width, height, channels, b"".join(row[1:] for row in rows)

"""Animated GIF without a video library: how `tracker.Video` stores numpy frames.

W&B writes array videos as GIFs (through moviepy); tracker writes them itself. Colour
frames are mapped onto a fixed 6x7x6 colour cube (252 colours), grey frames onto 256
greys; each frame is LZW-compressed as GIF89a requires, looping forever.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    import numpy as np

__all__ = ["encode_gif"]

_CLEAR: Final = 256
_END: Final = 257
_MAX_CODES: Final = 4095
"""Codes stop one short of GIF's 4096, so the decoder's table never fills before a clear."""
_LOOP_FOREVER: Final = b"\x21\xff\x0bNETSCAPE2.0\x03\x01\x00\x00\x00"


def encode_gif(frames: np.ndarray[Any, Any], fps: float) -> bytes:
    """A looping GIF of ``frames``: uint8, T x H x W x C with C = 1 (grey), 3 or 4 (the
    alpha is dropped), shown at ``fps`` frames a second."""
    import numpy as np

    _, height, width, channels = frames.shape
    if channels == 1:
        palette = bytes(np.repeat(np.arange(256, dtype=np.uint8), 3))
        indices = frames[..., 0]
    else:
        levels = (6, 7, 6)
        cube = np.stack(
            np.meshgrid(*(np.linspace(0, 255, n).round() for n in levels), indexing="ij"), -1
        ).reshape(-1, 3)
        palette = cube.astype(np.uint8).tobytes() + bytes(3 * (256 - len(cube)))
        rgb = frames[..., :3].astype(np.uint16)
        red, green, blue = ((rgb[..., i] * (n - 1) + 127) // 255 for i, n in enumerate(levels))
        indices = (red * 42 + green * 6 + blue).astype(np.uint8)
    delay = max(1, round(100 / fps)) if fps > 0 else 10
    parts = [
        b"GIF89a",
        struct.pack("<HHBBB", width, height, 0xF7, 0, 0),  # a global table of 256 colours
        palette,
        _LOOP_FOREVER,
    ]
    for frame in indices:
        parts.append(struct.pack("<BBBBHBB", 0x21, 0xF9, 4, 0, delay, 0, 0))
        parts.append(struct.pack("<BHHHHB", 0x2C, 0, 0, width, height, 0))
        parts.append(b"\x08" + _sub_blocks(_lzw(frame.tobytes())) + b"\x00")
    parts.append(b"\x3b")
    return b"".join(parts)


def _lzw(indices: bytes) -> bytes:
    """GIF's variable-width LZW of 8-bit colour indices (codes packed low bit first)."""
    out = bytearray()
    bits = 0
    count = 0
    width = 9

    def emit(code: int) -> None:
        nonlocal bits, count
        bits |= code << count
        count += width
        while count >= 8:
            out.append(bits & 0xFF)
            bits >>= 8
            count -= 8

    table: dict[int, int] = {}
    next_code = _END + 1
    emit(_CLEAR)
    code = indices[0]
    for byte in indices[1:]:
        key = code << 8 | byte
        found = table.get(key)
        if found is not None:
            code = found
            continue
        emit(code)
        if next_code < _MAX_CODES:
            table[key] = next_code
            next_code += 1
            if next_code > 1 << width:
                width += 1
        else:
            emit(_CLEAR)
            table.clear()
            next_code = _END + 1
            width = 9
        code = byte
    emit(code)
    emit(_END)
    if count:
        out.append(bits & 0xFF)
    return bytes(out)


def _sub_blocks(data: bytes) -> bytes:
    """GIF data sub-blocks: each at most 255 bytes behind its length byte."""
    return b"".join(
        bytes((len(data[i : i + 255]),)) + data[i : i + 255] for i in range(0, len(data), 255)
    )

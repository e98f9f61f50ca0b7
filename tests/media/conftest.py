"""Fixtures of the media tests: offline runs in a temporary folder, a real server."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import tracker
from tracker._server._runner import EmbeddedServer

SILENT = {"silent": True}


@pytest.fixture
def offline(tmp_path: Path) -> Callable[..., tracker.Run]:
    """Start an offline run under the test's folder: ``offline(**init_kwargs)``."""

    def start(**kwargs: Any) -> tracker.Run:
        return tracker.init(project="media", dir=tmp_path, settings=SILENT, **kwargs)

    return start


@pytest.fixture
def server(tmp_path: Path) -> Iterator[EmbeddedServer]:
    """A keyless server on loopback over a fresh SQLite file."""
    with EmbeddedServer(f"sqlite:///{tmp_path / 'tracker.db'}") as running:
        yield running


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

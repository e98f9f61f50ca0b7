"""The run log: an append-only file of framed batches of encoded records.

Layout: the 16-byte header ``TRACKER-RUNLOG1\\n``, then frames. A frame is
``<u32 little-endian payload length><u32 CRC32 of payload><payload>``; a payload
is one or more newline-terminated records (see `tracker._encoding`). A frame is
written with one ``os.writev`` call, so a crash tears at most the last frame, and
the reader stops at the first frame whose length or CRC does not check out:
everything before it is kept.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from tracker._encoding import decode_record

__all__ = ["HEADER", "RunLogReader", "RunLogWriter", "read_records"]

HEADER: Final = b"TRACKER-RUNLOG1\n"
_FRAME: Final = struct.Struct("<II")
_MAX_FRAME: Final = 1 << 30


@dataclass
class RunLogReader:
    """Reads the valid frames of a run log and remembers where the valid part ends."""

    path: Path
    start: int = 0
    """Where to start reading: 0, or the ``valid_end`` of an earlier read of the same log."""
    valid_end: int = 0
    torn: bool = False

    def frames(self) -> Iterator[memoryview]:
        """Yield each intact frame's payload in order; stop at a torn or corrupt tail."""
        with self.path.open("rb") as handle:
            handle.seek(self.start)
            data = memoryview(handle.read())
        offset = 0
        if self.start == 0:
            if bytes(data[: len(HEADER)]) != HEADER:
                self.torn = len(data) > 0
                self.valid_end = 0
                return
            offset = len(HEADER)
        self.valid_end = self.start + offset
        while offset < len(data):
            if offset + _FRAME.size > len(data):
                self.torn = True
                return
            length, crc = _FRAME.unpack_from(data, offset)
            start = offset + _FRAME.size
            payload = data[start : start + length]
            if length > _MAX_FRAME or len(payload) != length or zlib.crc32(payload) != crc:
                self.torn = True
                return
            yield payload
            offset = start + length
            self.valid_end = self.start + offset

    def records(self) -> Iterator[list[Any]]:
        """Yield every record of the intact frames, decoded, in the order written."""
        for payload in self.frames():
            for line in bytes(payload).splitlines():
                yield decode_record(line)


def read_records(path: Path) -> Iterator[list[Any]]:
    """Yield the records of the run log at ``path``; a torn tail is ignored."""
    return RunLogReader(path).records()


class RunLogWriter:
    """Appends frames to a run log; used only by the run's writer on the I/O thread."""

    def __init__(self, path: Path) -> None:
        """Open ``path`` for appending, creating it, or cutting a torn tail left by a crash."""
        self.path = path
        exists = path.exists() and path.stat().st_size > 0
        if exists:
            reader = RunLogReader(path)
            for _ in reader.frames():
                pass
            if reader.valid_end == 0:
                raise ValueError(f"{path} is not a tracker run log")
            with path.open("r+b") as handle:
                handle.truncate(reader.valid_end)
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        if not exists:
            self._write_all([HEADER])

    def append(self, payload: bytes | bytearray) -> None:
        """Write one frame holding ``payload`` (one or more newline-terminated records)."""
        self._write_all([_FRAME.pack(len(payload), zlib.crc32(payload)), payload])

    def fsync(self) -> None:
        """Make everything appended so far durable on disk."""
        os.fsync(self._fd)

    def close(self) -> None:
        """Close the file; safe to call twice."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def _write_all(self, parts: list[bytes | bytearray]) -> None:
        # Plain os.writev: it works at interpreter exit, when executors are gone.
        views = [memoryview(part) for part in parts]
        while views:
            written = os.writev(self._fd, views)
            while views and written >= len(views[0]):
                written -= len(views[0])
                views.pop(0)
            if views and written:
                views[0] = views[0][written:]

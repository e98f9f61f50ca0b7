"""The run log: an append-only file of framed batches of encoded records.

Layout: the 16-byte header ``TRACKER-RUNLOG1\\n``, then frames. A frame is
``<u32 little-endian payload length><u32 CRC32 of payload><payload>``; a payload
is one or more newline-terminated records (see `tracker._records.kinds`). A frame is
written with one ``os.writev`` call, so a crash tears at most the last frame, and
the reader stops at the first frame whose length or CRC does not check out:
everything before it is kept.
"""

from __future__ import annotations

import contextlib
import os
import re
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from tracker._records.kinds import decode_record

__all__ = [
    "HEADER",
    "Damage",
    "FrameCursor",
    "RunLogReader",
    "RunLogWriter",
    "read_records",
    "seq_range",
]

HEADER: Final = b"TRACKER-RUNLOG1\n"
_FRAME: Final = struct.Struct("<II")
_MAX_FRAME: Final = 1 << 30
_RECORD_START: Final = re.compile(rb"\[[0-9]")
"""How every payload starts: a record, ``[seq,...``."""


def _intact_frame(raw: bytes, offset: int) -> memoryview | None:
    """The payload of the frame at ``offset`` when its length and CRC check out."""
    if offset + _FRAME.size > len(raw):
        return None
    length, crc = _FRAME.unpack_from(raw, offset)
    start = offset + _FRAME.size
    if length > _MAX_FRAME or start + length > len(raw):
        return None
    payload = memoryview(raw)[start : start + length]
    return payload if zlib.crc32(payload) == crc else None


def _next_intact_frame(raw: bytes, offset: int) -> int | None:
    """Where the first intact frame after a bad one at ``offset`` starts, if any: a frame
    header 8 bytes before a record's start, whose length ends at a newline and whose CRC
    checks out (a header's binary bytes cannot occur inside JSON text)."""
    for match in _RECORD_START.finditer(raw, offset + 1 + _FRAME.size):
        at = match.start() - _FRAME.size
        length = _FRAME.unpack_from(raw, at)[0]
        end = at + _FRAME.size + length
        plausible = 0 < length <= _MAX_FRAME and end <= len(raw) and raw[end - 1] == 0x0A
        if plausible and _intact_frame(raw, at) is not None:
            return at
    return None


@dataclass(frozen=True)
class Damage:
    """Bytes of a run log between two intact frames that hold no intact frame (a flipped
    bit, a bad sector): the records there are lost; those around them are read."""

    offset: int
    length: int
    seq_before: int
    """The last sequence number before the damage (-1: none)."""
    seq_after: int
    """The first sequence number after it."""

    @property
    def records_lost(self) -> int:
        """How many records the damage held (sequence numbers are consecutive)."""
        return self.seq_after - self.seq_before - 1


@dataclass
class RunLogReader:
    """Reads the intact frames of a run log, past damage, and remembers where they end.

    A frame that does not check out is skipped up to the next intact frame (found by its
    length, CRC and first record) and noted in ``damage``; one with no intact frame after
    it is a torn tail (``torn``), as a crash leaves it.
    """

    path: Path
    start: int = 0
    """Where to start reading: 0, or the ``valid_end`` of an earlier read of the same log."""
    resync: bool = True
    """Look past a bad frame for intact ones (off: stop there, as a live run's own reader
    does, which may see the frame being written)."""
    valid_end: int = 0
    torn: bool = False
    last_seq: int = -1
    """The sequence number of the last record read (-1 before any)."""
    damage: list[Damage] = field(default_factory=list)

    def frames(self) -> Iterator[memoryview]:
        """Yield each intact frame's payload in order."""
        with self.path.open("rb") as handle:
            handle.seek(self.start)
            raw = handle.read()
        offset = 0
        if self.start == 0:
            if raw[: len(HEADER)] != HEADER:
                self.torn = len(raw) > 0
                self.valid_end = 0
                return
            offset = len(HEADER)
        self.valid_end = self.start + offset
        previous: memoryview | None = None
        while offset < len(raw):
            payload = _intact_frame(raw, offset)
            if payload is None:
                found = _next_intact_frame(raw, offset) if self.resync else None
                if found is None:
                    self.torn = True
                    return
                after = _intact_frame(raw, found)
                assert after is not None, "_next_intact_frame finds intact frames"
                before = -1 if previous is None else seq_range(previous)[1]
                self.damage.append(
                    Damage(self.start + offset, found - offset, before, seq_range(after)[0])
                )
                offset = found
                continue
            yield payload
            previous = payload
            offset += _FRAME.size + len(payload)
            self.valid_end = self.start + offset

    def frame_records(self) -> Iterator[list[list[Any]]]:
        """Yield the records of each intact frame, decoded, in the order written."""
        for payload in self.frames():
            records = [decode_record(line) for line in bytes(payload).splitlines()]
            if records:
                self.last_seq = records[-1][0]
                yield records

    def records(self) -> Iterator[list[Any]]:
        """Yield every record of the intact frames, decoded, in the order written."""
        for records in self.frame_records():
            yield from records


def seq_range(payload: bytes | memoryview) -> tuple[int, int]:
    """The first and last sequence numbers of a frame payload, read without decoding it."""
    data = bytes(payload[:24])
    first = int(data[1 : data.index(b",")])
    start = bytes(payload).rfind(b"\n", 0, len(payload) - 1) + 1
    tail = bytes(payload[start : start + 24])
    return first, int(tail[1 : tail.index(b",")])


class FrameCursor:
    """Reads a run log frame by frame from an offset, one frame in memory at a time.

    The sender uses it to stream what the server has not acknowledged, so its memory
    stays bounded however long the server is away. A frame still being written (or
    torn) reads as "no frame yet".
    """

    def __init__(self, path: Path) -> None:
        """Open ``path`` for reading, positioned at the first frame."""
        self._fd = os.open(path, os.O_RDONLY)
        self.offset = len(HEADER)
        self.skipped_at: int | None = None
        """Where the damage began that the last `next_frame` read past, if it did."""

    def next_frame(self, resync: bool = False) -> memoryview | None:
        """The next intact frame's payload, advancing past it; None when there is none yet.

        With ``resync`` (a complete log: a bad frame cannot be one still being written), a
        damaged stretch is read past to the next intact frame, and `skipped_at` says where
        it began."""
        self.skipped_at = None
        payload = self._frame()
        if payload is not None or not resync:
            return payload
        size = os.fstat(self._fd).st_size
        rest = os.pread(self._fd, size - self.offset, self.offset)
        found = _next_intact_frame(rest, 0)
        if found is None:
            return None
        self.skipped_at = self.offset
        self.offset += found
        return self._frame()

    def _frame(self) -> memoryview | None:
        header = os.pread(self._fd, _FRAME.size, self.offset)
        if len(header) < _FRAME.size:
            return None
        length, crc = _FRAME.unpack(header)
        if length > _MAX_FRAME:
            return None
        payload = os.pread(self._fd, length, self.offset + _FRAME.size)
        if len(payload) != length or zlib.crc32(payload) != crc:
            return None
        self.offset += _FRAME.size + length
        return memoryview(payload)

    def seek_to_seq(self, seq: int, hint: int = 0) -> None:
        """Position at the frame holding ``seq`` (or the end), starting the search at ``hint``,
        a frame boundary at or before it (0: the start)."""
        self.offset = max(hint, len(HEADER))
        while True:
            before = self.offset
            payload = self.next_frame()
            if payload is None:
                self.offset = before
                return
            if seq_range(payload)[1] >= seq:
                self.offset = before
                return

    def close(self) -> None:
        """Close the file; safe to call twice."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def _quarantine_tail(path: Path, end: int) -> None:
    """Copy what follows ``end`` in the run log to a file beside it, then cut it off: the
    log is appended to again, and the bytes stay for whoever wants to look at them."""
    with path.open("r+b") as handle:
        handle.seek(end)
        tail = handle.read()
        with path.with_name(f"{path.name}.torn-{end}").open("wb") as kept:
            kept.write(tail)
            kept.flush()
            os.fsync(kept.fileno())
        handle.truncate(end)


def read_records(path: Path) -> Iterator[list[Any]]:
    """Yield the records of the run log at ``path``; a torn tail is ignored."""
    return RunLogReader(path).records()


class RunLogWriter:
    """Appends frames to a run log; used only by the run's writer on the I/O thread."""

    def __init__(self, path: Path) -> None:
        """Open ``path`` for appending, creating it; a torn tail (after the last intact
        frame: a crash's) is moved to ``<path>.torn-<offset>`` first, never destroyed."""
        self.path = path
        exists = path.exists() and path.stat().st_size > 0
        if exists:
            reader = RunLogReader(path)
            for _ in reader.frames():
                pass
            if reader.valid_end == 0:
                raise ValueError(f"{path} is not a tracker run log")
            if reader.torn:
                _quarantine_tail(path, reader.valid_end)
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        if not exists:
            self._write_all([HEADER])

    def append(self, payload: bytes | bytearray, max_frame: int = _MAX_FRAME) -> None:
        """Write ``payload`` (newline-terminated records) as frames of at most ``max_frame``
        bytes each, cut at record boundaries (a single larger record gets a frame of its own)."""
        view = memoryview(payload)
        parts: list[bytes | bytearray | memoryview] = []
        start = 0
        while start < len(payload):
            end = len(payload)
            if end - start > max_frame:
                cut = payload.rfind(b"\n", start, start + max_frame)
                end = cut + 1 if cut >= start else payload.find(b"\n", start + max_frame) + 1
            chunk = view[start:end]
            parts += [_FRAME.pack(len(chunk), zlib.crc32(chunk)), chunk]
            start = end
        self._write_all(parts)

    def fsync(self) -> None:
        """Make everything appended so far durable on disk."""
        os.fsync(self._fd)

    def close(self) -> None:
        """Close the file; safe to call twice."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def _write_all(self, parts: list[bytes | bytearray | memoryview]) -> None:
        # Plain os.writev: it works at interpreter exit, when executors are gone.
        # At most 512 buffers per call (IOV_MAX is 1024 on Linux). A write the disk
        # refuses halfway is cut back, so no partial frame is left for others to follow.
        end = os.lseek(self._fd, 0, os.SEEK_END)
        try:
            for first in range(0, len(parts), 512):
                self._writev([memoryview(part) for part in parts[first : first + 512]])
        except OSError:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, end)
            raise

    def _writev(self, views: list[memoryview]) -> None:
        while views:
            written = os.writev(self._fd, views)
            while views and written >= len(views[0]):
                written -= len(views[0])
                views.pop(0)
            if views and written:
                views[0] = views[0][written:]

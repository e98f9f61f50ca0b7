"""TFRecord files, the framing of TensorBoard's event files, read as they grow.

Each record is ``length`` (uint64, little-endian), the masked CRC-32C of those 8 bytes,
``length`` bytes of data, and the masked CRC-32C of the data. A writer appends records
while we read, so a record not wholly written yet is left for the next read. CRC-32C
(Castagnoli) is computed here with a table: event files of scalars and small images are
small, and no TensorFlow or crc32c package is needed.
"""

from __future__ import annotations

import logging
import struct
from pathlib import Path
from typing import Final

__all__ = ["RecordReader", "crc32c", "masked_crc32c"]

logger = logging.getLogger(__name__)

_HEADER: Final = 12
_FOOTER: Final = 4
_MASK_DELTA: Final = 0xA282EAD8


def _table() -> tuple[int, ...]:
    entries = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1  # reflected Castagnoli
        entries.append(crc)
    return tuple(entries)


_TABLE: Final = _table()


def crc32c(data: bytes) -> int:
    """The CRC-32C (Castagnoli) of ``data``."""
    crc = 0xFFFFFFFF
    table = _TABLE
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked_crc32c(data: bytes) -> int:
    """TFRecord's masked CRC-32C: rotated right by 15 bits, plus a constant."""
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


class RecordReader:
    """The records appended to one TFRecord file since the last `read`."""

    def __init__(self, path: Path) -> None:
        """Read ``path`` from its start."""
        self.path = path
        self.offset = 0
        """Where the first record not read yet starts."""
        self.broken = False
        """A record length failed its checksum: the rest of the file cannot be framed."""
        self.skipped = 0
        """Records whose data failed its checksum, left out."""

    def read(self) -> list[bytes]:
        """The data of every whole record after ``offset``; ``offset`` moves past them."""
        if self.broken:
            return []
        try:
            with self.path.open("rb") as file:
                file.seek(self.offset)
                data = file.read()
        except OSError as exc:
            logger.debug("tracker: cannot read %s yet: %s", self.path, exc)
            return []
        records = []
        position = 0
        while len(data) - position >= _HEADER:
            header = data[position : position + 8]
            (length,) = struct.unpack("<Q", header)
            (header_crc,) = struct.unpack("<I", data[position + 8 : position + _HEADER])
            if masked_crc32c(header) != header_crc:
                self.broken = True
                logger.warning(
                    "tracker: %s is damaged at byte %d (a record length fails its checksum); "
                    "the rest of it is not mirrored",
                    self.path,
                    self.offset + position,
                )
                break
            end = position + _HEADER + length + _FOOTER
            if end > len(data):
                break  # the writer has not finished this record yet
            payload = data[position + _HEADER : end - _FOOTER]
            (payload_crc,) = struct.unpack("<I", data[end - _FOOTER : end])
            if masked_crc32c(payload) == payload_crc:
                records.append(payload)
            else:
                self.skipped += 1
                logger.warning(
                    "tracker: %s: the record at byte %d fails its checksum; left out",
                    self.path,
                    self.offset + position,
                )
            position = end
        self.offset += position
        return records

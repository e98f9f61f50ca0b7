"""`SpooledFile`: an uploaded file on its way into the database, held on disk, never whole
in memory.

The server writes an upload's body here as it arrives (an unnamed temporary file in the
backend's `spool_dir`, beside the database: nothing is left behind if the server dies),
counting its size and SHA-256 as it goes; a backend then stores it `FILE_CHUNK_BYTES` at a
time (`Writer.put_file`). A refused upload is closed and so forgotten.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Iterator
from types import TracebackType
from typing import Final

__all__ = ["FILE_CHUNK_BYTES", "SpooledFile"]

FILE_CHUNK_BYTES: Final = 2**20
"""Files are stored and read in chunks of this many bytes (the last one shorter): what a
download holds in memory per chunk read, and a backend per chunk row."""


class SpooledFile:
    """An upload's bytes in a temporary file, with their size and SHA-256; close it (or use
    it as a context manager) once stored."""

    def __init__(self, directory: str) -> None:
        """An empty spool in ``directory`` (which must exist)."""
        # held open across calls: `close` (or the block's end) deletes it
        self._file = tempfile.TemporaryFile(dir=directory, prefix=".tracker-upload-")  # noqa: SIM115
        self._digest = hashlib.sha256()
        self.size = 0
        """Bytes written so far."""

    def write(self, data: bytes) -> None:
        """Append ``data`` (blocking: call it off the event loop for big pieces)."""
        self._file.write(data)
        self._digest.update(data)
        self.size += len(data)

    @property
    def sha256(self) -> str:
        """The hex SHA-256 of what was written."""
        return self._digest.hexdigest()

    def chunks(self) -> Iterator[bytes]:
        """The bytes written, `FILE_CHUNK_BYTES` at a time from the start (none when empty)."""
        self._file.flush()
        self._file.seek(0)
        while chunk := self._file.read(FILE_CHUNK_BYTES):
            yield chunk

    def close(self) -> None:
        """Delete the temporary file."""
        self._file.close()

    def __enter__(self) -> SpooledFile:
        """The spool itself; closed when the block ends."""
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Close the spool."""
        self.close()

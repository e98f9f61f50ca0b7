"""Files stored with a run, as `StoredRun.files()` and `ApiRun.files()` return them."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tracker._errors import UsageError
from tracker._names import local_file

__all__ = ["RunFile"]


@dataclass(frozen=True)
class RunFile:
    """A file stored with a run: its name (a relative path), size and SHA-256."""

    name: str
    size: int
    sha256: str | None
    fetch: Callable[[], bytes] = field(repr=False, compare=False)

    def read(self) -> bytes:
        """The file's bytes."""
        return self.fetch()

    def download(self, root: str | os.PathLike[str] = ".", replace: bool = False) -> Path:
        """Write the file under ``root`` (keeping its sub-path) and return where.

        Raises:
            UsageError: the target exists and ``replace`` is False, or the name (it comes
                from the server or the run log) would lead outside ``root``.
        """
        target = local_file(Path(root), self.name)
        if target.exists() and not replace:
            raise UsageError(f"{target} exists; pass replace=True to overwrite it")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(self.read())
        return target

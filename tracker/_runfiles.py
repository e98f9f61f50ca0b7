"""Files stored with a run (`run.save()`, ``save_code``): copied into the run directory's
``files/``, each described by a ``file`` record, and stored again at `finish()` when their
policy asks for the final version."""

from __future__ import annotations

import glob
import hashlib
import os
import shutil
from pathlib import Path
from typing import Any, Final

from tracker._errors import UsageError
from tracker._names import check_file_name, local_file

__all__ = ["SAVE_POLICIES", "RunFiles", "find_files"]

SAVE_POLICIES: Final = ("live", "now", "end")
"""``"now"`` stores the file as it is; ``"live"`` and ``"end"`` store it again at the end."""


def find_files(
    glob_str: str | os.PathLike[str], base_path: str | os.PathLike[str] | None
) -> list[tuple[Path, str]]:
    """The files matching ``glob_str`` with the names they are stored under, relative to
    ``base_path`` (default: the pattern's own directory), every name checked before any
    file is stored.

    Raises:
        UsageError: nothing matches, a file is outside ``base_path``, or a name breaks the
            rule of stored file names (`tracker._names.check_file_name`).
    """
    pattern = os.fspath(glob_str)
    matches = sorted(Path(p) for p in glob.glob(pattern, recursive=True) if Path(p).is_file())
    if not matches:
        raise UsageError(
            f"save({pattern!r}): no file matches; check the path (relative paths start at "
            f"{os.getcwd()})"
        )
    base = Path(base_path) if base_path is not None else Path(_glob_root(pattern))
    base = base.resolve()
    found = []
    for source in matches:
        try:
            name = source.resolve().relative_to(base).as_posix()
        except ValueError:
            raise UsageError(
                f"save(): {source} is not inside base_path={str(base)!r}; pass a base_path "
                "that contains every matched file"
            ) from None
        try:  # a name the server refuses would stop the run's upload for good
            found.append((source, check_file_name(name)))
        except UsageError as exc:
            raise UsageError(
                f"save(): {exc}; rename {str(source)!r} or save it under another base_path "
                "(nothing was stored)"
            ) from None
    return found


class RunFiles:
    """The files of one run directory, and those to store again when the run ends."""

    def __init__(self, files_dir: Path) -> None:
        """Store copies under ``files_dir``."""
        self._dir = files_dir
        self._again: list[tuple[Path, Path, str]] = []  # source, copy, stored name

    def store(self, source: Path, name: str, policy: str) -> tuple[Path, dict[str, Any]]:
        """Copy ``source`` as ``name``; the copy and its ``file`` record payload."""
        target = local_file(self._dir, name)
        record = _copy_file(source, target, name, policy)
        if policy != "now":
            self._again.append((source, target, name))
        return target, record

    def store_again(self) -> list[tuple[Path, dict[str, Any]]]:
        """Copy again the files whose policy keeps their final version (those still there):
        each copy and its ``file`` record payload."""
        return [
            (target, _copy_file(source, target, name, "end"))
            for source, target, name in self._again
            if source.is_file()
        ]


def _copy_file(source: Path, target: Path, name: str, policy: str) -> dict[str, Any]:
    """Copy ``source`` to ``target`` and describe it for a file record."""
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    content = target.read_bytes()
    digest = hashlib.sha256(content).hexdigest()
    return {"name": name, "size": len(content), "sha256": digest, "policy": policy}


def _glob_root(pattern: str) -> str:
    """The directory part of ``pattern`` before its first wildcard (a plain path: its folder)."""
    fixed: list[str] = []
    for part in Path(pattern).parts:
        if glob.has_magic(part):
            break
        fixed.append(part)
    else:
        fixed = fixed[:-1]
    return str(Path(*fixed)) if fixed else "."

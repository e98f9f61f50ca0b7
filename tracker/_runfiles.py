"""Files stored with a run: copied into the run directory's ``files/`` (`run.save()`,
``save_code``), written there (media values of `log()`), or put there by the program
itself (``run.dir`` is that folder, as in W&B). Each is described by a ``file`` record;
`finish()` stores again those whose policy asks for the final version and records the
files the program wrote into the folder."""

from __future__ import annotations

import glob
import hashlib
import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

from tracker._errors import UsageError
from tracker._names import check_file_name, local_file

__all__ = ["SAVE_POLICIES", "RunFiles", "code_files", "find_files"]

logger = logging.getLogger(__name__)

SAVE_POLICIES: Final = ("live", "now", "end")
"""``"now"`` stores the file as it is; ``"live"`` and ``"end"`` store it again at the end."""
_NOT_CODE_FOLDERS: Final = frozenset(
    {"__pycache__", "node_modules", "site-packages", "tracker-runs", "wandb"}
)
"""Folders `code_files` never walks into (with hidden ones and virtual environments)."""


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


def code_files(
    root: str | os.PathLike[str],
    include_fn: Callable[..., bool] | None,
    exclude_fn: Callable[..., bool] | None,
) -> list[tuple[Path, str]]:
    """The code files under ``root`` for `Run.log_code`, each with its stored name
    ``code/<path under root>``; W&B's filters are called as ``fn(path, root)`` or
    ``fn(path)``, whichever they take.

    Raises:
        UsageError: ``root`` is not a folder.
    """
    top = Path(root)
    if not top.is_dir():
        raise UsageError(f"log_code(root={str(root)!r}): not a folder; pass the code's folder")
    found = []
    for folder, folders, names in os.walk(top):
        folders[:] = sorted(
            name
            for name in folders
            if not name.startswith(".")
            and name not in _NOT_CODE_FOLDERS
            and not (Path(folder, name) / "pyvenv.cfg").exists()
        )
        for file_name in sorted(names):
            path = os.path.join(folder, file_name)
            wanted = _call(include_fn, path, str(top)) if include_fn else path.endswith(".py")
            if not wanted or (exclude_fn is not None and _call(exclude_fn, path, str(top))):
                continue
            name = "code/" + Path(path).relative_to(top).as_posix()
            try:
                found.append((Path(path), check_file_name(name)))
            except UsageError as exc:
                logger.warning("tracker: log_code() leaves out %s: %s", path, exc)
    return found


def _call(function: Callable[..., bool], path: str, root: str) -> bool:
    """A W&B file filter, which takes ``(path, root)`` or, in older releases, ``(path)``."""
    import inspect  # ~5 ms: only for log_code with a filter

    try:
        takes_root = len(inspect.signature(function).parameters) >= 2
    except (TypeError, ValueError):
        takes_root = True
    return bool(function(path, root) if takes_root else function(path))


class RunFiles:
    """The files of one run directory, and those to store again when the run ends."""

    def __init__(self, files_dir: Path) -> None:
        """Store copies under ``files_dir``."""
        self._dir = files_dir
        self._again: list[tuple[Path, Path, str]] = []  # source, copy, stored name
        self._recorded: dict[str, tuple[int, int]] = {}  # stored name -> (size, mtime_ns)

    @property
    def folder(self) -> Path:
        """The folder the files are stored in (``run.dir``)."""
        return self._dir

    def store(self, source: Path, name: str, policy: str) -> tuple[Path, dict[str, Any]]:
        """Copy ``source`` as ``name`` (a file already in the folder is recorded where it
        is); the copy and its ``file`` record payload."""
        target = local_file(self._dir, name)
        if target.exists() and target.resolve() == source.resolve():
            record = _describe(target, name, policy)
        else:
            record = _copy_file(source, target, name, policy)
        self._note(target, name)
        if policy != "now":
            self._again.append((source, target, name))
        return target, record

    def write(self, name: str, content: bytes) -> tuple[Path, dict[str, Any]]:
        """Write ``content`` as ``name``; the file and its ``file`` record payload."""
        target = local_file(self._dir, name)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
        self._note(target, name)
        digest = hashlib.sha256(content).hexdigest()
        return target, {"name": name, "size": len(content), "sha256": digest, "policy": "now"}

    def store_again(self) -> list[tuple[Path, dict[str, Any]]]:
        """Copy again the files whose policy keeps their final version (those still there),
        then record the files written into the folder by the program (new ones, and
        recorded ones it changed): each file and its ``file`` record payload."""
        stored = []
        for source, target, name in self._again:
            if source.is_file():
                if source.resolve() == target.resolve():
                    stored.append((target, _describe(target, name, "end")))
                else:
                    stored.append((target, _copy_file(source, target, name, "end")))
                self._note(target, name)
        return stored + self._written_by_the_program()

    def _written_by_the_program(self) -> list[tuple[Path, dict[str, Any]]]:
        found = []
        for path in sorted(self._dir.rglob("*")) if self._dir.is_dir() else ():
            if not path.is_file() or path.is_symlink():
                continue
            name = path.relative_to(self._dir).as_posix()
            stat = path.stat()
            if self._recorded.get(name) == (stat.st_size, stat.st_mtime_ns):
                continue
            try:
                check_file_name(name)
            except UsageError as exc:
                logger.warning("tracker: %s in run.dir is not stored: %s", path, exc)
                continue
            found.append((path, _describe(path, name, "end")))
            self._note(path, name)
        return found

    def _note(self, target: Path, name: str) -> None:
        stat = target.stat()
        self._recorded[name] = (stat.st_size, stat.st_mtime_ns)


def _copy_file(source: Path, target: Path, name: str, policy: str) -> dict[str, Any]:
    """Copy ``source`` to ``target`` and describe it for a file record."""
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    return _describe(target, name, policy)


def _describe(target: Path, name: str, policy: str) -> dict[str, Any]:
    """The ``file`` record payload of a stored file."""
    digest = hashlib.sha256()
    with target.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    size = target.stat().st_size
    return {"name": name, "size": size, "sha256": digest.hexdigest(), "policy": policy}


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

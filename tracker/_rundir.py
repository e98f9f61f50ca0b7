"""The run directory on disk: its name and layout, ``latest-run``, the resume marker, the lock.

``<dir>/tracker-runs/run-<YYYYmmdd_HHMMSS>-<id>/`` (``offline-run-...`` offline) holds ``run.log``
(the run log), ``run.lock`` (locked while a process owns the run, so a dead
owner shows as crashed), and ``files/`` (files stored with the run).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import time
from pathlib import Path

import orjson

from tracker._errors import UsageError

__all__ = [
    "FILES_DIR",
    "LOG_NAME",
    "RUNS_FOLDER",
    "RunLock",
    "clear_resume_marker",
    "create_run_dir",
    "find_run_dirs",
    "is_locked",
    "read_resume_marker",
    "resolve_run_path",
    "runs_root",
    "write_resume_marker",
]

RUNS_FOLDER = "tracker-runs"
"""The folder of ``dir`` that run directories go in: a name no import can take for the
``tracker`` package (a ``./tracker`` folder would shadow an editable install of it, as
W&B's runs go in ``./wandb`` for the same reason)."""
LOG_NAME = "run.log"
LOCK_NAME = "run.lock"
FILES_DIR = "files"
_LATEST = "latest-run"
_RESUME_MARKER = "resume.json"
_DIR_NAME = re.compile(r"^(?:offline-)?run-(?P<stamp>\d{8}_\d{6}(?:_\d{3})?)-(?P<id>.+)$")


def runs_root(directory: str | None) -> Path:
    """Where the run directories of ``init(dir=directory)`` go (default: the working
    directory's `RUNS_FOLDER`)."""
    return Path(directory or ".").absolute() / RUNS_FOLDER


def find_run_dirs(root: Path, run_id: str) -> list[Path]:
    """The run directories of ``run_id`` under ``root``, oldest first."""
    if not root.is_dir():
        return []
    found = []
    for path in root.iterdir():
        match = _DIR_NAME.match(path.name)
        if match and match["id"] == run_id and (path / LOG_NAME).is_file():
            found.append((match["stamp"], path))
    return [path for _, path in sorted(found)]


def create_run_dir(root: Path, run_id: str, start_time: float, offline: bool) -> Path:
    """Create a new run directory and point ``latest-run`` at it."""
    stamp = time.strftime("%Y%m%d_%H%M%S", time.localtime(start_time))
    prefix = "offline-run" if offline else "run"
    try:
        root.mkdir(parents=True, exist_ok=True)
        path = root / f"{prefix}-{stamp}-{run_id}"
        suffix = 1
        while True:  # the same id twice in one second (resume=None replacing a run)
            try:
                path.mkdir()
                break
            except FileExistsError:
                suffix += 1
                path = root / f"{prefix}-{stamp}_{suffix:03d}-{run_id}"
        (path / FILES_DIR).mkdir()
    except OSError as exc:
        raise UsageError(
            f"cannot create the run directory under dir={str(root)!r}: {exc}; "
            "pass a writable dir= or set TRACKER_DIR"
        ) from exc
    _point_latest(root, path.name)
    return path


def _point_latest(root: Path, name: str) -> None:
    link = root / _LATEST
    temporary = root / f".{_LATEST}.{os.getpid()}"
    with contextlib.suppress(OSError):  # a filesystem without symlinks still works
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
        temporary.symlink_to(name)
        os.replace(temporary, link)


def resolve_run_path(path: str | os.PathLike[str]) -> Path:
    """The run directory meant by ``path``: a run directory, its run log, its files folder
    (``run.dir``), or the latest run of a ``dir`` (of init's, or its `RUNS_FOLDER`)."""
    candidate = Path(path)
    if candidate.is_file() and candidate.name == LOG_NAME:
        return candidate.parent
    if (candidate / LOG_NAME).is_file():
        return candidate
    if candidate.name == FILES_DIR and (candidate.parent / LOG_NAME).is_file():
        return candidate.parent
    for root in (candidate, candidate / RUNS_FOLDER):
        if (root / _LATEST / LOG_NAME).is_file():
            return (root / _LATEST).resolve()
    raise UsageError(
        f"{str(path)!r} is not a run directory (no {LOG_NAME} in it); pass a directory like "
        f"./{RUNS_FOLDER}/offline-run-20260101_120000-abcd1234, or the dir= of init() for "
        "its latest run"
    )


class RunLock:
    """An exclusive lock on a run directory, held by the process that owns the run."""

    def __init__(self, run_dir: Path) -> None:
        """Take the lock, or raise UsageError when another live process owns the run."""
        self._fd = os.open(run_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._fd)
            raise UsageError(
                f"the run in {run_dir} is still running in another process; finish it there "
                "first, or start a new run with another id"
            ) from None
        os.ftruncate(self._fd, 0)
        os.write(self._fd, str(os.getpid()).encode())

    def release(self) -> None:
        """Release the lock; safe to call twice."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def is_locked(run_dir: Path) -> bool:
    """Whether a live process holds the run's lock (False after its owner died)."""
    try:
        fd = os.open(run_dir / LOCK_NAME, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def write_resume_marker(root: Path, run_id: str) -> None:
    """Remember the running run in ``root`` for ``resume="auto"`` after a crash."""
    with contextlib.suppress(OSError):
        (root / _RESUME_MARKER).write_bytes(orjson.dumps({"run_id": run_id}))


def read_resume_marker(root: Path) -> str | None:
    """The id of the run that last started in ``root`` and did not finish, if any."""
    try:
        run_id = orjson.loads((root / _RESUME_MARKER).read_bytes()).get("run_id")
    except (OSError, orjson.JSONDecodeError, AttributeError):
        return None
    return run_id if isinstance(run_id, str) else None


def clear_resume_marker(root: Path, run_id: str) -> None:
    """Forget the marker once ``run_id`` finished cleanly (only if it still names that run)."""
    if read_resume_marker(root) == run_id:
        with contextlib.suppress(OSError):
            (root / _RESUME_MARKER).unlink()

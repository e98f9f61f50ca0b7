"""Mirroring TensorBoard event files into a run: a small thread tails them as they grow.

Every second the thread looks for ``*tfevents*`` files under the folders it watches and
reads what was appended to each (`RecordReader`, `decode_event`). The values of one
file's consecutive events at one TensorBoard step make one row, logged at the run's own
step with the TensorBoard step as ``global_step`` (`define_metric(key,
step_metric="global_step")` for each key), so no row is lost when TensorBoard's steps go
back. A row is logged once the file moves to another step, or has been quiet for two
seconds. When the run finishes the writers are flushed, every file is read to its end,
and the event files are stored with the run under ``tensorboard/``.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from tracker._errors import Error
from tracker._media import Histogram, Image
from tracker._media._histogram import MAX_BINS
from tracker._names import check_file_name
from tracker._tensorboard._events import Histogram as EventHistogram
from tracker._tensorboard._events import decode_event
from tracker._tensorboard._proto import ProtoError
from tracker._tensorboard._records import RecordReader
from tracker._tensorboard._writers import flush_writers, forget_watcher, watch_writers

if TYPE_CHECKING:
    from tracker._run import Run

__all__ = ["STEP_KEY", "Watcher"]

logger = logging.getLogger(__name__)

STEP_KEY: Final = "global_step"
"""The key that holds each row's TensorBoard step."""
POLL_SECONDS: Final = 1.0
QUIET_SECONDS: Final = 2.0
"""A file's last step is logged once nothing was appended to the file for this long."""
_SLACK_SECONDS: Final = 2.0
"""Event files older than their writer by more than this belong to an earlier program."""


@dataclass
class _Tail:
    """One event file being read: where, its keys' prefix, and the step being gathered."""

    reader: RecordReader
    namespace: str
    step: int | None = None
    values: dict[str, Any] = field(default_factory=dict)
    grown_at: float = 0.0


class Watcher:
    """Tails the event files under some folders into one run, on a thread of its own."""

    def __init__(self, run: Run, root: Path | None) -> None:
        """Mirror into ``run`` the event files of writers made from now on, and those under
        ``root`` (the folder given as ``sync_tensorboard``) when given."""
        self._run = run
        self._root = None if root is None else root.absolute()
        self._folders: dict[Path, float] = {}  # folder -> files modified before are old
        self._tails: dict[Path, _Tail] = {}
        self._keys: set[str] = set()
        self._lock = threading.Lock()  # one poll at a time (the thread's, or the last one)
        self._stop = threading.Event()
        if self._root is not None:
            self._folders[self._root] = 0.0
        self._thread = threading.Thread(target=self._loop, name="tracker-tensorboard", daemon=True)
        watch_writers(self)
        self._thread.start()

    def add_logdir(self, folder: Path, since: float) -> None:
        """Watch ``folder`` for event files modified since ``since`` (a writer's start)."""
        folder = folder.absolute()
        with self._lock:
            self._folders.setdefault(folder, since - _SLACK_SECONDS)

    def close(self) -> None:
        """Stop the thread, read every file to its end, log what is left, store the files."""
        forget_watcher(self)
        self._stop.set()
        self._thread.join(5.0)
        flush_writers()
        self._poll(final=True)
        self._store_files()

    def _loop(self) -> None:
        while not self._stop.wait(POLL_SECONDS):
            try:
                self._poll(final=False)
            except Error as exc:  # the run finished under us, or refused a value
                logger.warning("tracker: mirroring TensorBoard stopped: %s", exc)
                return

    def _poll(self, *, final: bool) -> None:
        with self._lock:
            self._discover()
            now = time.monotonic()
            for tail in self._tails.values():
                for data in tail.reader.read():
                    self._gather(tail, data, now)
                if tail.values and (final or now - tail.grown_at >= QUIET_SECONDS):
                    self._log(tail)

    def _gather(self, tail: _Tail, data: bytes, now: float) -> None:
        """Add one event's values to its file's row (logging the row of the step before)."""
        try:
            event = decode_event(data)
        except ProtoError as exc:
            logger.warning("tracker: %s: an event is left out: %s", tail.reader.path, exc)
            return
        if not event.values:
            return
        tail.grown_at = now
        if tail.step is not None and event.step != tail.step:
            self._log(tail)
        tail.step = event.step
        for tag, value in event.values.items():
            key = f"{tail.namespace}/{tag}" if tail.namespace else tag
            try:
                tail.values[key] = _value(value)
            except Error as exc:  # an image tracker cannot read, say
                logger.warning("tracker: TensorBoard value %r is left out: %s", key, exc)

    def _discover(self) -> None:
        """Start tailing the new event files under the watched folders."""
        root = self._root or Path(os.path.commonpath(list(self._folders) or [Path(".")]))
        for folder, since in self._folders.items():
            if not folder.is_dir():
                continue
            for path in folder.rglob("*tfevents*"):
                if path in self._tails or not path.is_file():
                    continue
                try:
                    if path.stat().st_mtime < since:
                        continue
                except OSError:
                    continue
                relative = os.path.relpath(path.parent, root)
                namespace = "" if relative == "." else Path(relative).as_posix()
                self._tails[path] = _Tail(RecordReader(path), namespace)

    def _log(self, tail: _Tail) -> None:
        """Log the row ``tail`` gathered for its step."""
        row, tail.values = tail.values, {}
        for key in row:
            if key not in self._keys:
                self._keys.add(key)
                self._run.define_metric(key, step_metric=STEP_KEY)
        self._run.log({STEP_KEY: tail.step, **row})

    def _store_files(self) -> None:
        """Store the event files with the run (those inside ``run.dir`` are stored already)."""
        files_dir = Path(self._run.dir).absolute()
        root = self._root or Path(os.path.commonpath(list(self._folders) or [Path(".")]))
        for path in sorted(self._tails):
            if path.is_relative_to(files_dir):
                continue
            relative = Path(os.path.relpath(path, root.parent)).as_posix()
            try:
                name = check_file_name(f"tensorboard/{relative}")
                self._run._store_file(path, name, "now")
            except (Error, OSError) as exc:
                logger.warning("tracker: the event file %s is not stored: %s", path, exc)


def _value(value: float | EventHistogram | bytes) -> Any:
    """What a row holds for an event value: a float, a `Histogram`, an `Image`."""
    if isinstance(value, EventHistogram):
        return Histogram(np_histogram=_rebinned(value.counts, value.edges))
    if isinstance(value, bytes):
        return Image._from_encoded(value)
    return value


def _rebinned(counts: list[float], edges: list[float]) -> tuple[list[float], list[float]]:
    """At most `MAX_BINS` bins: TensorBoard's default buckets (hundreds, most empty) are
    merged in runs of equal length, each keeping the sum of its counts."""
    if len(counts) <= MAX_BINS:
        return counts, edges
    width = -(-len(counts) // MAX_BINS)
    merged = [sum(counts[index : index + width]) for index in range(0, len(counts), width)]
    return merged, [*edges[:-1:width], edges[-1]]

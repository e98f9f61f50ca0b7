"""Learning where TensorBoard writes: the writers' constructors, wrapped.

``torch.utils.tensorboard.SummaryWriter`` (its ``log_dir``), ``tensorboardX.SummaryWriter``
(its ``logdir``) and TensorFlow's ``tf.summary.create_file_writer(logdir)`` are wrapped
once per process, when their module is imported (`tracker._imports`), so a script may
import them before or after `init()`. Each writer made while a run mirrors TensorBoard
hands its folder to the run's watcher; the writers are kept (weakly) so a finishing run
can flush what they still buffer (torch's writer flushes every two minutes).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import threading
import time
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tracker._imports import when_imported

if TYPE_CHECKING:
    from types import ModuleType

    from tracker._tensorboard._watcher import Watcher

__all__ = ["flush_writers", "forget_watcher", "watch_writers"]

logger = logging.getLogger(__name__)

_watchers: list[Watcher] = []
_writers: weakref.WeakSet[Any] = weakref.WeakSet()
_lock = threading.Lock()
_installed = False
_WRAPPED = "_tracker_wrapped"
_SECOND_FLUSH_SECONDS = 0.05


def watch_writers(watcher: Watcher) -> None:
    """Tell ``watcher`` the folder of every TensorBoard writer made from now on."""
    global _installed
    with _lock:
        _watchers.append(watcher)
        install = not _installed
        _installed = True
    if install:
        when_imported("torch.utils.tensorboard.writer", _wrap_summary_writer("log_dir"))
        when_imported("tensorboardX.writer", _wrap_summary_writer("logdir"))
        when_imported("tensorflow", _wrap_tensorflow)


def forget_watcher(watcher: Watcher) -> None:
    """Stop telling ``watcher`` of new writers."""
    with _lock:
        if watcher in _watchers:
            _watchers.remove(watcher)


def flush_writers() -> None:
    """Flush every writer made while a run mirrored TensorBoard, so its events are on disk.

    tensorboardX hands each event to a thread of its own that writes it into the file's
    buffer, and its flush() does not wait for that thread: an event added just before
    is written by the thread a moment later. So the writers are flushed twice, a moment
    apart."""
    with _lock:
        writers = list(_writers)
    for attempt in range(2 if writers else 0):
        if attempt:
            time.sleep(_SECOND_FLUSH_SECONDS)
        for writer in writers:
            try:
                writer.flush()
            except Exception as exc:  # a closed or broken writer: what it wrote is on disk
                logger.debug("tracker: flushing %r failed: %s", writer, exc)


def _made(writer: Any, logdir: Any, since: float) -> None:
    """A writer was made: remember it, and give its folder to the live watchers."""
    with _lock:
        watchers = list(_watchers)
        if watchers:  # a writer that cannot be weakly referenced is not flushed at the end
            with contextlib.suppress(TypeError):
                _writers.add(writer)
    if isinstance(logdir, bytes):
        logdir = os.fsdecode(logdir)
    if isinstance(logdir, (str, os.PathLike)):
        for watcher in watchers:
            watcher.add_logdir(Path(logdir), since)


def _wrap_summary_writer(attribute: str) -> Any:
    """A hook wrapping ``module.SummaryWriter.__init__``; the folder is ``attribute``."""

    def wrap(module: ModuleType) -> None:
        writer_class = module.SummaryWriter
        original = writer_class.__init__
        if getattr(original, _WRAPPED, False):
            return

        @functools.wraps(original)
        def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
            since = time.time()
            original(self, *args, **kwargs)
            _made(self, getattr(self, attribute, None), since)

        setattr(__init__, _WRAPPED, True)
        writer_class.__init__ = __init__

    return wrap


def _wrap_tensorflow(tensorflow: ModuleType) -> None:
    summary = getattr(tensorflow, "summary", None)
    original = getattr(summary, "create_file_writer", None)
    if original is None or getattr(original, _WRAPPED, False):
        return

    @functools.wraps(original)
    def create_file_writer(logdir: Any, *args: Any, **kwargs: Any) -> Any:
        since = time.time()
        writer = original(logdir, *args, **kwargs)
        _made(writer, logdir, since)
        return writer

    setattr(create_file_writer, _WRAPPED, True)
    summary.create_file_writer = create_file_writer  # type: ignore[union-attr]

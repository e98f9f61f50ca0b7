"""The writer: drains a run's outbox into its run log on the I/O thread, in batches."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from tracker._io._outbox import Outbox
from tracker._io._thread import IOThread, wait_event
from tracker._runlog import RunLogWriter

if TYPE_CHECKING:
    import asyncio  # imported on the loop thread, when the first run starts (see IOThread)

__all__ = ["start_writer"]

logger = logging.getLogger(__name__)

_RETRY_SECONDS = 1.0
_SYNC_EVERY_BYTES = 8 * 2**20
"""Under the "flush" fsync policy the writer also fsyncs after this many bytes written,
so that a flush() finds little left to sync (the disk works while the caller logs)."""


class _Writer:
    def __init__(
        self,
        outbox: Outbox,
        log: RunLogWriter,
        fsync_policy: str,
        linger: float,
        max_frame: int,
        done: threading.Event,
    ) -> None:
        import asyncio

        self.outbox = outbox
        self.max_frame = max_frame
        self.on_written: list[Callable[[], None]] = []
        self.log = log
        self.fsync_each_batch = fsync_policy == "batch"
        self.fsync_on_flush = fsync_policy != "never"
        self.linger = linger
        self.wakeup = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.done = done
        self.held = bytearray()  # a batch the disk refused; written first on the next try
        self.held_count = 0
        self.unsynced_bytes = 0

    async def run(self) -> None:
        import asyncio

        outbox = self.outbox
        try:
            while True:
                await self.wakeup.wait()
                self.wakeup.clear()
                while True:
                    if self.linger and not self.urgent():
                        await self.gather()
                    if not self.drain():
                        await asyncio.sleep(_RETRY_SECONDS)
                        continue
                    with outbox.lock:
                        if outbox.count:
                            continue
                        if outbox.closing:
                            return
                        outbox.writer_asleep = True
                        break
        finally:
            self.log.close()
            with outbox.lock:
                outbox.closed = True
                outbox.changed.notify_all()
            for notify in self.on_written:
                notify()
            self.done.set()

    def urgent(self) -> bool:
        """Whether someone waits: a flush, a finish, or a caller blocked on a full outbox."""
        outbox = self.outbox
        return outbox.closing or outbox.flush_target > outbox.durable or outbox.is_full()

    async def gather(self) -> None:
        """Let a batch gather for up to ``linger`` seconds; a wake-up (also one that came
        before) cuts it short."""
        await wait_event(self.wakeup, self.linger)
        self.wakeup.clear()

    def drain(self) -> bool:
        """Write what is queued; False when the disk refused it.

        A refused batch is held and retried alone; meanwhile the outbox keeps its records
        and its bound, so callers block (or drop) instead of memory growing.
        """
        outbox = self.outbox
        if self.held_count:
            data, count = self.held, self.held_count
        else:
            data, count = outbox.take()
        if count:
            try:
                self.log.append(data, self.max_frame)
            except OSError as exc:
                self.held, self.held_count = data, count
                if outbox.last_error is None:
                    logger.warning("tracker: cannot write the run log %s: %s", self.log.path, exc)
                with outbox.lock:
                    outbox.last_error = f"cannot write the run log {self.log.path}: {exc}"
                return False
            self.held, self.held_count = bytearray(), 0
            self.unsynced_bytes += len(data)
            if self.fsync_each_batch or (
                self.fsync_on_flush and self.unsynced_bytes >= _SYNC_EVERY_BYTES
            ):
                self._fsync()
        with outbox.lock:
            outbox.written += count
            flush_due = outbox.flush_target > outbox.durable
            if not flush_due and (not self.unsynced_bytes or not self.fsync_on_flush):
                outbox.durable = outbox.written
            if count:
                outbox.changed.notify_all()
        if count:
            for notify in self.on_written:
                notify()
        if flush_due:
            if self.fsync_on_flush:
                self._fsync()
            with outbox.lock:
                outbox.durable = outbox.written
                outbox.changed.notify_all()
        return True

    def _fsync(self) -> None:
        try:
            self.log.fsync()
            self.unsynced_bytes = 0
        except OSError as exc:
            with self.outbox.lock:
                self.outbox.last_error = f"cannot fsync the run log {self.log.path}: {exc}"


def start_writer(
    thread: IOThread,
    outbox: Outbox,
    log: RunLogWriter,
    fsync_policy: str,
    linger: float,
    max_frame: int,
    on_written: Callable[[], None] | None = None,
) -> threading.Event:
    """Start the writer task for one run, without waiting for the loop thread to run (it
    may still be importing asyncio: records queue meanwhile). The returned event is set
    once the log is closed; ``on_written`` is called on the loop thread after each write
    and at the close."""
    done = threading.Event()

    def begin() -> None:
        import asyncio

        writer = _Writer(outbox, log, fsync_policy, linger, max_frame, done)
        if on_written is not None:
            writer.on_written.append(on_written)
        loop = asyncio.get_running_loop()

        def wake() -> None:
            loop.call_soon_threadsafe(writer.wakeup.set)

        with outbox.lock:
            outbox.wake = wake
            outbox.writer_runs()
        writer.wakeup.set()  # write what was logged before the loop ran
        writer.task = loop.create_task(writer.run())  # kept: the loop holds tasks weakly

    thread.call_soon(begin)
    return done

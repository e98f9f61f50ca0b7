"""The outbox: encoded records on their way from the caller's thread to the writer.

One ``bytearray`` that callers append to under a lock, bounded by records and
bytes, swapped out whole by the writer. No per-record object survives the call
(each orjson result sits in a ~4 KB allocation: docs/architecture.md, "The outbox"), and the loop is
woken only when the writer sleeps (one ``call_soon_threadsafe`` per wake-up,
never one per record).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

__all__ = ["STARTUP_MAX_BYTES", "Outbox"]

STARTUP_MAX_BYTES = 2**20
"""Until its writer runs (the loop thread may still be importing asyncio, and aiohttp for
an online run), an outbox holds at most this many bytes, and nothing is dropped: a caller
logging faster waits for the writer. Logging on meanwhile would pile up rows, and slow
the imports tenfold: each file an import reads releases the GIL to the logging thread
for a whole switch interval (measured: +27 MB peak RSS, the writer starting ~47k rows
late)."""


class Outbox:
    """Shared state between a run's callers and its writer; every field is guarded by ``lock``."""

    def __init__(self, max_events: int, max_bytes: int, drop_when_full: bool) -> None:
        """Create an empty outbox with the given bounds and full-queue policy."""
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)
        """Notified when the writer takes a batch or advances ``written``/``durable``."""
        self.data = bytearray()
        self.count = 0
        self.max_events = max_events
        self.max_bytes = min(max_bytes, STARTUP_MAX_BYTES)
        self.drop_when_full = False
        self._bounds = (max_bytes, drop_when_full)  # from `writer_runs()` on
        self.writer_asleep = True
        self.wake: Callable[[], None] = _not_started
        """Wakes the writer; until the writer runs (the loop thread may still be starting),
        it does nothing: the writer writes what is queued when it starts."""
        self.taken = 0
        """Records the writer has taken so far (`appended` is derived, so callers count once)."""
        self.written = 0
        self.durable = 0
        self.dropped = 0
        self.flush_target = 0
        self.closing = False
        self.closed = False
        self.last_error: str | None = None

    def writer_runs(self) -> None:
        """The writer has started: the configured bound and full-queue policy apply from
        now on; callers waiting for room look again. Caller holds ``lock``."""
        self.max_bytes, self.drop_when_full = self._bounds
        self.changed.notify_all()

    @property
    def appended(self) -> int:
        """Records appended so far: taken by the writer, plus those still queued."""
        return self.taken + self.count

    def is_full(self) -> bool:
        """Whether one more record would pass a bound (a lone oversized record always fits)."""
        count = self.count
        return count >= self.max_events or (count > 0 and len(self.data) >= self.max_bytes)

    def put(self, line: bytes) -> None:
        """Append one encoded record and wake the writer if it sleeps. Caller holds ``lock``."""
        self.data += line
        self.count += 1
        if self.writer_asleep:
            self.writer_asleep = False
            self.wake()

    def take(self) -> tuple[bytearray, int]:
        """Swap out everything queued, for the writer; wakes callers waiting for room."""
        with self.lock:
            data, count = self.data, self.count
            if count:
                self.data = bytearray()
                self.taken += count
                self.count = 0
                self.changed.notify_all()
            return data, count

    def request_flush(self) -> int:
        """Ask the writer to make every record appended so far durable. Caller holds ``lock``."""
        self.flush_target = self.appended
        self.hurry()
        return self.appended

    def hurry(self) -> None:
        """Wake the writer now, asleep or gathering a batch. Caller holds ``lock``."""
        self.writer_asleep = False
        self.wake()


def _not_started() -> None:
    """The writer has not started yet; it looks at the outbox when it does."""

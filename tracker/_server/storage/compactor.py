"""`Compactor`: the store's background task folding the row log, off the ack path.

Runs with logged batches wait in a queue (an ack wakes its run; at start, the runs the
database's log still holds, so a server restarted between an ack and its compaction
resumes; `Compactor.rescan`, which the server calls every few seconds, the same, so a
replica takes up what another replica sharing the database acknowledged and died
before compacting). The task takes the first run, lets the store compact one step of it (about
`tracker._server.storage.rowlog.COMPACT_BYTES`, one write transaction) and puts it back
at the end while it has more: runs take turns, and no step holds the writer long.

Acks go first: while batches are being acknowledged, a step waits for a pause of
`QUIET_SECONDS` in them, or at most `MAX_DEFER_SECONDS` since the last step (so a
stream that never pauses is still compacted, a step every quarter second); once more
than `TAIL_BYTES` are logged and not compacted, steps no longer wait (acks then share
the writer with them: the backpressure that bounds the row log).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Final

from tracker._server._tasks import cancel_and_wait
from tracker._server.storage.document import RunKey
from tracker._server.storage.errors import StorageClosed, StorageError
from tracker._server.storage.rowlog import COMPACT_BYTES

__all__ = ["Compactor"]

_logger = logging.getLogger(__name__)

RETRY_SECONDS: Final = 1.0
"""After a failed step, the compactor waits this long before it tries again."""
QUIET_SECONDS: Final = 0.01
"""A step starts once no batch has been acknowledged for this long..."""
MAX_DEFER_SECONDS: Final = 0.25
"""...or this long after the last step at the latest."""
TAIL_BYTES: Final = 256 * 2**20
"""Logged bytes not yet compacted beyond which steps no longer wait for acks."""


class Compactor:
    """Folds logged batches one step at a time, a run's steps taking turns with others'."""

    def __init__(
        self,
        step: Callable[[int, RunKey], Awaitable[bool]],
        pending: Callable[[], Awaitable[list[tuple[int, RunKey]]]],
    ) -> None:
        """``step(pk, key)`` compacts one step of a run (False: it had nothing left);
        ``pending()`` names the runs whose log holds batches, oldest first."""
        self._step = step
        self._pending = pending
        self._queue: dict[int, RunKey] = {}
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._acking = 0
        self._last_ack = 0.0
        self._last_step = 0.0
        self._logged_bytes = 0
        """Bytes acked and not yet compacted, as this process counts them (from zero at
        start: what an earlier process logged is compacted without waiting)."""

    def start(self) -> None:
        """Start the task (in the running event loop) unless it runs already."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._work(), name="compactor")

    @contextlib.contextmanager
    def acking(self) -> Iterator[None]:
        """Around the acknowledgement of a batch: steps wait while batches are acked."""
        self._acking += 1
        try:
            yield
        finally:
            self._acking -= 1
            self._last_ack = time.monotonic()

    def logged(self, pk: int, key: RunKey, size: int) -> None:
        """The run ``pk`` logged ``size`` bytes of batches to compact."""
        self._logged_bytes += size
        self.wake(pk, key)

    def wake(self, pk: int, key: RunKey) -> None:
        """The run ``pk`` has logged batches to compact."""
        self._queue.setdefault(pk, key)
        self._idle.clear()
        self._wake.set()
        self.start()

    async def rescan(self) -> None:
        """Queue every run the database's row log holds, whoever acknowledged its batches."""
        for pk, key in await self._pending():
            self.wake(pk, key)
        self.start()

    async def idle(self) -> None:
        """Wait until every batch the database's row log holds is compacted (or set aside)."""
        await self.rescan()
        await self._idle.wait()

    async def close(self) -> None:
        """Stop the task after the step in flight (what is left stays logged)."""
        await cancel_and_wait(self._task)
        self._task = None

    async def _work(self) -> None:
        try:
            for pk, key in await self._pending():
                self._queue.setdefault(pk, key)
        except StorageClosed:
            return
        except StorageError as exc:
            _logger.warning("the compactor cannot list the row log (%s); retrying", exc)
            await asyncio.sleep(RETRY_SECONDS)
            self._task = None
            self.start()
            return
        while True:
            if not self._queue:
                self._idle.set()
                await self._wake.wait()
                self._wake.clear()
                continue
            await self._acks_first()
            pk, key = next(iter(self._queue.items()))
            del self._queue[pk]
            try:
                more = await self._step(pk, key)
                self._last_step = time.monotonic()
            except StorageClosed:
                return
            except Exception:
                _logger.exception("compacting run %s failed; retrying", key.run_id)
                self._queue[pk] = key
                await asyncio.sleep(RETRY_SECONDS)
                continue
            if more:
                self._queue.setdefault(pk, key)
                self._logged_bytes = max(0, self._logged_bytes - COMPACT_BYTES)
            elif not self._queue:
                self._logged_bytes = 0
            await asyncio.sleep(0)  # acks waiting on the loop go first

    async def _acks_first(self) -> None:
        """Wait for a pause in the acks, at most `MAX_DEFER_SECONDS` after the last step,
        unless more than `TAIL_BYTES` wait to be compacted."""
        deadline = self._last_step + MAX_DEFER_SECONDS
        while self._logged_bytes < TAIL_BYTES:
            now = time.monotonic()
            quiet = self._acking == 0 and now - self._last_ack >= QUIET_SECONDS
            if quiet or now >= deadline:
                return
            await asyncio.sleep(min(QUIET_SECONDS, deadline - now))

"""`RunChanges`: which runs changed, so a live stream reads a run when it changes instead of
on a timer, in this process and, where the backend can tell them (PostgreSQL's
LISTEN/NOTIFY), in every server process sharing the database.

A change here wakes this process's watchers at once and is announced to the other
processes within `ANNOUNCE_SECONDS`, the runs changed meanwhile in one announcement (an
ack of every batch would otherwise be one NOTIFY each).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import Final

from tracker._server._tasks import cancel_and_wait
from tracker._server.storage.document import RunKey
from tracker._server.storage.errors import StorageError

__all__ = ["ANNOUNCE_SECONDS", "RunChanges"]

_logger = logging.getLogger(__name__)

ANNOUNCE_SECONDS: Final = 0.05
"""How long changes gather before they are announced to the other server processes."""


class RunChanges:
    """Watchers of runs, woken by changes made here (`changed`) or heard from another
    process (`heard`); ``announce`` tells the other processes of this one's."""

    def __init__(self, announce: Callable[[list[RunKey]], Awaitable[None]] | None) -> None:
        """Announce this process's changes with ``announce`` (a backend's; None: there is no
        one to tell)."""
        self._announce = announce
        self._watchers: dict[RunKey, set[asyncio.Event]] = {}
        self._outgoing: set[RunKey] = set()
        self._task: asyncio.Task[None] | None = None

    def changed(self, key: RunKey) -> None:
        """The run changed here: wake its watchers, announce it to the other processes."""
        self.heard(key)
        if self._announce is None:
            return
        self._outgoing.add(key)
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._send(), name="announce")

    def heard(self, key: RunKey) -> None:
        """The run changed (here or in another process): wake its watchers."""
        for event in self._watchers.get(key, ()):
            event.set()

    @contextlib.contextmanager
    def watching(self, keys: Iterable[RunKey]) -> Iterator[asyncio.Event]:
        """An event set whenever one of ``keys`` changes (the watcher clears it)."""
        event = asyncio.Event()
        keys = list(keys)
        for key in keys:
            self._watchers.setdefault(key, set()).add(event)
        try:
            yield event
        finally:
            for key in keys:
                watchers = self._watchers[key]
                watchers.discard(event)
                if not watchers:
                    del self._watchers[key]

    async def close(self) -> None:
        """Stop announcing (what is not sent yet is left: the others' timers find it)."""
        await cancel_and_wait(self._task)
        self._task = None

    async def _send(self) -> None:
        try:
            while self._outgoing:
                await asyncio.sleep(ANNOUNCE_SECONDS)
                keys, self._outgoing = list(self._outgoing), set()
                assert self._announce is not None, "only an announcing store queues changes"
                try:
                    await self._announce(keys)
                except StorageError as exc:  # the other processes' timers find the change
                    _logger.debug("announcing changed runs failed: %s", exc)
        finally:
            self._task = None

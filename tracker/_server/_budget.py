"""How much request data the server holds at once: batches being parsed and stored.

A client may send batches faster than the database takes them. Each one waits for room
in a `ByteBudget` before it is read further; while it waits, its connection is not read,
so TCP's own flow control slows the sender, and the server's memory stays bounded
whatever the clients do.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

__all__ = ["ByteBudget"]


class ByteBudget:
    """At most ``limit`` bytes held at once; one larger item alone still passes."""

    def __init__(self, limit: int) -> None:
        """An empty budget of ``limit`` bytes."""
        self.limit = limit
        self.held = 0
        self._changed = asyncio.Condition()

    async def acquire(self, size: int) -> None:
        """Wait until ``size`` more bytes fit (or nothing is held), then hold them."""
        async with self._changed:
            await self._changed.wait_for(lambda: self.held == 0 or self.held + size <= self.limit)
            self.held += size

    async def release(self, size: int) -> None:
        """Give ``size`` bytes back; the next waiters that fit go on."""
        async with self._changed:
            self.held -= size
            self._changed.notify_all()

    @contextlib.asynccontextmanager
    async def holding(self, size: int) -> AsyncIterator[None]:
        """Hold ``size`` bytes for the block."""
        await self.acquire(size)
        try:
            yield
        finally:
            await self.release(size)

"""Capping the connections the server holds: overall, below its file-descriptor limit, and
per client address, so one client holding connections open cannot lock the others out.

Each accepted connection passes a gate before aiohttp sees it. Over a cap, the gate closes
it at once (the client sees a reset or a closed connection, which tracker's client retries
with backoff), so refused connections hold no file descriptor. The overall cap is the
process's open-file limit less `FD_RESERVE` (the database, its WAL, the listening socket,
the event loop), read on each connection, so a limit lowered while the server runs counts;
``--max-connections`` lowers it further. A client address may hold half of it, or
``--max-connections-per-ip``. Behind a reverse proxy every client has the proxy's address:
raise the per-address cap there.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable
from typing import Final, cast

__all__ = ["FD_RESERVE", "ConnectionCaps"]

FD_RESERVE: Final = 64
"""File descriptors kept for what is not a connection."""
_WARN_EVERY_SECONDS: Final = 10.0

_logger = logging.getLogger(__name__)


def _open_file_limit() -> int | None:
    """The process's soft limit on open files, or None where it is unknown or unlimited."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return None if soft == resource.RLIM_INFINITY else soft


class ConnectionCaps:
    """The open connections, counted overall and per client address, and their caps."""

    def __init__(
        self, max_connections: int | None = None, max_per_address: int | None = None
    ) -> None:
        """Cap connections at ``max_connections`` (default: the open-file limit less
        `FD_RESERVE`) and ``max_per_address`` per address (default: half the overall cap)."""
        self._max = max_connections
        self._max_per_address = max_per_address
        self._open = 0
        self._by_address: Counter[str] = Counter()
        self._refused_since_warning = 0
        self._warned_at = 0.0

    def caps(self) -> tuple[int, int]:
        """The caps now: connections overall, and per client address."""
        limit = _open_file_limit()
        budget = None if limit is None else max(1, limit - FD_RESERVE)
        total = min((cap for cap in (budget, self._max) if cap is not None), default=1 << 30)
        per_address = self._max_per_address or max(1, total // 2)
        return total, min(per_address, total)

    def protocol_factory(
        self, make: Callable[[], asyncio.Protocol]
    ) -> Callable[[], asyncio.Protocol]:
        """A factory for ``loop.create_server``: each connection's gate, over ``make``'s."""
        return lambda: _Gate(self, make)

    def admit(self, address: str) -> bool:
        """Count a new connection from ``address``, or refuse it (False) over a cap."""
        total, per_address = self.caps()
        if self._open >= total or self._by_address[address] >= per_address:
            self._note_refusal(address, total, per_address)
            return False
        self._open += 1
        self._by_address[address] += 1
        return True

    def release(self, address: str) -> None:
        """A connection that `admit` counted has closed."""
        self._open -= 1
        self._by_address[address] -= 1
        if not self._by_address[address]:
            del self._by_address[address]

    def _note_refusal(self, address: str, total: int, per_address: int) -> None:
        """Log refusals, at most once every 10 s: an operator should know."""
        self._refused_since_warning += 1
        now = time.monotonic()
        if now - self._warned_at >= _WARN_EVERY_SECONDS:
            _logger.warning(
                "tracker server: refused %d connection(s) (the last from %s): %d open of at "
                "most %d, %d from that address of at most %d; raise the open-file limit "
                "(ulimit -n), --max-connections or --max-connections-per-ip if they are yours",
                self._refused_since_warning,
                address,
                self._open,
                total,
                self._by_address[address],
                per_address,
            )
            self._warned_at = now
            self._refused_since_warning = 0


class _Gate(asyncio.Protocol):
    """One connection: admitted (its aiohttp protocol gets every event) or closed at once."""

    def __init__(self, caps: ConnectionCaps, make: Callable[[], asyncio.Protocol]) -> None:
        self._caps = caps
        self._make = make
        self._inner: asyncio.Protocol | None = None
        self._address = ""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peer = transport.get_extra_info("peername")
        address = str(peer[0]) if isinstance(peer, tuple) and peer else "local"
        if not self._caps.admit(address):
            # abort, not close: nothing to flush, and the file descriptor goes at once
            cast(asyncio.Transport, transport).abort()
            return
        self._address = address
        self._inner = self._make()
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self._inner is not None:
            self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return None if self._inner is None else self._inner.eof_received()

    def pause_writing(self) -> None:
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._inner is not None:
            self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._inner is not None:
            self._caps.release(self._address)
            self._inner.connection_lost(exc)
            self._inner = None

"""The status snapshot of a run: what `Run.status()` returns."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["RunStatus"]


@dataclass(frozen=True)
class RunStatus:
    """Where a run's logged records are, counted in records, at one moment.

    ``queued`` are accepted but not yet in the run log; ``written`` are in the run log
    (``durable`` of those fsynced or flushed); ``sent`` and ``acknowledged`` count
    records streamed to and stored by the server; ``dropped`` were refused by a full
    queue under the ``"drop"`` policy. ``connection`` is ``"offline"``, ``"disabled"``,
    ``"connecting"``, ``"connected"`` or ``"retrying"``.
    """

    queued: int
    written: int
    durable: int
    sent: int
    acknowledged: int
    dropped: int
    connection: str
    last_error: str | None

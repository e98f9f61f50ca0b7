"""System metrics of a run: samples taken on the I/O thread's loop, recorded as ``system`` records.

`SystemStats` starts with the run; the loop imports the sampler's modules and psutil and
takes the first sample, so ``init()`` waits for none of it (this module is small and loads
with tracker). It samples every ``settings.stats_interval_seconds`` and hands each sample
to the run, which appends it under its outbox lock. Metric names and units:
docs/run-log.md#system.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Final

from tracker._io._thread import io_thread

if TYPE_CHECKING:
    import asyncio

    from tracker._system._gpu import GpuReader
    from tracker._system._sampler import Counters, Sampler

__all__ = ["NO_PSUTIL_NOTICE", "SystemStats", "new_sampler"]

logger = logging.getLogger(__name__)

FIRST_SAMPLE_WAIT_SECONDS: Final = 2.0
"""How long `SystemStats.stop` waits, at most, for a first sample still being taken, so that
a run shorter than that has one too."""
GPU_TIMEOUT_SECONDS: Final = 1.0
"""How long a sample waits, at most, for the GPUs' reading (less when the interval is)."""
NO_PSUTIL_NOTICE: Final = (
    "tracker: psutil is not installed, so the system metrics leave out child processes (and, "
    "outside Linux, all but this process's CPU, the CPU count and the disk); for all of "
    "them: pip install 'tracker[system]'"
)

_noticed = False  # the notice is said once per process


def new_sampler(run_dir: Path) -> tuple[Sampler, bool]:
    """A sampler of the run directory's file system, through psutil when it imports; and
    whether it did."""
    from tracker._system._sampler import OsCounters, PsutilCounters, Sampler, find_cgroup_memory

    counters: Counters
    try:
        import psutil
    except ImportError:
        counters, full = OsCounters(), False
    else:
        counters, full = PsutilCounters(psutil), True
    return Sampler(counters, run_dir, find_cgroup_memory()), full


def _new_gpu_reader() -> GpuReader | None:
    try:
        import pynvml
    except Exception:  # not installed, or an install that does not import
        return None
    from tracker._system._gpu import GpuReader

    return GpuReader(pynvml)


class SystemStats:
    """One run's sampling: a first sample as soon as the loop runs, then one per interval.

    ``record(payload)`` is the run's: it appends the sample under the outbox lock and
    returns False once the run takes no more samples (its exit record is written, or a
    forked child inherited it), which ends the sampling.
    """

    def __init__(
        self,
        run_dir: Path,
        interval: float,
        record: Callable[[dict[str, float]], bool],
        notice: Callable[[str], None],
    ) -> None:
        """Start sampling on the I/O thread; returns at once."""
        self._run_dir = run_dir
        self._interval = interval
        self._gpu_timeout = min(GPU_TIMEOUT_SECONDS, interval)
        self._record = record
        self._notice = notice
        self._stopped = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sampler: Sampler | None = None
        self._gpu: GpuReader | None = None
        self._next: asyncio.TimerHandle | None = None
        self._due = 0.0
        self._failed = False
        self._first = threading.Event()
        """Set once the first sample is recorded, or sampling ended before it."""
        io_thread().call_soon(self._start)

    def _start(self) -> None:
        """On the I/O thread: import what sampling needs, take the first sample."""
        global _noticed
        if self._stopped:
            return
        import asyncio

        self._loop = asyncio.get_running_loop()
        try:
            self._sampler, full = new_sampler(self._run_dir)
        except Exception:  # a psutil that imports but does not work here, say
            logger.warning("tracker: system metrics cannot be sampled here", exc_info=True)
            self._close()
            return
        if not full and not _noticed:
            _noticed = True
            self._notice(NO_PSUTIL_NOTICE)
        self._gpu = _new_gpu_reader()
        self._due = self._loop.time()
        self._tick()

    def _tick(self) -> None:
        loop, sampler = self._loop, self._sampler
        if self._stopped or loop is None or sampler is None:
            self._close()
            return
        stamp = time.time()
        try:
            metrics = sampler.sample()
        except Exception:  # an unexpected reading: this sample goes without it
            if not self._failed:
                self._failed = True
                logger.warning("tracker: a system metrics sample failed", exc_info=True)
            metrics = {}
        done = partial(self._send, stamp, metrics)
        if self._gpu is None:
            done({})
        else:
            self._gpu.request(loop, done, self._gpu_timeout)

    def _send(self, stamp: float, metrics: dict[str, float], gpus: dict[str, float]) -> None:
        loop = self._loop
        if self._stopped or loop is None:
            self._close()
            return
        payload: dict[str, float] = {"_timestamp": stamp}
        for values in (metrics, gpus):
            for name, value in values.items():
                if math.isfinite(value):
                    payload[name] = value
        recorded = self._record(payload)
        self._first.set()
        if not recorded:
            self._stopped = True
            self._close()
            return
        # on schedule, and after a stalled loop one sample at once rather than a burst
        self._due = max(self._due + self._interval, loop.time())
        self._next = loop.call_at(self._due, self._tick)

    def _close(self) -> None:
        """On the I/O thread: no more samples."""
        self._first.set()
        if self._next is not None:
            self._next.cancel()
            self._next = None
        if self._gpu is not None:
            self._gpu.close()
            self._gpu = None

    def stop(self) -> None:
        """Take no more samples (at `finish()`, before the exit record), once the first
        sample is in: waits for it at most `FIRST_SAMPLE_WAIT_SECONDS`."""
        self._first.wait(FIRST_SAMPLE_WAIT_SECONDS)
        self._stopped = True
        loop = self._loop
        if loop is not None:
            # a closed loop (after exit) runs nothing any more
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._close)

    def remove_in_child(self) -> None:
        """In a forked child: the parent's loop and worker threads are not here; sample nothing."""
        self._stopped = True

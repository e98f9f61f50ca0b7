"""NVIDIA GPUs through pynvml (the nvidia-ml-py package), read on a worker thread of their own.

NVML calls can hang when the driver is wedged. The sampler asks the worker for a reading
and waits at most a timeout for it, then samples on without GPU keys; a worker still busy
with an earlier request gets no new one, so a hung driver costs one thread, not the
sampling. When ``nvmlInit`` fails there are no GPU keys at all.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    import asyncio
    from types import ModuleType

__all__ = ["GpuReader", "gpu_names", "read_gpus"]

logger = logging.getLogger(__name__)

MB: Final = 2**20

Reading = dict[str, float]


def _device_handles(nvml: ModuleType) -> list[Any]:
    """Start NVML and take a handle of every GPU (raising what NVML raises: no driver...)."""
    nvml.nvmlInit()
    return [nvml.nvmlDeviceGetHandleByIndex(index) for index in range(nvml.nvmlDeviceGetCount())]


def gpu_names(nvml: ModuleType) -> list[str]:
    """The GPUs' names ([] without a driver or a GPU), NVML shut down again; call it off
    the caller's thread (loading the driver takes seconds on some machines, may hang)."""
    try:
        handles = _device_handles(nvml)
    except Exception:  # no driver, no GPU, an old pynvml: no names to report
        return []
    try:
        names = [nvml.nvmlDeviceGetName(handle) for handle in handles]
        return [name.decode() if isinstance(name, bytes) else str(name) for name in names]
    except Exception:
        logger.debug("tracker: NVML did not name the GPUs", exc_info=True)
        return []
    finally:
        with contextlib.suppress(Exception):
            nvml.nvmlShutdown()


def read_gpus(nvml: ModuleType, handles: list[Any]) -> Reading:
    """The ``gpu.{i}.*`` metrics of every GPU; a value the device does not report is absent."""
    metrics: Reading = {}
    for index, handle in enumerate(handles):
        prefix = f"gpu.{index}."
        # a driver error of any kind costs only the value it was asked for
        with contextlib.suppress(Exception):
            metrics[prefix + "utilization"] = float(nvml.nvmlDeviceGetUtilizationRates(handle).gpu)
        with contextlib.suppress(Exception):
            memory = nvml.nvmlDeviceGetMemoryInfo(handle)
            metrics[prefix + "memory_used_mb"] = memory.used / MB
            if memory.total:
                metrics[prefix + "memory_percent"] = memory.used / memory.total * 100
        with contextlib.suppress(Exception):
            temperature = nvml.nvmlDeviceGetTemperature(handle, nvml.NVML_TEMPERATURE_GPU)
            metrics[prefix + "temperature_c"] = float(temperature)
        with contextlib.suppress(Exception):
            metrics[prefix + "power_w"] = nvml.nvmlDeviceGetPowerUsage(handle) / 1000
    return metrics


Answer = Callable[[Reading], None]


class GpuReader:
    """The worker thread ("tracker-gpu", a daemon) that owns NVML for one run's sampler."""

    def __init__(self, nvml: ModuleType) -> None:
        """Start the worker; it initialises NVML before its first reading."""
        self._nvml = nvml
        self._requests: queue.SimpleQueue[tuple[asyncio.AbstractEventLoop, Answer] | None] = (
            queue.SimpleQueue()
        )
        self._busy = False
        self.failed = False
        """NVML could not start: no readings, ever."""
        self._thread = threading.Thread(target=self._serve, name="tracker-gpu", daemon=True)
        self._thread.start()

    def request(self, loop: asyncio.AbstractEventLoop, done: Answer, timeout: float) -> None:
        """Call ``done`` once on ``loop``, within ``timeout`` seconds: with the GPUs' metrics,
        or with none when NVML failed, the worker is still stuck on an earlier request, or
        it does not answer in time."""
        if self.failed or self._busy:
            done({})
            return
        answered = False

        def answer(reading: Reading) -> None:
            nonlocal answered
            if not answered:
                answered = True
                timer.cancel()
                done(reading)

        timer = loop.call_later(timeout, answer, {})
        self._busy = True
        self._requests.put((loop, answer))

    def close(self) -> None:
        """Let the worker shut NVML down and end (a worker stuck in NVML stays stuck)."""
        self._requests.put(None)

    def _serve(self) -> None:
        nvml = self._nvml
        try:
            handles: list[Any] | None = _device_handles(nvml)
        except Exception:  # no driver, no device, a library that does not load
            handles = None
            self.failed = True
        while (request := self._requests.get()) is not None:
            loop, answer = request
            reading = {} if handles is None else read_gpus(nvml, handles)
            self._busy = False
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile (at exit)
                loop.call_soon_threadsafe(answer, reading)
        if handles is not None:
            with contextlib.suppress(Exception):
                nvml.nvmlShutdown()

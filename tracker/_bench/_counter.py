"""Instruction counts through Linux's perf_event interface, the one `perf stat` reads.

`instructions` is a pytest-benchmark timer (``--benchmark-timer``, which the plugin's
``--tracker-counter instructions`` sets): pytest-benchmark calls it before and after each
round, so each sample is the instructions per call, retired in user space by this thread.
Counts barely move with the machine's load, so they show a change that timing noise hides;
they need a CPU whose performance counters the kernel exposes (bare metal, or a VM with a
virtual PMU) and ``kernel.perf_event_paranoid`` <= 2. Where that is missing, asking for
them fails at once with the reason. Valgrind is not used: it runs Python 20-50 times slower
and cannot tell one benchmark's instructions from the rest of the process.
"""

from __future__ import annotations

import ctypes
import os
import platform
import struct
from typing import Final

from tracker._errors import UsageError

__all__ = ["HARDWARE", "INSTRUCTIONS", "SOFTWARE", "TASK_CLOCK", "PerfCounter", "instructions"]

HARDWARE: Final = 0
SOFTWARE: Final = 1
INSTRUCTIONS: Final = 1
"""PERF_COUNT_HW_INSTRUCTIONS, of type `HARDWARE`."""
TASK_CLOCK: Final = 1
"""PERF_COUNT_SW_TASK_CLOCK (nanoseconds on the CPU), of type `SOFTWARE`."""
_SYSCALLS: Final = {"x86_64": 298, "aarch64": 241, "riscv64": 241, "ppc64le": 319, "s390x": 331}
_ATTR_SIZE: Final = 128
_EXCLUDE_KERNEL_AND_HYPERVISOR: Final = (1 << 5) | (1 << 6)
_CLOEXEC: Final = 8


class PerfCounter:
    """A counter of this thread's events, open from construction until `close`."""

    def __init__(self, kind: int, event: int) -> None:
        """Open the counter of ``event`` (of type ``kind``) for the calling thread.

        Raises:
            UsageError: the system cannot count it (not Linux, no counters, not permitted).
        """
        number = _SYSCALLS.get(platform.machine())
        if platform.system() != "Linux" or number is None:
            raise UsageError(
                f"instruction counts need Linux's perf_event interface; this is "
                f"{platform.system()} on {platform.machine()}: measure time instead"
            )
        attr = bytearray(_ATTR_SIZE)
        struct.pack_into("IIQ", attr, 0, kind, _ATTR_SIZE, event)
        struct.pack_into("Q", attr, 40, _EXCLUDE_KERNEL_AND_HYPERVISOR)
        libc = ctypes.CDLL(None, use_errno=True)
        buffer = (ctypes.c_char * _ATTR_SIZE).from_buffer(attr)
        fd = libc.syscall(number, buffer, 0, -1, -1, _CLOEXEC)
        if fd < 0:
            reason = os.strerror(ctypes.get_errno())
            raise UsageError(
                f"the kernel refuses the performance counter (perf_event_open: {reason}); "
                "instruction counts need bare metal or a VM with a virtual PMU, and "
                "kernel.perf_event_paranoid <= 2: measure time instead"
            )
        self._fd: int | None = fd

    def read(self) -> int:
        """The count so far."""
        if self._fd is None:
            raise UsageError("the counter is closed; open a new PerfCounter")
        value: int = struct.unpack("q", os.read(self._fd, 8))[0]
        return value

    def close(self) -> None:
        """Release the counter (idempotent)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


_instructions: PerfCounter | None = None


def instructions() -> float:
    """Instructions retired so far by this thread: a timer for pytest-benchmark.

    Raises:
        UsageError: the system cannot count instructions (the message says why).
    """
    global _instructions
    if _instructions is None:
        _instructions = PerfCounter(HARDWARE, INSTRUCTIONS)
    return float(_instructions.read())

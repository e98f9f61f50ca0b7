"""One sample of system metrics: the process tree, the CPUs, memory, the run's disk, the network.

The raw readings come from `Counters`: psutil's (``tracker[system]``) when it is installed,
else `OsCounters`, what ``os`` and, on Linux, /proc give cheaply (this process alone, not
its children). `Sampler` turns readings into the metrics of docs/run-log.md#system: rates
over the time since the previous sample, I/O since the sampler started, memory within the
process's cgroup limit when it has one.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final, Protocol

if TYPE_CHECKING:
    from types import ModuleType

__all__ = [
    "CgroupMemory",
    "Counters",
    "OsCounters",
    "ProcessTree",
    "PsutilCounters",
    "Sampler",
    "find_cgroup_memory",
]

MB: Final = 2**20
GB: Final = 2**30


@dataclass(frozen=True)
class ProcessTree:
    """A reading of this process and its descendants."""

    cpu_seconds: float
    """User and system time of the live processes, with their waited-for children's."""
    rss_bytes: int
    threads: int
    children: int | None
    """How many live descendants; None when they cannot be seen (no psutil)."""
    started: float | None
    """When this process started (unix seconds), if known."""


class Counters(Protocol):
    """Where a sampler's raw readings come from; each is None when not measurable here."""

    def process_tree(self) -> ProcessTree | None:
        """This process and its descendants."""
        ...

    def cpu_times(self) -> tuple[float, float] | None:
        """Busy and total CPU seconds of all CPUs since boot."""
        ...

    def host_memory(self) -> tuple[int, int] | None:
        """The machine's total and available memory, in bytes."""
        ...

    def disk_io(self) -> tuple[int, int] | None:
        """Bytes read from and written to the disks since boot."""
        ...

    def network_io(self) -> tuple[int, int] | None:
        """Bytes sent and received on every interface since boot."""
        ...


class PsutilCounters:
    """Readings through psutil: the whole process tree, on every platform psutil supports."""

    def __init__(self, psutil: ModuleType) -> None:
        """Read through the imported ``psutil`` module."""
        self._psutil = psutil
        self._process = psutil.Process()
        self._started: float | None = None
        with contextlib.suppress(psutil.Error):
            self._started = self._process.create_time()

    def process_tree(self) -> ProcessTree | None:
        """This process and its live descendants; one that exits meanwhile is skipped."""
        error = self._psutil.Error
        try:
            descendants = self._process.children(recursive=True)
        except error:
            descendants = []
        cpu = 0.0
        rss = threads = alive = 0
        for child in descendants:
            try:
                with child.oneshot():
                    times = child.cpu_times()
                    child_rss = child.memory_info().rss
                    child_threads = child.num_threads()
            except error:
                continue
            cpu += times.user + times.system + times.children_user + times.children_system
            rss += child_rss
            threads += child_threads
            alive += 1
        # this process last: a child that exits and is waited for in between moves its
        # time into children_user/children_system here, and is still counted once
        try:
            with self._process.oneshot():
                times = self._process.cpu_times()
                rss += self._process.memory_info().rss
                threads += self._process.num_threads()
        except error:
            return None
        cpu += times.user + times.system + times.children_user + times.children_system
        return ProcessTree(cpu, rss, threads, alive, self._started)

    def cpu_times(self) -> tuple[float, float] | None:
        """Busy and total seconds, as ``psutil.cpu_percent`` counts them."""
        times = self._psutil.cpu_times()
        total = sum(times)
        # on Linux guest time is already part of user time
        total -= getattr(times, "guest", 0.0) + getattr(times, "guest_nice", 0.0)
        idle = times.idle + getattr(times, "iowait", 0.0)
        return total - idle, total

    def host_memory(self) -> tuple[int, int] | None:
        """``virtual_memory()``'s total and available."""
        memory = self._psutil.virtual_memory()
        return memory.total, memory.available

    def disk_io(self) -> tuple[int, int] | None:
        """``disk_io_counters()`` (None in containers that show no disks)."""
        try:
            counters = self._psutil.disk_io_counters()
        except (OSError, RuntimeError):
            return None
        return None if counters is None else (counters.read_bytes, counters.write_bytes)

    def network_io(self) -> tuple[int, int] | None:
        """``net_io_counters()``, every interface summed."""
        try:
            counters = self._psutil.net_io_counters()
        except OSError:
            return None
        return None if counters is None else (counters.bytes_sent, counters.bytes_recv)


class OsCounters:
    """Readings without psutil: ``os.times()`` for this process's CPU, and on Linux /proc
    for its memory and threads, the CPUs, memory, disks and network. Its children are
    not seen (finding them means reading every process in /proc)."""

    def __init__(self, proc: Path = Path("/proc"), sys_block: Path = Path("/sys/block")) -> None:
        """Read from ``proc`` and ``sys_block`` (Linux's; absent elsewhere)."""
        self._proc = proc
        self._sys_block = sys_block
        self._disks: dict[str, bool] = {}
        self._page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
        self._tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self._started = self._start_time()

    def _read(self, name: str) -> str | None:
        try:
            return (self._proc / name).read_text(encoding="ascii", errors="replace")
        except OSError:
            return None

    def _stat_fields(self) -> list[str] | None:
        """The fields of /proc/self/stat after the command name (field 3 on)."""
        text = self._read("self/stat")
        if text is None or ")" not in text:
            return None
        return text[text.rindex(")") + 2 :].split()

    def _start_time(self) -> float | None:
        fields = self._stat_fields()
        stat = self._read("stat")
        if fields is None or stat is None:
            return None
        for line in stat.splitlines():
            if line.startswith("btime "):
                return int(line.split()[1]) + int(fields[19]) / self._tick
        return None

    def process_tree(self) -> ProcessTree | None:
        """This process: CPU from ``os.times()`` (waited-for children included), memory
        and threads from /proc/self/stat."""
        times = os.times()
        cpu = times.user + times.system + times.children_user + times.children_system
        fields = self._stat_fields()
        if fields is None:
            return ProcessTree(cpu, 0, 0, None, None)
        return ProcessTree(cpu, int(fields[21]) * self._page, int(fields[17]), None, self._started)

    def cpu_times(self) -> tuple[float, float] | None:
        """The first line of /proc/stat: user nice system idle iowait irq softirq steal."""
        text = self._read("stat")
        if text is None:
            return None
        ticks = [int(value) for value in text.split("\n", 1)[0].split()[1:9]]
        if len(ticks) < 4:
            return None
        total = sum(ticks)
        idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)
        return (total - idle) / self._tick, total / self._tick

    def host_memory(self) -> tuple[int, int] | None:
        """MemTotal and MemAvailable of /proc/meminfo."""
        text = self._read("meminfo")
        if text is None:
            return None
        values = {}
        for line in text.splitlines():
            name, _, rest = line.partition(":")
            if name in ("MemTotal", "MemAvailable"):
                values[name] = int(rest.split()[0]) * 1024
        if len(values) < 2:
            return None
        return values["MemTotal"], values["MemAvailable"]

    def disk_io(self) -> tuple[int, int] | None:
        """Sectors read and written of /proc/diskstats, whole disks only (as psutil: those
        in /sys/block), 512 bytes each."""
        text = self._read("diskstats")
        if text is None:
            return None
        read = written = 0
        for line in text.splitlines():
            fields = line.split()
            if len(fields) < 10:
                continue
            name = fields[2]
            disk = self._disks.get(name)
            if disk is None:
                disk = self._disks[name] = (self._sys_block / name.replace("/", "!")).exists()
            if disk:
                read += int(fields[5]) * 512
                written += int(fields[9]) * 512
        return read, written

    def network_io(self) -> tuple[int, int] | None:
        """Bytes of every interface in /proc/net/dev."""
        text = self._read("net/dev")
        if text is None:
            return None
        sent = received = 0
        for line in text.splitlines()[2:]:
            _, _, counters = line.partition(":")
            fields = counters.split()
            if len(fields) >= 9:
                received += int(fields[0])
                sent += int(fields[8])
        return sent, received


@dataclass(frozen=True)
class CgroupMemory:
    """The files of the memory-limited cgroup a process is in (v2, or v1's)."""

    limit: Path
    usage: Path
    stat: Path
    inactive_key: str
    """The line of ``stat`` counting reclaimable page cache, left out of the usage (as
    ``docker stats`` does)."""

    def read(self) -> tuple[int, int] | None:
        """The limit and the usage, in bytes; None when unlimited or unreadable."""
        try:
            limit_text = self.limit.read_text(encoding="ascii").strip()
            if limit_text == "max":
                return None
            limit = int(limit_text)
            usage = int(self.usage.read_text(encoding="ascii"))
            stat = self.stat.read_text(encoding="ascii")
        except (OSError, ValueError):
            return None
        for line in stat.splitlines():
            name, _, value = line.partition(" ")
            if name == self.inactive_key:
                usage -= int(value)
                break
        return limit, max(usage, 0)


def find_cgroup_memory(
    proc_cgroup: Path = Path("/proc/self/cgroup"), root: Path = Path("/sys/fs/cgroup")
) -> CgroupMemory | None:
    """The memory files of this process's cgroup: v2's ``memory.max``, ``memory.current``,
    or v1's ``memory.limit_in_bytes``, ``memory.usage_in_bytes``; in the cgroup's own
    folder, or at the root of the mount (what a container shows of its cgroup)."""
    try:
        lines = proc_cgroup.read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    for line in lines:
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        relative = path.strip().lstrip("/")
        if hierarchy == "0" and not controllers:
            for folder in (root / relative, root):
                if (folder / "memory.max").is_file():
                    return CgroupMemory(
                        folder / "memory.max",
                        folder / "memory.current",
                        folder / "memory.stat",
                        "inactive_file",
                    )
        elif "memory" in controllers.split(","):
            for folder in (root / "memory" / relative, root / "memory"):
                if (folder / "memory.limit_in_bytes").is_file():
                    return CgroupMemory(
                        folder / "memory.limit_in_bytes",
                        folder / "memory.usage_in_bytes",
                        folder / "memory.stat",
                        "total_inactive_file",
                    )
    return None


class Sampler:
    """Takes samples for one run: each call to `sample` gives the metrics now."""

    def __init__(
        self, counters: Counters, disk_path: Path, cgroup: CgroupMemory | None = None
    ) -> None:
        """Sample through ``counters``, with the disk usage of ``disk_path``'s file system;
        I/O counts from now."""
        self._counters = counters
        self._disk_path = disk_path
        self._cgroup = cgroup
        self._cpu_count = os.cpu_count()
        self._tree: tuple[float, float] | None = None  # (time, cpu seconds) of the last one
        self._cpu: tuple[float, float] | None = None  # the last reading of the CPUs
        self._disk_start = counters.disk_io()
        self._network_start = counters.network_io()

    def sample(self) -> dict[str, float]:
        """The metrics measurable now (the first sample's ``proc.cpu_percent`` is since
        the process started; ``cpu.percent`` is absent from it)."""
        now = time.time()
        metrics: dict[str, float] = {}
        self._sample_process(now, metrics)
        self._sample_cpu(metrics)
        self._sample_memory(metrics)
        self._sample_disk(metrics)
        network = self._counters.network_io()
        if network is not None and self._network_start is not None:
            metrics["network.sent_mb"] = max(network[0] - self._network_start[0], 0) / MB
            metrics["network.recv_mb"] = max(network[1] - self._network_start[1], 0) / MB
        return metrics

    def _sample_process(self, now: float, metrics: dict[str, float]) -> None:
        tree = self._counters.process_tree()
        if tree is None:
            return
        if self._tree is not None:
            then, cpu = self._tree
        elif tree.started is not None:
            then, cpu = tree.started, 0.0
        else:
            then = None
        if then is not None and now > then:
            # a descendant gone since (and not waited for by the tree) takes its time with
            # it: the tree's total may shrink, and the number is then at least 0
            metrics["proc.cpu_percent"] = max(tree.cpu_seconds - cpu, 0.0) / (now - then) * 100
        self._tree = (now, tree.cpu_seconds)
        if tree.rss_bytes:
            metrics["proc.rss_mb"] = tree.rss_bytes / MB
        if tree.threads:
            metrics["proc.threads"] = tree.threads
        if tree.children is not None:
            metrics["proc.children"] = tree.children

    def _sample_cpu(self, metrics: dict[str, float]) -> None:
        if self._cpu_count:
            metrics["cpu.count"] = self._cpu_count
        times = self._counters.cpu_times()
        if times is not None and self._cpu is not None:
            busy = times[0] - self._cpu[0]
            total = times[1] - self._cpu[1]
            if total > 0:
                metrics["cpu.percent"] = min(max(busy / total * 100, 0.0), 100.0)
        self._cpu = times

    def _sample_memory(self, metrics: dict[str, float]) -> None:
        host = self._counters.host_memory()
        limited = None if self._cgroup is None else self._cgroup.read()
        if limited is not None and (host is None or limited[0] < host[0]):
            total, used = limited
            available = max(total - used, 0)
        elif host is not None:
            total, available = host
            used = total - available
        else:
            return
        if total > 0:
            metrics["memory.percent"] = used / total * 100
            metrics["memory.used_mb"] = used / MB
            metrics["memory.available_mb"] = available / MB

    def _sample_disk(self, metrics: dict[str, float]) -> None:
        try:
            usage = shutil.disk_usage(self._disk_path)
        except OSError:
            usage = None
        if usage is not None and usage.used + usage.free > 0:
            # as psutil and df: of the space a user may fill (blocks reserved for root aside)
            metrics["disk.percent"] = usage.used / (usage.used + usage.free) * 100
            metrics["disk.used_gb"] = usage.used / GB
        disk = self._counters.disk_io()
        if disk is not None and self._disk_start is not None:
            metrics["disk.read_mb"] = max(disk[0] - self._disk_start[0], 0) / MB
            metrics["disk.write_mb"] = max(disk[1] - self._disk_start[1], 0) / MB

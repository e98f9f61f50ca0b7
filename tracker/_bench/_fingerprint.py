"""The machine a benchmark ran on: the facts that change its timings, and an id for them.

Results are only ever compared within one fingerprint: the same CPU model, core count,
frequency governor, kernel and Python build. Timings of two machines differ for reasons
no commit caused, so a series, a change point and a comparison never mix them. The
fingerprint of this machine is read from /proc and `platform` (py-cpuinfo, which
pytest-benchmark uses, takes about two seconds); imported results bring their own.
"""

from __future__ import annotations

import hashlib
import os
import platform
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

__all__ = ["UNKNOWN", "Machine", "clean", "python_build", "this_machine"]

UNKNOWN: Final = "unknown"
_CPUINFO: Final = Path("/proc/cpuinfo")
_GOVERNOR: Final = Path("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor")


@dataclass(frozen=True)
class Machine:
    """A machine fingerprint; `id` is a digest of every field."""

    cpu: str
    cores: int
    governor: str
    kernel: str
    python: str
    """Implementation, version and build, e.g. ``CPython 3.11.7 (main, May 9 2026, GCC 12.2.0)``."""

    @property
    def id(self) -> str:
        """``m-`` and 12 hex digits of the SHA-256 of the fields: stable, safe in a run id."""
        text = "\n".join(f"{name}={value}" for name, value in asdict(self).items())
        return "m-" + hashlib.sha256(text.encode()).hexdigest()[:12]

    @property
    def label(self) -> str:
        """A short description for people: CPU, cores, kernel, Python version."""
        python = self.python.split(" (")[0]
        governor = "" if self.governor == UNKNOWN else f" ({self.governor})"
        return f"{self.cpu}, {self.cores} cores{governor}, {self.kernel}, {python}"

    def as_dict(self) -> dict[str, Any]:
        """The fields and the id, as stored in a benchmark run's config."""
        return {"id": self.id, **asdict(self)}

    @classmethod
    def from_dict(cls, fields: Mapping[str, Any]) -> Machine:
        """The machine stored by `as_dict` (missing fields read as unknown)."""
        return cls(
            cpu=str(fields.get("cpu", UNKNOWN)),
            cores=int(fields.get("cores", 0)),
            governor=str(fields.get("governor", UNKNOWN)),
            kernel=str(fields.get("kernel", UNKNOWN)),
            python=str(fields.get("python", UNKNOWN)),
        )


def clean(text: object) -> str:
    """``text`` with runs of whitespace as one space, or `UNKNOWN` when empty."""
    return re.sub(r"\s+", " ", str(text or "")).strip() or UNKNOWN


def python_build(implementation: str, version: str, build: Any, compiler: str) -> str:
    """The Python part of a fingerprint, from `platform`'s (or pytest-benchmark's) fields."""
    parts = [clean(part) for part in (build if isinstance(build, list | tuple) else [build])]
    return clean(f"{implementation} {version} ({', '.join([*parts, clean(compiler)])})")


def this_machine() -> Machine:
    """The fingerprint of the machine this process runs on."""
    cpu = ""
    try:
        for line in _CPUINFO.read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Model", "cpu model"):
                cpu = value
                break
    except OSError:  # not Linux: platform knows less, but something
        cpu = platform.processor() or platform.machine()
    try:
        governor = _GOVERNOR.read_text().strip()
    except OSError:  # no cpufreq (most VMs and containers)
        governor = UNKNOWN
    return Machine(
        cpu=clean(cpu),
        cores=os.cpu_count() or 0,
        governor=clean(governor),
        kernel=clean(f"{platform.system()} {platform.release()}"),
        python=python_build(
            platform.python_implementation(),
            platform.python_version(),
            platform.python_build(),
            platform.python_compiler(),
        ),
    )

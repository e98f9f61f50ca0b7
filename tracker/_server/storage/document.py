"""What the store takes and returns: run keys and the typed documents of runs, projects,
files and chart series (docs/protocol.md, "Reading"; the app adds a run's ``url``).

User values (config, summary, metadata, history) are plain Python, decoded exactly:
NaN, ±inf and big ints included.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypedDict

__all__ = [
    "Acked",
    "ChartAnswer",
    "ChartColumns",
    "FileInfo",
    "Parent",
    "ProjectInfo",
    "RunDocument",
    "RunKey",
]


@dataclass(frozen=True)
class RunKey:
    """Where a run lives: ``entity/project/run_id``."""

    entity: str
    project: str
    run_id: str


@dataclass(frozen=True)
class Acked:
    """What an ingest stored: the log's new stored seq, and when rows of the batch were
    refused (stored as gaps, counted in the run's ``rows_refused``), why."""

    seq: int
    refused: str | None = None


class Parent(TypedDict):
    """The run a fork (or a rewind's archive) was made from, and at which step."""

    run_id: str
    step: int


class RunDocument(TypedDict):
    """A run as the API, the dashboard and the handshake show it."""

    id: str
    name: str | None
    entity: str
    project: str
    state: str
    """running | finished | failed | killed | crashed"""
    config: dict[str, Any]
    summary: dict[str, Any]
    tags: list[str]
    group: str | None
    job_type: str | None
    notes: str | None
    created_at: float
    updated_at: float
    heartbeat_at: float
    end_time: float | None
    exit_code: int | None
    last_step: int
    """The highest stored step, -1 when the run holds no row."""
    parent: Parent | None
    runtime: float
    """Seconds the run has run, over all its sessions."""
    metadata: dict[str, Any]
    """The ``run`` records' fields that have no field of their own (host, start_time...)."""


class ProjectInfo(TypedDict):
    """One project of an entity: its run count and latest update."""

    name: str
    runs: int
    updated_at: float


class FileInfo(TypedDict):
    """One stored file of a run."""

    name: str
    size: int
    sha256: str
    updated_at: float


class ChartColumns(TypedDict):
    """One key's points, as equally long columns."""

    step: list[int]
    value: list[float]
    runtime: list[float]
    timestamp: list[float]


class ChartAnswer(TypedDict):
    """A run's chart series, and its last step in the same snapshot."""

    last_step: int
    series: dict[str, ChartColumns]

"""The read-only fields every run object shares, so `read_run` and `Api().run` answer alike."""

from __future__ import annotations

import abc
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

__all__ = ["RunInfo", "RunSummary"]


class RunSummary(dict[str, Any]):
    """A stored run's summary: a dict, with W&B's ``_json_dict`` (the plain dict) too, which
    export scripts read (``run.summary._json_dict``)."""

    @property
    def _json_dict(self) -> dict[str, Any]:
        return dict(self)


class RunInfo(abc.ABC):
    """Identity and descriptive fields of a run, read from its metadata document."""

    @abc.abstractmethod
    def _info(self) -> Mapping[str, Any]:
        """The run's metadata document (each kind of run object keeps its own)."""

    @property
    def id(self) -> str:
        """The run id."""
        return str(self._info()["id"])

    @property
    def name(self) -> str:
        """The run's display name."""
        return str(self._info().get("name") or "")

    @property
    def project(self) -> str:
        """The project the run belongs to."""
        return str(self._info().get("project") or "")

    @property
    def entity(self) -> str:
        """The user or team that owns the run."""
        return str(self._info().get("entity") or "")

    @property
    def path(self) -> str:
        """``"entity/project/id"``."""
        return f"{self.entity}/{self.project}/{self.id}"

    @property
    def tags(self) -> tuple[str, ...]:
        """The run's tags."""
        return tuple(self._info().get("tags") or ())

    @property
    def group(self) -> str | None:
        """The run's group, if any."""
        return self._info().get("group")

    @property
    def job_type(self) -> str | None:
        """The run's job type, if any."""
        return self._info().get("job_type")

    @property
    def notes(self) -> str | None:
        """The run's notes, if any."""
        return self._info().get("notes")

    @abc.abstractmethod
    def history(self, *args: Any, **kwargs: Any) -> Any:
        """The history rows in step order (each kind of run object reads its own: see
        `tracker.StoredRun.history`)."""

    def scan_history(
        self,
        keys: Sequence[str] | None = None,
        page_size: int = 1000,
        min_step: int | None = None,
        max_step: int | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Every history row in step order, unsampled, as W&B's ``scan_history`` yields
        them (``page_size`` is accepted for compatibility: the rows come in one read)."""
        yield from self.history(keys=keys, min_step=min_step, max_step=max_step)

    @property
    def start_time(self) -> float:
        """When the run was created (seconds since the epoch)."""
        info = self._info()
        return float(info.get("created_at") or info.get("start_time") or 0.0)

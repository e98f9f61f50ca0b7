"""Reading a run back from its run directory: `tracker.read_run`.

The run log is folded record by record, in order, into the run's metadata,
config, summary and history; the same fold gives a resumed run its state.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tracker import _encoding as kinds
from tracker._errors import UsageError
from tracker._files import RunFile
from tracker._history import downsample, history_frame, select
from tracker._names import local_file
from tracker._rundir import FILES_DIR, LOG_NAME, is_locked, resolve_run_path
from tracker._runinfo import RunInfo
from tracker._runlog import RunLogReader
from tracker._summary import MetricRule, Summary

__all__ = ["StoredRun", "apply_to_summary", "read_run"]

_Row = tuple[int, float, float, dict[str, Any]]  # step, timestamp, runtime, data

_logger = logging.getLogger(__name__)


class StoredRun(RunInfo):
    """A run as stored: metadata, config, summary and history, read from its run log.

    ``state`` is one of running, finished, failed, killed, crashed (the process that
    owned the run died before finishing it).
    """

    def __init__(self, run_dir: Path) -> None:
        """Read and fold the run log of ``run_dir``."""
        self.dir = run_dir
        self.metadata: dict[str, Any] = {}
        self.config: dict[str, Any] = {}
        self.state = "running"
        self.exit_code: int | None = None
        self.end_time: float | None = None
        self.files_stored: dict[str, dict[str, Any]] = {}
        self.next_seq = 0
        self.last_step = -1
        self.runtime = 0.0
        self.torn = False
        self.log_end = 0
        """Where the intact part of the run log ends; a resumed run appends from here."""
        self._rows: list[_Row] = []
        self._summary_ops: list[tuple[str, Any]] = []
        self._fold(run_dir / LOG_NAME)
        if self.state == "running" and not is_locked(run_dir):
            self.state = "crashed"

    def _fold(self, path: Path) -> None:
        reader = RunLogReader(path)
        session_start = 0.0
        offset = 0.0
        ops = self._summary_ops
        for record in reader.records():
            kind = record[1]
            self.next_seq = record[0] + 1
            if kind == kinds.ROW:
                step, stamp, data = record[2], record[3], record[4]
                runtime = offset + stamp - session_start
                self._rows.append((step, stamp, runtime, data))
                ops.append((kinds.ROW, data))
                self.last_step = step
                self.runtime = runtime
            elif kind == kinds.RUN:
                payload = record[2]
                if "start_time" in payload:
                    session_start = payload["start_time"]
                    offset = payload.get("runtime_offset", 0.0)
                    self.state, self.exit_code, self.end_time = "running", None, None
                self.metadata.update(payload)
            elif kind == kinds.CONFIG:
                self.config.update(record[2])
            elif kind in (kinds.SUMMARY_SET, kinds.SUMMARY_DELETE, kinds.METRIC):
                ops.append((kind, record[2]))
            elif kind == kinds.FILE:
                self.files_stored[record[2]["name"]] = record[2]
            elif kind == kinds.EXIT:
                payload = record[2]
                self.state = payload["state"]
                self.exit_code = payload.get("exit_code")
                self.end_time = payload.get("end_time")
                self.runtime = payload.get("runtime", self.runtime)
            # other kinds come from newer versions; skipping them keeps old readers working
        self.torn = reader.torn
        self.log_end = reader.valid_end
        if not self.metadata:
            raise UsageError(f"{path} holds no run metadata; it is not a complete run log")

    def _info(self) -> dict[str, Any]:
        return self.metadata

    def replay_summary(self, summary: Summary) -> None:
        """Rebuild the summary's state (last values, aggregates, rules) into ``summary``."""
        for kind, payload in self._summary_ops:
            apply_to_summary(summary, kind, payload, with_rules=True)

    @property
    def summary(self) -> dict[str, Any]:
        """The run summary as the live run showed it."""
        summary = Summary()
        self.replay_summary(summary)
        return summary.as_dict()

    @property
    def metric_rules(self) -> tuple[MetricRule, ...]:
        """The `define_metric` rules of the run."""
        summary = Summary()
        for kind, payload in self._summary_ops:
            if kind == kinds.METRIC:
                summary.define(MetricRule.from_record(payload))
        return summary.rules

    def history(
        self,
        keys: Sequence[str] | None = None,
        min_step: int | None = None,
        max_step: int | None = None,
        samples: int | None = None,
        pandas: bool = False,
    ) -> Any:
        """The history rows in step order, each with ``_step``, ``_timestamp``, ``_runtime``.

        Args:
            keys: keep only these keys (and ``_step``); rows holding none of them are left out.
            min_step: the first step to include.
            max_step: the last step to include.
            samples: at most about this many rows, keeping each key's extremes.
            pandas: return a pandas DataFrame (pandas must be installed).
        """
        rows = select(
            (
                {"_step": step, "_timestamp": stamp, "_runtime": runtime, **data}
                for step, stamp, runtime, data in self._rows
            ),
            keys,
            min_step,
            max_step,
        )
        if samples is not None:
            rows = downsample(rows, keys, samples)
        return history_frame(rows) if pandas else rows

    def files(self) -> list[RunFile]:
        """The files stored with the run (in its ``files/`` directory); a name in the run log
        that would lead outside that directory is left out, with a warning logged."""
        root = self.dir / FILES_DIR
        found = []
        for name in sorted(self.files_stored):
            try:
                path = local_file(root, name)
            except UsageError as exc:
                _logger.warning("tracker: %s: file left out: %s", self.dir, exc)
                continue
            if path.is_file():
                record = self.files_stored[name]
                found.append(
                    RunFile(name, path.stat().st_size, record.get("sha256"), path.read_bytes)
                )
        return found

    def __repr__(self) -> str:
        return f"<StoredRun {self.path} ({self.state})>"


def apply_to_summary(summary: Summary, kind: str, payload: Any, *, with_rules: bool) -> None:
    """Fold one record into ``summary``: rows, explicit sets and deletes, and (when
    ``with_rules``) `define_metric` rules. Other kinds do not touch the summary."""
    if kind == kinds.ROW:
        summary.observe(payload)
    elif kind == kinds.SUMMARY_SET:
        summary.apply_set(payload)
    elif kind == kinds.SUMMARY_DELETE:
        summary.apply_delete(payload)
    elif kind == kinds.METRIC and with_rules:
        summary.define(MetricRule.from_record(payload))


def read_run(path: str | os.PathLike[str]) -> StoredRun:
    """Read a run from its local run directory (offline runs included).

    Args:
        path: a run directory, its ``run.log``, or a ``dir`` (its latest run is read).

    Raises:
        UsageError: ``path`` holds no run.
    """
    return StoredRun(resolve_run_path(path))

"""Reading a run back from its run directory: `tracker.read_run`.

The run log is folded frame by frame (`tracker._records.fold`, the fold every server
backend applies too) into the run's metadata, config, summary and history; the same
fold gives a resumed run its state.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tracker._errors import UsageError
from tracker._files import RunFile
from tracker._names import local_file
from tracker._records.fold import fold_records
from tracker._records.kinds import stream_of
from tracker._records.state import RecordError, Rows, RunState
from tracker._records.summary import MetricRule
from tracker._rundir import FILES_DIR, LOG_NAME, is_locked, resolve_run_path
from tracker._runinfo import RunInfo
from tracker._runlog import Damage, RunLogReader

__all__ = ["StoredRun", "read_run"]

logger = logging.getLogger(__name__)

_OWN_FIELDS = ("name", "tags", "group", "job_type", "notes")


class StoredRun(RunInfo):
    """A run as stored: metadata, config, summary and history, read from its run log.

    ``state`` is one of running, finished, failed, killed, crashed (the process that
    owned the run died before finishing it).
    """

    def __init__(self, run_dir: Path) -> None:
        """Read and fold the run log of ``run_dir``."""
        self.dir = run_dir
        self.fold = RunState()
        """The run's records folded (its summary is the stored fold state)."""
        self.next_seq = 0
        self.skipped_records = 0
        """Records that are not what their kind defines (written by hand?), left out."""
        self.torn = False
        self.damage: tuple[Damage, ...] = ()
        """Damaged spans of the run log, read past: where, and how many records each held."""
        self.log_end = 0
        """Where the intact part of the run log ends; a resumed run appends from here."""
        self._rows = Rows()
        self._read(run_dir / LOG_NAME)
        self.state = self.fold.state
        if self.state == "running" and not is_locked(run_dir):
            self.state = "crashed"

    def _read(self, path: Path) -> None:
        reader = RunLogReader(path)
        rows = self._rows
        for frame in reader.frame_records():
            self._fold_frame(frame, rows)
        self.next_seq = reader.last_seq + 1
        self.torn = reader.torn
        self.damage = tuple(reader.damage)
        self.log_end = reader.valid_end
        for damage in self.damage:
            logger.warning(
                "tracker: %s is damaged at byte %d (%d bytes): %d records after seq %d are "
                "lost; the rest was read",
                path,
                damage.offset,
                damage.length,
                damage.records_lost,
                damage.seq_before,
            )
        if not self.fold.metadata:
            raise UsageError(f"{path} holds no run metadata; it is not a complete run log")

    def _fold_frame(self, records: list[list[Any]], rows: Rows) -> None:
        """Fold one frame's records; one that is not what its kind defines (written by hand,
        or by a buggy writer) is left out and counted."""
        while records:
            try:
                fold_records(self.fold, records, rows=rows)
                return
            except RecordError as exc:
                self.skipped_records += 1
                records = records[(exc.index or 0) + 1 :]

    @property
    def metadata(self) -> dict[str, Any]:
        """Every field of the run's ``run`` records, merged."""
        fold = self.fold
        merged = dict(fold.metadata)
        merged.update({name: getattr(fold, name) for name in _OWN_FIELDS})
        if fold.created_at:
            merged["created_at"] = fold.created_at
        return merged

    def _info(self) -> dict[str, Any]:
        return self.metadata

    @property
    def config(self) -> dict[str, Any]:
        """The run's config."""
        return self.fold.config

    @property
    def exit_code(self) -> int | None:
        """The exit code of the last ``exit`` record; None while running or crashed."""
        return self.fold.exit_code

    @property
    def end_time(self) -> float | None:
        """When the last session ended; None while running or crashed."""
        return self.fold.end_time

    @property
    def runtime(self) -> float:
        """Seconds: the last ``exit`` record's runtime, else the last row's ``_runtime``."""
        return self.fold.runtime

    @property
    def last_step(self) -> int:
        """The step of the last row, -1 when there is none."""
        return self.fold.last_step

    @property
    def files_stored(self) -> dict[str, dict[str, Any]]:
        """Each stored file name's latest ``file`` record."""
        return self.fold.files

    @property
    def summary(self) -> dict[str, Any]:
        """The run summary as the live run showed it."""
        return self.fold.summary.as_dict()

    @property
    def metric_rules(self) -> tuple[MetricRule, ...]:
        """The `define_metric` rules of the run."""
        return self.fold.summary.rules

    def history(
        self,
        keys: Sequence[str] | None = None,
        min_step: int | None = None,
        max_step: int | None = None,
        samples: int | None = None,
        pandas: bool = False,
        stream: str = "default",
    ) -> Any:
        """The history rows in step order, each with ``_step``, ``_timestamp``, ``_runtime``;
        or the records of another stream (``stream="system"``: system metrics) in order.

        Args:
            keys: keep only these keys (and ``_step``); rows holding none of them are left out.
            min_step: the first step to include.
            max_step: the last step to include.
            samples: at most about this many rows, keeping each key's extremes.
            pandas: return a pandas DataFrame (pandas must be installed).
            stream: ``"default"`` (the logged rows) or a stream's name (docs/run-log.md).

        Raises:
            UsageError: an unknown stream, or steps or samples asked of a stream.
        """
        from tracker._records import history  # reads only

        name = history.check_stream(stream, min_step, max_step, samples)
        if name is None:
            rows = history.read_history(self._rows, keys, min_step, max_step, samples)
        else:
            payloads = [record[2] for record in self._rows.streams if stream_of(record) == name]
            rows = history.stream_rows(name, payloads, history.check_keys(keys))
        return history.history_frame(rows) if pandas else rows

    def files(self) -> list[RunFile]:
        """The files stored with the run (in its ``files/`` directory); a name in the run log
        that would lead outside that directory is left out, with a warning logged."""
        root = self.dir / FILES_DIR
        found = []
        for name in sorted(self.files_stored):
            try:
                path = local_file(root, name)
            except UsageError as exc:
                logger.warning("tracker: %s: file left out: %s", self.dir, exc)
                continue
            if path.is_file():
                record = self.files_stored[name]
                found.append(
                    RunFile(name, path.stat().st_size, record.get("sha256"), path.read_bytes)
                )
        return found

    def __repr__(self) -> str:
        return f"<StoredRun {self.path} ({self.state})>"


def read_run(path: str | os.PathLike[str]) -> StoredRun:
    """Read a run from its local run directory (offline runs included).

    Args:
        path: a run directory, its ``run.log``, or a ``dir`` (its latest run is read).

    Raises:
        UsageError: ``path`` holds no run.
    """
    return StoredRun(resolve_run_path(path))

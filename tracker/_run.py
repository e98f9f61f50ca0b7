"""The Run: log rows at microsecond cost, keep config and summary, finish.

`Run.log()` is the product. On the caller's thread it checks, assigns the step
and sequence number, encodes the row once with orjson and appends the bytes to
the run's outbox; the writer on the "tracker-io" thread does everything else.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import os
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from types import FrameType, TracebackType
from typing import TYPE_CHECKING, Any, Final

import orjson

from tracker._config import Config
from tracker._errors import UsageError
from tracker._io._outbox import Outbox
from tracker._io._thread import io_thread
from tracker._lifecycle import Lifecycle, exit_state
from tracker._media import MediaBinder, MediaFile
from tracker._metadata import Collected, MetadataCollection
from tracker._records import kinds
from tracker._records.codec import (
    check_size,
    decode_value,
    default,
    encode_exact,
    encode_record,
)
from tracker._records.fold import fold_records
from tracker._records.kinds import RESERVED_KEYS
from tracker._records.state import RunState
from tracker._records.summary import MetricRule, Summary, make_rule
from tracker._rundir import FILES_DIR, LOG_NAME, RunLock
from tracker._runfiles import SAVE_POLICIES, RunFiles, code_files, find_files
from tracker._runlog import RunLogReader, RunLogWriter
from tracker._settings import Settings
from tracker._status import RunStatus

# loaded with tracker, not by init(): imported there it competes for the GIL with the I/O
# thread importing asyncio (the sampler's own modules and psutil load on the I/O thread)
from tracker._system import SystemStats
from tracker._wire.limits import MAX_RECORD_BYTES, MAX_ROW_KEYS, MAX_STEP, MAX_TAG_CHARS

if TYPE_CHECKING:
    from tracker._console import ConsoleBuffer, ConsoleCapture
    from tracker._io._sender import Sender, StreamTarget
    from tracker._watch import Watches

__all__ = ["DisabledRun", "Run", "RunIdentity", "RunStart", "check_tags"]

logger = logging.getLogger(__name__)

_dumps = orjson.dumps
_NEWLINE: Final = orjson.OPT_APPEND_NEWLINE
_ROW: Final = kinds.ROW
_MAX_RECORD: Final = MAX_RECORD_BYTES
_MAX_KEYS: Final = MAX_ROW_KEYS
_now = time.time
# Every ``null`` holds a "u": a memchr for the byte saves most rows the ~0.3 µs search for
# ``null`` (bytes.find with a 4-byte pattern scans byte by byte on digits).
_U: Final = ord("u")


_LIVE: Final = Lifecycle.LIVE


@dataclass(frozen=True)
class RunIdentity:
    """Who a run is, as `init()` resolved it from its arguments, settings and stored run."""

    id: str
    name: str
    project: str
    entity: str
    group: str | None
    job_type: str | None
    tags: tuple[str, ...]
    notes: str | None


@dataclass(frozen=True)
class RunStart:
    """How a run starts: where it writes, what it continues, where it streams."""

    mode: str
    run_dir: Path | None
    config: Mapping[str, Any]
    allow_val_change: bool
    metadata: Mapping[str, Any] = field(default_factory=dict)
    """Fields of the session's ``run`` record beyond the identity (``runtime_offset``...)."""
    resumed: bool = False
    start_step: int = 0
    start_seq: int = 0
    summary: Summary | None = None
    """The stored summary a resumed run continues."""
    log_offset: int = 0
    """Where the run log's intact part ends (a resumed offline run appends there)."""
    stream: StreamTarget | None = None
    url: str | None = None


class Run:
    """One tracked run, created by `tracker.init()` or `await tracker.ainit()`.

    Log history rows with `log()`, keep hyperparameters in `config` and final values
    in `summary`, and end it with `finish()` (or use it as a context manager).
    """

    def __init__(self, settings: Settings, identity: RunIdentity, start: RunStart) -> None:
        """Open the run's log and writer; use `tracker.init()` rather than this."""
        self._settings = settings
        self._id = identity.id
        self._name = identity.name
        self._project = identity.project
        self._entity = identity.entity
        self._group = identity.group
        self._job_type = identity.job_type
        self._tags = identity.tags
        self._notes = identity.notes
        self._mode = start.mode
        self._run_dir = run_dir = start.run_dir
        self._resumed = start.resumed
        self._owner_pid = os.getpid()
        self._start_time = _now()
        self._runtime_offset = float(start.metadata.get("runtime_offset", 0.0))
        self._step = start.start_step
        self._seq = start.start_seq
        self._pending: dict[str, Any] = {}
        self._files = None if run_dir is None else RunFiles(run_dir / FILES_DIR)
        self._before_finish: list[Callable[[], None]] = []
        """Called by `finish()` while the run is still live (they may log a last row)."""
        self._on_finish: list[Callable[[], None]] = []
        """Called as the run starts finishing, before its last records are written."""
        self._binder = MediaBinder()  # used under the outbox lock
        self._watches: Watches | None = None
        self._lifecycle = _LIVE
        self._outbox = Outbox(
            settings.queue_max_events,
            settings.queue_max_bytes,
            settings.queue_full_policy == "drop",
        )
        self.config = Config(allow_val_change=start.allow_val_change)
        """The run's hyperparameters: attribute and item access, `update()`."""
        self.config.update(start.config, allow_val_change=True)
        self._summary = Summary(
            self._record_summary_set, self._record_summary_delete, self._check_summary_writable
        )
        if start.summary is not None:
            self._summary.assume(start.summary)
        self._folded = RunState(summary=self._summary)  # what the summary folded so far
        self._folded_to = start.log_offset  # the run log offset it has folded up to
        self._fold_lock = threading.RLock()
        self._lock_file: RunLock | None = None
        self._writer_done: threading.Event | None = None
        self._url = start.url
        self._sender: Sender | None = None
        if run_dir is not None:
            self._lock_file = RunLock(run_dir)
            try:
                log = RunLogWriter(run_dir / LOG_NAME)
            except (OSError, ValueError) as exc:
                self._lock_file.release()
                raise UsageError(f"cannot open the run log in {run_dir}: {exc}") from exc
            from tracker._io._writer import start_writer  # asyncio loads with the first run

            if start.stream is not None:
                self._sender = _new_sender(start.stream, run_dir / LOG_NAME, settings, self._outbox)
                # first: its start imports aiohttp, blocking the loop; the writer starting
                # after it keeps the outbox small meanwhile (see STARTUP_MAX_BYTES)
                io_thread().call_soon(self._sender.start)
            self._writer_done = start_writer(
                io_thread(),
                self._outbox,
                log,
                settings.fsync_policy,
                settings.batch_linger_seconds,
                settings.batch_max_bytes,
                None if self._sender is None else self._sender.notify,
            )
        with self._outbox.lock:
            self._emit(
                kinds.RUN, {**self._identity(), **start.metadata, "start_time": self._start_time}
            )
            if self.config:
                self._emit(kinds.CONFIG, self.config.as_dict())
        self.config._on_change = self._record_config
        self._console: ConsoleCapture | None = None
        self._stats: SystemStats | None = None
        self._metadata: MetadataCollection | None = None
        if run_dir is not None:
            self._summary.sync_with(self._fold_summary)
            if settings.console != "off":
                from tracker._console import ConsoleCapture

                self._console = ConsoleCapture(settings.console, self._ship_console)
            if not settings.disable_stats:
                from tracker._start import notice

                self._stats = SystemStats(
                    run_dir,
                    settings.stats_interval_seconds,
                    self._record_system,
                    partial(notice, settings),
                )

    # -- identity -----------------------------------------------------------------

    @property
    def id(self) -> str:
        """The run id, unique in its project."""
        return self._id

    @property
    def name(self) -> str:
        """The run's display name; assign to rename the run."""
        return self._name

    @name.setter
    def name(self, value: str) -> None:
        if not isinstance(value, str) or not value.strip():
            raise UsageError(f"run.name must be a non-empty str, not {value!r}")
        self._record_metadata({"name": value})
        self._name = value

    @property
    def project(self) -> str:
        """The project the run belongs to."""
        return self._project

    @property
    def entity(self) -> str:
        """The user or team that owns the run."""
        return self._entity

    @property
    def path(self) -> str:
        """``"entity/project/id"``."""
        return f"{self._entity}/{self._project}/{self._id}"

    @property
    def group(self) -> str | None:
        """The group the run belongs to, if any."""
        return self._group

    @property
    def job_type(self) -> str | None:
        """The kind of job, e.g. ``"train"``, if given."""
        return self._job_type

    @property
    def tags(self) -> tuple[str, ...]:
        """The run's tags; assign a tuple to replace them, ``run.tags += ("x",)`` to add."""
        return self._tags

    @tags.setter
    def tags(self, value: Iterable[str]) -> None:
        tags = check_tags(value, "run.tags")
        self._record_metadata({"tags": list(tags)})
        self._tags = tags

    @property
    def notes(self) -> str | None:
        """Free-form notes about the run; assign to change them."""
        return self._notes

    @notes.setter
    def notes(self, value: str | None) -> None:
        if value is not None and not isinstance(value, str):
            raise UsageError(f"run.notes must be a str or None, not {type(value).__name__}")
        self._record_metadata({"notes": value})
        self._notes = value

    @property
    def dir(self) -> str:
        """The run's files folder, ``<run directory>/files``, as W&B's ``run.dir``: files
        written there are stored with the run (recorded and, online, uploaded when it
        finishes). `read_run` and ``tracker sync`` take it for the run directory. Empty in
        disabled mode."""
        return "" if self._run_dir is None else str(self._run_dir / FILES_DIR)

    @property
    def url(self) -> str | None:
        """The run's dashboard page; None offline."""
        return self._url

    @property
    def mode(self) -> str:
        """``"online"``, ``"offline"`` or ``"disabled"``."""
        return self._mode

    @property
    def step(self) -> int:
        """The step the next committed row gets."""
        return self._step

    @property
    def resumed(self) -> bool:
        """Whether this run continues an earlier one with the same id."""
        return self._resumed

    @property
    def start_time(self) -> float:
        """When this session of the run started (seconds since the epoch)."""
        return self._start_time

    @property
    def settings(self) -> Settings:
        """The settings the run was created with."""
        return self._settings

    def __repr__(self) -> str:
        return f"<tracker.Run {self.path} ({self._name}, {self._lifecycle.value})>"

    # -- logging --------------------------------------------------------------------

    def log(
        self,
        data: dict[str, Any] | None = None,
        step: int | None = None,
        commit: bool | None = None,
    ) -> None:
        """Log a history row; returns at once (the caller never waits on disk or network).

        Step rules are W&B's: ``log(d)`` merges ``d`` into the current step's row,
        commits it and advances the step; ``commit=False`` only merges; a ``step``
        above the current one commits the pending row and makes ``d`` pending at
        ``step``; the current step merges; a lower step is dropped with a warning.
        ``log()`` or ``log({})`` commits the pending row; with none, it does nothing.
        Values may be media (`tracker.Image`, ...): stored as run files, referenced.

        Raises:
            UsageError: ``data`` is not a dict of str keys, a value cannot be encoded
                (nothing of the call is logged), or the run is finished.
        """
        if (
            step is not None
            or commit is not None
            or self._pending
            or type(data) is not dict
            or not 0 < len(data) <= _MAX_KEYS
        ):
            self._log(data, step, commit, block=True)
            return
        outbox = self._outbox
        lock = outbox.lock
        lock.acquire()
        try:
            if self._lifecycle is not _LIVE:
                raise self._not_live("run.log()")
            full = outbox.count >= outbox.max_events or len(outbox.data) >= outbox.max_bytes
            if full and not self._make_room(block=True):
                self._step += 1  # dropped under the "drop" policy, and counted
                return
            if "_step" in data or "_timestamp" in data or "_runtime" in data:
                raise _reserved_key_error(data)
            seq = self._seq
            step = self._step
            now = _now()
            try:
                line = _dumps((seq, _ROW, step, now, data), default=default, option=_NEWLINE)
            except TypeError:  # media values, or a value that cannot be logged
                line = self._encode_unusual(seq, step, now, data)
                seq = self._seq  # after the media's file records
            else:
                if _U in line and line.find(b"null") >= 0:
                    line = encode_exact((seq, _ROW, step, now), data, "log()")
                elif len(line) > _MAX_RECORD:
                    check_size(line, "log()")
            outbox.data += line
            outbox.count += 1
            if outbox.writer_asleep:
                outbox.writer_asleep = False
                outbox.wake()
            self._seq = seq + 1
            self._step = step + 1
        finally:
            lock.release()

    def _encode_unusual(self, seq: int, step: int, now: float, data: dict[str, Any]) -> bytes:
        """The fast path's row when orjson refused a value: its media values bound (their
        files written, their ``file`` records appended first, the row numbered after
        them), or the bad value named. Caller holds the lock."""
        binder = self._binder.reset(step)
        line = encode_exact((seq, _ROW, step, now), data, "log()", binder)
        if not binder.files:
            return line
        self._record_media(self._write_media(binder.files))
        return encode_exact((self._seq, _ROW, step, now), data, "log()", binder.reset(step))

    def _write_media(self, files: list[MediaFile]) -> list[tuple[Path, dict[str, Any]]]:
        """Write the files of a row's media values into the run's files; each target and
        its ``file`` record payload.

        Raises:
            UsageError: a file cannot be written (nothing of the row is logged then).
        """
        if not files or self._files is None:
            return []
        try:
            return [self._files.write(file.name, file.content) for file in files]
        except OSError as exc:
            raise UsageError(
                f"log(): cannot store a media file in {self._files.folder}: {exc}; nothing "
                "of this call was logged"
            ) from exc

    def _record_media(self, stored: list[tuple[Path, dict[str, Any]]]) -> None:
        """The ``file`` records of written media files, and their uploads. Caller holds
        the lock."""
        for target, record in stored:
            self._emit(kinds.FILE, record)
            self._upload(record["name"], target)

    async def alog(
        self,
        data: dict[str, Any] | None = None,
        step: int | None = None,
        commit: bool | None = None,
    ) -> None:
        """`log()` for async code: when the queue is full under the ``"block"`` policy it
        awaits room without blocking the event loop (asyncio or trio)."""
        if self._log(data, step, commit, block=False):
            return
        import anyio.to_thread

        while not self._log(data, step, commit, block=False):
            await anyio.to_thread.run_sync(self._wait_for_room, abandon_on_cancel=True)

    def _wait_for_room(self) -> None:
        """Block (in a worker thread, for `alog`) until the outbox has room or the run ends."""
        outbox = self._outbox
        with outbox.lock:
            while outbox.is_full() and self._lifecycle is _LIVE and not outbox.closed:
                outbox.hurry()
                outbox.changed.wait(0.5)

    def _log(self, data: Any, step: Any, commit: Any, *, block: bool) -> bool:
        """The general path of `log`: every step/commit rule. False when not logged for
        want of room and ``block`` is False (nothing changed then)."""
        row = _check_row(data)
        if step is not None and (
            isinstance(step, bool)
            or not hasattr(step, "__index__")
            or not 0 <= step.__index__() <= MAX_STEP
        ):
            raise UsageError(
                f"log(step={step!r}): step must be an int >= 0 (and below 2**63), or None"
            )
        if commit is not None and not isinstance(commit, bool):
            raise UsageError(f"log(commit={commit!r}): commit must be True, False or None")
        target = None if step is None else step.__index__()
        outbox = self._outbox
        with outbox.lock:
            if self._lifecycle is not _LIVE:
                raise self._not_live("run.log()")
            binder = self._binder.reset(self._step if target is None else target)
            encoded = encode_record((), row, "log()", binder)  # all of the call, or nothing
            if target is not None and target < self._step:
                warnings.warn(
                    f"tracker: log(step={target}) dropped: the run is already at step "
                    f"{self._step} and steps only go up. To log against another x-axis, "
                    "log it as a key and use run.define_metric(key, step_metric=...)",
                    UserWarning,
                    stacklevel=_caller_stacklevel(),
                )
                return True
            commits_pending = bool(self._pending) and target is not None and target > self._step
            commits_now = commit is True or (commit is None and target is None)
            wants_room = (commits_pending or commits_now) and not block
            if wants_room and outbox.is_full() and not outbox.drop_when_full:
                return False
            if binder.bound:
                row = decode_value(encoded)  # the row holding the media's references
                self._record_media(self._write_media(binder.files))
            if commits_pending:
                self._commit_pending()
            if target is not None:
                self._step = max(self._step, target)
            self._pending.update(row)
            if commits_now:
                self._commit_pending()
        return True

    def _commit_pending(self) -> None:
        """Commit the pending row at the current step and advance; nothing pending, nothing
        happens (as in W&B). Caller holds the lock."""
        if not self._pending:
            return
        row, self._pending = self._pending, {}
        step = self._step
        self._step = step + 1
        if self._outbox.is_full() and not self._make_room(block=True):
            return
        self._outbox.put(encode_record((self._seq, _ROW, step, _now()), row, "log()"))
        self._seq += 1

    def _make_room(self, *, block: bool) -> bool:
        """Wait until the outbox has room (``"block"``), or count a drop (``"drop"``).
        Caller holds the lock; False when the row is not to be appended."""
        outbox = self._outbox
        while outbox.is_full():
            if outbox.drop_when_full:
                outbox.dropped += 1
                return False
            if not block:
                return False
            outbox.hurry()
            outbox.changed.wait(0.5)
            if self._lifecycle is Lifecycle.FORKED:
                raise self._not_live("run.log()")
        return True

    def _emit(self, kind: str, payload: Any) -> None:
        """Append a control record (never dropped, never blocked). Caller holds the lock."""
        self._outbox.put(encode_record((self._seq, kind), payload, f"{kind} record"))
        self._seq += 1

    def _closed_to_background(self) -> bool:
        """Whether the I/O and metadata threads' records are too late: the exit record is
        written, or this is a forked child's copy of the run. Caller holds the lock."""
        return self._outbox.closing or self._lifecycle is Lifecycle.FORKED

    def _ship_console(self, buffer: ConsoleBuffer, final: bool) -> bool:
        """Append the captured console text as ``console`` records (the I/O thread's call);
        False when the outbox has no room now: the text waits in its bounded buffer."""
        with self._outbox.lock:
            if self._closed_to_background():
                return True
            if not final and self._outbox.is_full():
                return False
            for payload in buffer.take(final):
                self._emit(kinds.CONSOLE, payload)
        return True

    def _record_system(self, payload: dict[str, float]) -> bool:
        """Append a sample of system metrics (the I/O thread's call); False once the run
        takes no more: its exit record is written, or a forked child inherited it. (A run
        that is finishing still takes the first sample, which `finish()` waits for.)"""
        with self._outbox.lock:
            if self._closed_to_background():
                return False
            self._emit(kinds.SYSTEM, payload)
        return True

    def _collect_metadata(self) -> None:
        """Start collecting the run's git state, packages and machine (``run`` record fields
        and files) off the caller's thread; `finish()` waits for them. init() calls it
        last, and the I/O thread starts it once its loop runs: a thread collecting during
        init() would take the GIL from it."""
        if self._run_dir is None:
            return
        self._metadata = MetadataCollection(
            os.getcwd(),
            git=not self._settings.disable_git,
            requirements=self._settings.save_requirements,
            deliver=self._record_collected,
        )
        io_thread().call_soon(self._metadata.start)

    def _record_collected(self, collected: Collected) -> None:
        """Store what the metadata thread collected (its call): the files, then a ``run``
        record and their ``file`` records, unless the run has written its exit record."""
        from tracker._start import notice

        for line in collected.notices:
            notice(self._settings, line)
        assert self._files is not None, "a run without a directory collects no metadata"
        try:
            stored = [self._files.write(name, content) for name, content in collected.files]
        except OSError as exc:
            logger.warning("tracker: cannot store run %s's metadata files: %s", self._id, exc)
            stored = []
        with self._outbox.lock:
            if self._closed_to_background():
                return
            self._emit(kinds.RUN, collected.fields)
            for target, record in stored:
                self._emit(kinds.FILE, record)
                self._upload(record["name"], target)

    def _emit_checked(self, kind: str, payload: Any, what: str) -> None:
        """Append a control record from a user call; the run must be live."""
        with self._outbox.lock:
            if self._lifecycle is not _LIVE:
                raise self._not_live(what)
            self._emit(kind, payload)

    def _record_config(self, changes: dict[str, Any]) -> None:
        self._emit_checked(kinds.CONFIG, changes, "config update")

    def _record_summary_set(self, values: dict[str, Any]) -> None:
        self._emit_checked(kinds.SUMMARY_SET, values, "summary update")

    def _record_summary_delete(self, keys: list[str]) -> None:
        self._emit_checked(kinds.SUMMARY_DELETE, keys, "summary delete")

    def _check_summary_writable(self) -> None:
        if self._lifecycle is not _LIVE:
            raise self._not_live("summary change")

    def _record_metadata(self, changes: dict[str, Any]) -> None:
        self._emit_checked(kinds.RUN, changes, "run metadata update")

    def _identity(self) -> dict[str, Any]:
        return {
            "id": self._id,
            "name": self._name,
            "project": self._project,
            "entity": self._entity,
            "group": self._group,
            "job_type": self._job_type,
            "tags": list(self._tags),
            "notes": self._notes,
            "mode": self._mode,
        }

    def _not_live(self, what: str) -> UsageError:
        if self._lifecycle is Lifecycle.FORKED:
            return UsageError(
                f"{what}: this Run was created in process {self._owner_pid} and inherited "
                f"by this forked child (pid {os.getpid()}); a child cannot log to its parent's "
                "run. Call tracker.init() in the child to start its own run"
            )
        return UsageError(
            f"{what} after run.finish(): run {self._id} is finished; "
            "start a new run with tracker.init()"
        )

    # -- metrics, files -------------------------------------------------------------

    def define_metric(
        self,
        name: str,
        step_metric: str | None = None,
        summary: str | None = None,
        goal: str | None = None,
        hidden: bool | None = False,
        *,
        step_sync: bool | None = None,
        overwrite: bool | None = None,
    ) -> MetricRule:
        """Shape how the keys matching ``name`` (a key or a glob like ``"val/*"``) are shown
        and summarised: ``summary`` is ``"min"``, ``"max"``, ``"mean"``, ``"first"``,
        ``"last"`` or ``"none"``, comma-separated allowed.

        ``step_sync`` and ``overwrite`` are W&B's and accepted: every row keeps the keys it
        was logged with, and a later rule for the same name replaces the earlier one.

        Raises:
            UsageError: a bad name, summary, goal, step_metric, hidden, step_sync or
                overwrite.
        """
        for label, flag in (("step_sync", step_sync), ("overwrite", overwrite)):
            if flag is not None and not isinstance(flag, bool):
                raise UsageError(f"define_metric({label}={flag!r}) takes True, False or None")
        hidden = False if hidden is None else hidden
        rule = make_rule(name, step_metric=step_metric, summary=summary, goal=goal, hidden=hidden)
        with self._outbox.lock:
            if self._lifecycle is not _LIVE:
                raise self._not_live("run.define_metric()")
            self._emit(kinds.METRIC, rule.to_record())
        if self._run_dir is None:
            self._summary.define(rule)
        else:
            self._fold_summary()  # the rule shapes the rows logged after it, as read_run does
        return rule

    @property
    def summary(self) -> Summary:
        """The last value of every logged key, unless set explicitly or shaped by
        `define_metric`; assign ``run.summary["best"] = 0.9`` to set a key."""
        return self._summary

    def _fold_summary(self) -> None:
        """Fold the rows logged since the last read into the summary.

        `log()` does not touch the summary (it would cost the caller ~0.2 µs per row);
        the summary is a fold of the run log, the same one `read_run` computes, caught
        up when it is read or changed.
        """
        if self._run_dir is None:
            return
        outbox = self._outbox
        with self._fold_lock:
            with outbox.lock:
                target = outbox.appended
                if self._lifecycle is not Lifecycle.FORKED:
                    if outbox.written < target and not outbox.closed:
                        outbox.hurry()
                    # A disk that refuses writes must not stall a summary read for long:
                    # after a second, fold what is on disk.
                    outbox.changed.wait_for(
                        lambda: outbox.written >= target or outbox.closed,
                        min(self._settings.finish_timeout, 1.0),
                    )
            # this process writes the log: a bad frame is the one being written
            reader = RunLogReader(self._run_dir / LOG_NAME, start=self._folded_to, resync=False)
            for records in reader.frame_records():
                fold_records(self._folded, records)
            self._folded_to = reader.valid_end

    def save(
        self,
        glob_str: str | os.PathLike[str],
        base_path: str | os.PathLike[str] | None = None,
        policy: str = "live",
    ) -> list[str]:
        """Store files with the run (copied now into its ``files/`` directory).

        Args:
            glob_str: a file path or a glob pattern such as ``"checkpoints/*.pt"``.
            base_path: the directory stored names are relative to; default the
                pattern's own directory.
            policy: ``"now"`` stores the file as it is; ``"live"`` and ``"end"`` store it
                again at `finish()` so the final version is kept.

        Returns:
            The paths of the stored copies.

        Raises:
            UsageError: nothing matches, a bad policy, or a file outside ``base_path``.
        """
        if self._lifecycle is not _LIVE:
            raise self._not_live("run.save()")
        if policy not in SAVE_POLICIES:
            raise UsageError(f"save(policy={policy!r}): use one of {', '.join(SAVE_POLICIES)}")
        return [
            self._store_file(source, name, policy)
            for source, name in find_files(glob_str, base_path)
        ]

    def log_code(
        self,
        root: str | os.PathLike[str] | None = ".",
        name: str | None = None,
        include_fn: Callable[..., bool] | None = None,
        exclude_fn: Callable[..., bool] | None = None,
    ) -> list[str]:
        """Store the code under ``root`` with the run, as files ``code/<path>`` (W&B makes
        an artifact of it; here they are run files).

        Args:
            root: the folder to walk (default: the working directory).
            name: accepted for W&B compatibility (the name of W&B's artifact).
            include_fn: ``include_fn(path, root)`` (or ``include_fn(path)``) says which
                files to store; default: those ending in ``.py``.
            exclude_fn: says which files to leave out; default: hidden folders, virtual
                environments, ``__pycache__`` and run folders (``tracker-runs``,
                ``wandb``).

        Returns:
            The paths of the stored copies.
        """
        if self._lifecycle is not _LIVE:
            raise self._not_live("run.log_code()")
        return [
            self._store_file(source, stored, "now")
            for source, stored in code_files(root or ".", include_fn, exclude_fn)
        ]

    def watch(
        self,
        models: Any,
        criterion: Any = None,
        log: str | None = "gradients",
        log_freq: int = 1000,
        idx: int | None = None,
        log_graph: bool = False,
    ) -> None:
        """Log histograms of a torch model's gradients and/or parameters every
        ``log_freq`` backward/forward passes, as W&B's ``watch``.

        Args:
            models: a ``torch.nn.Module`` or a list of them.
            criterion: accepted for W&B compatibility.
            log: ``"gradients"`` (default), ``"parameters"``, ``"all"`` or None.
            log_freq: log every this many calls (per parameter for gradients).
            idx: the number of the first model (its keys get ``graph_N/`` when N > 0).
            log_graph: accepted; graphs are not drawn here (a warning says so).

        Raises:
            UsageError: a model is not a torch module, or a bad ``log`` or ``log_freq``.
        """
        if self._lifecycle is not _LIVE:
            raise self._not_live("run.watch()")
        if self._watches is None:
            from tracker._watch import Watches

            self._watches = Watches(self)
        self._watches.watch(models, log, log_freq, idx, log_graph)

    def unwatch(self, models: Any = None) -> None:
        """Stop watching ``models`` (a module or a list), or every watched model."""
        if self._watches is not None:
            self._watches.unwatch(models)

    def _store_file(self, source: Path, name: str, policy: str) -> str:
        if self._files is None:
            return ""
        target, record = self._files.store(source, name, policy)
        self._emit_checked(kinds.FILE, record, "run.save()")
        self._upload(name, target)
        return str(target)

    def _upload(self, name: str, path: Path) -> None:
        if self._sender is not None:
            io_thread().loop().call_soon_threadsafe(self._sender.upload, name, path)

    # -- flush, status, finish ------------------------------------------------------

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every row logged so far is durable in the run log and, online,
        acknowledged by the server.

        Returns:
            True when it is, False when ``timeout`` seconds passed first (or streaming
            stopped on an error that `status()` reports).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        outbox = self._outbox
        with outbox.lock:
            if self._lifecycle is Lifecycle.FORKED:
                raise self._not_live("run.flush()")
            if self._writer_done is None:
                return True
            target = outbox.request_flush()
            last_seq = self._seq - 1
            durable = outbox.changed.wait_for(
                lambda: outbox.durable >= target or outbox.closed, timeout
            ) and (outbox.durable >= target)
        sender = self._sender
        if not durable or sender is None:
            return durable
        while sender.acked_seq < last_seq and sender.fatal is None and not sender.done.is_set():
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(0.002)  # acks arrive on the I/O thread; a short poll costs nothing
        return sender.acked_seq >= last_seq

    async def aflush(self, timeout: float | None = None) -> bool:
        """`flush()` for async code; awaits without blocking the event loop."""
        import anyio.to_thread

        return await anyio.to_thread.run_sync(self.flush, timeout, abandon_on_cancel=True)

    def status(self) -> RunStatus:
        """A snapshot of where the run's records are: queued, written, durable, dropped."""
        outbox = self._outbox
        sender = self._sender
        with outbox.lock:
            return RunStatus(
                queued=outbox.appended - outbox.written,
                written=outbox.written,
                durable=outbox.durable,
                sent=0 if sender is None else sender.sent_seq + 1,
                acknowledged=0 if sender is None else sender.acked_seq + 1,
                dropped=outbox.dropped,
                connection=self._mode if sender is None else sender.connection,
                last_error=outbox.last_error or (None if sender is None else sender.last_error),
            )

    def finish(self, exit_code: int | None = None, quiet: bool | None = None) -> None:
        """Flush everything, mark the run finished (failed when ``exit_code`` is not 0)
        and close it; waits at most ``settings.finish_timeout`` seconds. Idempotent."""
        if isinstance(exit_code, bool) or not isinstance(exit_code, (int, type(None))):
            raise UsageError(f"finish(exit_code={exit_code!r}): exit_code must be an int or None")
        state = "finished" if not exit_code else "failed"
        self._finish(state, exit_code, quiet)

    async def afinish(self, exit_code: int | None = None, quiet: bool | None = None) -> None:
        """`finish()` for async code; awaits without blocking the event loop."""
        import anyio.to_thread

        await anyio.to_thread.run_sync(self.finish, exit_code, quiet)

    def _finish(self, state: str, exit_code: int | None, quiet: bool | None) -> None:
        if self._lifecycle is _LIVE:
            hooks, self._before_finish = self._before_finish, []
            for hook in hooks:
                try:
                    hook()
                except Exception:  # mirroring TensorBoard, say: the run still finishes
                    logger.exception("tracker: a step of finishing run %s failed", self._id)
        outbox = self._outbox
        with outbox.lock:
            if self._lifecycle is not _LIVE:
                return
            self._lifecycle = Lifecycle.FINISHING
            if self._pending:
                self._commit_pending()
        for callback in self._on_finish:
            callback()
        if self._console is not None:
            self._console.stop()
        if self._stats is not None:
            self._stats.stop()
        if self._metadata is not None:  # its records and files come before the exit record
            self._metadata.wait(self._settings.finish_timeout)
        stored_again = [] if self._files is None else self._files.store_again()
        deadline = time.monotonic() + self._settings.finish_timeout
        with outbox.lock:
            if self._console is not None:
                for payload in self._console.buffer.take(final=True):
                    self._emit(kinds.CONSOLE, payload)
            for _, record in stored_again:
                self._emit(kinds.FILE, record)
            end = _now()
            self._emit(
                kinds.EXIT,
                {
                    "state": state,
                    "exit_code": exit_code,
                    "end_time": end,
                    "runtime": self._runtime_offset + end - self._start_time,
                    "rows": self._step,
                },
            )
            outbox.closing = True
            if self._writer_done is not None:
                outbox.request_flush()
                outbox.changed.wait_for(
                    lambda: outbox.closed, max(0.0, deadline - time.monotonic())
                )
            waiting = outbox.appended - outbox.written if self._writer_done else 0
            self._lifecycle = Lifecycle.FINISHED
        for target, record in stored_again:
            self._upload(record["name"], target)
        unsent = self._finish_stream(deadline)
        if self._lock_file is not None and not waiting:
            self._lock_file.release()
        if self._run_dir is not None and not self._settings.silent and (not quiet or unsent):
            self._report(state, waiting, unsent)

    def _finish_stream(self, deadline: float) -> int:
        """Wait for the server's acks until ``deadline``; return how many records are unacked."""
        sender = self._sender
        if sender is None:
            return 0
        sender.done.wait(max(0.0, deadline - time.monotonic()))
        if not sender.done.is_set():
            io_thread().loop().call_soon_threadsafe(sender.cancel)
            sender.done.wait(1.0)
        with contextlib.suppress(concurrent.futures.TimeoutError):
            io_thread().submit(sender.aclose()).result(1.0)
        return max(0, self._seq - 1 - sender.acked_seq)

    def _report(self, state: str, waiting: int, unsent: int) -> None:
        lines = [f"tracker: run {self._name} ({self._id}) {state} at step {self._step}"]
        if self._url:
            lines.append(f"tracker: {self._url}")
        lines.append(f"tracker: stored in {self._run_dir}")
        if waiting:
            lines.append(
                f"tracker: {waiting} records could not be written in time "
                f"(finish_timeout={self._settings.finish_timeout}s); "
                f"last error: {self._outbox.last_error}"
            )
        if unsent and self._sender is not None:
            lines.append(
                f"tracker: {unsent} records are not on the server yet (last error: "
                f"{self._sender.last_error}); they are kept on disk. Upload them with:\n"
                f"    tracker sync {self._run_dir}"
            )
        print("\n".join(lines), file=sys.stderr)

    def _after_fork_in_child(self) -> None:
        """In a forked child: refuse further use; the parent still owns the run."""
        outbox = self._outbox
        outbox.lock = threading.Lock()  # the parent's may have been held at fork time
        outbox.changed = threading.Condition(outbox.lock)
        self._lifecycle = Lifecycle.FORKED
        if self._lock_file is not None:
            self._lock_file.release()
        if self._console is not None:
            self._console.remove_in_child()
        if self._stats is not None:
            self._stats.remove_in_child()

    # -- context managers -----------------------------------------------------------

    def __enter__(self) -> Run:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._finish(*exit_state(exc), None)

    async def __aenter__(self) -> Run:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        import anyio.to_thread

        state, code = exit_state(exc)
        await anyio.to_thread.run_sync(self._finish, state, code, None)


def _new_sender(stream: StreamTarget, log_path: Path, settings: Settings, outbox: Outbox) -> Sender:
    from tracker._io._sender import Sender  # aiohttp loads on the I/O thread, as it starts

    return Sender(
        stream,
        log_path,
        -1,
        transport=settings.transport,
        retry_initial=settings.retry_initial_wait_seconds,
        retry_max=settings.retry_max_wait_seconds,
        batch_max_bytes=settings.batch_max_bytes,
        log_complete=lambda: outbox.closed,
    )


def _caller_stacklevel() -> int:
    """The `warnings.warn` stacklevel of the first frame outside this package."""
    package = os.path.dirname(__file__)
    frame: FrameType | None = sys._getframe(1)
    level = 1
    while frame is not None and frame.f_code.co_filename.startswith(package):
        frame = frame.f_back
        level += 1
    return level


def check_tags(value: object, what: str) -> tuple[str, ...]:
    """Validate tags: an iterable of non-empty str of at most 64 characters."""
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise UsageError(
            f"{what} must be a list or tuple of str, e.g. ('baseline',), not {value!r}"
        )
    tags = tuple(value)
    for tag in tags:
        if not isinstance(tag, str) or not tag.strip() or len(tag) > MAX_TAG_CHARS:
            raise UsageError(
                f"{what}: {tag!r} is not a valid tag; a tag is a non-empty str of at most "
                f"{MAX_TAG_CHARS} characters"
            )
    return tuple(dict.fromkeys(tags))


def _check_row(data: Any) -> dict[str, Any]:
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise UsageError(
            f"log() takes a dict of str keys, e.g. run.log({{'loss': 0.1}}); "
            f"got {type(data).__name__}"
        )
    if len(data) > MAX_ROW_KEYS:
        raise UsageError(
            f"log(): the row has {len(data)} keys; a row holds at most {MAX_ROW_KEYS} (each "
            "key is a series the server keeps): log a big collection as one value (a list), "
            "as a file with run.save(), or over several steps"
        )
    for key in data:
        if not isinstance(key, str):
            raise UsageError(
                f"log(): key {key!r} has type {type(key).__name__}; keys must be str "
                "(convert it, e.g. str(key))"
            )
        if key in RESERVED_KEYS:
            raise _reserved_key_error(data)
    return dict(data)


def _reserved_key_error(data: Mapping[str, Any]) -> UsageError:
    key = next(key for key in RESERVED_KEYS if key in data)
    return UsageError(
        f"log(): key {key!r} is reserved (every row carries _step, _timestamp and _runtime); "
        "rename it, or pass the step as log(data, step=...)"
    )


class DisabledRun(Run):
    """A Run of ``mode="disabled"``: the same API, nothing written, every call a cheap no-op."""

    def log(
        self,
        data: dict[str, Any] | None = None,
        step: int | None = None,
        commit: bool | None = None,
    ) -> None:
        """Do nothing: the run is disabled."""

    async def alog(
        self,
        data: dict[str, Any] | None = None,
        step: int | None = None,
        commit: bool | None = None,
    ) -> None:
        """Do nothing: the run is disabled."""

    def save(
        self,
        glob_str: str | os.PathLike[str],
        base_path: str | os.PathLike[str] | None = None,
        policy: str = "live",
    ) -> list[str]:
        """Store nothing: the run is disabled."""
        return []

    def _emit(self, kind: str, payload: Any) -> None:
        """Write nothing: the run is disabled."""

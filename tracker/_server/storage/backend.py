"""The primitives a database provides to the store, and the contract between them.

`tracker._server.storage.store.Store` owns every rule (start modes, fork and rewind, the
ingest algorithm, series maintenance, sampling, filters, validation); a `Backend` only
stores and reads, through the primitives below. Every primitive is a coroutine, so a
backend on a blocking driver (SQLite) runs it in threads of its own and one on an async
driver (asyncpg) awaits it. User values cross this interface exactly encoded as JSON text
(`tracker._records.codec.encode_value` without its newline): the store encodes and
decodes, so every backend stores the same bytes and refuses the same values.

The contract:

- **Transactions.** `Backend.write` opens a write transaction: everything done through
  its `Writer` commits together when the block ends, or not at all when it raises (the
  store raises *before* writing whenever it can: a refused request changes nothing).
  `Backend.ingest_batch` is one write transaction of its own, the hot path: it loads the
  run, lets the store decide (a pure function, which may refuse), appends the batch to
  the row log as received, stores the log's seq and commits, in one round trip to the
  database where the driver allows. `Backend.compact` is one write transaction too: it
  hands the store the first logged batches of one run (about ``budget`` bytes), stores
  the rows, series and fields the store folded from them and drops (or advances) those
  entries. `Backend.read` opens a read: its `Reader` sees one committed snapshot, never
  a write in progress, whatever is committed meanwhile.
- **The row log.** Every acknowledged batch is kept, as received, in an append-only
  log per run, keyed by the run and the seq range it holds, in the order of the acks
  (`LoggedBatch`); nothing else reads the batch's records until the store's compactor
  folds them into the history rows, the series and the run's fields. A run's stored
  rows, series and fields are therefore those of its *compacted* batches; the store
  merges each read with the run's logged tail (`Reader.read_log`), so a read right
  after an ack sees the batch. A logged entry the store could not fold is set aside
  (kept, with its error, never read again). `Writer.copy_history`, `move_history` and
  `rebuild_series` see compacted data only: the store compacts a run's whole tail first.
- **Order.** The store runs every write of one run (its start, ingest, heartbeat, edits)
  under a per-run lock, in the order the calls are made (an `asyncio.Lock` is FIFO): two
  ingest calls for one run are applied in call order, and each ingest batch is one write
  transaction. A backend may rely on that within one server process, and must itself
  make write transactions on one run exclude each other across processes: SQLite has
  one writer at a time; PostgreSQL replicas lock the run's row (``SELECT ... FOR
  UPDATE`` in `Reader.load_run` inside a write) so a live stream and a ``tracker sync``
  on two replicas cannot lose each other's summary updates. Writes of different runs may
  run at once. `Writer.mark_crashed` touches many runs: one statement, atomic.
- **What a backend may assume.** Arguments are valid (the store checks them): keys are
  names, steps integers within `tracker._wire.limits.MAX_STEP`, texts exact JSON, chunks
  well formed and, per key, not overlapping. Within a transaction a read sees the
  transaction's own writes; the order of writes within one transaction is the order of
  the calls.
- **What a backend must guarantee.** A write that returned is durable once the
  transaction committed (the store acknowledges a batch only then); errors of the driver
  become `tracker._server.storage.errors` (`StorageBusy` when locked, `StorageFailed`
  otherwise; `StorageClosed` after `close`); nothing is read from or written to another
  run than the one named.
- **Files.** A file arrives as a `tracker._server.storage.spool.SpooledFile` (on disk, its
  size and SHA-256 known) and is stored and read back in chunks of
  `tracker._server.storage.spool.FILE_CHUNK_BYTES`, so neither an upload nor a download
  ever holds a whole file in memory (a backend that keeps everything in memory, the
  memory backend, holds its bytes). A replaced file's chunks are all replaced in the
  transaction that replaces it.
- **Streams.** Records of a stream kind (`tracker._records.kinds.STREAMS`: ``system``,
  ``console``) are kept per run and stream name, apart from the history: an ingest batch
  appends them (`BatchWrites.streams`) in its transaction, each taking its stream's next
  seq (0, 1, 2, ... in the order stored, whichever of the run's logs sent it), and
  `Reader.read_stream` reads a stretch of one. A fork does not copy them, a rewind keeps
  them (they have times, not steps), `Writer.delete_run` deletes them.
- **Changes.** A backend shared by several server processes may tell them which runs
  changed (`Notifier`); an announcement is a hint to read again, never data: a process
  that misses one (not listening yet, reconnecting) finds the change on its next read.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeAlias, TypedDict, runtime_checkable

from tracker._server.storage.document import FileInfo, ProjectInfo, RunDocument, RunKey
from tracker._server.storage.filters import RunQuery
from tracker._server.storage.series import Chunk, SeriesColumns
from tracker._server.storage.spool import SpooledFile
from tracker._wire.limits import MAX_STEP

__all__ = [
    "Backend",
    "BatchWrites",
    "CompactWrites",
    "LoggedBatch",
    "Notifier",
    "Reader",
    "RunFields",
    "StoredRow",
    "StoredRun",
    "StreamAppend",
    "StreamEntry",
    "StreamSpan",
    "Writer",
]


class RunFields(TypedDict, total=False):
    """The run fields a write may set (`Writer.update_run`), every one of them in a
    `StoredRun`; user values as exact text."""

    name: str | None
    state: str
    config: str
    summary: str
    summary_state: str
    """`tracker._records.summary.Summary.to_state`, what the next batch continues."""
    metadata: str
    tags: list[str]
    group: str | None
    job_type: str | None
    notes: str | None
    created_at: float
    updated_at: float
    heartbeat_at: float
    heartbeat_interval: float
    end_time: float | None
    exit_code: int | None
    last_step: int
    runtime: float
    session_start: float
    runtime_offset: float
    parent_run_id: str | None
    parent_step: int | None


class StoredRun(RunFields):
    """A run as stored: ``pk`` names it in the other primitives; every `RunFields` field is
    present (a backend fills them all), user values exact text."""

    pk: int
    entity: str
    project: str
    run_id: str
    acked_seq: int
    """The highest stored seq of the log `Reader.load_run` was asked about, -1 when none."""
    sessions: list[list[Any]]
    """That log's writer sessions stored so far: ``[first seq, session]`` pairs."""


@dataclass(frozen=True)
class LoggedBatch:
    """A batch in the row log: acknowledged, not yet (wholly) compacted."""

    first_seq: int
    """The seq of its first record not yet compacted."""
    last_seq: int
    """The last seq its records stand for."""
    body: bytes
    """Its record lines as received (each ending ``\\n``), from the first not yet compacted."""
    received_at: float
    """When it was acknowledged (unix seconds)."""
    entry: int = 0
    """Its place in the log, increasing with each ack (over all runs); the backend sets it."""


StreamAppend: TypeAlias = tuple[str, float, str]
"""A stream record to store: its stream's name, its time (unix seconds), its payload as
exact text."""
StreamEntry: TypeAlias = tuple[int, float, str]
"""A stream record as stored: its seq in the stream, its time, its payload as exact text."""


@dataclass(frozen=True)
class StreamSpan:
    """Which records of a stream `Reader.read_stream` returns: those with ``after < seq <
    before`` and ``start <= time <= end``; of them the first ``limit`` in seq order, or
    with ``newest`` the last ``limit`` (still in seq order)."""

    limit: int
    after: int = -1
    before: int = MAX_STEP
    start: float = -math.inf
    end: float = math.inf
    newest: bool = False


@dataclass
class BatchWrites:
    """What an acknowledged batch stores, as the store decided it (`Backend.ingest_batch`)."""

    pk: int
    acked_seq: int
    """The log's highest stored seq once the batch is stored."""
    fields: RunFields
    """The run fields the ack sets (heartbeat, a crashed run running again)."""
    logged: list[LoggedBatch] = field(default_factory=list)
    """The batch's new records, appended to the run's row log in this order: in pieces of
    about `tracker._server.storage.rowlog.COMPACT_BYTES` of whole lines, so a compaction
    step reads each once (empty: all were stored)."""
    sessions: list[list[Any]] | None = None
    """The log's writer sessions once the batch is stored (None: unchanged)."""
    streams: list[StreamAppend] = field(default_factory=list)
    """Stream records to append in order, each at its stream's next seq (stored with the
    ack: the compactor leaves them alone)."""


@dataclass
class CompactWrites:
    """What one compaction step stores, as the store folded it (`Backend.compact`)."""

    pk: int
    fields: RunFields
    """The run fields the folded records set."""
    steps: list[int] = field(default_factory=list)
    stamps: list[float] = field(default_factory=list)
    runtimes: list[float] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    """History rows to store in order (a later row of a step replaces it)."""
    appended: SeriesColumns = field(default_factory=dict)
    """Series entries above every stored step, appended to each key's last chunk and new
    ones (`tracker._server.storage.series.appended_chunks`)."""
    rebuild: tuple[int, int] | None = None
    """A step range whose series to rebuild from the rows (`Writer.rebuild_series`)."""
    done: list[int] = field(default_factory=list)
    """Log entries (`LoggedBatch.entry`) folded whole: dropped from the log."""
    advanced: tuple[int, int, int] | None = None
    """A log entry folded in part: (entry, its new first seq, bytes of its body folded)."""
    failed: list[tuple[int, str]] = field(default_factory=list)
    """Log entries that cannot be folded, with the reason: set aside, never read again."""


StoredRow: TypeAlias = tuple[int, float, float, str]
"""A history row as stored: step, timestamp, runtime, its data as exact text (empty when
not asked for). A plain tuple: reads of a million rows build a million of them."""


class Reader(Protocol):
    """Reads within one snapshot (or within a write transaction, seeing its writes)."""

    async def load_run(self, key: RunKey, log_id: str | None = None) -> StoredRun | None:
        """The run, with the highest stored seq of its log ``log_id`` when given, or None
        (inside a write: the run is locked until commit)."""

    async def read_rows(self, pk: int, low: int, high: int) -> list[StoredRow]:
        """The rows with ``low <= step <= high``, in step order."""

    async def rows_at(self, pk: int, steps: Sequence[int], data: bool) -> list[StoredRow]:
        """The rows at ``steps`` (those that exist), in step order; ``data`` or not."""

    async def count_rows(self, pk: int, low: int, high: int) -> int:
        """How many rows have ``low <= step <= high``."""

    async def series_keys(self, pk: int) -> list[str]:
        """The keys the run's series hold, sorted."""

    async def read_chunks(
        self, pk: int, keys: Sequence[str], low: int, high: int
    ) -> dict[str, list[Chunk]]:
        """Per key, its chunks overlapping ``[low, high]`` in step order (keys holding
        none are left out)."""

    async def chunk_spans(self, pk: int, low: int, high: int) -> dict[str, tuple[int, int]]:
        """Per key, the first and last step of its chunks overlapping ``[low, high]``."""

    async def read_log(self, pk: int) -> list[LoggedBatch]:
        """The run's logged batches not yet compacted (nor set aside), in ack order."""

    async def logged_runs(self) -> list[tuple[int, RunKey]]:
        """The runs whose row log holds batches not yet compacted (nor set aside): pk and
        key, the run with the oldest such batch first (the compactor resumes with these)."""

    async def page_runs(self, query: RunQuery) -> tuple[list[RunDocument], int]:
        """The documents (`tracker._server.storage.stored.run_document`, made where it is
        cheapest: a page of 100 costs ~0.3 ms) of one page of the runs matching ``query``,
        in its order, and how many match."""

    async def read_stream(self, pk: int, stream: str, span: StreamSpan) -> list[StreamEntry]:
        """The records of the run's stream ``stream`` within ``span``, in seq order."""

    async def list_projects(self, entity: str) -> list[ProjectInfo]:
        """The entity's projects by name."""

    async def list_files(self, pk: int) -> list[FileInfo]:
        """The run's files by name."""

    async def read_file(
        self, pk: int, name: str, first: int, count: int
    ) -> tuple[FileInfo, list[bytes]] | None:
        """The file's info and its chunks ``first`` to ``first + count - 1`` (chunk ``i``
        holds bytes ``i * FILE_CHUNK_BYTES`` on, fewer chunks past the end), or None when the
        run has no such file."""

    async def key_entity(self, digest: str) -> str | None:
        """The entity of the API key whose SHA-256 is ``digest``, or None."""

    async def has_api_keys(self) -> bool:
        """Whether any API key is stored."""


class Writer(Reader, Protocol):
    """Writes within one transaction (see the module's contract)."""

    async def create_run(self, key: RunKey, fields: RunFields) -> int:
        """Create the run (and its project) with ``fields`` (every one given); its pk."""

    async def delete_run(self, pk: int) -> None:
        """Delete the run with its rows, series, logs' seqs, row log, streams and files."""

    async def update_run(self, pk: int, fields: RunFields) -> None:
        """Set the given fields of the run."""

    async def rebuild_series(self, pk: int, low: int, high: int) -> None:
        """Recompute from the stored rows every series entry in ``[low, high]`` (and the
        whole of each chunk overlapping it): the chunks of
        `tracker._server.storage.series.rebuilt_chunks` replace those overlapping it."""

    async def copy_history(self, source: int, target: int, through_step: int) -> None:
        """Copy the rows with step <= ``through_step``, and the chunks ending there or
        before, from run ``source`` to run ``target`` (a fork)."""

    async def move_history(self, source: int, target: int, after_step: int) -> None:
        """Move the rows with step > ``after_step``, and the chunks starting after it, from
        run ``source`` to run ``target`` (a rewind's archive)."""

    async def touch_heartbeat(self, key: RunKey, now: float) -> bool:
        """Note the run's client is alive at ``now`` (a crashed run is running again);
        False when the run does not exist."""

    async def mark_crashed(self, now: float, intervals: float, at_least: float) -> int:
        """Mark running runs silent for ``intervals`` heartbeat intervals (and at least
        ``at_least`` seconds) as crashed, updated at ``now``; how many. A run whose row log
        holds batches not yet compacted is left for a later sweep (they may finish it)."""

    async def put_file(self, pk: int, name: str, content: SpooledFile, now: float) -> None:
        """Store a file of the run (its size and SHA-256 those of ``content``), replacing
        one of the same name and all its chunks; ``content`` stays open until the
        transaction ends."""

    async def put_api_key(self, digest: str, entity: str, now: float) -> None:
        """Let the key whose SHA-256 is ``digest`` act as ``entity`` (replacing a binding)."""


@runtime_checkable
class Notifier(Protocol):
    """A backend that tells the server processes sharing its database which runs changed
    (PostgreSQL's LISTEN/NOTIFY), so their live streams need not poll; one that is not
    leaves them to their timers."""

    @property
    def hearing(self) -> bool:
        """Whether the other processes' announcements reach this one now."""

    async def announce(self, keys: list[RunKey]) -> None:
        """Tell the other processes that the runs ``keys`` changed."""

    async def listen(self, heard: Callable[[RunKey], None]) -> None:
        """From now on call ``heard`` with each run another process announces (reconnecting
        when the connection is lost) until the backend closes."""


class Backend(Protocol):
    """A database the store runs on."""

    def check(self) -> None:
        """Raise `StorageLost` when the database is no longer the one opened (its file
        deleted or replaced); cheap (a ``stat``), called before each transaction and by
        the health check. A database that is not a file never raises."""

    @property
    def spool_dir(self) -> str:
        """The folder uploads are spooled in before they are stored (`SpooledFile`): beside
        the database when it is a file, so an upload never fills a RAM-backed ``/tmp``."""

    def write(self) -> AbstractAsyncContextManager[Writer]:
        """A write transaction (see the module's contract)."""

    async def ingest_batch(
        self, key: RunKey, log_id: str, decide: Callable[[StoredRun | None], BatchWrites]
    ) -> BatchWrites:
        """In one write transaction: load the run with the seq of its log ``log_id``, call
        ``decide`` on it (None: no such run), store what it returns (the batch appended to
        the row log, stream records, the log's seq and sessions, the run's fields) and
        commit; return the decision. When ``decide`` raises, nothing is stored and the
        error propagates."""

    async def compact(
        self,
        pk: int,
        budget: int,
        fold: Callable[[StoredRun, list[LoggedBatch]], CompactWrites],
    ) -> CompactWrites | None:
        """In one write transaction: load the run ``pk`` and its first logged batches (in
        ack order, as many as hold about ``budget`` bytes of body, at least one; none set
        aside), call ``fold`` on them, store what it returns (rows, series entries and
        rebuild, the run's fields; the entries done dropped, the one advanced advanced,
        the failed set aside) and commit; return it. None, and nothing written, when the
        run is gone or its log holds nothing to compact."""

    def read(self) -> AbstractAsyncContextManager[Reader]:
        """A read of one committed snapshot."""

    async def close(self) -> None:
        """Finish what is in flight and release the database; later calls raise
        `StorageClosed`. Closing twice is harmless."""

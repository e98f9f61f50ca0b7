"""What the storage refuses or fails at, grouped by what the caller can do about it.

No error here knows HTTP: the app maps each one to a status (`tracker._server._app`).

::

    StorageError            a stable ``code`` and a message saying what to do
    ├── Refused             the request cannot be applied as asked: change it
    │   ├── BadRequest      an argument or a batch is malformed (its ``code`` says which)
    │   ├── RunNotFound     the run (or a fork's parent) does not exist
    │   ├── RunExists       the run exists and the request needs a new one
    │   ├── BadStep         a fork or rewind step beyond the run's last step
    │   ├── SeqGap          a batch starts past the log's stored seq: resend from ``acked_seq + 1``
    │   └── LogConflict     two copies of one run log, resumed apart: one is stored, not both
    ├── Unavailable         nothing was changed: try again later
    │   ├── StorageBusy     the database is locked by another process
    │   ├── StorageClosed   the storage was closed (the server is stopping)
    │   ├── FileReplaced    a file changed while it was read: read it again
    │   └── StorageLost     the database file was deleted or replaced: restore it, restart
    └── StorageFailed       the database failed: look at the server's disk and log
        └── SchemaTooNew    the database was written by a newer tracker
"""

from __future__ import annotations

from typing import Literal

__all__ = [
    "BadRequest",
    "BadStep",
    "FileReplaced",
    "LogConflict",
    "Refused",
    "RunExists",
    "RunNotFound",
    "SchemaTooNew",
    "SeqGap",
    "StorageBusy",
    "StorageClosed",
    "StorageError",
    "StorageFailed",
    "StorageLost",
    "Unavailable",
]

BadRequestCode = Literal[
    "bad_batch", "bad_filter", "bad_order", "bad_request", "too_many_keys", "unknown_stream"
]


class StorageError(Exception):
    """Base of every storage error: ``code`` is stable, ``message`` says what to do."""

    code: str = "storage_error"

    def __init__(self, message: str) -> None:
        """Describe the problem and what to do about it."""
        super().__init__(message)
        self.message = message


class Refused(StorageError):
    """The request cannot be applied as asked; nothing was changed."""


class BadRequest(Refused):
    """A malformed argument or batch; ``code`` says which kind (e.g. ``bad_filter``)."""

    def __init__(self, code: BadRequestCode, message: str) -> None:
        """Name the kind of argument that is wrong and what to send instead."""
        super().__init__(message)
        self.code = code


class RunNotFound(Refused):
    """The run does not exist (or a fork's parent, or a run to rewind)."""

    code = "run_not_found"


class RunExists(Refused):
    """The run exists, and the request (mode ``never``, a fork) needs a new id."""

    code = "run_exists"


class BadStep(Refused):
    """A fork or rewind step beyond the run's last step."""

    code = "bad_step"


class SeqGap(Refused):
    """A batch whose first new record is past ``acked_seq + 1``: resend from there."""

    code = "seq_gap"

    def __init__(self, message: str, acked_seq: int) -> None:
        """Say where the log stands: ``acked_seq`` is the highest stored seq."""
        super().__init__(message)
        self.acked_seq = acked_seq


class LogConflict(Refused):
    """A log's writer sessions differ from those stored for it: a copy of the run directory
    was resumed apart from the copy the server has (Kafka fences such a second producer
    with its epoch; a session's ``start_time`` is ours)."""

    code = "log_conflict"


class Unavailable(StorageError):
    """Nothing was changed and trying again later can help."""


class StorageBusy(Unavailable):
    """Another process holds the database's lock."""

    code = "storage_busy"


class StorageClosed(Unavailable):
    """The storage is closed: the server is stopping or restarting."""

    code = "storage_closed"


class FileReplaced(Unavailable):
    """A file was replaced or deleted while its chunks were read: read it again."""

    code = "file_replaced"


class StorageLost(Unavailable):
    """The database file was deleted or replaced while the server had it open: writes are
    refused (they would go to a file nobody will open again) until the file is restored
    and the server restarted."""

    code = "storage_lost"


class StorageFailed(StorageError):
    """The database failed (disk, corruption, not a database)."""

    code: str = "storage_error"


class SchemaTooNew(StorageFailed):
    """The database's schema is newer than this tracker knows: upgrade tracker."""

    code = "schema_too_new"

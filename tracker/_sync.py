"""Uploading run directories to a server: `tracker sync`, and `tracker.login()`.

Sync streams a run log from the server's acknowledged sequence number on, over
HTTP, with the same sender that live runs use; the server ignores records it
already has, so syncing twice, or a run that streamed fine, stores nothing twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tracker._errors import Error, UsageError
from tracker._names import check_run_id, local_file
from tracker._reader import StoredRun
from tracker._rundir import FILES_DIR, LOG_NAME, RUNS_FOLDER, resolve_run_path
from tracker._runlog import Damage
from tracker._settings import Settings, resolve_settings, write_settings_file
from tracker._wire.errors import TransportError, public_error
from tracker._wire.protocol import handshake_body

__all__ = ["SyncReport", "login", "run_dirs_under", "sync_run_dir"]


@dataclass(frozen=True)
class SyncReport:
    """What one sync did: the run, its URL, records already stored and now sent, files,
    and the damaged stretches of the run log whose records were lost (`tracker.StoredRun`)."""

    path: str
    url: str | None
    records: int
    already_stored: int
    files: int
    damage: tuple[Damage, ...] = ()

    @property
    def records_lost(self) -> int:
        """Records the damage held, which no server will ever have."""
        return sum(damage.records_lost for damage in self.damage)


def run_dirs_under(path: Path) -> list[Path]:
    """``path`` itself when it is a run directory (or its files folder, ``run.dir``), else
    the run directories inside it (or inside its `RUNS_FOLDER`, for the ``dir`` of an
    init)."""
    if (path / LOG_NAME).is_file():
        return [path]
    if path.name == FILES_DIR and (path.parent / LOG_NAME).is_file():
        return [path.parent]
    if (path / RUNS_FOLDER).is_dir():
        path = path / RUNS_FOLDER
    found = sorted(
        child
        for child in path.glob("*run-*")
        if child.is_dir() and not child.is_symlink() and (child / LOG_NAME).is_file()
    )
    if not found:
        raise UsageError(f"{path} holds no run directory (no {LOG_NAME} in it or below it)")
    return found


def sync_run_dir(run_dir: Path, settings: Settings, run_id: str | None = None) -> SyncReport:
    """Upload what the server lacks of one run directory (or its files folder), and its
    files; ``run_id`` uploads it as that run instead of its own (a copy of a run directory
    resumed apart from the one the server has is refused as its run: `LogConflict`).

    Raises:
        UsageError: not a run directory, or no server configured.
        AuthenticationError: the server refused the key.
        CommError: the server could not be reached or failed.
    """
    from tracker._io._handshake import handshake_now
    from tracker._io._sender import Sender, StreamTarget
    from tracker._io._thread import io_thread

    if settings.base_url is None:
        raise UsageError(
            "no server configured; pass --base-url, set TRACKER_BASE_URL, or run `tracker login`"
        )
    run_dir = resolve_run_path(run_dir)
    stored = StoredRun(run_dir)
    log_id = stored.metadata.get("log_id")
    if not isinstance(log_id, str):
        raise UsageError(f"{run_dir} was written by a version of tracker that sync cannot read")
    entity = stored.entity if stored.metadata.get("entity_given") else settings.entity
    run_id = stored.id if run_id is None else check_run_id(run_id, "--run-id")
    sessions = tuple((int(seq), str(session)) for seq, session in stored.fold.sessions)
    body = handshake_body(
        entity=entity,
        project=stored.project,
        run_id=run_id,
        log_id=log_id,
        mode="continue",
        heartbeat_interval=settings.heartbeat_interval,
        sessions=sessions,
    )
    try:
        answer = handshake_now(
            settings.base_url,
            settings.api_key,
            body,
            settings.init_timeout,
            settings.retry_initial_wait_seconds,
            settings.retry_max_wait_seconds,
        )
    except TransportError as exc:
        raise _public_error(exc, settings.base_url) from None
    already = int(answer["acked_seq"]) + 1
    target = StreamTarget(
        settings.base_url,
        settings.api_key,
        str(answer["entity"]),
        str(answer["project"]),
        run_id,
        log_id,
        settings.heartbeat_interval,
        sessions,
    )
    sender = Sender(
        target,
        run_dir / LOG_NAME,
        already - 1,
        transport="http",
        retry_initial=settings.retry_initial_wait_seconds,
        retry_max=settings.retry_max_wait_seconds,
        batch_max_bytes=settings.batch_max_bytes,
        log_complete=lambda: True,
    )
    files = stored.files()
    for file in files:
        sender.upload(file.name, local_file(run_dir / FILES_DIR, file.name))
    thread = io_thread()
    try:
        thread.submit(sender.run()).result()
    finally:
        thread.submit(sender.aclose()).result()
    if sender.fatal is not None:
        raise _public_error(sender.fatal, settings.base_url)
    return SyncReport(
        path=f"{target.entity}/{target.project}/{target.run_id}",
        url=answer.get("url"),
        records=sender.acked_seq + 1 - already,
        already_stored=already,
        files=len(files),
        damage=stored.damage,
    )


def login(base_url: str | None = None, api_key: str | None = None) -> str:
    """Check the key against the server and save both in the settings file.

    Returns:
        The entity the key acts as.

    Raises:
        UsageError: no server given or configured.
        AuthenticationError: the server refused the key.
        CommError: the server could not be reached.
    """
    from tracker._api import Api

    settings = resolve_settings({"base_url": base_url, "api_key": api_key})
    if settings.base_url is None:
        raise UsageError("login(): pass base_url=... (the address `tracker server` printed)")
    entity = Api(settings.base_url, settings.api_key).default_entity
    values: dict[str, str | int | float | bool] = {"base_url": settings.base_url}
    if settings.api_key:
        values["api_key"] = settings.api_key
    write_settings_file(values)
    return entity


def _public_error(exc: TransportError, where: str) -> Error:
    return public_error(exc, "tracker sync", where, "the run stays on disk: try again later")

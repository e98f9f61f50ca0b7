"""Starting a run once `init()` has checked its arguments: disabled, offline or online.

Each path resolves the run's identity the same way (`_identity`: arguments and settings
first, then what the stored run holds, then defaults) and hands the `Run` a `RunStart`.
Offline, the resume plan is carried out against the run directories; online, the server
carries it out in the handshake.
"""

from __future__ import annotations

import re
import sys
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import __main__
from tracker._config import Config
from tracker._errors import UsageError
from tracker._metadata import process_fields
from tracker._names import new_run_id, new_run_name
from tracker._records.summary import Summary
from tracker._resume import ResumePlan, plan_resume, stored_run_to_resume
from tracker._run import DisabledRun, Run, RunIdentity, RunStart
from tracker._rundir import (
    clear_resume_marker,
    create_run_dir,
    runs_root,
    write_resume_marker,
)
from tracker._settings import Settings
from tracker._wire.errors import TransportError, public_error
from tracker._wire.protocol import handshake_body

__all__ = ["StartOptions", "default_project", "notice", "start_run"]


@dataclass(frozen=True)
class StartOptions:
    """The `init()` arguments that shape how a run starts but are not settings."""

    allow_val_change: bool = False
    force: bool = False
    fork_from: str | None = None
    resume_from: str | None = None
    anonymous: str | None = None


def start_run(settings: Settings, config: dict[str, Any], options: StartOptions) -> Run:
    """Start the run ``settings`` describe (its mode decided here).

    Raises:
        UsageError: ``force`` without a server, a resume rule that does not hold, or a
            fork or rewind offline.
        AuthenticationError, CommError: the server refused the key or cannot be reached.
    """
    mode = settings.mode or ("online" if settings.base_url else "offline")
    if mode == "disabled":
        Config().update(config)  # a disabled run refuses what an enabled one would
        identity = _identity(
            settings, new_run_id(), settings.project or "uncategorized", "local", {}
        )
        start = RunStart("disabled", None, config, options.allow_val_change)
        return DisabledRun(settings, identity, start)
    no_server = settings.base_url is None and settings.mode != "offline"
    if no_server and options.force:
        raise UsageError(
            "init(force=True): no server configured; set TRACKER_BASE_URL, pass "
            "settings={'base_url': ...}, or run `tracker login`"
        )
    root = runs_root(settings.root_dir)
    plan = plan_resume(settings, root, options.fork_from, options.resume_from)
    if mode == "online" and not no_server:
        run = _start_online(settings, root, plan, config, options)
    else:
        run = _start_offline(settings, root, plan, config, options, no_server)
    write_resume_marker(root, run.id)
    run._on_finish.append(lambda: clear_resume_marker(root, run.id))
    return run


def _start_offline(
    settings: Settings,
    root: Path,
    plan: ResumePlan,
    config: dict[str, Any],
    options: StartOptions,
    no_server: bool,
) -> Run:
    if plan.mode in ("fork", "rewind"):
        label = "fork_from" if plan.mode == "fork" else "resume_from"
        raise UsageError(
            f"init({label}=...) needs a tracker server, which holds the parent run's history; "
            "set TRACKER_BASE_URL (offline runs cannot be forked or rewound)"
        )
    stored = stored_run_to_resume(plan, root)
    project = settings.project or (stored.project if stored else None) or default_project()
    if stored is not None and project != stored.project:
        raise UsageError(
            f"init(project={project!r}): run {plan.run_id} belongs to project "
            f"{stored.project!r}; resume it in its own project, or start a new run with "
            "another id"
        )
    merged = Config(allow_val_change=options.allow_val_change)
    if stored is not None:
        merged.update(stored.config, allow_val_change=True)
    merged.update(config)
    if no_server:
        notice(
            settings,
            f"tracker: no server configured; logging offline to {root} "
            "(set TRACKER_BASE_URL or run `tracker login` to stream runs)",
        )
    if stored is None:
        identity = _identity(settings, plan.run_id, project, settings.entity or "local", {})
        metadata = {
            "created_at": time.time(),
            "log_id": uuid.uuid4().hex,
            "entity_given": settings.entity is not None,
            **process_fields(),
        }
        run_dir = create_run_dir(root, plan.run_id, time.time(), offline=True)
        return Run(
            settings,
            identity,
            RunStart("offline", run_dir, merged.as_dict(), options.allow_val_change, metadata),
        )
    resumed: dict[str, Any] = {
        "resumed": True,
        "runtime_offset": stored.runtime,
        **process_fields(),
    }
    if "log_id" not in stored.metadata:
        resumed["log_id"] = uuid.uuid4().hex
    identity = _identity(
        settings, plan.run_id, project, settings.entity or stored.entity or "local", stored.metadata
    )
    start = RunStart(
        "offline",
        stored.dir,
        merged.as_dict(),
        options.allow_val_change,
        resumed,
        resumed=True,
        start_step=stored.last_step + 1,
        start_seq=stored.next_seq,
        summary=stored.fold.summary,
        log_offset=stored.log_end,
    )
    return Run(settings, identity, start)


def _start_online(
    settings: Settings,
    root: Path,
    plan: ResumePlan,
    config: dict[str, Any],
    options: StartOptions,
) -> Run:
    """Handshake with the server (retried up to ``init_timeout``), then start a streaming run."""
    from tracker._io._handshake import handshake_now
    from tracker._io._sender import StreamTarget

    assert settings.base_url is not None, "start_run goes online only with a server"
    log_id = uuid.uuid4().hex
    body = handshake_body(
        entity=settings.entity,
        project=settings.project or default_project(),
        run_id=plan.run_id,
        log_id=log_id,
        mode=plan.mode,
        heartbeat_interval=settings.heartbeat_interval,
        fork_from=plan.fork_from,
        rewind_to=plan.rewind_to,
    )
    api_key = None if options.anonymous == "must" else settings.api_key
    try:
        answer = handshake_now(
            settings.base_url,
            api_key,
            body,
            settings.init_timeout,
            settings.retry_initial_wait_seconds,
            settings.retry_max_wait_seconds,
        )
    except TransportError as exc:
        raise public_error(
            exc,
            "init()",
            settings.base_url,
            f"tried for init_timeout={settings.init_timeout}s. Check that `tracker server` "
            "runs there, or pass mode='offline' and upload later with `tracker sync`",
        ) from None
    stored: dict[str, Any] = answer["run"]
    resumed = bool(answer["resumed"])
    merged = Config(allow_val_change=options.allow_val_change)
    if resumed or plan.mode == "fork":
        merged.update(stored.get("config") or {}, allow_val_change=True)
    merged.update(config)
    entity, project = str(answer["entity"]), str(answer["project"])
    summary = None
    if resumed and stored.get("summary"):
        summary = Summary()
        summary.apply_set(stored["summary"])
    start = RunStart(
        "online",
        create_run_dir(root, plan.run_id, time.time(), offline=False),
        merged.as_dict(),
        options.allow_val_change,
        {
            "created_at": time.time(),
            "log_id": log_id,
            "entity_given": True,
            "resumed": resumed,
            **process_fields(),
        },
        resumed=resumed,
        start_step=int(answer["last_step"]) + 1,
        summary=summary,
        stream=StreamTarget(
            settings.base_url,
            api_key,
            entity,
            project,
            plan.run_id,
            log_id,
            settings.heartbeat_interval,
        ),
        url=answer.get("url"),
    )
    return Run(settings, _identity(settings, plan.run_id, project, entity, stored), start)


def _identity(
    settings: Settings, run_id: str, project: str, entity: str, stored: Mapping[str, Any]
) -> RunIdentity:
    """The run's identity: what init and settings say, else what the stored run holds
    (``stored``: its metadata or run document; empty for a new run), else defaults."""
    return RunIdentity(
        id=run_id,
        name=settings.run_name or stored.get("name") or new_run_name(),
        project=project,
        entity=entity,
        group=settings.run_group or stored.get("group"),
        job_type=settings.run_job_type or stored.get("job_type"),
        tags=settings.run_tags or tuple(stored.get("tags") or ()),
        notes=settings.run_notes or stored.get("notes"),
    )


def default_project() -> str:
    """The project when none is given: the git root's folder, else the script's name."""
    here = Path.cwd()
    name = None
    for folder in (here, *here.parents):
        if (folder / ".git").exists():
            name = folder.name
            break
    else:
        script = getattr(__main__, "__file__", None)
        name = Path(script).stem if script else None
    cleaned = re.sub(r"[/\\#?%:;,'\s]+", "-", name or "").strip("-.")[:128]
    return cleaned or "uncategorized"


def notice(settings: Settings, line: str) -> None:
    """Print one line of tracker's to stderr, unless the settings ask for silence."""
    if not settings.silent:
        print(line, file=sys.stderr)

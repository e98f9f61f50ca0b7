"""`tracker.init()` and `tracker.ainit()`: check every argument, resolve settings, start a Run.

Everything the user passed is checked before anything is created, so a bad
argument leaves no directory behind.
"""

from __future__ import annotations

import argparse
import functools
import os
import re
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import __main__
from tracker import _process
from tracker._config import Config, load_config_source
from tracker._errors import AuthenticationError, CommError, UsageError
from tracker._magic import capture_argparse
from tracker._names import check_run_id, new_run_id, new_run_name
from tracker._reader import StoredRun
from tracker._redact import redact_argv
from tracker._run import DisabledRun, Run, check_tags
from tracker._rundir import (
    clear_resume_marker,
    create_run_dir,
    find_run_dirs,
    read_resume_marker,
    write_resume_marker,
)
from tracker._settings import Settings, resolve_settings

__all__ = ["ainit", "finish", "init", "log"]

_REINIT: Final = {
    None: "return_previous",
    False: "return_previous",
    True: "finish_previous",
    "return_previous": "return_previous",
    "finish_previous": "finish_previous",
    "create_new": "create_new",
}
_ANONYMOUS: Final = ("never", "allow", "must")
_RUN_POINTER: Final = re.compile(r"^(?P<id>[^?]+)\?_step=(?P<step>\d+)$")


def init(
    *,
    job_type: str | None = None,
    dir: str | os.PathLike[str] | None = None,
    config: object = None,
    project: str | None = None,
    entity: str | None = None,
    reinit: bool | str | None = None,
    tags: Sequence[str] | None = None,
    group: str | None = None,
    name: str | None = None,
    notes: str | None = None,
    magic: bool | None = None,
    config_exclude_keys: Sequence[str] | None = None,
    config_include_keys: Sequence[str] | None = None,
    anonymous: str | None = None,
    mode: str | None = None,
    allow_val_change: bool | None = None,
    resume: bool | str | None = None,
    force: bool | None = None,
    tensorboard: bool | None = None,
    sync_tensorboard: bool | None = None,
    monitor_gym: bool | None = None,
    save_code: bool | None = None,
    id: str | None = None,
    fork_from: str | None = None,
    resume_from: str | None = None,
    settings: Settings | Mapping[str, Any] | None = None,
) -> Run:
    """Start a run (or return the active one) and make it `tracker.run`.

    Takes the keyword parameters of ``wandb.init`` (v0.18); docs/reference.md says
    what each does. With no server configured the run is offline, in ``dir``.

    Raises:
        UsageError: a bad argument, or a resume rule that does not hold.
    """
    for label, value in (
        ("job_type", job_type),
        ("project", project),
        ("entity", entity),
        ("group", group),
        ("name", name),
        ("notes", notes),
    ):
        if value is not None and not isinstance(value, str):
            raise UsageError(f"init({label}=...) takes a str, not {type(value).__name__}")
    for label, flag in (
        ("magic", magic),
        ("allow_val_change", allow_val_change),
        ("force", force),
        ("save_code", save_code),
        ("tensorboard", tensorboard),
        ("sync_tensorboard", sync_tensorboard),
        ("monitor_gym", monitor_gym),
    ):
        if flag is not None and not isinstance(flag, bool):
            raise UsageError(f"init({label}={flag!r}) takes True, False or None")
    for label, flag in (
        ("tensorboard", tensorboard),
        ("sync_tensorboard", sync_tensorboard),
        ("monitor_gym", monitor_gym),
    ):
        if flag:
            raise UsageError(
                f"init({label}=True) is not supported yet: mirroring TensorBoard and gym videos "
                "comes in a later release; log the values with run.log() meanwhile"
            )
    if not isinstance(reinit, (bool, str, type(None))) or reinit not in _REINIT:
        raise UsageError(
            f"init(reinit={reinit!r}): use False, True, 'return_previous', 'finish_previous' "
            "or 'create_new'"
        )
    if anonymous is not None and anonymous not in _ANONYMOUS:
        raise UsageError(f"init(anonymous={anonymous!r}): use 'never', 'allow' or 'must'")
    checked_tags = None if tags is None else check_tags(tags, "init(tags=...)")
    if id is not None:
        check_run_id(id, "init(id=...)")
    _check_pointers(fork_from, resume_from, resume)
    if dir is not None and not isinstance(dir, (str, os.PathLike)):
        raise UsageError(f"init(dir=...) takes a path, not {type(dir).__name__}")

    policy = _REINIT[reinit]
    previous = _process.current()
    if previous is not None and policy == "return_previous":
        return previous
    if previous is not None and policy == "finish_previous":
        previous.finish()

    resolved = resolve_settings(
        {
            "mode": mode,
            "project": project,
            "entity": entity,
            "run_id": id,
            "run_name": name,
            "run_group": group,
            "run_job_type": job_type,
            "run_tags": checked_tags,
            "run_notes": notes,
            "resume": resume,
            "root_dir": None if dir is None else os.fspath(dir),
        },
        settings,
    )
    # The server keeps projects and entities under the rules of run ids: refuse now what
    # it would refuse when the run streams or syncs.
    for label, value in (("project", resolved.project), ("entity", resolved.entity)):
        if value is not None:
            check_run_id(value, f"init({label}=...)")
    values = load_config_source(config, config_include_keys, config_exclude_keys)
    run = _start(
        resolved, values, bool(allow_val_change), bool(force), fork_from, resume_from, anonymous
    )
    if magic:
        run._on_finish.append(capture_argparse(functools.partial(_capture_args, run)))
    if save_code:
        _save_main_script(run)
    _process.remember(run, current=policy != "create_new")
    return run


async def ainit(
    *,
    job_type: str | None = None,
    dir: str | os.PathLike[str] | None = None,
    config: object = None,
    project: str | None = None,
    entity: str | None = None,
    reinit: bool | str | None = None,
    tags: Sequence[str] | None = None,
    group: str | None = None,
    name: str | None = None,
    notes: str | None = None,
    magic: bool | None = None,
    config_exclude_keys: Sequence[str] | None = None,
    config_include_keys: Sequence[str] | None = None,
    anonymous: str | None = None,
    mode: str | None = None,
    allow_val_change: bool | None = None,
    resume: bool | str | None = None,
    force: bool | None = None,
    tensorboard: bool | None = None,
    sync_tensorboard: bool | None = None,
    monitor_gym: bool | None = None,
    save_code: bool | None = None,
    id: str | None = None,
    fork_from: str | None = None,
    resume_from: str | None = None,
    settings: Settings | Mapping[str, Any] | None = None,
) -> Run:
    """`init()` for async code (asyncio or trio): the same parameters, and the event loop
    keeps running while the run starts."""
    start = functools.partial(
        init,
        job_type=job_type,
        dir=dir,
        config=config,
        project=project,
        entity=entity,
        reinit=reinit,
        tags=tags,
        group=group,
        name=name,
        notes=notes,
        magic=magic,
        config_exclude_keys=config_exclude_keys,
        config_include_keys=config_include_keys,
        anonymous=anonymous,
        mode=mode,
        allow_val_change=allow_val_change,
        resume=resume,
        force=force,
        tensorboard=tensorboard,
        sync_tensorboard=sync_tensorboard,
        monitor_gym=monitor_gym,
        save_code=save_code,
        id=id,
        fork_from=fork_from,
        resume_from=resume_from,
        settings=settings,
    )
    import anyio.to_thread

    return await anyio.to_thread.run_sync(start)


def log(data: dict[str, Any], step: int | None = None, commit: bool | None = None) -> None:
    """`Run.log()` on the current run.

    Raises:
        UsageError: there is no current run (call `tracker.init()` first).
    """
    run = _process.current()
    if run is None:
        raise UsageError("tracker.log(): no active run; call tracker.init() first")
    run.log(data, step=step, commit=commit)


def finish(exit_code: int | None = None, quiet: bool | None = None) -> None:
    """`Run.finish()` on the current run; does nothing when there is none."""
    run = _process.current()
    if run is not None:
        run.finish(exit_code=exit_code, quiet=quiet)


def _check_pointers(fork_from: object, resume_from: object, resume: object) -> None:
    for label, pointer in (("fork_from", fork_from), ("resume_from", resume_from)):
        if pointer is None:
            continue
        if not isinstance(pointer, str) or not _RUN_POINTER.match(pointer):
            raise UsageError(
                f"init({label}={pointer!r}): use the form 'RUN_ID?_step=N', "
                f"e.g. {label}='abc12345?_step=200'"
            )
        check_run_id(pointer.split("?", 1)[0], f"init({label}=...) run id")
    if fork_from is not None and resume_from is not None:
        raise UsageError("init(): fork_from and resume_from cannot be used together; pick one")
    if (fork_from is not None or resume_from is not None) and resume not in (None, False):
        raise UsageError(
            "init(): resume cannot be combined with fork_from or resume_from; drop resume="
        )


def _start(
    settings: Settings,
    config: dict[str, Any],
    allow_val_change: bool,
    force: bool,
    fork_from: str | None,
    resume_from: str | None,
    anonymous: str | None,
) -> Run:
    mode = settings.mode or ("online" if settings.base_url else "offline")
    if mode == "disabled":
        Config().update(config)
        return DisabledRun(**_disabled_arguments(settings, config, allow_val_change))
    no_server = settings.base_url is None and settings.mode != "offline"
    if no_server and force:
        raise UsageError(
            "init(force=True): no server configured; set TRACKER_BASE_URL, pass "
            "settings={'base_url': ...}, or run `tracker login`"
        )
    root = Path(settings.root_dir or "tracker").absolute()
    if mode == "online" and not no_server:
        return _start_online(
            settings, root, config, allow_val_change, fork_from, resume_from, anonymous
        )
    if fork_from is not None or resume_from is not None:
        label = "fork_from" if fork_from is not None else "resume_from"
        raise UsageError(
            f"init({label}=...) needs a tracker server, which holds the parent run's history; "
            "set TRACKER_BASE_URL (offline runs cannot be forked or rewound)"
        )
    stored = _run_to_resume(root, settings)
    run_id = settings.run_id or (stored.id if stored else None) or new_run_id()
    project = settings.project or (stored.project if stored else None) or default_project()
    if stored is not None and project != stored.project:
        raise UsageError(
            f"init(project={project!r}): run {run_id} belongs to project {stored.project!r}; "
            "resume it in its own project, or start a new run with another id"
        )
    merged = Config(allow_val_change=allow_val_change)
    if stored is not None:
        merged.update(stored.config, allow_val_change=True)
    merged.update(config)
    if no_server:
        _notice(
            settings,
            f"tracker: no server configured; logging offline to {root} "
            "(set TRACKER_BASE_URL or run `tracker login` to stream runs)",
        )
    start_step, start_seq = 0, 0
    metadata: dict[str, Any]
    if stored is not None:
        run_dir = stored.dir
        start_step, start_seq = stored.last_step + 1, stored.next_seq
        metadata = {"resumed": True, "runtime_offset": stored.runtime}
        if "log_id" not in stored.metadata:
            metadata["log_id"] = uuid.uuid4().hex
    else:
        run_dir = create_run_dir(root, run_id, time.time(), offline=True)
        metadata = {
            "created_at": time.time(),
            "log_id": uuid.uuid4().hex,
            "entity_given": settings.entity is not None,
            **_environment(),
        }
    run = Run(
        settings=settings,
        run_id=run_id,
        name=settings.run_name or (stored.name if stored else None) or new_run_name(),
        project=project,
        entity=settings.entity or (stored.entity if stored else None) or "local",
        group=settings.run_group or (stored.group if stored else None),
        job_type=settings.run_job_type or (stored.job_type if stored else None),
        tags=settings.run_tags or (stored.tags if stored else ()),
        notes=settings.run_notes or (stored.notes if stored else None),
        mode="offline",
        run_dir=run_dir,
        resumed=stored is not None,
        start_step=start_step,
        start_seq=start_seq,
        config=merged.as_dict(),
        allow_val_change=allow_val_change,
        metadata=metadata,
    )
    if stored is not None:
        stored.replay_summary(run.summary)
        run._folded_to = stored.log_end
    write_resume_marker(root, run_id)
    run._on_finish.append(functools.partial(clear_resume_marker, root, run_id))
    return run


def _start_online(
    settings: Settings,
    root: Path,
    config: dict[str, Any],
    allow_val_change: bool,
    fork_from: str | None,
    resume_from: str | None,
    anonymous: str | None,
) -> Run:
    """Handshake with the server (retried up to ``init_timeout``), then start a streaming run."""
    assert settings.base_url is not None
    run_id, body = _handshake_body(settings, root, fork_from, resume_from)
    log_id = body["log_id"] = uuid.uuid4().hex
    api_key = None if anonymous == "must" else settings.api_key
    answer = _handshake_now(settings.base_url, api_key, body, settings)
    from tracker._io._sender import StreamTarget

    stored = answer["run"]
    resumed = bool(answer["resumed"])
    merged = Config(allow_val_change=allow_val_change)
    if resumed or body["mode"] == "fork":
        merged.update(stored.get("config") or {}, allow_val_change=True)
    merged.update(config)
    entity, project = str(answer["entity"]), str(answer["project"])
    run = Run(
        settings=settings,
        run_id=run_id,
        name=settings.run_name or stored.get("name") or new_run_name(),
        project=project,
        entity=entity,
        group=settings.run_group or stored.get("group"),
        job_type=settings.run_job_type or stored.get("job_type"),
        tags=settings.run_tags or tuple(stored.get("tags") or ()),
        notes=settings.run_notes or stored.get("notes"),
        mode="online",
        run_dir=create_run_dir(root, run_id, time.time(), offline=False),
        resumed=resumed,
        start_step=int(answer["last_step"]) + 1,
        start_seq=0,
        config=merged.as_dict(),
        allow_val_change=allow_val_change,
        metadata={
            "created_at": time.time(),
            "log_id": log_id,
            "entity_given": True,
            "resumed": resumed,
            **_environment(),
        },
        stream=StreamTarget(
            settings.base_url,
            api_key,
            entity,
            project,
            run_id,
            log_id,
            settings.heartbeat_interval,
        ),
        url=answer.get("url"),
    )
    if resumed and stored.get("summary"):
        run.summary.apply_set(stored["summary"])
    write_resume_marker(root, run_id)
    run._on_finish.append(functools.partial(clear_resume_marker, root, run_id))
    return run


def _handshake_body(
    settings: Settings, root: Path, fork_from: str | None, resume_from: str | None
) -> tuple[str, dict[str, Any]]:
    """The run id and the handshake request for this init's resume/fork/rewind rules."""
    resume = _resume_mode(settings.resume)
    run_id = settings.run_id
    mode = {None: "new", "auto": "allow", "allow": "allow", "never": "never", "must": "must"}[
        resume
    ]
    if resume == "auto" and run_id is None:
        crashed = read_resume_marker(root)
        if crashed is not None and any(
            StoredRun(path).state == "crashed" for path in find_run_dirs(root, crashed)[-1:]
        ):
            run_id = crashed
        else:
            mode = "new"
    if resume == "must" and run_id is None:
        raise UsageError(
            "init(resume='must') needs the id of the run to resume: pass id=... "
            "(or set TRACKER_RUN_ID)"
        )
    fork, rewind_to = None, None
    if fork_from is not None:
        parent, step = fork_from.split("?_step=")
        fork, mode = {"run_id": parent, "step": int(step)}, "fork"
    if resume_from is not None:
        target, step = resume_from.split("?_step=")
        if run_id is not None and run_id != target:
            raise UsageError(
                f"init(id={run_id!r}, resume_from={resume_from!r}): resume_from rewinds the "
                "run it names; drop id= or make it the same run"
            )
        run_id, rewind_to, mode = target, int(step), "rewind"
    run_id = run_id or new_run_id()
    body = {
        "protocol": 1,
        "entity": settings.entity,
        "project": settings.project or default_project(),
        "run_id": run_id,
        "log_id": None,
        "mode": mode,
        "fork_from": fork,
        "rewind_to": rewind_to,
        "heartbeat_interval": settings.heartbeat_interval,
    }
    return run_id, body


def _handshake_now(
    base_url: str, api_key: str | None, body: dict[str, Any], settings: Settings
) -> dict[str, Any]:
    """Handshake from this thread, retrying up to ``init_timeout``; map failures to the
    public errors."""
    from tracker._io._handshake import handshake_now
    from tracker._io._retry import TransportError

    try:
        return handshake_now(
            base_url,
            api_key,
            body,
            settings.init_timeout,
            settings.retry_initial_wait_seconds,
            settings.retry_max_wait_seconds,
        )
    except TransportError as exc:
        where = base_url
        if exc.status in (401, 403):
            raise AuthenticationError(
                f"{where} refused the API key ({exc}); run `tracker login`, set "
                "TRACKER_API_KEY, or pass settings={'api_key': ...}"
            ) from None
        if exc.retryable:
            raise CommError(
                f"cannot reach the tracker server at {where} within "
                f"init_timeout={settings.init_timeout}s: {exc}. Check that `tracker server` "
                "runs there, or pass mode='offline' and upload later with `tracker sync`"
            ) from None
        raise UsageError(f"init(): {where} refused the run: {exc}") from None


def _run_to_resume(root: Path, settings: Settings) -> StoredRun | None:
    """The stored run this init continues under the resume rules, or None for a new run."""
    resume = _resume_mode(settings.resume)
    run_id = settings.run_id
    if resume == "auto" and run_id is None:
        run_id = read_resume_marker(root)
        if run_id is None or not find_run_dirs(root, run_id):
            return None
        candidate = StoredRun(find_run_dirs(root, run_id)[-1])
        return candidate if candidate.state == "crashed" else None
    if resume == "must" and run_id is None:
        raise UsageError(
            "init(resume='must') needs the id of the run to resume: pass id=... "
            "(or set TRACKER_RUN_ID)"
        )
    found = find_run_dirs(root, run_id) if run_id else []
    if resume == "never" and found:
        raise UsageError(
            f"init(resume='never'): run {run_id} already exists in {found[-1]}; "
            "pass another id, or resume='allow' to continue it"
        )
    if resume == "must" and not found:
        raise UsageError(
            f"init(resume='must'): no run with id {run_id!r} under {root}; check the id and "
            "dir=, or use resume='allow' to start it when it does not exist"
        )
    if resume not in ("auto", "allow", "must") or not found:
        return None
    stored = StoredRun(found[-1])
    if stored.state == "running":
        raise UsageError(
            f"init(resume={resume!r}): run {run_id} is still running in another process; "
            "finish it there first, or start a new run with another id"
        )
    return stored


def _resume_mode(resume: str | bool | None) -> str | None:
    """The resume rule as a name: True is "auto", False is None (W&B's aliases)."""
    if resume is True:
        return "auto"
    if resume is False:
        return None
    return resume


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


def _disabled_arguments(
    settings: Settings, config: dict[str, Any], allow_val_change: bool
) -> dict[str, Any]:
    return {
        "settings": settings,
        "run_id": settings.run_id or new_run_id(),
        "name": settings.run_name or new_run_name(),
        "project": settings.project or "uncategorized",
        "entity": settings.entity or "local",
        "group": settings.run_group,
        "job_type": settings.run_job_type,
        "tags": settings.run_tags,
        "notes": settings.run_notes,
        "mode": "disabled",
        "run_dir": None,
        "resumed": False,
        "start_step": 0,
        "start_seq": 0,
        "config": config,
        "allow_val_change": allow_val_change,
        "metadata": {},
    }


def _environment() -> dict[str, Any]:
    return {
        "pid": os.getpid(),
        "host": os.uname().nodename,
        "python": sys.version.split()[0],
        "program": getattr(__main__, "__file__", None),
        "args": redact_argv(sys.argv[1:]),  # a key on the command line must not be stored
        "cwd": os.getcwd(),
    }


def _capture_args(run: Run, namespace: argparse.Namespace) -> None:
    run.config.update(vars(namespace), allow_val_change=True)


def _save_main_script(run: Run) -> None:
    script = getattr(__main__, "__file__", None)
    if not script or not Path(script).is_file():
        _notice(run.settings, "tracker: save_code=True, but there is no main script to store")
        return
    run._store_file(Path(script), f"code/{Path(script).name}", "now")


def _notice(settings: Settings, line: str) -> None:
    if not settings.silent:
        print(line, file=sys.stderr)

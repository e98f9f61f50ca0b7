"""`tracker.init()`, `tracker.ainit()`, and the module-level `log` and `finish`.

`init()` checks every argument before anything is created, so a bad argument leaves no
directory behind, resolves the settings, and hands over to `tracker._start`.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import os
import warnings
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, ParamSpec

import __main__
from tracker import _process
from tracker._config import load_config_source
from tracker._errors import UsageError
from tracker._magic import capture_argparse
from tracker._names import check_run_id
from tracker._resume import check_pointers
from tracker._run import Run, check_tags
from tracker._settings import Settings, resolve_settings
from tracker._start import StartOptions, notice, start_run

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

P = ParamSpec("P")


@dataclass
class Capture:
    """A `tracker.testing.capture_runs` block: its settings override every init's, and it
    keeps the runs started inside it."""

    settings: dict[str, Any]
    runs: list[Run] = field(default_factory=list)


captures: list[Capture] = []
"""The open capture blocks, innermost last."""


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
    sync_tensorboard: bool | str | os.PathLike[str] | None = None,
    monitor_gym: bool | None = None,
    save_code: bool | None = None,
    id: str | None = None,
    fork_from: str | None = None,
    resume_from: str | None = None,
    settings: Settings | Mapping[str, Any] | None = None,
    **unknown: Any,
) -> Run:
    """Start a run (or return the active one) and make it `tracker.run`.

    Takes the keyword parameters of ``wandb.init`` (v0.18); docs/reference.md says
    what each does. With no server configured the run is offline, in ``dir``. Other
    keyword arguments (from newer W&B releases) are ignored with a warning naming them.

    Raises:
        UsageError: a bad argument, or a resume rule that does not hold.
    """
    if unknown:
        warnings.warn(
            f"tracker.init(): ignoring {', '.join(f'{key}=' for key in sorted(unknown))}: "
            "not a parameter of wandb.init v0.18, which tracker takes "
            "(docs/coming-from-wandb.md lists them)",
            UserWarning,
            stacklevel=2,
        )
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
        ("monitor_gym", monitor_gym),
    ):
        if flag is not None and not isinstance(flag, bool):
            raise UsageError(f"init({label}={flag!r}) takes True, False or None")
    if sync_tensorboard is not None and not isinstance(sync_tensorboard, (bool, str, os.PathLike)):
        raise UsageError(
            f"init(sync_tensorboard={sync_tensorboard!r}) takes True, False, None or the "
            "folder of the TensorBoard logs to mirror"
        )
    if monitor_gym and importlib.util.find_spec("gymnasium") is None:
        raise UsageError(
            "init(monitor_gym=True) records the videos of gymnasium's RecordVideo, but "
            "gymnasium is not installed: pip install 'gymnasium[other]'"
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
    check_pointers(fork_from, resume_from, resume)
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
    if captures:
        resolved = resolved.replace(**captures[-1].settings)
    # The server keeps projects and entities under the rules of run ids: refuse now what
    # it would refuse when the run streams or syncs.
    for label, value in (("project", resolved.project), ("entity", resolved.entity)):
        if value is not None:
            check_run_id(value, f"init({label}=...)")
    values = load_config_source(config, config_include_keys, config_exclude_keys)
    options = StartOptions(
        allow_val_change=bool(allow_val_change),
        force=bool(force),
        fork_from=fork_from,
        resume_from=resume_from,
        anonymous=anonymous,
    )
    run = start_run(resolved, values, options)
    if magic:
        run._on_finish.append(capture_argparse(functools.partial(_capture_args, run)))
    if save_code:
        _save_main_script(run)
    if run.mode != "disabled":
        if sync_tensorboard or tensorboard:
            from tracker._tensorboard import sync_tensorboard as mirror

            root = sync_tensorboard if not isinstance(sync_tensorboard, bool) else None
            mirror(run, None if root is None else Path(root))
        if monitor_gym:
            from tracker._gym import record_gym_videos

            record_gym_videos(run)
    _process.remember(run, current=policy != "create_new")
    if captures:
        captures[-1].runs.append(run)
    run._collect_metadata()
    return run


def log(
    data: dict[str, Any] | None = None, step: int | None = None, commit: bool | None = None
) -> None:
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


def _in_a_worker_thread(
    function: Callable[P, Run], name: str, doc: str
) -> Callable[P, Coroutine[Any, Any, Run]]:
    """The async twin of ``function``: the same parameters (its signature, for help() and
    editors), run in a worker thread so the event loop (asyncio or trio) keeps running."""

    async def twin(*args: P.args, **kwargs: P.kwargs) -> Run:
        import anyio.to_thread

        return await anyio.to_thread.run_sync(functools.partial(function, *args, **kwargs))

    functools.update_wrapper(twin, function)
    twin.__name__ = twin.__qualname__ = name
    twin.__doc__ = doc
    return twin


ainit = _in_a_worker_thread(
    init,
    "ainit",
    """`init()` for async code (asyncio or trio): the same parameters, and the event loop
    keeps running while the run starts.""",
)


def _capture_args(run: Run, namespace: argparse.Namespace) -> None:
    run.config.update(vars(namespace), allow_val_change=True)


def _save_main_script(run: Run) -> None:
    script = getattr(__main__, "__file__", None)
    if not script or not Path(script).is_file():
        notice(run.settings, "tracker: save_code=True, but there is no main script to store")
        return
    run._store_file(Path(script), f"code/{Path(script).name}", "now")

"""The resume rules of `init()` (W&B's), written once for online and offline runs.

`plan_resume` turns ``resume=``, ``id=``, ``fork_from=`` and ``resume_from=`` into a
`ResumePlan`: the run id and the handshake mode (docs/protocol.md, "Starting a run").
An online run sends the plan to the server, which holds the runs; an offline run carries
it out against its ``dir`` with `stored_run_to_resume`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from tracker._errors import UsageError
from tracker._names import check_run_id, new_run_id
from tracker._reader import StoredRun
from tracker._rundir import find_run_dirs, read_resume_marker
from tracker._settings import Settings

__all__ = ["ResumePlan", "check_pointers", "plan_resume", "stored_run_to_resume"]

_RUN_POINTER: Final = re.compile(r"^(?P<id>[^?]+)\?_step=(?P<step>\d+)$")
_MODES: Final = {None: "new", "auto": "allow", "allow": "allow", "never": "never", "must": "must"}


@dataclass(frozen=True)
class ResumePlan:
    """The run an `init()` starts or continues, and how (a handshake mode)."""

    run_id: str
    mode: str
    """new | allow | never | must | fork | rewind"""
    fork_from: tuple[str, int] | None = None
    rewind_to: int | None = None


def check_pointers(fork_from: object, resume_from: object, resume: object) -> None:
    """Check ``fork_from`` / ``resume_from`` (``"RUN_ID?_step=N"``) and how they combine.

    Raises:
        UsageError: a bad pointer, both given, or either with ``resume``.
    """
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


def plan_resume(
    settings: Settings, root: Path, fork_from: str | None, resume_from: str | None
) -> ResumePlan:
    """The plan for this init's resume, fork and rewind arguments (checked before).

    ``resume="auto"`` without an id continues the run that last crashed in ``root``, if
    it did crash, else starts a new one.

    Raises:
        UsageError: ``resume="must"`` without an id, or ``resume_from`` naming another
            run than ``id``.
    """
    resume = _resume_mode(settings.resume)
    run_id = settings.run_id
    mode = _MODES[resume]
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
    if fork_from is not None:
        return ResumePlan(run_id or new_run_id(), "fork", fork_from=_pointer(fork_from))
    if resume_from is not None:
        target, step = _pointer(resume_from)
        if run_id is not None and run_id != target:
            raise UsageError(
                f"init(id={run_id!r}, resume_from={resume_from!r}): resume_from rewinds the "
                "run it names; drop id= or make it the same run"
            )
        return ResumePlan(target, "rewind", rewind_to=step)
    return ResumePlan(run_id or new_run_id(), mode)


def stored_run_to_resume(plan: ResumePlan, root: Path) -> StoredRun | None:
    """Carry out ``plan`` against the run directories in ``root``: the stored run to
    continue, or None for a new run (a new directory, even for an id stored before).

    Raises:
        UsageError: ``never`` and the run exists, ``must`` and it does not, or it is
            still running in another process.
    """
    found = find_run_dirs(root, plan.run_id)
    if plan.mode == "never" and found:
        raise UsageError(
            f"init(resume='never'): run {plan.run_id} already exists in {found[-1]}; "
            "pass another id, or resume='allow' to continue it"
        )
    if plan.mode == "must" and not found:
        raise UsageError(
            f"init(resume='must'): no run with id {plan.run_id!r} under {root}; check the id "
            "and dir=, or use resume='allow' to start it when it does not exist"
        )
    if plan.mode not in ("allow", "must") or not found:
        return None
    stored = StoredRun(found[-1])
    if stored.state == "running":
        raise UsageError(
            f"init(id={plan.run_id!r}): run {plan.run_id} is still running in another "
            "process; finish it there first, or start a new run with another id"
        )
    return stored


def _pointer(pointer: str) -> tuple[str, int]:
    run_id, step = pointer.split("?_step=")
    return run_id, int(step)


def _resume_mode(resume: str | bool | None) -> str | None:
    """The resume rule as a name: True is "auto", False is None (W&B's aliases)."""
    if resume is True:
        return "auto"
    if resume is False:
        return None
    return resume

"""Store a `ResultSet` as a tracker run, once: a second upload of the same results is a no-op.

The run id is a digest of what the results are of (`ResultSet.run_id`). Before starting
the run, the server (or, offline, the run directory) is asked whether a finished run of
that id exists: then nothing is stored. A run of that id that did not finish (a job killed
mid-upload) is replaced, as `init(resume=None)` does with an existing id, so a retried job
heals a partial upload instead of adding to it.
"""

from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tracker._bench._results import JOB_TYPE, SAMPLES_FILE, ResultSet
from tracker._errors import UsageError
from tracker._settings import Settings, resolve_settings

__all__ = ["Upload", "bench_settings", "upload"]


@dataclass(frozen=True)
class Upload:
    """What an upload did: the run, whether it was stored now, and where it lives."""

    run_id: str
    stored: bool
    """False: a finished run of this id was already there, and nothing was sent."""
    where: str
    """The run's URL online, else its run directory."""
    complete: bool = True
    """False when the server did not acknowledge everything by the end of `finish()`."""


def bench_settings(
    project: str | None,
    root_dir: str | None,
    base_url: str | None = None,
    api_key: str | None = None,
    *,
    root: Path | None = None,
) -> Settings:
    """The settings a benchmark upload or query uses: the user's, with the arguments that
    are not None, quiet (the callers print their own one-line reports), and always a
    project: ``project``, else the settings' (TRACKER_PROJECT), else the name of the git
    checkout ``root`` (default: the one around the working directory).

    Raises:
        UsageError: no project given, and no git checkout to name one after.
    """
    overrides = {"project": project, "root_dir": root_dir, "base_url": base_url}
    settings = resolve_settings({**overrides, "api_key": api_key, "silent": True})
    if settings.project:
        return settings
    if root is None:
        from tracker._bench._git import repo_root

        try:
            root = repo_root(Path.cwd())
        except UsageError:
            raise UsageError(
                "which project? pass --project NAME or set TRACKER_PROJECT (outside a git "
                "checkout there is no default)"
            ) from None
    # the name init() would give a run in that checkout: its folder, made a valid name
    name = re.sub(r"[/\\#?%:;,'\s]+", "-", root.name).strip("-.")[:128]
    return settings.replace(project=name or "benchmarks")


def upload(results: ResultSet, settings: Settings) -> Upload:
    """Store ``results`` as a run, unless a finished run of the same id exists.

    Online when a server is configured (``settings.base_url``), else offline (then
    `tracker sync` uploads it later); into the project of ``settings`` (`bench_settings`
    always names one).

    Raises:
        CommError: the server cannot be reached within ``settings.init_timeout``.
        AuthenticationError: the server refuses the API key.
    """
    from tracker._init import init

    project = str(settings.project)
    run_id = results.run_id
    existing = _finished_run(settings, project, run_id)
    if existing is not None:
        return Upload(run_id, stored=False, where=existing)
    run = init(
        project=project,
        id=run_id,
        name=results.name,
        group=results.commit.sha,
        job_type=JOB_TYPE,
        tags=results.tags(),
        config=results.config(),
        mode="online" if settings.base_url else "offline",
        reinit="create_new",
        settings=settings,
    )
    try:
        run.summary.update(results.summary())
        with tempfile.TemporaryDirectory(prefix="tracker-bench-") as folder:
            path = Path(folder) / SAMPLES_FILE
            path.write_bytes(results.samples_file())
            run.save(path, base_path=folder, policy="now")
    finally:
        run.finish(quiet=True)
    status = run.status()
    return Upload(
        run_id,
        stored=True,
        where=run.url or str(Path(run.dir).parent),  # the run directory, not its files
        complete=status.connection in ("offline", "done"),
    )


def _finished_run(settings: Settings, project: str, run_id: str) -> str | None:
    """Where a finished run ``project/run_id`` is stored (URL or directory), or None."""
    if settings.base_url:
        from tracker._api import Api

        try:
            stored: Any = Api(settings.base_url, settings.api_key).run(f"{project}/{run_id}")
        except UsageError:  # 404: no such run
            return None
        return str(stored.url or stored.path) if stored.state == "finished" else None
    from tracker._reader import read_run
    from tracker._rundir import find_run_dirs, runs_root

    found = find_run_dirs(runs_root(settings.root_dir), run_id)
    if found and read_run(found[-1]).state == "finished":
        return str(found[-1])
    return None

"""`tracker runs [ENTITY/PROJECT]`: list projects, or the runs of one project."""

from __future__ import annotations

import argparse
import time
from typing import Any

from tracker._api import Api

__all__ = ["add_parser"]


def add_parser(commands: Any) -> None:
    """Register the ``runs`` command."""
    parser = commands.add_parser(
        "runs",
        help="list projects, or the runs of a project",
        description="Without PROJECT, list your projects; with it, list its runs, newest first.",
    )
    parser.add_argument("project", nargs="?", metavar="[ENTITY/]PROJECT")
    parser.add_argument("--base-url", help="the server (default: settings / TRACKER_BASE_URL)")
    parser.add_argument("--api-key", help="the API key (default: settings / TRACKER_API_KEY)")
    parser.set_defaults(handler=run_runs)


def run_runs(arguments: argparse.Namespace) -> int:
    """Print a table of projects or runs."""
    api = Api(arguments.base_url, arguments.api_key)
    if arguments.project is None:
        print(f"{'project':<32} {'runs':>6}  updated")
        for project in api.projects():
            print(f"{project['name']:<32} {project['runs']:>6}  {_when(project.get('updated_at'))}")
        return 0
    print(f"{'id':<12} {'name':<24} {'state':<9} {'created':<19}  tags")
    for run in api.runs(arguments.project):
        print(
            f"{run.id:<12} {run.name[:24]:<24} {run.state:<9} {_when(run.start_time):<19}  "
            f"{','.join(run.tags)}"
        )
    return 0


def _when(stamp: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stamp)) if stamp else "-"

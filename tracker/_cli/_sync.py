"""`tracker sync DIR...`: upload run directories the server does not have in full."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from tracker._errors import UsageError
from tracker._settings import resolve_settings
from tracker._sync import run_dirs_under, sync_run_dir

__all__ = ["add_parser"]


def add_parser(commands: Any) -> None:
    """Register the ``sync`` command."""
    parser = commands.add_parser(
        "sync",
        help="upload offline or unfinished runs to a server",
        description=(
            "Upload what the server does not have of each run directory (a run directory, or "
            "a folder of them). Running it twice stores nothing twice."
        ),
    )
    parser.add_argument("dirs", nargs="+", metavar="DIR", help="run directories, or their folder")
    parser.add_argument("--base-url", help="the server (default: settings / TRACKER_BASE_URL)")
    parser.add_argument("--api-key", help="the API key (default: settings / TRACKER_API_KEY)")
    parser.add_argument(
        "--run-id",
        help="upload as this run instead of the run's own id (one DIR only): for a copy of "
        "a run directory resumed apart from the copy the server has",
    )
    parser.set_defaults(handler=run_sync)


def run_sync(arguments: argparse.Namespace) -> int:
    """Sync every run directory named; print one line per run. Exit status 1 when a run
    log was damaged (its other records are uploaded all the same)."""
    settings = resolve_settings({"base_url": arguments.base_url, "api_key": arguments.api_key})
    run_dirs = [run_dir for name in arguments.dirs for run_dir in run_dirs_under(Path(name))]
    if arguments.run_id is not None and len(run_dirs) != 1:
        raise UsageError(
            f"--run-id names one run, and {len(run_dirs)} run directories were given; "
            "sync one run directory with it"
        )
    code = 0
    for run_dir in run_dirs:
        report = sync_run_dir(run_dir, settings, arguments.run_id)
        print(
            f"tracker sync: {report.path}: {report.records} records sent, "
            f"{report.already_stored} already on the server, {report.files} files"
            + (f"  {report.url}" if report.url else "")
        )
        for damage in report.damage:
            code = 1
            print(
                f"tracker sync: {run_dir}: its run log is damaged at byte {damage.offset} "
                f"({damage.length} bytes): the {damage.records_lost} records after seq "
                f"{damage.seq_before} there are lost (the server knows); everything else is "
                "on the server",
                file=sys.stderr,
            )
    return code

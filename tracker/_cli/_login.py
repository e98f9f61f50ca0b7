"""`tracker login`: check an API key against a server and save both in the settings file."""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import Any

from tracker._settings import settings_file_path
from tracker._sync import login

__all__ = ["add_parser"]


def add_parser(commands: Any) -> None:
    """Register the ``login`` command."""
    parser = commands.add_parser(
        "login",
        help="save a server address and API key in the settings file",
        description="Check the API key against the server, then save both for later runs.",
    )
    parser.add_argument("--base-url", help="the server, e.g. http://127.0.0.1:8765")
    parser.add_argument("--api-key", help="the API key (asked for when omitted and interactive)")
    parser.set_defaults(handler=run_login)


def run_login(arguments: argparse.Namespace) -> int:
    """Log in and say where the settings went."""
    api_key = arguments.api_key
    if api_key is None and sys.stdin.isatty():
        api_key = getpass.getpass("API key (empty for a server without keys): ") or None
    entity = login(arguments.base_url, api_key)
    print(f"tracker login: logged in as {entity}; settings saved in {settings_file_path()}")
    return 0

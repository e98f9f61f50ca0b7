"""`tracker server`: serve the API, the pages and the database until SIGINT or SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tracker._errors import Error, UsageError

__all__ = ["add_parser", "default_db_path"]


def add_parser(commands: Any) -> None:
    """Register the ``server`` command."""
    parser = commands.add_parser(
        "server",
        help="run the tracker server (API, pages, database)",
        description=(
            "Serve the tracker API and pages. Bound to a loopback address without API keys, "
            "every request acts as the entity 'local'; bound elsewhere, API keys are required "
            "unless --insecure."
        ),
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument(
        "--port", type=int, default=8765, help="port to bind; 0 picks a free one (default 8765)"
    )
    parser.add_argument(
        "--db",
        help="database URL: sqlite:///PATH, postgresql://USER@HOST:PORT/DATABASE (needs "
        "pip install 'tracker[postgres]'), or memory: (keeps nothing; default: sqlite:/// + "
        "$XDG_DATA_HOME/tracker/tracker.db, or ~/.local/share/tracker/tracker.db)",
    )
    parser.add_argument(
        "--migrate",
        action="store_true",
        help="apply the database's pending schema migrations, then exit (a server applies "
        "them itself when it starts; run this first when upgrading several replicas)",
    )
    parser.add_argument(
        "--api-key",
        action="append",
        default=[],
        metavar="[ENTITY:]KEY",
        help="accept this key, acting as ENTITY (default entity 'local'); repeat for more keys. "
        "Other users of the machine can see it in the process list: prefer --api-key-file",
    )
    parser.add_argument(
        "--api-key-file",
        action="append",
        default=[],
        metavar="PATH",
        help="accept the keys in this file, one [ENTITY:]KEY per line ('#' starts a comment); "
        "it must not be readable by other users (chmod 600). TRACKER_API_KEY, when set, is "
        "accepted too, as a key of the entity 'local'",
    )
    parser.add_argument(
        "--base-url",
        metavar="URL",
        help="the server's public root URL, when clients reach it under another name than "
        "--host (a proxy, a DNS name): run URLs use it, and requests naming its host are "
        "answered (others are refused unless they name a loopback address or --host)",
    )
    parser.add_argument(
        "--max-connections",
        type=int,
        metavar="N",
        help="connections held at once; more are closed as they come (default: the "
        "open-file limit, ulimit -n, less 64)",
    )
    parser.add_argument(
        "--max-connections-per-ip",
        type=int,
        metavar="N",
        help="connections one client address may hold (default: half of --max-connections; "
        "raise it behind a reverse proxy, where every client has the proxy's address)",
    )
    parser.add_argument(
        "--allow-anonymous",
        action="store_true",
        help="requests without a key act as the entity 'anonymous'",
    )
    parser.add_argument(
        "--insecure",
        action="store_true",
        help="allow binding a non-loopback address without API keys (anyone can read and write)",
    )
    parser.set_defaults(handler=run_server)


def run_server(arguments: argparse.Namespace) -> int:
    """Serve until SIGINT or SIGTERM (or migrate the schema and exit, with ``--migrate``);
    return 0 after a graceful shutdown."""
    from tracker._server.storage.errors import StorageError

    try:
        return _run(arguments)
    except StorageError as exc:
        raise Error(f"the database cannot be served: {exc.message}") from None


def _run(arguments: argparse.Namespace) -> int:
    from tracker._server._keys import environment_key, parse_api_key, read_key_file
    from tracker._server._runner import serve
    from tracker._server.storage import migrate_storage

    if not 0 <= arguments.port <= 65535:
        raise UsageError(f"--port {arguments.port}: give a port from 0 to 65535 (0: any free)")
    for flag, value in (
        ("--max-connections", arguments.max_connections),
        ("--max-connections-per-ip", arguments.max_connections_per_ip),
    ):
        if value is not None and value < 1:
            raise UsageError(f"{flag} {value}: give a number of connections, 1 or more")
    db_url = arguments.db
    if db_url is None:
        path = default_db_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        db_url = f"sqlite:///{path}"
    if arguments.migrate:
        migrated = asyncio.run(migrate_storage(db_url))
        if migrated.found == migrated.now:
            print(f"tracker server: the schema is at version {migrated.now}; nothing to migrate")
        else:
            print(
                f"tracker server: migrated the schema from version {migrated.found} to "
                f"{migrated.now}"
            )
        return 0
    keys = [parse_api_key(text) for text in arguments.api_key]
    for path in arguments.api_key_file:
        keys += read_key_file(path)
    from_environment = environment_key(os.environ)
    if from_environment is not None:
        keys.append(from_environment)
    asyncio.run(
        serve(
            arguments.host,
            arguments.port,
            db_url,
            keys,
            arguments.allow_anonymous,
            arguments.insecure,
            base_url=_base_url(arguments.base_url),
            max_connections=arguments.max_connections,
            max_connections_per_ip=arguments.max_connections_per_ip,
        )
    )
    return 0


def _base_url(url: str | None) -> str | None:
    """``--base-url``, checked: an http(s) URL with a host."""
    if url is None:
        return None
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(
            f"--base-url {url!r} is not an http(s) URL with a host; give one like "
            "https://tracker.example.com or http://gpu-box:8765"
        )
    return url


def default_db_path() -> Path:
    """``$XDG_DATA_HOME/tracker/tracker.db``, else ``~/.local/share/tracker/tracker.db``."""
    data_home = os.environ.get("XDG_DATA_HOME")
    root = Path(data_home) if data_home else Path.home() / ".local" / "share"
    return root / "tracker" / "tracker.db"

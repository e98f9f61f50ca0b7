"""The `tracker` command line: one module per command.

Exit status: 0 on success, 2 on usage errors, 1 otherwise.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from tracker._cli import _bench, _demo, _login, _runs, _server, _sync
from tracker._errors import Error, UsageError

__all__ = ["main"]

_COMMANDS = (_bench, _demo, _login, _runs, _server, _sync)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the `tracker` command with ``argv`` (default: the process's arguments)."""
    parser = argparse.ArgumentParser(
        prog="tracker", description="Async-native experiment tracking."
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in _COMMANDS:
        command.add_parser(commands)
    arguments = parser.parse_args(argv)
    try:
        code: int = arguments.handler(arguments)
    except UsageError as exc:
        print(f"tracker {arguments.command}: {exc}", file=sys.stderr)
        return 2
    except Error as exc:
        print(f"tracker {arguments.command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return code

"""API keys given to the server: from ``--api-key``, ``--api-key-file`` and the
``TRACKER_API_KEY`` environment variable, checked, then stored (hashed) in the database.

A key on the command line is visible to every user of the machine (``/proc/PID/cmdline``,
``ps``), so the file and the variable are the ways to give a key in production. A new key
needs at least 16 characters; a shorter one the database already holds keeps working, so
upgrading a server does not lock its clients out.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from tracker._errors import UsageError
from tracker._names import check_run_id
from tracker._server.storage import Store

__all__ = [
    "ENV_KEY",
    "MIN_KEY_CHARS",
    "GivenKey",
    "environment_key",
    "parse_api_key",
    "read_key_file",
    "store_keys",
]

MIN_KEY_CHARS: Final = 16
ENV_KEY: Final = "TRACKER_API_KEY"
_GENERATE: Final = "generate one with `openssl rand -hex 24`"

_logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class GivenKey:
    """A key the server is told to accept: the entity it acts as, and where it was given."""

    entity: str
    key: str = field(repr=False)
    source: str


def parse_api_key(text: str, source: str = "--api-key") -> GivenKey:
    """Split ``ENTITY:KEY`` (or ``KEY``, for the entity ``local``); the entity ends at the
    first ``:`` (entities cannot hold one, keys may). Messages name ``source``, never the key.

    Raises:
        UsageError: an empty key, spaces or control characters in it, or a bad entity name.
    """
    entity, separator, key = text.partition(":")
    if not separator:
        entity, key = "local", text
    if not key or key != key.strip() or not key.isprintable():
        raise UsageError(
            f"{source}: the key is empty or holds spaces or control characters; "
            f"give ENTITY:KEY or KEY, e.g. alice:$(openssl rand -hex 24)"
        )
    try:
        check_run_id(entity, f"{source}: the entity")
    except UsageError as exc:
        raise UsageError(f"{exc} ({source} takes ENTITY:KEY)") from None
    return GivenKey(entity, key, source)


def read_key_file(path: str) -> list[GivenKey]:
    """The keys of a key file: one ``[ENTITY:]KEY`` per line; blank lines and lines
    starting with ``#`` are skipped.

    Raises:
        UsageError: the file is missing or unreadable, other users may read or write it
            (like ssh with a private key, the server refuses it), it holds no key, or a
            line is not ``[ENTITY:]KEY``.
    """
    source = f"--api-key-file {path}"
    try:
        with open(path, encoding="utf-8") as handle:
            mode = os.fstat(handle.fileno()).st_mode
            text = handle.read()
    except FileNotFoundError:
        raise UsageError(
            f"{source}: no such file; create it with one [ENTITY:]KEY per line"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not UTF-8 text"
        raise UsageError(
            f"{source}: cannot read it ({reason}); check the path and its permissions"
        ) from None
    if mode & (stat.S_IROTH | stat.S_IWOTH):
        raise UsageError(
            f"{source}: every user of this machine may read or write it (mode "
            f"{stat.S_IMODE(mode):04o}); run `chmod 600 {path}` (or 640 to share it with a group)"
        )
    keys = []
    for number, line in enumerate(text.splitlines(), 1):
        entry = line.strip()
        if entry and not entry.startswith("#"):
            keys.append(parse_api_key(entry, f"{source} line {number}"))
    if not keys:
        raise UsageError(f"{source}: the file holds no key; put one [ENTITY:]KEY per line")
    return keys


def environment_key(environ: Mapping[str, str]) -> GivenKey | None:
    """``TRACKER_API_KEY`` as a key of the entity ``local`` (the whole value is the key, as
    clients send it), or None when it is unset or empty.

    Raises:
        UsageError: the value holds spaces or control characters.
    """
    value = environ.get(ENV_KEY)
    if not value:
        return None
    return parse_api_key(f"local:{value}", ENV_KEY)


async def store_keys(storage: Store, keys: Sequence[GivenKey]) -> None:
    """Add ``keys`` to the database; a key under 16 characters only when it is already there.

    Raises:
        UsageError: a new key shorter than 16 characters, naming where it was given.
    """
    for given in keys:
        if len(given.key) < MIN_KEY_CHARS:
            if await storage.entity_for_key(given.key) is None:
                raise UsageError(
                    f"{given.source}: the key has {len(given.key)} characters; a new key needs "
                    f"at least {MIN_KEY_CHARS}, so that it cannot be guessed: {_GENERATE}"
                )
            _logger.warning(
                "%s: the key has only %d characters; it keeps working because the database "
                "already holds it, but replace it (%s)",
                given.source,
                len(given.key),
                _GENERATE,
            )
        await storage.add_api_key(given.entity, given.key)

"""Schema migrations, one runner for every engine.

Each engine keeps a versioned list of scripts (`sqlite_schema.MIGRATIONS`,
`postgres_schema.MIGRATIONS`): a database's ``schema_version`` table holds how many of
its engine's scripts ran. `pending` decides what to apply and refuses a database newer
than this tracker; the engine applies those scripts in the transaction that read the
version, so a migration is applied whole or not at all. A migration is never edited
once landed: a change of schema is a new script at the end of each engine's list.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tracker._server.storage.errors import SchemaTooNew

__all__ = ["Migrated", "pending"]


@dataclass(frozen=True)
class Migrated:
    """What opening a database did to its schema: the version found and the one now."""

    found: int
    now: int


def pending(version: int, migrations: Sequence[str], database: str) -> list[tuple[int, str]]:
    """The scripts a database at schema ``version`` still needs, each with the version it
    brings the database to.

    Raises:
        SchemaTooNew: ``version`` is past ``migrations`` (a newer tracker wrote ``database``).
    """
    if version > len(migrations):
        raise SchemaTooNew(
            f"{database} has schema version {version}, newer than this tracker's "
            f"{len(migrations)}; upgrade tracker to serve it"
        )
    return list(enumerate(migrations[version:], start=version + 1))

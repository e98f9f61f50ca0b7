"""Names: run ids and run names (generated, and checked where the user chooses them), and
the names of files stored with a run (one rule for the client, the run log and the server,
and the one way such a name is joined onto a local folder)."""

from __future__ import annotations

import secrets
import string
from pathlib import Path

from tracker._errors import UsageError
from tracker._wire.limits import MAX_FILE_NAME_CHARS, MAX_NAME_CHARS

__all__ = ["check_file_name", "check_run_id", "local_file", "new_run_id", "new_run_name"]

_ID_ALPHABET = string.digits + string.ascii_lowercase
_ID_FORBIDDEN = frozenset("/\\#?%:;,'")
_ADJECTIVES = (
    "amber azure bold brave breezy bright brisk calm clever cosmic crimson daring dawn deep "
    "eager easy electric fancy fearless fiery floral fresh gentle giddy glad golden grand "
    "happy hardy hazy honest icy jolly keen kind lively lucky lunar mellow misty noble quiet "
    "rapid royal rustic serene sharp silent silver smooth snowy solar stellar sunny swift "
    "tidy vivid warm wild wise witty"
).split()
_NOUNS = (
    "aurora bird breeze brook canyon cloud comet cosmos dawn dew dream dune ember field "
    "firefly flower forest frost galaxy glade grove harbor haze hill lake leaf meadow moon "
    "mountain nebula night ocean orbit pine planet pond rain river sea shadow sky smoke snow "
    "sound spark star stone storm sun sunset surf thunder tree valley violet water "
    "wave wind wood"
).split()


def new_run_id() -> str:
    """Eight random lowercase base-36 characters."""
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(8))


def new_run_name() -> str:
    """A readable name such as ``"brisk-sunset-12"``."""
    number = secrets.randbelow(99) + 1
    return f"{secrets.choice(_ADJECTIVES)}-{secrets.choice(_NOUNS)}-{number}"


def check_run_id(run_id: object, what: str = "id") -> str:
    """Return ``run_id`` if it is a valid run id, else raise a UsageError naming ``what``."""
    if not isinstance(run_id, str):
        raise UsageError(f"{what} must be a str, not {type(run_id).__name__}")
    if not run_id or len(run_id) > MAX_NAME_CHARS:
        raise UsageError(f"{what}={run_id[:40]!r} must have 1 to {MAX_NAME_CHARS} characters")
    bad = sorted(_ID_FORBIDDEN.intersection(run_id))
    if bad or not run_id.isprintable() or run_id.strip() != run_id:
        shown = repr("".join(bad)) if bad else "a control or surrounding space character"
        raise UsageError(
            f"{what}={run_id!r} contains {shown}; names and ids may not contain any of "
            f"{''.join(sorted(_ID_FORBIDDEN))!r}, spaces at its ends or control characters "
            "(letters, digits, '-', '_' and '.' are safe)"
        )
    if run_id in {".", ".."}:
        raise UsageError(f"{what}={run_id!r} is not a valid name; use letters and digits")
    return run_id


def check_file_name(name: object) -> str:
    """Return ``name`` if it is a stored file name: a relative path of 1 to 512 characters,
    ``/`` between folders, no empty, ``.`` or ``..`` part, no backslash or control character.

    Raises:
        UsageError: saying what is wrong with the name.
    """
    if not isinstance(name, str):
        raise UsageError(f"a file name must be a str, not {type(name).__name__}")
    problem = None
    if not name or len(name) > MAX_FILE_NAME_CHARS:
        problem = f"must have 1 to {MAX_FILE_NAME_CHARS} characters"
    elif name.startswith("/"):
        problem = "starts with '/'; give a path relative to the run's files"
    elif "\\" in name or not name.isprintable():
        problem = "contains a backslash or a control character; use '/' between folders"
    elif any(part in {"", ".", ".."} for part in name.split("/")):
        problem = "has an empty, '.' or '..' part; give a plain relative path like 'ckpt/model.pt'"
    if problem is not None:
        shown = name if len(name) <= 80 else name[:77] + "..."
        raise UsageError(f"file name {shown!r} {problem}")
    return name


def local_file(root: Path, name: str) -> Path:
    """Where the stored file ``name`` lives under the folder ``root``: checked by the name
    rule, and (symbolic links resolved) never outside ``root``.

    Raises:
        UsageError: a name that breaks the rule, or leads outside ``root`` through a link.
    """
    check_file_name(name)
    target = root / name
    resolved = target.resolve()
    if not resolved.is_relative_to(root.resolve()):
        raise UsageError(
            f"file name {name!r} leads outside {str(root)!r} through a symbolic link (to "
            f"{str(resolved)!r}); remove the link or choose another folder"
        )
    return target

"""Run ids and run names: generated, and checked where the user chooses them."""

from __future__ import annotations

import secrets
import string

from tracker._errors import UsageError
from tracker._wire.limits import MAX_NAME_CHARS

__all__ = ["check_run_id", "new_run_id", "new_run_name"]

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

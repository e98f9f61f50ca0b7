"""Redacting secrets from a command line before it is stored with a run.

A run's metadata keeps the script's arguments (``args``), and it is uploaded and shown to
everyone who can read the run, so an API key passed as ``--api-key KEY`` would leak. These
are replaced with ``<redacted>``: the value after a flag whose name says it is a secret
(``--api-key K``, ``--token=K``, ``-password K``), the value of a ``NAME=VALUE`` argument
with such a name (``WANDB_API_KEY=K``, ``db.password=K``), the password of a URL
(``https://user:K@host``), tokens with a known prefix (``sk-``, ``ghp_``, ``hf_``, ...) and
long random-looking tokens (32 or more letters and digits, mixed, like a hex key).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from typing import Final

__all__ = ["REDACTED", "redact_argv"]

REDACTED: Final = "<redacted>"

_SECRET_WORDS: Final = frozenset(
    "token tokens password passwd pwd secret secrets credential credentials passphrase "
    "apikey apitoken authtoken accesstoken accesskey secretkey privatekey".split()
)
_NAME_PARTS: Final = re.compile(r"[-_.]+")
_KNOWN_PREFIX: Final = re.compile(
    r"(?:sk-|sk_(?:live|test)_|rk_(?:live|test)_|ghp_|gho_|ghs_|ghu_|ghr_|github_pat_|glpat-"
    r"|hf_|xox[abprs]-|npm_|pypi-|AKIA|ASIA|AIza|eyJ)[A-Za-z0-9_\-.=+/]{12,}"
)
_URL_PASSWORD: Final = re.compile(r"(?<=://)([^/:@\s]*):[^/@\s]+@")
_CHUNK: Final = re.compile(r"[A-Za-z0-9]{32,}")
_MIN_BITS_PER_CHAR: Final = 3.0


def redact_argv(argv: Sequence[str]) -> list[str]:
    """``argv`` with secret values replaced by ``<redacted>`` (see the module docstring)."""
    redacted: list[str] = []
    secret_next = False
    for arg in argv:
        if secret_next and not arg.startswith("--"):
            redacted.append(REDACTED)
            secret_next = False
            continue
        secret_next = False
        name, equals, _ = arg.partition("=")
        if name.startswith("-") and _is_secret_name(name.lstrip("-")):
            if equals:
                redacted.append(f"{name}={REDACTED}")
            else:
                redacted.append(arg)
                secret_next = True
            continue
        if equals and not name.startswith("-") and _is_secret_name(name.lstrip("+~")):
            redacted.append(f"{name}={REDACTED}")
            continue
        redacted.append(_redact_tokens(arg))
    return redacted


def _is_secret_name(name: str) -> bool:
    """Whether a flag or variable name says its value is a secret (``api_key``, ``HF_TOKEN``)."""
    parts = [part for part in _NAME_PARTS.split(name.lower()) if part]
    if not parts:
        return False
    # "--api-key", "--key", "OPENAI_API_KEYS"; not "--keys loss,acc" (a list of metric names)
    key = parts[-1] == "key" or (parts[-1] == "keys" and len(parts) > 1)
    return key or any(part in _SECRET_WORDS for part in parts)


def _redact_tokens(arg: str) -> str:
    """``arg`` with URL passwords, prefixed tokens and long random-looking tokens redacted."""
    arg = _URL_PASSWORD.sub(rf"\1:{REDACTED}@", arg)
    arg = _KNOWN_PREFIX.sub(REDACTED, arg)
    return _CHUNK.sub(_redact_if_random, arg)


def _redact_if_random(match: re.Match[str]) -> str:
    chunk = match.group()
    mixed = any(char.isdigit() for char in chunk) and any(char.isalpha() for char in chunk)
    return REDACTED if mixed and _bits_per_char(chunk) >= _MIN_BITS_PER_CHAR else chunk


def _bits_per_char(text: str) -> float:
    """The Shannon entropy of ``text``'s characters: ~4 for random hex, ~5.5 for base62."""
    counts = Counter(text).values()
    return -sum(count / len(text) * math.log2(count / len(text)) for count in counts)

"""A run's console log read back: ``console`` records into lines, progress bars collapsed.

`StoredRun.console` and `ApiRun.console` both read through `console_lines`, so a run read
from its directory and from the server show the same lines.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from tracker._errors import UsageError

__all__ = ["ConsoleLine", "check_tail", "console_lines"]


@dataclass(frozen=True)
class ConsoleLine:
    """One line of a run's console output.

    Attributes:
        time: when it was written, unix seconds (lines written together share a time).
        stream: ``"stdout"`` or ``"stderr"``.
        text: the line without its newline; of a line redrawn with ``\\r`` (a progress
            bar), the text after the last ``\\r``.
    """

    time: float
    stream: str
    text: str


def check_tail(tail: object) -> int | None:
    """``tail`` as `console` takes it: None (every line) or an int >= 0.

    Raises:
        UsageError: anything else.
    """
    if tail is None or (type(tail) is int and tail >= 0):
        return tail
    raise UsageError(f"console(tail={tail!r}): tail is the number of last lines, an int >= 0")


def console_lines(payloads: Iterable[Mapping[str, Any]], tail: int | None) -> list[ConsoleLine]:
    """The lines of ``console`` record payloads in order (the last ``tail`` when given)."""
    lines: list[ConsoleLine] = []
    for payload in payloads:
        stamp, stream = float(payload["time"]), payload["stream"]
        texts = payload["text"].split("\n")
        if not texts[-1]:
            texts.pop()
        lines += [ConsoleLine(stamp, stream, _collapsed(text)) for text in texts]
    if tail is not None:
        return lines[max(len(lines) - tail, 0) :] if tail else []
    return lines


def _collapsed(line: str) -> str:
    """What a terminal shows of ``line``: the text after its last ``\\r`` (one ending a
    ``\\r\\n`` line ending does not count)."""
    line = line.rstrip("\r")
    return line[line.rfind("\r") + 1 :]

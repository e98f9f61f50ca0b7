"""A run's streams as the dashboard shows them: system samples as chart columns, console lines.

The live event stream (`tracker._server._dashboard`) follows both from the last ``seq`` a
page holds. System samples are turned into one column pair per metric (the sample times and
values), downsampled by the one sampler (`tracker._records.sampler`) over sample ``seq``\\ s
when a page asks for more than it charts. Console records become lines collapsed exactly
as ``run.console()`` collapses them (`tracker._records.console.console_lines`), a page
getting at most the last `CONSOLE_TAIL_LINES` of them; the whole text is a download.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, Final, TypedDict

from tracker._records.console import console_lines
from tracker._records.kinds import CONSOLE, SYSTEM
from tracker._records.sampler import Extremes, Series, sample_steps, series_of
from tracker._server.storage import RunKey, Store
from tracker._wire.limits import MAX_STREAM_PAGE

__all__ = [
    "CONSOLE_TAIL_CHARS",
    "CONSOLE_TAIL_LINES",
    "ConsoleTail",
    "SystemColumns",
    "console_tail",
    "console_text",
    "system_columns",
]

CONSOLE_TAIL_LINES: Final = 5000
"""The most console lines a page is sent at once, and holds."""
CONSOLE_TAIL_CHARS: Final = 2**21
"""The most characters of console lines sent at once (lines can be 64 Ki characters long)."""

_ON_LOOP_RECORDS: Final = 2000
"""More system records than this are turned into columns off the event loop."""


class MetricColumns(TypedDict):
    """One system metric's samples: their times (unix seconds) and values."""

    timestamp: list[float]
    value: list[float]


class SystemColumns(TypedDict):
    """System samples after a seq: the last seq read (``after`` when none is new), and the
    columns of each metric."""

    last_seq: int
    series: dict[str, MetricColumns]


class ConsoleTail(TypedDict):
    """Console lines after a seq: the last seq read, whether earlier lines were left out,
    and the lines as ``{"time", "stream", "text"}``."""

    last_seq: int
    cut: bool
    lines: list[dict[str, Any]]


async def system_columns(storage: Store, key: RunKey, after: int, samples: int) -> SystemColumns:
    """The run's system samples with seq > ``after`` as chart columns, each metric cut to
    about ``samples`` samples (each bucket keeping its smallest and largest value).

    Raises:
        RunNotFound: the run does not exist.
    """
    records: list[dict[str, Any]] = []
    async for page in _pages(storage, key, SYSTEM, after):
        records += page
    if not records:
        return {"last_seq": after, "series": {}}
    if len(records) <= _ON_LOOP_RECORDS:
        return _columns(records, samples)
    return await asyncio.to_thread(_columns, records, samples)


def _columns(records: list[dict[str, Any]], samples: int) -> SystemColumns:
    seqs = [record["seq"] for record in records]
    times = {record["seq"]: float(record["time"]) for record in records}
    metrics = {
        name: columns
        for name, columns in series_of(seqs, [record["data"] for record in records]).items()
        if not name.startswith("_")
    }
    series: dict[str, MetricColumns] = {}
    for name in sorted(metrics):
        steps, values = metrics[name]
        points = list(zip(steps, values, strict=True))
        if len(points) > samples:
            kept = set(
                sample_steps(steps, [Series(steps, values, Extremes.of_values(values))], samples)
            )
            points = [(seq, value) for seq, value in points if seq in kept]
        series[name] = {
            "timestamp": [times[seq] for seq, _ in points],
            "value": [value for _, value in points],
        }
    return {"last_seq": seqs[-1], "series": series}


async def console_tail(storage: Store, key: RunKey, after: int) -> ConsoleTail:
    """The last console lines with seq > ``after``: at most `CONSOLE_TAIL_LINES` lines and
    `CONSOLE_TAIL_CHARS` characters (always the last line); ``cut`` when lines after
    ``after`` were left out.

    Raises:
        RunNotFound: the run does not exist.
    """
    # every record holds at least one line, so the last TAIL records hold the last TAIL lines
    records = await storage.stream(key, CONSOLE, after=after, limit=CONSOLE_TAIL_LINES, newest=True)
    if not records:
        return {"last_seq": after, "cut": False, "lines": []}
    # a stream's seqs are 0, 1, 2, ...: a gap after ``after`` is records left out
    cut = records[0]["seq"] > after + 1
    lines = console_lines([record["data"] for record in records], None)
    keep, chars = len(lines), 0  # lines[keep:] are sent
    while keep > 0 and len(lines) - keep < CONSOLE_TAIL_LINES:
        size = len(lines[keep - 1].text)
        if chars + size > CONSOLE_TAIL_CHARS and keep < len(lines):
            break
        chars += size
        keep -= 1
    return {
        "last_seq": records[-1]["seq"],
        "cut": cut or keep > 0,
        "lines": [
            {"time": line.time, "stream": line.stream, "text": line.text} for line in lines[keep:]
        ],
    }


async def console_text(storage: Store, key: RunKey) -> AsyncIterator[bytes]:
    """The run's whole console as UTF-8 text, a line each, a page of records at a time.

    Raises:
        RunNotFound: the run does not exist (before the first chunk).
    """
    async for page in _pages(storage, key, CONSOLE, -1):
        lines = console_lines([record["data"] for record in page], None)
        yield "".join(line.text + "\n" for line in lines).encode()


async def _pages(
    storage: Store, key: RunKey, stream: str, after: int
) -> AsyncIterator[list[dict[str, Any]]]:
    """The records of a stream with seq > ``after``, a page of `MAX_STREAM_PAGE` at a time."""
    while True:
        page = await storage.stream(key, stream, after=after, limit=MAX_STREAM_PAGE)
        if page:
            yield page
        if len(page) < MAX_STREAM_PAGE:
            return
        after = page[-1]["seq"]

"""History reads: the rows of a step range, their keys, the one sampler, and DataFrames.

`read_run` answers `history()` here from the rows its fold yielded, with the rules the
server's backends follow, so a run reads back alike from its directory and the server.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Sequence
from typing import Any, Final

from tracker._errors import UsageError
from tracker._records.kinds import RESERVED_KEYS, STREAMS
from tracker._records.sampler import Extremes, Series, sample_steps, series_of, union_steps
from tracker._records.state import Rows

__all__ = [
    "DEFAULT_STREAM",
    "check_keys",
    "check_stream",
    "history_frame",
    "read_history",
    "shape_row",
    "stream_rows",
]

DEFAULT_STREAM: Final = "default"
"""``history(stream=...)`` of the logged rows, as in W&B."""


def check_keys(keys: Sequence[str] | None) -> list[str] | None:
    """``keys`` as a list, refusing a bare str (a common slip for ``[key]``)."""
    if keys is None:
        return None
    if isinstance(keys, str) or not all(isinstance(key, str) for key in keys):
        raise UsageError(f"history(keys={keys!r}) takes a list of keys, e.g. keys=['loss']")
    return list(keys)


def check_stream(
    stream: object, min_step: int | None, max_step: int | None, samples: int | None
) -> str | None:
    """None for ``history(stream="default")``, else the name of the stream to read.

    Raises:
        UsageError: no record kind declares the stream, or steps or samples are asked of a
            stream (its records have times, not steps).
    """
    if stream == DEFAULT_STREAM:
        return None
    if not isinstance(stream, str) or stream not in STREAMS:
        names = ", ".join(repr(name) for name in (DEFAULT_STREAM, *sorted(STREAMS)))
        raise UsageError(f"history(stream={stream!r:.60}): there is no such stream; use {names}")
    if (min_step, max_step, samples) != (None, None, None):
        raise UsageError(
            f"history(stream={stream!r}) has no steps: min_step, max_step and samples read "
            "the default stream; pass keys only"
        )
    return stream


def stream_rows(
    stream: str, payloads: Iterable[dict[str, Any]], keys: list[str] | None
) -> list[dict[str, Any]]:
    """A stream's records as ``history(stream=...)`` returns them: each payload whole, or
    with ``keys`` its time and those keys (records holding none left out)."""
    if keys is None:
        return list(payloads)
    stamp = STREAMS[stream].stamp_key
    rows = []
    for data in payloads:
        found = {key: data[key] for key in keys if key in data}
        if found:
            rows.append({stamp: data[stamp], **found})
    return rows


def shape_row(
    step: int, stamp: float, runtime: float, data: dict[str, Any], keys: list[str] | None
) -> dict[str, Any] | None:
    """A history row as reads return it: every field, or with ``keys`` only ``_step`` and
    those keys (None when the row holds none of them)."""
    if keys is None:
        return {"_step": step, "_timestamp": stamp, "_runtime": runtime, **data}
    picked = {key: data[key] for key in keys if key in data}
    return {"_step": step, **picked} if picked else None


def read_history(
    rows: Rows,
    keys: Sequence[str] | None,
    min_step: int | None,
    max_step: int | None,
    samples: int | None,
) -> list[dict[str, Any]]:
    """The rows (steps increasing) within the steps, shaped by `shape_row`; with ``samples``,
    at most about that many, each key's extremes kept (`tracker._records.sampler`).

    Raises:
        UsageError: ``keys`` is a str, or ``samples`` is below 1.
    """
    wanted = check_keys(keys)
    if samples is not None and samples < 1:
        raise UsageError(f"history(samples={samples}): ask for at least 1 sample, e.g. 1000")
    steps = rows.steps
    start = 0 if min_step is None else bisect_left(steps, min_step)
    stop = len(steps) if max_step is None else bisect_right(steps, max_step)
    indexes: Sequence[int] = range(start, stop)
    if samples is not None and len(indexes) > samples and wanted != []:
        indexes = _sampled(rows, start, stop, wanted, samples)
    shaped = (
        shape_row(steps[i], rows.stamps[i], rows.runtimes[i], rows.datas[i], wanted)
        for i in indexes
    )
    return [row for row in shaped if row is not None]


def _sampled(rows: Rows, start: int, stop: int, keys: list[str] | None, samples: int) -> list[int]:
    """The indexes of the rows a sampled read keeps."""
    datas = rows.datas[start:stop]
    names = None if keys is None else set(keys)
    if names is not None:
        datas = [{key: data[key] for key in data if key in names} for data in datas]
    else:
        datas = [{key: data[key] for key in data if key not in RESERVED_KEYS} for data in datas]
    columns = series_of(rows.steps[start:stop], datas)
    series = [
        Series(steps, values, Extremes.of_values(values)) for steps, values in columns.values()
    ]
    kept = sample_steps(union_steps([one.steps for one in series]), series, samples)
    position = {step: index for index, step in enumerate(rows.steps[start:stop], start)}
    return [position[step] for step in kept]


def history_frame(rows: list[dict[str, Any]]) -> Any:
    """The rows as a pandas DataFrame.

    Raises:
        UsageError: pandas is not installed.
    """
    try:
        import pandas
    except ImportError:
        raise UsageError(
            "history(pandas=True) needs pandas: pip install pandas (or leave pandas=False "
            "for a list of dicts)"
        ) from None
    return pandas.DataFrame.from_records(rows)

"""History rows: step and key filters, downsampling that keeps extremes, DataFrames.

Shared by `read_run` (local runs) so that it answers like the server's read API.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from math import isnan
from typing import Any

from tracker._errors import UsageError

__all__ = ["downsample", "history_frame", "select"]


def select(
    rows: Iterable[dict[str, Any]],
    keys: Sequence[str] | None,
    min_step: int | None,
    max_step: int | None,
) -> list[dict[str, Any]]:
    """The rows within the steps; with ``keys``, only those keys (and ``_step``), and only
    rows holding at least one of them."""
    if isinstance(keys, str):
        raise UsageError(f"history(keys={keys!r}) takes a list of keys, e.g. keys=[{keys!r}]")
    picked = []
    for row in rows:
        step = row["_step"]
        if (min_step is not None and step < min_step) or (max_step is not None and step > max_step):
            continue
        if keys is None:
            picked.append(row)
            continue
        kept = {key: row[key] for key in keys if key in row}
        if kept:
            picked.append({"_step": step, **kept})
    return picked


def downsample(
    rows: list[dict[str, Any]], keys: Sequence[str] | None, samples: int
) -> list[dict[str, Any]]:
    """At most about ``samples`` rows: the steps are cut into ``samples // 2`` buckets and each
    bucket keeps the rows with the smallest and largest value of each key (so spikes survive),
    plus the first and last row."""
    if samples < 2:
        raise UsageError(f"history(samples={samples}): ask for at least 2 samples")
    if len(rows) <= samples:
        return rows
    names = (
        list(keys)
        if keys is not None
        else sorted({key for row in rows for key in row if not key.startswith("_")})
    )
    buckets = max(1, samples // 2)
    size = len(rows) / buckets
    kept = {0, len(rows) - 1}
    for bucket in range(buckets):
        start, end = int(bucket * size), int((bucket + 1) * size)
        for name in names:
            low = high = None
            for index in range(start, end):
                value = rows[index].get(name)
                if isinstance(value, bool) or not isinstance(value, (int, float)) or isnan(value):
                    continue
                if low is None or value < rows[low][name]:
                    low = index
                if high is None or value > rows[high][name]:
                    high = index
            kept.update(index for index in (low, high) if index is not None)
    return [rows[index] for index in sorted(kept)]


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

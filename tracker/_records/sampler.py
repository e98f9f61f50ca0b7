"""The one sampler: which rows a ``samples=N`` history read keeps, for every reader.

A key's *series* is the steps holding it and its values as floats (NaN for what is not a
number). Sampling cuts the rows into N // 2 buckets and keeps, per key, the rows with
each bucket's smallest and largest number, so spikes survive; blocks of `BLOCK` values
carry their extremes, so a bucket compares a few block extremes instead of every value.
`read_run` samples series built from the run log (`Extremes.of_values`); the server's
backends from stored chunks that keep each block's extremes (`tracker._server.storage.series`).
"""

from __future__ import annotations

import math
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import pairwise
from operator import itemgetter
from typing import Any, Final, NamedTuple

__all__ = [
    "BLOCK",
    "BlockBuilder",
    "Extremes",
    "Series",
    "clip",
    "low_high",
    "sample_steps",
    "series_of",
    "union_steps",
]

BLOCK: Final = 64
"""Entries per block whose extremes sampling compares (a stored format of the server's
series chunks: changing it would misread the blocks of chunks already stored)."""


def series_of(
    steps: Sequence[int], datas: Sequence[dict[str, Any]]
) -> dict[str, tuple[array[int], array[float]]]:
    """Per key of the rows (in step order): the steps holding it, and its values as floats
    (NaN for what is not a number: str, bool, None, lists, dicts, NaN itself)."""
    if not datas:
        return {}
    keys: set[str] = set().union(*datas)
    uniform = set(map(len, datas)) == {len(keys)}  # every row holds every key
    all_steps = array("q", steps)
    out: dict[str, tuple[array[int], array[float]]] = {}
    for key in keys:
        if uniform:
            out[key] = (all_steps, _floats(list(map(itemgetter(key), datas))))
            continue
        held = [(step, data[key]) for step, data in zip(steps, datas, strict=True) if key in data]
        out[key] = (array("q", [step for step, _ in held]), _floats([value for _, value in held]))
    return out


def _floats(values: list[Any]) -> array[float]:
    types = set(map(type, values))
    if types <= {float, int}:
        try:
            return array("d", values)
        except OverflowError:
            pass  # an int beyond the float range: convert one by one below
    return array("d", [_as_float(value) for value in values])


def _as_float(value: Any) -> float:
    if type(value) is float:
        return value
    if type(value) is int:
        try:
            return float(value)
        except OverflowError:
            return math.inf if value > 0 else -math.inf
    return math.nan


def low_high(part: Sequence[float]) -> tuple[float, float]:
    """The smallest and the largest number of ``part``, NaN when it holds none."""
    return _extreme(min, part), _extreme(max, part)


def _extreme(pick: Callable[[Sequence[float]], float], part: Sequence[float]) -> float:
    """``pick`` (min or max) of the numbers of ``part``, NaN when it holds none.

    ``min`` and ``max`` keep their first item until a later one compares past it, and
    every comparison with NaN is false: they step over a NaN unless it comes first,
    where it sticks. Only then are the NaN taken out (no pass looking for NaN first:
    ingest runs this over every value).
    """
    if not part:
        return math.nan
    value = pick(part)
    if math.isnan(value):
        numbers = [item for item in part if not math.isnan(item)]
        return pick(numbers) if numbers else math.nan
    return value


@dataclass(frozen=True)
class Extremes:
    """A series' values cut into blocks, with each block's smallest and largest number
    (NaN when it holds none): sampling a bucket compares the extremes of the blocks inside
    it and the values of the two partial blocks at its edges, not every value."""

    starts: Sequence[int]
    """Block ``i`` holds ``values[starts[i]:starts[i + 1]]``; the last entry is ``len(values)``."""
    lows: array[float]
    highs: array[float]

    @classmethod
    def of_values(cls, values: array[float]) -> Extremes:
        """The blocks of `BLOCK` values of an in-memory series (the last one shorter)."""
        builder = BlockBuilder(values)
        builder.summarize(0, len(values))
        return builder.extremes(len(values))

    def cut(self, values: array[float], start: int, stop: int) -> Extremes:
        """The blocks of ``values[start:stop]``: those wholly inside, and the partial
        ones at its ends summarized from ``values``."""
        first, last = self._inside(start, stop)
        builder = BlockBuilder(values)
        if first >= last:
            builder.summarize(start, stop)
        else:
            builder.summarize(start, self.starts[first])
            builder.starts.extend(self.starts[first:last])
            builder.lows.extend(self.lows[first:last])
            builder.highs.extend(self.highs[first:last])
            builder.summarize(self.starts[last], stop)
        cut = builder.extremes(stop)
        return Extremes(array("q", [begin - start for begin in cut.starts]), cut.lows, cut.highs)

    def first_extremes(self, values: array[float], start: int, stop: int) -> tuple[int, int] | None:
        """Where the first smallest and the first largest number of ``values[start:stop]``
        are, or None when it holds no number."""
        first, last = self._inside(start, stop)
        if first >= last:  # no whole block inside: compare the values themselves
            low, high = low_high(values[start:stop])
            if math.isnan(low):
                return None
            return values.index(low, start, stop), values.index(high, start, stop)
        smallest = self._first(values, min, self.lows, start, first, last, stop)
        largest = self._first(values, max, self.highs, start, first, last, stop)
        if smallest is None or largest is None:
            return None
        return smallest, largest

    def _inside(self, start: int, stop: int) -> tuple[int, int]:
        """The blocks wholly inside ``[start, stop)``: ``range(first, last)``."""
        return bisect_left(self.starts, start), bisect_right(self.starts, stop) - 1

    def _first(
        self,
        values: array[float],
        pick: Callable[[Sequence[float]], float],
        blocks: array[float],
        start: int,
        first: int,
        last: int,
        stop: int,
    ) -> int | None:
        """Where the first of the numbers' ``pick`` (min or max) is. Its value is the
        ``pick`` of the head's values, the whole blocks' and the tail's values; the
        first of the three holding it holds its first occurrence."""
        head_stop, tail_start = self.starts[first], self.starts[last]
        found = [
            _extreme(pick, values[start:head_stop]),
            _extreme(pick, blocks[first:last]),
            _extreme(pick, values[tail_start:stop]),
        ]
        numbers = [value for value in found if not math.isnan(value)]
        if not numbers:
            return None
        chosen = pick(numbers)
        if found[0] == chosen:
            return values.index(chosen, start, head_stop)
        if found[1] == chosen:
            block = blocks.index(chosen, first, last)
            return values.index(chosen, self.starts[block], self.starts[block + 1])
        return values.index(chosen, tail_start, stop)


class BlockBuilder:
    """Collects blocks for an `Extremes` over ``values``."""

    def __init__(self, values: array[float]) -> None:
        self.values = values
        self.starts: array[int] = array("q")
        self.lows: array[float] = array("d")
        self.highs: array[float] = array("d")

    def summarize(self, start: int, stop: int) -> None:
        """Add ``values[start:stop]`` as blocks of `BLOCK` (the last one shorter)."""
        for begin in range(start, stop, BLOCK):
            low, high = low_high(self.values[begin : min(begin + BLOCK, stop)])
            self.starts.append(begin)
            self.lows.append(low)
            self.highs.append(high)

    def extremes(self, end: int) -> Extremes:
        """The blocks collected, the last one ending at ``end``."""
        self.starts.append(end)
        return Extremes(self.starts, self.lows, self.highs)


class Series(NamedTuple):
    """One key's numbers over a step range, as sampling reads them."""

    steps: Sequence[int]
    values: array[float]
    extremes: Extremes

    def clip(self, low: int, high: int) -> Series:
        """The entries with ``low <= step <= high``."""
        start, stop = _span(self.steps, low, high)
        if start == 0 and stop == len(self.steps):
            return self
        return Series(
            self.steps[start:stop],
            self.values[start:stop],
            self.extremes.cut(self.values, start, stop),
        )


def clip(
    steps: array[int], values: array[float], low: int, high: int
) -> tuple[array[int], array[float]]:
    """The entries of a series with ``low <= step <= high``."""
    start, stop = _span(steps, low, high)
    if start == 0 and stop == len(steps):
        return steps, values
    return steps[start:stop], values[start:stop]


def _span(steps: Sequence[int], low: int, high: int) -> tuple[int, int]:
    """The index range of the entries with ``low <= step <= high``."""
    return bisect_left(steps, low), bisect_right(steps, high)


def union_steps(step_arrays: Sequence[Sequence[int]]) -> Sequence[int]:
    """The sorted steps holding at least one of the series."""
    if not step_arrays:
        return array("q")
    first = step_arrays[0]
    if all(steps == first for steps in step_arrays[1:]):
        return first
    largest = max(step_arrays, key=len)
    others = [steps for steps in step_arrays if steps is not largest]
    # A sparse key (validation every 100 steps) is usually logged at steps the dense one
    # has: check that by bisection when cheaper than building a set of the dense steps.
    if sum(map(len, others)) * 16 < len(largest) and all(
        _has(largest, step) for steps in others for step in steps
    ):
        return largest
    return array("q", sorted(set().union(*step_arrays)))


def _has(steps: Sequence[int], step: int) -> bool:
    index = bisect_left(steps, step)
    return index < len(steps) and steps[index] == step


def sample_steps(union: Sequence[int], series: Sequence[Series], samples: int) -> list[int]:
    """The steps a ``samples=N`` history read returns, in order.

    ``union`` holds the rows' steps (each holding a requested key), ``series`` the
    requested keys' series over the same step range. With more than N rows, they are
    cut by row index into N // 2 buckets; each bucket keeps, per key, the rows holding
    its smallest and its largest number (NaN and non-numbers are skipped; ties keep
    the earliest step), and the first and last rows are kept too.
    """
    count = len(union)
    if count <= samples:
        return list(union)
    buckets = max(1, samples // 2)
    picked = {union[0], union[-1]}
    firsts = [union[(index * count + buckets - 1) // buckets] for index in range(buckets)]
    for steps, values, extremes in series:
        bounds = [bisect_left(steps, step) for step in firsts]
        bounds.append(len(steps))
        for start, stop in pairwise(bounds):
            found = extremes.first_extremes(values, start, stop) if start < stop else None
            if found is not None:
                picked.add(steps[found[0]])
                picked.add(steps[found[1]])
    return sorted(picked)

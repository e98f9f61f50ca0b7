"""Change points in a benchmark's history: where its level stepped, commit by commit.

The model is asv's (asv/step_detect.py): the series is piecewise constant plus noise, and
the fit minimizes the L1 distance of each point to its segment's median, which a single
outlier cannot drag far. How many segments to use is chosen by a Schwarz (BIC-like)
information criterion over the best fit with k segments, for each k:

    IC(k) = penalty * k * ln(m) / m + ln(floor + mean |y - fit_k|)

(asv minimizes the same form along a path of Potts penalties; here every k is solved
exactly by dynamic programming, which is cheap for histories of hundreds of commits).
The criterion does not depend on the scale of the data, so no noise level is needed.

Values are fitted as logarithms, so steps are relative (a 5 % slowdown is the same step
on a 1 µs and on a 1 s benchmark). Segments hold at least `MIN_SEGMENT` commits: one
slow commit between normal ones is an outlier, not a change, and a step at the newest
commit is reported once a second commit confirms it. Steps smaller than the practical
threshold are not reported.

Defaults, and how they were chosen, are in docs/benchmark-suites.md ("How detection
works"); tests/bench/test_detect.py checks them on synthetic series with a fixed seed.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Final

from tracker._bench._stats import median

__all__ = [
    "BLIP",
    "DEFAULT_PENALTY",
    "DEFAULT_THRESHOLD",
    "MAX_POINTS",
    "MIN_SEGMENT",
    "ChangePoint",
    "change_points",
]

DEFAULT_PENALTY: Final = 4.0
"""The factor of k ln(m) / m in the criterion: asv's default (4 degrees of freedom per step)."""
DEFAULT_THRESHOLD: Final = 0.05
"""Steps smaller than this relative change (5 %) are not reported."""
MIN_SEGMENT: Final = 2
"""The fewest commits a level must hold to count."""
BLIP: Final = 3
"""An inner level held by fewer commits than this, with equal levels on both sides, is a
transient and is dropped."""
MAX_POINTS: Final = 500
"""Only the newest this many points of a series are fitted (the fit costs O(m^2))."""
_FLOOR: Final = 1e-6
"""Added to the mean deviation, so a perfect fit (noise-free counts) is finite: 1e-4 %."""
_PATIENCE: Final = 3
"""Stop adding segments after this many k in a row that do not improve the criterion."""


@dataclass(frozen=True)
class ChangePoint:
    """A step in a series: the level changes from ``before`` to ``after`` at ``index``."""

    index: int
    """The first point at the new level."""
    before: float
    """The median of the segment before the step."""
    after: float
    """The median of the segment from ``index`` on."""

    @property
    def ratio(self) -> float:
        """``after / before``: above 1 the values went up."""
        return self.after / self.before if self.before else math.inf


def change_points(
    values: Sequence[float],
    *,
    penalty: float = DEFAULT_PENALTY,
    threshold: float = DEFAULT_THRESHOLD,
    min_segment: int = MIN_SEGMENT,
) -> list[ChangePoint]:
    """The steps in ``values`` (positive numbers in commit order), oldest first.

    Args:
        values: one value per commit, e.g. the median of its samples.
        penalty: the criterion's factor; larger finds fewer, surer steps.
        threshold: the smallest relative step reported (0.05 = 5 %).
        min_segment: the fewest points a level must hold.
    """
    offset = max(0, len(values) - MAX_POINTS)
    logs = [math.log(value) for value in values[offset:]]
    smallest = math.log1p(threshold)
    bounds = _without_blips(logs, _segmentation(logs, penalty, min_segment), smallest)
    levels = _levels(logs, bounds)
    return [
        ChangePoint(offset + start, math.exp(before), math.exp(after))
        for start, (before, after) in zip(bounds[1:-1], pairwise(levels), strict=True)
        if abs(after - before) >= smallest
    ]


def _levels(y: Sequence[float], bounds: Sequence[int]) -> list[float]:
    """The median of each segment between consecutive ``bounds``."""
    return [median(y[start:end]) for start, end in pairwise(bounds)]


def _without_blips(y: Sequence[float], bounds: list[int], smallest: float) -> list[int]:
    """``bounds`` less the segments shorter than `BLIP` that are transients: an inner one
    whose neighbours lie within ``smallest`` of each other (a level that came back at once:
    a busy machine for two jobs; asv's detect_regressions drops them too), and the first
    one, which no earlier level confirms. A short last segment stays: it is the newest."""
    if len(bounds) > 2 and bounds[1] < BLIP:
        bounds = [0, *bounds[2:]]
    while True:
        levels = _levels(y, bounds)
        for index in range(1, len(levels) - 1):
            short = bounds[index + 1] - bounds[index] < BLIP
            if short and abs(levels[index + 1] - levels[index - 1]) < smallest:
                bounds = bounds[:index] + bounds[index + 2 :]
                break
        else:
            return bounds


def _segmentation(y: Sequence[float], penalty: float, min_segment: int) -> list[int]:
    """The segment bounds ``[0, b1, ..., m]`` of the fit that minimizes the criterion."""
    m = len(y)
    if m < 2 * min_segment:
        return [0, m]
    cost = _segment_costs(y, min_segment)
    log_m = math.log(m) / m
    # best[j]: the least total cost of y[:j] cut into k segments; how[k][j]: the last cut
    best = [cost[0].get(j, math.inf) for j in range(m + 1)]
    how: list[list[int]] = [[0] * (m + 1)]
    scores = [penalty * log_m + math.log(_FLOOR + best[m] / m)]
    chosen = 1
    for k in range(2, m // min_segment + 1):
        step = [math.inf] * (m + 1)
        cuts = [0] * (m + 1)
        for j in range(k * min_segment, m + 1):
            for i in range((k - 1) * min_segment, j - min_segment + 1):
                total = best[i] + cost[i][j]
                if total < step[j]:
                    step[j], cuts[j] = total, i
        best = step
        how.append(cuts)
        scores.append(penalty * k * log_m + math.log(_FLOOR + best[m] / m))
        if scores[-1] < scores[chosen - 1]:
            chosen = k
        elif k - chosen >= _PATIENCE:
            break
    bounds = [m]
    for k in range(chosen, 1, -1):
        bounds.append(how[k - 1][bounds[-1]])
    bounds.append(0)
    return bounds[::-1]


def _segment_costs(y: Sequence[float], min_segment: int) -> list[dict[int, float]]:
    """``cost[i][j]``: the sum of |y - median| over ``y[i:j]``, for every segment of at
    least ``min_segment`` points; a running median (two heaps) makes each O(log m)."""
    m = len(y)
    cost: list[dict[int, float]] = []
    for start in range(m):
        low: list[float] = []  # max-heap of the lower half, negated
        high: list[float] = []  # min-heap of the upper half
        low_sum = high_sum = 0.0
        row: dict[int, float] = {}
        for end in range(start, m):
            value = y[end]
            if low and value <= -low[0]:
                heapq.heappush(low, -value)
                low_sum += value
            else:
                heapq.heappush(high, value)
                high_sum += value
            if len(low) > len(high) + 1:
                moved = -heapq.heappop(low)
                low_sum -= moved
                heapq.heappush(high, moved)
                high_sum += moved
            elif len(high) > len(low):
                moved = heapq.heappop(high)
                high_sum -= moved
                heapq.heappush(low, -moved)
                low_sum += moved
            if end + 1 - start >= min_segment:
                middle = -low[0]
                # |y - median| summed: the upper half above it, the lower half below it
                row[end + 1] = max(
                    0.0,
                    (high_sum - middle * len(high)) + (middle * len(low) - low_sum),
                )
        cost.append(row)
    return cost

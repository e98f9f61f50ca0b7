"""The statistics benchmark verdicts rest on, in pure Python (no scipy at run time).

- `describe`: the summary statistics stored with every benchmark (min, quartiles, mean, ...).
- `mann_whitney`: the two-sided Mann-Whitney U test of two samples, with the tie
  correction; exact for small samples without ties, else the normal approximation with a
  continuity correction. It compares a head commit's samples with its base's.
- `van_elteren`: the stratified form of the same test (van Elteren 1960), for the pairs of
  an interleaved A/B run: samples are ranked only within their pair, so drift between
  pairs cancels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

__all__ = ["RankTest", "describe", "mann_whitney", "median", "quantile", "van_elteren"]

EXACT_MAX_PRODUCT: Final = 2500
"""The exact U distribution is used up to n1 * n2 this large (no ties); cost O(n1 * n1 n2)."""


@dataclass(frozen=True)
class RankTest:
    """A two-sided rank test's outcome: the statistic and its p-value."""

    statistic: float
    p_value: float
    exact: bool


def quantile(ordered: Sequence[float], fraction: float) -> float:
    """The ``fraction`` quantile of sorted values, interpolating linearly (numpy's default)."""
    position = (len(ordered) - 1) * fraction
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def median(values: Sequence[float]) -> float:
    """The median of ``values`` (not empty)."""
    return quantile(sorted(values), 0.5)


def describe(samples: Sequence[float]) -> dict[str, float | int]:
    """The statistics stored per benchmark: rounds, min, q1, median, q3, max, mean,
    stddev (sample), iqr and ops (1 / mean, calls per second for a time)."""
    ordered = sorted(samples)
    count = len(ordered)
    mean = math.fsum(ordered) / count
    variance = math.fsum((x - mean) ** 2 for x in ordered) / (count - 1) if count > 1 else 0.0
    q1, q3 = quantile(ordered, 0.25), quantile(ordered, 0.75)
    return {
        "rounds": count,
        "min": ordered[0],
        "q1": q1,
        "median": quantile(ordered, 0.5),
        "q3": q3,
        "max": ordered[-1],
        "mean": mean,
        "stddev": math.sqrt(variance),
        "iqr": q3 - q1,
        "ops": 1.0 / mean if mean > 0 else 0.0,
    }


def _ranks(values: Sequence[float]) -> tuple[list[float], float]:
    """Average ranks (1-based) of ``values``, and the tie term sum(t^3 - t) over tie groups."""
    order = sorted(range(len(values)), key=values.__getitem__)
    ranks = [0.0] * len(values)
    ties = 0.0
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
            end += 1
        rank = (start + end) / 2 + 1
        for index in order[start : end + 1]:
            ranks[index] = rank
        size = end - start + 1
        ties += size**3 - size
        start = end + 1
    return ranks, ties


def _exact_u_counts(m: int, n: int) -> list[int]:
    """How many of the C(m+n, m) orderings give each U from 0 to m*n: the coefficients of
    the Gaussian binomial, prod over i of (1 - q^(n+i)) / (1 - q^i), in integers."""
    size = m * n + 1
    counts = [0] * size
    counts[0] = 1
    for i in range(1, m + 1):
        for j in range(size - 1, n + i - 1, -1):  # times (1 - q^(n+i))
            counts[j] -= counts[j - n - i]
        for j in range(i, size):  # divided by (1 - q^i): exact
            counts[j] += counts[j - i]
    return counts


def mann_whitney(first: Sequence[float], second: Sequence[float]) -> RankTest:
    """Two-sided Mann-Whitney U test: do ``first`` and ``second`` come from one distribution?

    The statistic is U of ``first`` (how often a value of ``first`` exceeds one of
    ``second``, ties counting half). Without ties and with n1 * n2 <= `EXACT_MAX_PRODUCT`
    the p-value is exact; otherwise it is the normal approximation with the tie-corrected
    variance and a continuity correction. Both samples must be non-empty.
    """
    m, n = len(first), len(second)
    ranks, ties = _ranks([*first, *second])
    u = math.fsum(ranks[:m]) - m * (m + 1) / 2
    if ties == 0 and m * n <= EXACT_MAX_PRODUCT:
        counts = _exact_u_counts(min(m, n), max(m, n))
        low = min(u, m * n - u)
        tail = sum(counts[: int(low) + 1])
        return RankTest(u, min(1.0, 2 * tail / math.comb(m + n, m)), exact=True)
    total = m + n
    variance = m * n / 12 * ((total + 1) - ties / (total * (total - 1)))
    if variance <= 0:  # every value equal: no evidence of a difference
        return RankTest(u, 1.0, exact=False)
    z = max(0.0, abs(u - m * n / 2) - 0.5) / math.sqrt(variance)
    return RankTest(u, min(1.0, math.erfc(z / math.sqrt(2))), exact=False)


def van_elteren(pairs: Sequence[tuple[Sequence[float], Sequence[float]]]) -> RankTest:
    """Stratified two-sided rank test over ``(first, second)`` pairs of samples.

    Each pair is ranked on its own; the statistic is the sum over pairs of the rank sum of
    ``first`` divided by (pair size + 1), van Elteren's locally most powerful weights, and
    its p-value comes from the normal approximation with tie-corrected variances. Pairs with
    an empty side are skipped; with none left the p-value is 1.
    """
    statistic = expected = variance = 0.0
    for first, second in pairs:
        m, n = len(first), len(second)
        if not m or not n:
            continue
        total = m + n
        ranks, ties = _ranks([*first, *second])
        statistic += math.fsum(ranks[:m]) / (total + 1)
        expected += m / 2
        variance += m * n / (12 * (total + 1)) * (1 - ties / (total**3 - total))
    if variance <= 0:
        return RankTest(statistic, 1.0, exact=False)
    z = abs(statistic - expected) / math.sqrt(variance)
    return RankTest(statistic, min(1.0, math.erfc(z / math.sqrt(2))), exact=False)

"""Verdicts: is a head commit's benchmark worse than its base's, and is that more than noise?

A change counts when it is significant **and** large enough to matter: the rank test's
p-value is below ``alpha`` (default 0.002) and the ratio of medians differs from 1 by at
least ``threshold`` (default 5 %, both ways on a log scale: 1.05 or 1 / 1.05). Its
direction comes from the unit: for a time, a size or a count, up is worse; for a
throughput (``ops/s``, ``items per second``, ``Hz``), down is worse.

Two samples are compared with the Mann-Whitney U test; the pairs of an interleaved A/B
run with the stratified test (`_stats.van_elteren`), and their ratio is the median of the
pairs' ratios.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from tracker._bench._detect import DEFAULT_THRESHOLD
from tracker._bench._results import Benchmark
from tracker._bench._stats import mann_whitney, median, van_elteren

__all__ = [
    "DEFAULT_ALPHA",
    "GONE",
    "IMPROVEMENT",
    "NEW",
    "REGRESSION",
    "UNCHANGED",
    "UNSURE",
    "Comparison",
    "compare",
    "compare_pairs",
    "judge",
    "lower_is_better",
]

DEFAULT_ALPHA: Final = 0.002
REGRESSION: Final = "regression"
IMPROVEMENT: Final = "improvement"
UNCHANGED: Final = "unchanged"
UNSURE: Final = "unsure"
"""Beyond the threshold, but not significant (or no samples to test)."""
NEW: Final = "new"
GONE: Final = "gone"
_THROUGHPUT: Final = re.compile(r"/\s*s|per\s+s|hz\b|\bops\b|throughput")


def lower_is_better(unit: str) -> bool:
    """Whether a smaller value of ``unit`` is better: yes for times, sizes and counts, no
    for rates (``ops/s``, ``MB/s``, ``items per second``, ``Hz``, ``throughput``)."""
    return _THROUGHPUT.search(unit.strip().lower()) is None


@dataclass(frozen=True)
class Comparison:
    """One benchmark at the base and at the head, and the verdict."""

    name: str
    unit: str
    base: Benchmark | None
    head: Benchmark | None
    ratio: float | None
    """head / base of the medians (of the pairs' ratios for A/B)."""
    p_value: float | None
    """None when a side has no raw samples."""
    kind: str


def judge(ratio: float, p_value: float | None, unit: str, alpha: float, threshold: float) -> str:
    """The verdict on a ratio head / base and its p-value (None: not tested)."""
    large = ratio <= 0 or abs(math.log(ratio)) >= math.log1p(threshold)
    if not large:
        return UNCHANGED
    if p_value is None or p_value >= alpha:
        return UNSURE
    worse = (ratio > 1) == lower_is_better(unit)
    return REGRESSION if worse else IMPROVEMENT


def compare(
    base: Mapping[str, Benchmark],
    head: Mapping[str, Benchmark],
    alpha: float = DEFAULT_ALPHA,
    threshold: float = DEFAULT_THRESHOLD,
) -> list[Comparison]:
    """Compare each benchmark of ``head`` with ``base`` (by name), by the rank test on their
    samples; benchmarks on one side only are ``new`` or ``gone``. Sorted by name."""
    found = []
    for name in sorted({*base, *head}):
        before, after = base.get(name), head.get(name)
        if before is None or after is None:
            only = head[name] if before is None else base[name]
            kind = NEW if before is None else GONE
            found.append(Comparison(name, only.unit, before, after, None, None, kind))
            continue
        ratio = _ratio(after.stats.get("median"), before.stats.get("median"))
        p_value = None
        if before.samples and after.samples:
            p_value = mann_whitney(before.samples, after.samples).p_value
        kind = UNSURE if ratio is None else judge(ratio, p_value, after.unit, alpha, threshold)
        found.append(Comparison(name, after.unit, before, after, ratio, p_value, kind))
    return found


def compare_pairs(
    pairs: Mapping[str, Sequence[tuple[Benchmark, Benchmark]]],
    alpha: float = DEFAULT_ALPHA,
    threshold: float = DEFAULT_THRESHOLD,
) -> list[Comparison]:
    """Compare benchmarks measured in (base, head) pairs, each pair back to back on one
    machine: the stratified rank test over the pairs, the median of the pairs' ratios."""
    found = []
    for name in sorted(pairs):
        both = pairs[name]
        ratios = [
            ratio
            for before, after in both
            if (ratio := _ratio(after.stats.get("median"), before.stats.get("median")))
        ]
        p_value = van_elteren([(before.samples, after.samples) for before, after in both]).p_value
        unit = both[0][1].unit
        base = Benchmark.of_samples(name, unit, [x for before, _ in both for x in before.samples])
        head = Benchmark.of_samples(name, unit, [x for _, after in both for x in after.samples])
        ratio = median(ratios) if ratios else None
        kind = UNSURE if ratio is None else judge(ratio, p_value, unit, alpha, threshold)
        found.append(Comparison(name, unit, base, head, ratio, p_value, kind))
    return found


def _ratio(after: object, before: object) -> float | None:
    if isinstance(after, int | float) and isinstance(before, int | float) and before > 0:
        return float(after) / float(before)
    return None

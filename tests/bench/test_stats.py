"""The rank tests and verdicts, against references computed another way."""

from __future__ import annotations

import math
import random
from itertools import combinations

import pytest

from tracker._bench._compare import (
    DEFAULT_ALPHA,
    GONE,
    IMPROVEMENT,
    NEW,
    REGRESSION,
    UNCHANGED,
    UNSURE,
    compare,
    judge,
    lower_is_better,
)
from tracker._bench._results import Benchmark
from tracker._bench._stats import describe, mann_whitney, van_elteren


def _enumerated_p(first: list[float], second: list[float]) -> float:
    """The exact two-sided p-value by enumerating every split of the pooled values."""
    pooled = [*first, *second]

    def u_of(chosen: tuple[int, ...]) -> float:
        inside = [pooled[i] for i in chosen]
        outside = [pooled[i] for i in range(len(pooled)) if i not in chosen]
        return sum((a > b) + 0.5 * (a == b) for a in inside for b in outside)

    observed = u_of(tuple(range(len(first))))
    splits = [u_of(chosen) for chosen in combinations(range(len(pooled)), len(first))]
    middle = len(first) * len(second) / 2
    extreme = sum(1 for u in splits if abs(u - middle) >= abs(observed - middle) - 1e-9)
    return extreme / len(splits)


@pytest.mark.parametrize("seed", range(6))
def test_exact_p_value_equals_enumerating_every_ordering(seed: int) -> None:
    """Without ties, small samples get the exact p-value of the U distribution."""
    rng = random.Random(seed)
    first = [rng.gauss(0, 1) for _ in range(rng.randint(2, 6))]
    second = [rng.gauss(0.8, 1) for _ in range(rng.randint(2, 7))]
    test = mann_whitney(first, second)
    assert test.exact
    assert test.p_value == pytest.approx(_enumerated_p(first, second), abs=1e-12)


def test_normal_approximation_with_ties_matches_the_reference_value() -> None:
    """With ties, the tie-corrected normal approximation with continuity correction is used
    (reference: scipy.stats.mannwhitneyu(a, b, method="asymptotic"): U 17.5, p 0.0084862)."""
    first = [1, 2, 2, 3, 3, 3, 4, 5, 5, 6]
    second = [3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8]
    test = mann_whitney(first, second)
    assert not test.exact
    assert test.statistic == 17.5
    assert test.p_value == pytest.approx(0.0084862, abs=1e-6)


def test_identical_samples_give_no_evidence() -> None:
    """All values equal: p is 1, on either route."""
    assert mann_whitney([1.0] * 5, [1.0] * 7).p_value == 1.0
    assert mann_whitney([1.0] * 60, [1.0] * 70).p_value == 1.0


def test_pairs_cancel_drift_that_pooling_cannot() -> None:
    """Head 5 % slower within every pair, while pairs drift 6x: the stratified test sees it
    beyond doubt, Mann-Whitney on the pooled samples not at the default alpha."""
    rng = random.Random(7)
    pairs = []
    for level in (1.0, 3.0, 0.5, 2.0, 1.5, 0.7):
        base = [level * math.exp(rng.gauss(0, 0.01)) for _ in range(30)]
        head = [1.05 * level * math.exp(rng.gauss(0, 0.01)) for _ in range(30)]
        pairs.append((base, head))
    stratified = van_elteren(pairs)
    pooled = mann_whitney([x for b, _ in pairs for x in b], [x for _, h in pairs for x in h])
    assert stratified.p_value < 1e-10
    assert pooled.p_value > DEFAULT_ALPHA


def test_describe_gives_the_stored_statistics() -> None:
    """Quartiles interpolate linearly; ops is calls per second."""
    stats = describe([4.0, 1.0, 3.0, 2.0, 5.0])
    assert stats == {
        "rounds": 5,
        "min": 1.0,
        "q1": 2.0,
        "median": 3.0,
        "q3": 4.0,
        "max": 5.0,
        "mean": 3.0,
        "stddev": pytest.approx(math.sqrt(2.5)),
        "iqr": 2.0,
        "ops": pytest.approx(1 / 3),
    }


def test_direction_comes_from_the_unit() -> None:
    """Time, size and counts: up is worse; rates: down is worse."""
    for unit in ("seconds", "bytes", "instructions", "unit"):
        assert lower_is_better(unit)
    for unit in ("ops/s", "MB/s", "items per second", "kHz", "throughput"):
        assert not lower_is_better(unit)
    assert judge(1.2, 1e-5, "seconds", 0.002, 0.05) == REGRESSION
    assert judge(1.2, 1e-5, "ops/s", 0.002, 0.05) == IMPROVEMENT
    assert judge(0.8, 1e-5, "ops/s", 0.002, 0.05) == REGRESSION


def test_a_change_needs_significance_and_size() -> None:
    """Significant but under 5 %: unchanged; large but not significant: unsure."""
    assert judge(1.03, 1e-9, "seconds", 0.002, 0.05) == UNCHANGED
    assert judge(1.5, 0.01, "seconds", 0.002, 0.05) == UNSURE
    assert judge(1.5, None, "seconds", 0.002, 0.05) == UNSURE
    assert judge(1 / 1.06, 1e-9, "seconds", 0.002, 0.05) == IMPROVEMENT


def test_compare_marks_new_and_gone_benchmarks() -> None:
    """Benchmarks on one side only are listed as new or gone, never judged."""
    rng = random.Random(1)
    slow = Benchmark.of_samples("a", "seconds", [rng.uniform(2, 2.1) for _ in range(30)])
    fast = Benchmark.of_samples("a", "seconds", [rng.uniform(1, 1.1) for _ in range(30)])
    only_base = Benchmark.of_samples("b", "seconds", [1.0, 1.1])
    only_head = Benchmark.of_samples("c", "seconds", [1.0, 1.1])
    found = compare({"a": fast, "b": only_base}, {"a": slow, "c": only_head})
    assert [(c.name, c.kind) for c in found] == [("a", REGRESSION), ("b", GONE), ("c", NEW)]
    assert found[0].ratio == pytest.approx(2 / 1.05 * 1.0, rel=0.05)

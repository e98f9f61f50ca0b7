"""Exact equality of logged values, as the round trip promises them: NaN equals NaN,
types are kept (1 is not 1.0, True is not 1), and 0.0 is not -0.0."""

from __future__ import annotations

import math
from typing import Any


def same(left: Any, right: Any) -> bool:
    """Deep equality that also checks types, treats NaN as equal to NaN and tells 0.0
    from -0.0."""
    if type(left) is not type(right):
        return False
    if isinstance(left, float):
        if math.isnan(left):
            return math.isnan(right)
        return left == right and math.copysign(1.0, left) == math.copysign(1.0, right)
    if isinstance(left, list):
        return len(left) == len(right) and all(map(same, left, right))
    if isinstance(left, dict):
        return left.keys() == right.keys() and all(same(left[k], right[k]) for k in left)
    return bool(left == right)

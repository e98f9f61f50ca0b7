"""`tracker.Histogram`: a distribution logged inline, as W&B stores it.

``{"_type": "histogram", "values": [counts...], "bins": [edges...]}`` with one more edge
than counts. Values are binned with numpy when it is installed, else in Python, the same
way: ``num_bins`` equal bins from the smallest to the largest finite value.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Final

from tracker._errors import UsageError
from tracker._media._base import Media, MediaFile

__all__ = ["Histogram"]

MAX_BINS: Final = 512
"""W&B's limit on the bins of one histogram."""


class Histogram(Media):
    """A histogram to log: ``run.log({"weights": tracker.Histogram(values)})``.

    Args:
        sequence: the values (a list, numpy array or torch tensor); NaN and ±inf are left
            out.
        np_histogram: ``(counts, edges)`` already computed, e.g. by ``numpy.histogram``;
            ``len(edges) == len(counts) + 1``.
        num_bins: how many equal bins ``sequence`` is cut into, 1 to 512.

    Raises:
        UsageError: neither or both of ``sequence`` and ``np_histogram``, a bad
            ``num_bins``, or counts and edges that do not fit together.
    """

    def __init__(
        self,
        sequence: Any = None,
        np_histogram: tuple[Sequence[float], Sequence[float]] | None = None,
        num_bins: int = 64,
    ) -> None:
        if (sequence is None) == (np_histogram is None):
            raise UsageError(
                "Histogram() takes the values (Histogram(values)) or a computed histogram "
                "(Histogram(np_histogram=(counts, edges))), one of them"
            )
        if isinstance(num_bins, bool) or not isinstance(num_bins, int):
            raise UsageError(f"Histogram(num_bins={num_bins!r}): pass an int")
        if not 1 <= num_bins <= MAX_BINS:
            raise UsageError(f"Histogram(num_bins={num_bins}): use 1 to {MAX_BINS} bins")
        if np_histogram is not None:
            try:
                counts, edges = (_numbers(part) for part in np_histogram)
            except (TypeError, ValueError):
                raise UsageError(
                    "Histogram(np_histogram=...) takes (counts, edges), two sequences of "
                    "numbers, as numpy.histogram returns them"
                ) from None
            if len(edges) != len(counts) + 1 or not counts:
                raise UsageError(
                    f"Histogram(np_histogram=...): {len(counts)} counts need "
                    f"{len(counts) + 1} edges, not {len(edges)}"
                )
            if len(counts) > MAX_BINS:
                raise UsageError(
                    f"Histogram(np_histogram=...) has {len(counts)} bins; W&B keeps at most "
                    f"{MAX_BINS}: rebin it"
                )
        else:
            counts, edges = _histogram(sequence, num_bins)
        self.histogram: list[Any] = counts
        """The count of each bin."""
        self.bins: list[float] = edges
        """The bins' edges, one more than the counts."""

    def _reference(self, key: str, step: int) -> tuple[dict[str, Any], list[MediaFile]]:
        return {"_type": "histogram", "values": list(self.histogram), "bins": list(self.bins)}, []

    def __repr__(self) -> str:
        return f"<tracker.Histogram {len(self.histogram)} bins>"


def _numbers(values: Any) -> list[Any]:
    """A sequence of numbers (numpy and torch included) as a list of Python numbers."""
    if hasattr(values, "tolist"):
        values = values.tolist()
    numbers = list(values)
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in numbers):
        raise TypeError("not numbers")
    return numbers


def _histogram(sequence: Any, bins: int) -> tuple[list[Any], list[float]]:
    """``bins`` equal bins of the finite values: counts and edges, as ``numpy.histogram``."""
    if type(sequence).__module__.startswith("torch") and hasattr(sequence, "detach"):
        sequence = sequence.detach().cpu().numpy()
    try:
        import numpy as np
    except ImportError:
        return _histogram_in_python(sequence, bins)
    try:
        values = np.asarray(sequence, dtype=np.float64).ravel()
    except (TypeError, ValueError):
        raise UsageError(
            f"Histogram() takes a sequence of numbers, not {type(sequence).__qualname__}"
        ) from None
    counts, edges = np.histogram(values[np.isfinite(values)], bins=bins)
    return counts.tolist(), edges.tolist()


def _histogram_in_python(sequence: Any, bins: int) -> tuple[list[Any], list[float]]:
    try:
        values = [float(v) for v in sequence]
    except (TypeError, ValueError):
        raise UsageError(
            f"Histogram() takes a sequence of numbers, not {type(sequence).__qualname__}"
        ) from None
    finite = [v for v in values if math.isfinite(v)]
    low, high = (min(finite), max(finite)) if finite else (0.0, 1.0)
    if low == high:  # numpy's rule for a range of one value
        low, high = low - 0.5, high + 0.5
    width = (high - low) / bins
    edges = [low + index * width for index in range(bins)] + [high]
    counts: list[Any] = [0] * bins
    for value in finite:
        counts[min(int((value - low) / width), bins - 1)] += 1
    return counts, edges

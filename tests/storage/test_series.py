"""The series chunk format: extending a chunk, and block extremes against a scan."""

from __future__ import annotations

import itertools
import math
from array import array

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tracker._records import sampler
from tracker._server.storage import series


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.integers(1, 3), min_size=1, max_size=10),
    st.lists(st.integers(1, 3), min_size=1, max_size=10),
    st.integers(0, 2**40),
)
def test_extending_a_chunk_equals_cutting_the_whole_series(
    old_gaps: list[int], new_gaps: list[int], first: int
) -> None:
    """A chunk extended with later entries is the chunk `chunks` makes of the whole series,
    whether its steps and the new ones run without gaps or not."""
    steps = list(itertools.accumulate([first, *old_gaps[1:], *new_gaps]))
    values = array("d", [step / 7 for step in steps])
    cut = len(old_gaps)
    (chunk,) = series.chunks(array("q", steps[:cut]), values[:cut], len(steps))
    extended = series.extend_chunk(chunk, array("q", steps[cut:]), values[cut:])
    assert extended == series.chunks(array("q", steps), values, len(steps))[0]


def first_extremes(values: list[float], start: int, stop: int) -> tuple[int, int] | None:
    """Where the first smallest and first largest number of values[start:stop] are, by scan."""
    held = [(value, index) for index, value in enumerate(values) if start <= index < stop]
    numbers = [(value, index) for value, index in held if not math.isnan(value)]
    if not numbers:
        return None
    return min(numbers, key=lambda pair: pair[0])[1], max(numbers, key=lambda pair: pair[0])[1]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.floats(-3, 3),
            st.sampled_from([0.0, -0.0, math.inf, -math.inf, math.nan, 1.0, -1.0]),
        ),
        min_size=1,
        max_size=40,
    ),
    st.lists(st.integers(1, 9), min_size=1, max_size=12),
    st.lists(st.booleans(), min_size=1, max_size=12),
    st.data(),
)
def test_block_extremes_find_what_a_scan_finds(
    values: list[float], sizes: list[int], summarized: list[bool], data: st.DataObject
) -> None:
    """Any values, in chunks of any size stored with or without their block extremes (as
    before the extremes were kept), give the positions of each range's first smallest
    and first largest number that a scan gives, whole or clipped; NaN, -0.0 and infinities
    included."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sampler, "BLOCK", 3)
        steps = array("q", range(len(values)))
        stored: list[series.Chunk] = []
        offset = 0
        for size, keep in zip(itertools.cycle(sizes), itertools.cycle(summarized)):
            if offset >= len(values):
                break
            (chunk,) = series.chunks(
                steps[offset : offset + size], array("d", values[offset : offset + size]), size
            )
            stored.append(chunk if keep else (*chunk[:4], b""))
            offset += size
        unpacked = series.unpack_series(stored)
        assert list(unpacked.values) == pytest.approx(values, nan_ok=True)
        low = data.draw(st.integers(0, len(values) - 1))
        high = data.draw(st.integers(low, len(values) - 1))
        clipped = unpacked.clip(low, high)
        for whole, scanned, base in ((unpacked, values, 0), (clipped, values[low : high + 1], low)):
            count = len(scanned)
            start = data.draw(st.integers(0, count - 1))
            stop = data.draw(st.integers(start + 1, count))
            found = whole.extremes.first_extremes(whole.values, start, stop)
            assert found == first_extremes(scanned, start, stop), (base, start, stop)

"""The perf_event counter behind instruction counts, on a counter every Linux kernel has."""

from __future__ import annotations

import platform

import pytest

from tracker._bench._counter import SOFTWARE, TASK_CLOCK, PerfCounter
from tracker._errors import UsageError


@pytest.mark.skipif(platform.system() != "Linux", reason="perf_event is Linux's")
def test_a_counter_of_this_thread_grows_with_its_work() -> None:
    """The task clock (this thread's CPU nanoseconds) read through perf_event_open grows
    with work done between two reads, and a closed counter refuses to be read."""
    try:
        counter = PerfCounter(SOFTWARE, TASK_CLOCK)
    except UsageError as exc:  # a kernel without perf_event (seccomp, paranoid level 3)
        pytest.skip(str(exc))
    before = counter.read()
    sum(range(200_000))
    assert counter.read() - before > 1000
    counter.close()
    counter.close()
    with pytest.raises(UsageError, match="closed"):
        counter.read()

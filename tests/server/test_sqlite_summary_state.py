"""Tests for Summary.to_state / Summary.from_state: the summary fold state a server stores."""

from __future__ import annotations

from typing import Any

import pytest
from exact import same
from hypothesis import given, settings
from hypothesis import strategies as st

from tracker._errors import UsageError
from tracker._records.codec import decode_value, encode_value
from tracker._records.fold import fold_records
from tracker._records.state import RunState
from tracker._records.summary import Summary, make_rule

Op = tuple[str, Any]


def fold(ops: list[Op], summary: Summary | None = None) -> Summary:
    """Apply (kind, payload) records to a summary as the run-log reader does."""
    summary = Summary() if summary is None else summary
    state = RunState(summary=summary)
    records = [
        [seq, kind, seq, 1.0, payload] if kind == "row" else [seq, kind, payload]
        for seq, (kind, payload) in enumerate(ops)
    ]
    fold_records(state, records)
    return summary


def stored(summary: Summary) -> Summary:
    """The summary after a trip through its exactly encoded state, as a server stores it."""
    return Summary.from_state(decode_value(encode_value(summary.to_state(), "state")))


SHAPED: list[Op] = [
    ("metric", make_rule("loss", summary="min,max,mean,first,last").to_record()),
    ("metric", make_rule("val/*", summary="max", goal="max").to_record()),
    ("metric", make_rule("hidden", summary="none").to_record()),
    ("row", {"loss": 2.0, "val/acc": 0.5, "hidden": 1, "text": "a"}),
    ("summary", {"best": 0.9, "loss": "explicit"}),
    ("row", {"loss": float("nan"), "val/acc": 0.7, "big": 2**70}),
    ("row", {"loss": 1, "val/acc": "n/a", "inf": float("-inf")}),
    ("summary_delete", ["text"]),
]


def test_state_round_trip_without_rules() -> None:
    """A summary of last values and explicit sets comes back equal, key order included."""
    summary = fold([("row", {"b": 1, "a": 2.5}), ("summary", {"c": [1, {"d": None}]})])
    back = stored(summary)
    assert same(back.as_dict(), summary.as_dict())
    assert same(back.to_state(), summary.to_state())


def test_state_round_trip_with_shaping_rules_and_special_values() -> None:
    """Rules, aggregates, explicit sets, NaN, -inf and big ints survive the stored state."""
    summary = fold(SHAPED)
    back = stored(summary)
    assert same(back.as_dict(), summary.as_dict())
    assert same(back.to_state(), summary.to_state())
    assert back.rules == summary.rules
    assert back.as_dict()["loss"] == {"min": 1, "max": 2.0, "mean": 1.5, "first": 2.0, "last": 1}


def test_restored_summary_continues_the_fold_exactly() -> None:
    """Folding more records into a restored summary gives what the uninterrupted fold gives."""
    more: list[Op] = [
        ("row", {"loss": 0.25, "val/acc": 0.9, "hidden": 3}),
        ("metric", make_rule("text", summary="first").to_record()),
        ("row", {"text": "b", "loss": 5}),
    ]
    whole = fold(SHAPED + more)
    resumed = fold(more, stored(fold(SHAPED)))
    assert same(resumed.as_dict(), whole.as_dict())
    assert same(resumed.to_state(), whole.to_state())


def test_to_state_catches_up_a_synced_summary() -> None:
    """to_state asks a live run's summary to fold pending rows first, as as_dict does."""
    summary = Summary()
    summary.sync_with(lambda: summary.observe({"late": 1}))
    assert summary.to_state()["last"] == {"late": 1}


@pytest.mark.parametrize(
    "state",
    [
        [],
        {"last": {}, "explicit": {}, "stats": {}},
        {"last": [], "explicit": {}, "stats": {}, "rules": []},
        {"last": {}, "explicit": {}, "stats": [], "rules": []},
        {"last": {}, "explicit": {}, "stats": {}, "rules": {}},
        {"last": {}, "explicit": {}, "stats": {"a": [1, 2]}, "rules": []},
        {"last": {}, "explicit": {}, "stats": {}, "rules": [{"name": "x"}]},
        {"last": {1: 2}, "explicit": {}, "stats": {}, "rules": []},
    ],
)
def test_from_state_rejects_malformed_state(state: Any) -> None:
    """A state that to_state did not write raises UsageError naming what is wrong."""
    with pytest.raises(UsageError, match=r"Summary\.to_state|MetricRule|summary key"):
        Summary.from_state(state)


values = st.one_of(
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
    st.text(max_size=3),
)
keys = st.sampled_from(["a", "b", "val/x", "val/y"])
ops = st.lists(
    st.one_of(
        st.tuples(st.just("row"), st.dictionaries(keys, values, max_size=3)),
        st.tuples(st.just("summary"), st.dictionaries(keys, values, min_size=1, max_size=2)),
        st.tuples(st.just("summary_delete"), st.lists(keys, max_size=2)),
        st.tuples(
            st.just("metric"),
            st.builds(
                lambda name, ops: make_rule(name, summary=ops).to_record(),
                st.sampled_from(["a", "val/*", "*"]),
                st.sampled_from(["min", "max", "mean", "first", "last", "none", "min,max,first"]),
            ),
        ),
    ),
    max_size=12,
)


@settings(max_examples=200, deadline=None)
@given(ops, ops)
def test_stored_state_continues_like_the_uninterrupted_fold(
    first: list[Op], rest: list[Op]
) -> None:
    """Any record sequence split anywhere: restore-and-continue equals folding it whole."""
    whole = fold(first + rest)
    resumed = fold(rest, stored(fold(first)))
    assert same(resumed.as_dict(), whole.as_dict())
    assert same(resumed.to_state(), whole.to_state())

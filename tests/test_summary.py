"""Tests for the run summary and define_metric rules (tracker._records.summary)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from tracker._errors import UsageError
from tracker._records.summary import MetricRule, Summary, make_rule


class Recorder:
    """Collects on_set / on_delete calls."""

    def __init__(self) -> None:
        self.sets: list[dict[str, Any]] = []
        self.deletes: list[list[str]] = []

    def on_set(self, values: dict[str, Any]) -> None:
        self.sets.append(dict(values))

    def on_delete(self, keys: list[str]) -> None:
        self.deletes.append(list(keys))


def shaped(name: str, summary: str | None = None, **kwargs: Any) -> Summary:
    """A summary with one rule defined."""
    result = Summary()
    result.define(make_rule(name, summary=summary, **kwargs))
    return result


def test_last_value_wins_without_rules() -> None:
    """With no rules each key holds its last logged value."""
    summary = Summary()
    summary.observe({"loss": 1.0, "acc": 0.1})
    summary.observe({"loss": 0.5})
    summary.observe({"loss": 0.7, "name": "x"})
    assert summary.as_dict() == {"loss": 0.7, "acc": 0.1, "name": "x"}
    assert summary["loss"] == 0.7


def test_observe_is_the_dict_update_without_aggregating_rules() -> None:
    """observe is the bound dict.update (no Python frame) until a rule shapes a key."""
    summary = Summary()
    assert summary.observe == summary._last.update
    summary.define(make_rule("loss", step_metric="epoch", goal="min", hidden=True))
    summary.define(make_rule("val/*", summary="last"))
    assert summary.observe == summary._last.update
    summary.define(make_rule("acc", summary="max"))
    assert summary.observe != summary._last.update


def test_min_max_mean_first_aggregate_logged_values() -> None:
    """A rule asking for min, max, mean and first shows a dict of those aggregates."""
    summary = shaped("loss", "min,max,mean,first")
    for value in (0.5, 0.1, 0.9):
        summary.observe({"loss": value})
    assert summary["loss"] == {"min": 0.1, "max": 0.9, "mean": pytest.approx(0.5), "first": 0.5}


def test_last_is_included_only_when_asked() -> None:
    """'last' appears in the aggregate dict only when the rule names it."""
    without = shaped("loss", "min")
    with_last = shaped("loss", "min,last")
    for summary in (without, with_last):
        summary.observe({"loss": 0.3})
        summary.observe({"loss": 0.4})
    assert without["loss"] == {"min": 0.3}
    assert with_last["loss"] == {"min": 0.3, "last": 0.4}


def test_last_only_rule_shows_the_plain_value() -> None:
    """A rule with summary 'last' (or None) shows the last value itself."""
    summary = shaped("loss", "last")
    summary.observe({"loss": 0.3})
    summary.observe({"loss": 0.4})
    assert summary["loss"] == 0.4


def test_first_keeps_the_first_value_of_any_type() -> None:
    """'first' keeps the first value logged under the rule even if not a number."""
    summary = shaped("phase", "first")
    summary.observe({"phase": "warmup"})
    summary.observe({"phase": "train"})
    assert summary["phase"] == {"first": "warmup"}


def test_none_rule_keeps_the_key_out_of_the_view() -> None:
    """summary='none' hides the key from every read of the summary."""
    summary = shaped("debug", "none")
    summary.observe({"debug": 1, "loss": 2})
    assert "debug" not in summary
    assert summary.get("debug") is None
    assert list(summary) == ["loss"]
    assert len(summary) == 1
    with pytest.raises(KeyError, match="debug"):
        summary["debug"]


def test_comma_separated_summary_ignores_whitespace_and_case() -> None:
    """summary items are comma-separated, stripped of whitespace, case-insensitive."""
    rule = make_rule("loss", summary=" min , MAX,mean ")
    assert rule.summary == frozenset({"min", "max", "mean"})


def test_glob_rule_applies_to_matching_keys_only() -> None:
    """A glob rule like 'val/*' shapes the keys it matches and no others."""
    summary = shaped("val/*", "max")
    summary.observe({"val/acc": 0.2, "val/f1": 0.5, "train/acc": 0.3})
    summary.observe({"val/acc": 0.1, "val/f1": 0.6, "train/acc": 0.1})
    assert summary.as_dict() == {
        "val/acc": {"max": 0.2},
        "val/f1": {"max": 0.6},
        "train/acc": 0.1,
    }


def test_exact_name_with_glob_characters_matches_itself() -> None:
    """A rule named like 'acc[0]' matches the key 'acc[0]' literally."""
    summary = shaped("acc[0]", "min")
    summary.observe({"acc[0]": 3, "acc0": 4})
    summary.observe({"acc[0]": 5, "acc0": 5})
    assert summary.as_dict() == {"acc[0]": {"min": 3}, "acc0": {"min": 4}}


def test_last_defined_matching_rule_wins() -> None:
    """When several rules match a key, the one defined last decides its summary."""
    summary = Summary()
    summary.define(make_rule("val/loss", summary="min"))
    summary.define(make_rule("val/*", summary="max"))
    summary.observe({"val/loss": 0.2})
    summary.observe({"val/loss": 0.4})
    assert summary["val/loss"] == {"max": 0.4}
    summary.define(make_rule("val/loss", summary="min"))
    assert summary["val/loss"] == {"min": 0.2}


def test_rule_defined_after_logging_shows_last_value_until_next_log() -> None:
    """A key logged before its aggregating rule keeps its last value until logged again."""
    summary = Summary()
    summary.observe({"loss": 0.9})
    summary.define(make_rule("loss", summary="min"))
    assert summary["loss"] == 0.9
    summary.observe({"loss": 0.5})
    summary.observe({"loss": 0.7})
    assert summary["loss"] == {"min": 0.5}


def test_goal_aliases_are_normalised() -> None:
    """goal accepts 'min'/'max' as aliases of 'minimize'/'maximize'."""
    assert make_rule("a", goal="min").goal == "minimize"
    assert make_rule("a", goal="max").goal == "maximize"
    assert make_rule("a", goal="minimize").goal == "minimize"
    assert make_rule("a", goal="Maximize").goal == "maximize"
    assert make_rule("a").goal is None


def test_make_rule_defaults() -> None:
    """With only a name, the rule summarises by the last value and is not hidden."""
    rule = make_rule("loss")
    assert rule == MetricRule("loss", None, frozenset({"last"}), None, False)


@pytest.mark.parametrize("shaping", [False, True])
def test_explicit_set_wins_until_the_key_is_logged_again(shaping: bool) -> None:
    """An explicit value overrides the summary until the key is logged again."""
    summary = Summary()
    if shaping:
        summary.define(make_rule("other", summary="min"))
    summary.observe({"acc": 0.5})
    summary["acc"] = 0.99
    summary["best"] = 1
    summary.observe({"loss": 3})
    assert summary["acc"] == 0.99
    assert summary["best"] == 1
    summary.observe({"acc": 0.6})
    assert summary.as_dict() == {"acc": 0.6, "best": 1, "loss": 3}


def test_explicit_set_overrides_aggregates_and_none_rules() -> None:
    """An explicit value replaces an aggregated or hidden key's view until logged again."""
    summary = Summary()
    summary.define(make_rule("loss", summary="min"))
    summary.define(make_rule("debug", summary="none"))
    summary.observe({"loss": 0.4, "debug": 1})
    summary.update({"loss": "custom", "debug": 2})
    assert summary.as_dict() == {"loss": "custom", "debug": 2}
    summary.observe({"loss": 0.1, "debug": 3})
    assert summary.as_dict() == {"loss": {"min": 0.1}}


def test_update_sets_several_keys() -> None:
    """update() sets every key of the mapping explicitly."""
    summary = Summary()
    summary.update({"a": 1, "b": [1, 2]})
    assert summary.as_dict() == {"a": 1, "b": [1, 2]}


@pytest.mark.parametrize("shaping", [False, True])
def test_delete_removes_the_key_and_a_later_log_brings_it_back(shaping: bool) -> None:
    """del removes a key; logging it again brings it back with fresh aggregates."""
    summary = Summary()
    if shaping:
        summary.define(make_rule("loss", summary="min,first"))
    summary.observe({"loss": 0.1})
    summary["best"] = 5
    del summary["loss"]
    del summary["best"]
    assert "loss" not in summary
    assert "best" not in summary
    assert len(summary) == 0
    summary.observe({"loss": 0.3})
    assert summary["loss"] == ({"min": 0.3, "first": 0.3} if shaping else 0.3)


def test_delete_of_a_missing_key_raises_key_error_naming_it() -> None:
    """Deleting a key the summary does not have raises KeyError naming it."""
    recorder = Recorder()
    summary = Summary(on_delete=recorder.on_delete)
    with pytest.raises(KeyError, match="nope"):
        del summary["nope"]
    assert recorder.deletes == []


def test_missing_key_raises_key_error_naming_it() -> None:
    """Reading a missing key raises KeyError naming the key; get() returns the default."""
    summary = Summary()
    with pytest.raises(KeyError, match="missing"):
        summary["missing"]
    assert summary.get("missing", 7) == 7
    assert 3 not in summary


def test_callbacks_are_called_once_per_call() -> None:
    """on_set is called once per set or update, on_delete once per delete."""
    recorder = Recorder()
    summary = Summary(on_set=recorder.on_set, on_delete=recorder.on_delete)
    summary["a"] = 1
    summary.update({"b": 2, "c": 3})
    del summary["a"]
    summary.observe({"d": 4})
    assert recorder.sets == [{"a": 1}, {"b": 2, "c": 3}]
    assert recorder.deletes == [["a"]]


def test_failing_on_set_leaves_the_summary_unchanged() -> None:
    """If on_set raises (e.g. the value cannot be recorded), nothing is set."""

    def refuse(values: dict[str, Any]) -> None:
        raise UsageError("cannot encode")

    summary = Summary(on_set=refuse)
    with pytest.raises(UsageError, match="cannot encode"):
        summary["a"] = object()
    assert "a" not in summary


def test_empty_update_does_not_call_on_set() -> None:
    """update({}) changes nothing and records nothing."""
    recorder = Recorder()
    summary = Summary(on_set=recorder.on_set)
    summary.update({})
    assert recorder.sets == []


def test_apply_set_and_apply_delete_do_not_call_callbacks() -> None:
    """apply_set / apply_delete (replay) change the summary without the callbacks."""
    recorder = Recorder()
    summary = Summary(on_set=recorder.on_set, on_delete=recorder.on_delete)
    summary.observe({"loss": 1.0})
    summary.apply_set({"best": 0.9})
    summary.apply_delete(["loss", "never-seen"])
    assert summary.as_dict() == {"best": 0.9}
    assert recorder.sets == []
    assert recorder.deletes == []


def test_non_str_keys_in_explicit_sets_raise_usage_error() -> None:
    """Explicit sets with a non-str key raise UsageError naming the key."""
    recorder = Recorder()
    summary = Summary(on_set=recorder.on_set)
    with pytest.raises(UsageError, match="summary key 3 is not a str"):
        summary[3] = 1  # type: ignore[index]
    with pytest.raises(UsageError, match="summary key 3"):
        summary.update({"ok": 1, 3: 2})  # type: ignore[dict-item]
    with pytest.raises(UsageError, match="summary key"):
        summary.apply_set({("a",): 1})  # type: ignore[dict-item]
    assert recorder.sets == []
    assert len(summary) == 0


def test_update_with_a_non_mapping_raises_usage_error() -> None:
    """update() with something other than a mapping raises UsageError."""
    with pytest.raises(UsageError, match=r"summary.update\(\) got a list"):
        Summary().update([("a", 1)])  # type: ignore[arg-type]


def test_read_access_matches_the_view() -> None:
    """keys/items/values/iter/len/repr all reflect the same view."""
    summary = shaped("loss", "min")
    summary.observe({"loss": 0.5, "acc": 1})
    summary["note"] = "hi"
    expected = {"loss": {"min": 0.5}, "acc": 1, "note": "hi"}
    assert dict(summary.items()) == expected
    assert list(summary.keys()) == list(expected)
    assert list(summary.values()) == list(expected.values())
    assert list(summary) == list(expected)
    assert len(summary) == 3
    assert "acc" in summary
    assert repr(summary) == f"Summary({expected!r})"


def test_as_dict_is_a_snapshot() -> None:
    """Mutating the dict returned by as_dict() does not change the summary."""
    summary = Summary()
    summary.observe({"a": 1})
    snapshot = summary.as_dict()
    snapshot["a"] = 2
    assert summary["a"] == 1


def test_rules_property_lists_defined_rules_in_order() -> None:
    """rules returns every defined rule, oldest first."""
    summary = Summary()
    first = make_rule("loss", step_metric="epoch", hidden=True)
    second = make_rule("val/*", summary="max", goal="max")
    summary.define(first)
    summary.define(second)
    assert summary.rules == (first, second)


@pytest.mark.parametrize(
    "rule",
    [
        make_rule("loss"),
        make_rule("val/*", step_metric="epoch", summary="min,max,mean", goal="min", hidden=True),
        make_rule("x", summary="none", goal="maximize"),
        make_rule("y", summary="first,last"),
    ],
)
def test_to_record_from_record_round_trip(rule: MetricRule) -> None:
    """A rule survives to_record -> from_record unchanged; summary is a sorted list."""
    record = rule.to_record()
    assert record["summary"] == sorted(rule.summary)
    assert MetricRule.from_record(record) == rule


@pytest.mark.parametrize(
    ("record", "match"),
    [
        ([1, 2], "metric rule record"),
        ({"name": "a"}, "metric rule record"),
        (
            {"name": "a", "step_metric": None, "summary": "min", "goal": None, "hidden": False},
            "summary 'min' is not a list of str",
        ),
        (
            {"name": "", "step_metric": None, "summary": ["min"], "goal": None, "hidden": False},
            "name",
        ),
    ],
)
def test_from_record_rejects_malformed_records(record: Any, match: str) -> None:
    """from_record raises UsageError for a record to_record could not have written."""
    with pytest.raises(UsageError, match=match):
        MetricRule.from_record(record)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"name": ""}, "define_metric name ''"),
        ({"name": 3}, "define_metric name 3"),
        ({"name": "a", "step_metric": ""}, "define_metric step_metric ''"),
        ({"name": "a", "step_metric": 5}, "define_metric step_metric 5"),
        ({"name": "a", "summary": "median"}, "define_metric summary 'median'.*'median'.*first"),
        ({"name": "a", "summary": "min,,max"}, "unsupported item ''"),
        ({"name": "a", "summary": ""}, "unsupported item ''"),
        ({"name": "a", "summary": ["min"]}, "define_metric summary \\['min'\\] is not a str"),
        ({"name": "a", "summary": "none,min"}, "combines 'none'"),
        ({"name": "a", "goal": "best"}, "define_metric goal 'best'.*'minimize'"),
        ({"name": "a", "goal": 1}, "define_metric goal 1"),
        ({"name": "a", "hidden": 1}, "define_metric hidden 1 is not a bool"),
        ({"name": "a", "hidden": "yes"}, "define_metric hidden 'yes'"),
    ],
)
def test_make_rule_rejects_bad_values(kwargs: dict[str, Any], match: str) -> None:
    """Each bad make_rule argument raises UsageError naming the parameter and value."""
    with pytest.raises(UsageError, match=match):
        make_rule(**kwargs)


def test_nan_is_ignored_by_min_max_mean() -> None:
    """NaN values do not enter min, max or mean; 'last' and 'first' still keep them."""
    summary = shaped("loss", "min,max,mean,first,last")
    summary.observe({"loss": math.nan})
    summary.observe({"loss": 2.0})
    summary.observe({"loss": np.float32("nan")})
    summary.observe({"loss": 4.0})
    summary.observe({"loss": math.nan})
    view = summary["loss"]
    assert {k: view[k] for k in ("min", "max", "mean")} == {"min": 2.0, "max": 4.0, "mean": 3.0}
    assert math.isnan(view["first"])
    assert math.isnan(view["last"])


def test_infinities_count_for_min_and_max() -> None:
    """Infinite values are numbers for min and max."""
    summary = shaped("x", "min,max")
    summary.observe({"x": math.inf})
    summary.observe({"x": -math.inf})
    assert summary["x"] == {"min": -math.inf, "max": math.inf}


def test_non_numbers_are_ignored_by_min_max_mean() -> None:
    """Bools, strings, None and lists never enter min, max or mean."""
    summary = shaped("x", "min,max,mean")
    for value in (True, "9", None, [100], 3, np.bool_(True), 5, {"a": -1}, 1j):
        summary.observe({"x": value})
    assert summary["x"] == {"min": 3, "max": 5, "mean": 4.0}


def test_key_with_only_non_numbers_shows_its_last_value() -> None:
    """A min rule over a key that never had a number shows its last value instead of {}."""
    summary = shaped("val/*", "min")
    summary.observe({"val/split": "a"})
    summary.observe({"val/split": "b"})
    assert summary["val/split"] == "b"


def test_numpy_scalars_aggregate_as_numbers() -> None:
    """numpy integer and float scalars aggregate, as int and float respectively."""
    summary = shaped("x", "min,max,mean")
    summary.observe({"x": np.int64(7)})
    summary.observe({"x": np.float32(0.5)})
    summary.observe({"x": np.float64(1.5)})
    view = summary["x"]
    assert view == {"min": 0.5, "max": 7, "mean": 3.0}
    assert type(view["max"]) is int
    assert type(view["min"]) is float


def test_python_ints_stay_ints_in_min_and_max() -> None:
    """min and max of Python ints are ints, as logged."""
    summary = shaped("epoch", "min,max")
    for epoch in (3, 1, 2):
        summary.observe({"epoch": epoch})
    view = summary["epoch"]
    assert view == {"min": 1, "max": 3}
    assert type(view["min"]) is int


def test_rule_cache_is_invalidated_by_define() -> None:
    """A key looked up before a new matching rule picks the new rule afterwards."""
    summary = Summary()
    summary.define(make_rule("a*", summary="max"))
    summary.observe({"acc": 1})
    assert summary["acc"] == {"max": 1}
    summary.define(make_rule("acc", summary="none"))
    assert "acc" not in summary

"""The run summary and `define_metric` rules (SPEC §2), as W&B's `run.summary`.

The summary holds the last logged value of every key, unless the key was set
explicitly or a `define_metric` rule shapes it (min/max/mean/first/none). It is fed
from the hot path of `run.log()`, so with no shaping rule `Summary.observe` *is* the
bound `dict.update` of the last-values dict: one C-level call, no Python frame.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, ItemsView, Iterable, Iterator, KeysView, Mapping, ValuesView
from dataclasses import dataclass
from fnmatch import fnmatchcase
from math import isnan
from typing import Any

from tracker._errors import UsageError

__all__ = ["MetricRule", "Summary", "make_rule"]

_AGGREGATES = ("min", "max", "mean", "first", "last")
_SUMMARY_OPS = frozenset({*_AGGREGATES, "none"})
_TRACKED_OPS = frozenset({"min", "max", "mean", "first"})
_LAST_ONLY = frozenset({"last"})
_GOALS = {"minimize": "minimize", "maximize": "maximize", "min": "minimize", "max": "maximize"}
_RECORD_FIELDS = ("name", "step_metric", "summary", "goal", "hidden")
_MISSING: Any = object()


@dataclass(frozen=True)
class MetricRule:
    """One `define_metric` call: how keys matching `name` are summarised and shown.

    Built by `make_rule`, which validates; stored in the run log via `to_record` and
    replayed with `from_record` when a run is read back.
    """

    name: str
    step_metric: str | None
    summary: frozenset[str]
    goal: str | None
    hidden: bool

    def matches(self, key: str) -> bool:
        """Whether `key` is this rule's exact name or matches it as a glob (`"val/*"`)."""
        return key == self.name or fnmatchcase(key, self.name)

    def to_record(self) -> dict[str, Any]:
        """The rule as a JSON-friendly dict (summary as a sorted list) for the run log."""
        return {
            "name": self.name,
            "step_metric": self.step_metric,
            "summary": sorted(self.summary),
            "goal": self.goal,
            "hidden": self.hidden,
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> MetricRule:
        """Rebuild a rule from `to_record` output, validating it like `make_rule` does.

        Raises:
            UsageError: the record is not a dict of the rule's fields or holds a bad value.
        """
        if not isinstance(record, Mapping) or not all(f in record for f in _RECORD_FIELDS):
            raise UsageError(
                f"metric rule record {record!r} is malformed; expected a dict with the keys "
                f"{', '.join(_RECORD_FIELDS)} as written by MetricRule.to_record()"
            )
        summary = record["summary"]
        if not isinstance(summary, list) or not all(isinstance(op, str) for op in summary):
            raise UsageError(
                f"metric rule record summary {summary!r} is not a list of str; expected e.g. "
                "['max', 'min'] as written by MetricRule.to_record()"
            )
        return make_rule(
            record["name"],
            step_metric=record["step_metric"],
            summary=",".join(summary),
            goal=record["goal"],
            hidden=record["hidden"],
        )


def make_rule(
    name: str,
    step_metric: str | None = None,
    summary: str | None = None,
    goal: str | None = None,
    hidden: bool = False,
) -> MetricRule:
    """Validate `define_metric` arguments and build the rule (summary None means "last").

    Raises:
        UsageError: an argument has a bad type or value; the message names it and
            lists the accepted values.
    """
    if not isinstance(name, str) or not name:
        raise UsageError(
            f"define_metric name {name!r} is not a non-empty str; pass a key like 'loss' "
            "or a glob like 'val/*'"
        )
    if step_metric is not None and (not isinstance(step_metric, str) or not step_metric):
        raise UsageError(
            f"define_metric step_metric {step_metric!r} is not a non-empty str; pass the "
            "key to plot against, e.g. 'epoch', or None for the run's step"
        )
    if not isinstance(hidden, bool):
        raise UsageError(f"define_metric hidden {hidden!r} is not a bool; pass True or False")
    return MetricRule(
        name=name,
        step_metric=step_metric,
        summary=_parse_summary(summary),
        goal=_parse_goal(goal),
        hidden=hidden,
    )


def _parse_summary(summary: str | None) -> frozenset[str]:
    """The set of summary ops in a comma-separated `summary` argument."""
    accepted = ", ".join(sorted(_SUMMARY_OPS))
    if summary is None:
        return _LAST_ONLY
    if not isinstance(summary, str):
        raise UsageError(
            f"define_metric summary {summary!r} is not a str; pass one of {accepted}, "
            "or several comma-separated, e.g. 'min,max'"
        )
    ops = frozenset(op.strip().lower() for op in summary.split(","))
    unknown = sorted(ops - _SUMMARY_OPS)
    if unknown:
        raise UsageError(
            f"define_metric summary {summary!r} has unsupported item {unknown[0]!r}; use "
            f"one of {accepted}, or several comma-separated, e.g. 'min,max'"
        )
    if "none" in ops and len(ops) > 1:
        raise UsageError(
            f"define_metric summary {summary!r} combines 'none' with other items; pass "
            "'none' alone to keep the key out of the summary"
        )
    return ops


def _parse_goal(goal: str | None) -> str | None:
    """The normalised goal ("minimize" / "maximize"), accepting "min" / "max" too."""
    if goal is None:
        return None
    normalised = _GOALS.get(goal.strip().lower()) if isinstance(goal, str) else None
    if normalised is None:
        raise UsageError(
            f"define_metric goal {goal!r} is not supported; pass 'minimize' (or 'min'), "
            "'maximize' (or 'max'), or None"
        )
    return normalised


def _number(value: object) -> float | None:
    """`value` as a number for min/max/mean, or None if it is not one (or is NaN).

    Python ints stay ints; numpy integers become int, other reals float. Bools are
    not numbers here (numpy's bool_ is not registered as numbers.Real either).
    """
    if type(value) is int:
        return value
    if type(value) is float:
        return None if isnan(value) else value
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    if isinstance(value, numbers.Integral):
        return int(value)
    number = float(value)
    return None if isnan(number) else number


class _Stats:
    """Running aggregates of one key, from its first value under an aggregating rule."""

    __slots__ = ("count", "first", "high", "low", "total")

    def __init__(self, first: Any) -> None:
        self.first = first
        self.count = 0
        self.total: float = 0
        self.low = float("inf")
        self.high = float("-inf")
        self.add(first)

    def add(self, value: Any) -> None:
        """Fold one logged value in; non-numbers and NaN leave min/max/mean unchanged."""
        number = _number(value)
        if number is None:
            return
        if number < self.low or not self.count:
            self.low = number
        if number > self.high or not self.count:
            self.high = number
        self.total += number
        self.count += 1


class Summary:
    """The run summary: dict-like, the last value of each logged key unless shaped.

    `observe(row)` is called by the Run with every committed history row. It is an
    instance attribute: the dict's own `update` while no rule aggregates or hides a
    key (one C-level call on the hot path), a Python method once one does.
    `on_set` / `on_delete` are called once per explicit set / delete, before the
    change is applied, so the Run can record it in the run log (an exception there
    leaves the summary unchanged). `guard` is called before any explicit change, so the
    Run refuses a change it could not record (a finished run, a forked child's) first.
    """

    __slots__ = (
        "_explicit",
        "_guard",
        "_last",
        "_on_delete",
        "_on_set",
        "_rule_cache",
        "_rules",
        "_shaping",
        "_stats",
        "_sync",
        "_tracked",
        "observe",
    )

    def __init__(
        self,
        on_set: Callable[[dict[str, Any]], None] | None = None,
        on_delete: Callable[[list[str]], None] | None = None,
        guard: Callable[[], None] | None = None,
    ) -> None:
        self._on_set = on_set
        self._on_delete = on_delete
        self._guard = guard
        self._last: dict[str, Any] = {}
        # Explicit sets waiting to be overwritten by a log of their key. While no rule
        # shapes the summary they go straight into `_last`, which a log overwrites.
        self._explicit: dict[str, Any] = {}
        self._stats: dict[str, _Stats] = {}
        self._rules: tuple[MetricRule, ...] = ()
        self._rule_cache: dict[str, MetricRule | None] = {}
        self._tracked: dict[str, bool] = {}
        self._shaping = False
        self._sync: Callable[[], None] | None = None
        self.observe: Callable[[dict[str, Any]], None] = self._last.update

    def sync_with(self, catch_up: Callable[[], None]) -> None:
        """Call ``catch_up`` before every read or explicit change: a live run folds the rows
        logged since the last read into the summary then, not on every `log()`."""
        self._sync = catch_up

    @property
    def rules(self) -> tuple[MetricRule, ...]:
        """The rules defined so far, oldest first (step_metric / hidden live here)."""
        return self._rules

    def define(self, rule: MetricRule) -> None:
        """Add a `define_metric` rule; for each key the last matching rule wins."""
        self._rules = (*self._rules, rule)
        self._rule_cache = {}
        self._tracked = {}
        if rule.summary != _LAST_ONLY and not self._shaping:
            self._shaping = True
            self.observe = self._observe_shaped

    def _observe_shaped(self, row: dict[str, Any]) -> None:
        """`observe` once some rule shapes the summary: also drop overridden explicit
        sets and fold values into the aggregates of keys whose rule asks for them."""
        self._last.update(row)
        explicit = self._explicit
        tracked = self._tracked
        stats = self._stats
        for key, value in row.items():
            if explicit:
                explicit.pop(key, None)
            track = tracked.get(key)
            if track is None:
                rule = self._rule_for(key)
                track = rule is not None and not rule.summary.isdisjoint(_TRACKED_OPS)
                tracked[key] = track
            if track:
                entry = stats.get(key)
                if entry is None:
                    stats[key] = _Stats(value)
                else:
                    entry.add(value)

    def _rule_for(self, key: str) -> MetricRule | None:
        """The last defined rule matching `key`, cached until the next `define`."""
        cache = self._rule_cache
        try:
            return cache[key]
        except KeyError:
            rule = next((r for r in reversed(self._rules) if r.matches(key)), None)
            cache[key] = rule
            return rule

    def _shape(self, key: str, last: Any) -> Any:
        """The view of a logged, not explicitly set key (`_MISSING` when hidden)."""
        rule = self._rule_for(key)
        if rule is None or rule.summary == _LAST_ONLY:
            return last
        ops = rule.summary
        if "none" in ops:
            return _MISSING
        shaped: dict[str, Any] = {}
        stats = self._stats.get(key)
        if stats is not None:
            if stats.count:
                if "min" in ops:
                    shaped["min"] = stats.low
                if "max" in ops:
                    shaped["max"] = stats.high
                if "mean" in ops:
                    shaped["mean"] = stats.total / stats.count
            if "first" in ops:
                shaped["first"] = stats.first
        if "last" in ops:
            shaped["last"] = last
        # Nothing aggregated yet (rule defined after the last log, or only
        # non-numbers logged): keep showing the last value rather than {}.
        return shaped if shaped else last

    def _lookup(self, key: object) -> Any:
        """The view's value for `key`, or `_MISSING`."""
        if self._sync is not None:
            self._sync()
        if not isinstance(key, str):
            return _MISSING
        value = self._explicit.get(key, _MISSING)
        if value is not _MISSING:
            return value
        value = self._last.get(key, _MISSING)
        if value is _MISSING:
            return _MISSING
        return self._shape(key, value)

    def as_dict(self) -> dict[str, Any]:
        """A snapshot of the summary as a plain dict (safe while other threads log)."""
        if self._sync is not None:
            self._sync()
        last = dict(self._last)
        if not self._shaping:
            return last
        explicit = dict(self._explicit)
        view: dict[str, Any] = {}
        for key, value in last.items():
            shaped = explicit.pop(key, _MISSING)
            if shaped is _MISSING:
                shaped = self._shape(key, value)
                if shaped is _MISSING:
                    continue
            view[key] = shaped
        view.update(explicit)
        return view

    def __getitem__(self, key: str) -> Any:
        """The summary value of `key`; KeyError naming it when there is none."""
        value = self._lookup(key)
        if value is _MISSING:
            raise KeyError(
                f"summary has no key {key!r}; log it with run.log({{{key!r}: ...}}) or "
                f"set run.summary[{key!r}] = value"
            )
        return value

    def get(self, key: str, default: Any = None) -> Any:
        """The summary value of `key`, or `default` when there is none."""
        value = self._lookup(key)
        return default if value is _MISSING else value

    def __contains__(self, key: object) -> bool:
        """Whether `key` is in the summary view."""
        return self._lookup(key) is not _MISSING

    def __iter__(self) -> Iterator[str]:
        """Iterate over a snapshot of the summary's keys."""
        return iter(self.as_dict())

    def __len__(self) -> int:
        """The number of keys in the summary view."""
        if self._sync is not None:
            self._sync()
        return len(self._last) if not self._shaping else len(self.as_dict())

    def keys(self) -> KeysView[str]:
        """The keys of a snapshot of the summary."""
        return self.as_dict().keys()

    def items(self) -> ItemsView[str, Any]:
        """The (key, value) pairs of a snapshot of the summary."""
        return self.as_dict().items()

    def values(self) -> ValuesView[Any]:
        """The values of a snapshot of the summary."""
        return self.as_dict().values()

    def __repr__(self) -> str:
        """`Summary({...})` with the current view."""
        return f"Summary({self.as_dict()!r})"

    def __setitem__(self, key: str, value: Any) -> None:
        """Set `key` explicitly; it wins until the key is logged again (as in W&B)."""
        self.update({key: value})

    def update(self, values: Mapping[str, Any]) -> None:
        """Set several keys explicitly, recorded with one `on_set` call.

        Raises:
            UsageError: `values` is not a mapping or has a non-str key.
        """
        if not isinstance(values, Mapping):
            raise UsageError(
                f"summary.update() got a {type(values).__name__}; pass a dict of str "
                "keys, e.g. run.summary.update({'best_acc': 0.9})"
            )
        values = dict(values)
        if not values:
            return
        _check_keys(values)
        if self._sync is not None:
            self._sync()
        if self._on_set is not None:
            self._on_set(values)
        self.apply_set(values)

    def __delitem__(self, key: str) -> None:
        """Remove `key` from the summary; logging it again brings it back afresh."""
        if self._guard is not None:
            self._guard()
        if key not in self:
            raise KeyError(
                f"summary has no key {key!r} to delete; see list(run.summary) for its keys"
            )
        if self._on_delete is not None:
            self._on_delete([key])
        self.apply_delete([key])

    def apply_set(self, values: Mapping[str, Any]) -> None:
        """Explicitly set keys without calling `on_set` (replaying a stored run log).

        Raises:
            UsageError: a key is not a str.
        """
        _check_keys(values)
        if self._shaping:
            self._explicit.update(values)
        else:
            self._last.update(values)

    def apply_delete(self, keys: Iterable[str]) -> None:
        """Delete keys without calling `on_delete` (replay); absent keys are ignored."""
        for key in keys:
            self._last.pop(key, None)
            self._explicit.pop(key, None)
            self._stats.pop(key, None)

    def assume(self, other: Summary) -> None:
        """Continue ``other``'s fold from where it stands (last values, explicit sets,
        aggregates, rules), keeping this summary's callbacks: a resumed run goes on from
        the stored summary."""
        copy = Summary.from_state(other.to_state())
        for name in ("_last", "_explicit", "_stats", "_rules", "_rule_cache", "_tracked"):
            setattr(self, name, getattr(copy, name))
        self._shaping = copy._shaping
        self.observe = self._observe_shaped if self._shaping else self._last.update

    def to_state(self) -> dict[str, Any]:
        """The whole fold state as plain data (last values, explicit sets, aggregates, rules),
        so a server can store it and continue the fold later with `from_state`."""
        if self._sync is not None:
            self._sync()
        return {
            "last": dict(self._last),
            "explicit": dict(self._explicit),
            "stats": {
                key: [entry.first, entry.count, entry.total, entry.low, entry.high]
                for key, entry in self._stats.items()
            },
            "rules": [rule.to_record() for rule in self._rules],
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> Summary:
        """Rebuild a summary (without callbacks) from `to_state` output; the round trip is exact.

        Raises:
            UsageError: ``state`` is not what `to_state` writes.
        """
        expected = "expected the dict written by Summary.to_state()"
        if not isinstance(state, Mapping) or set(state) != {"last", "explicit", "stats", "rules"}:
            raise UsageError(
                f"summary state {state!r:.200} does not have exactly the keys last, explicit, "
                f"stats, rules; {expected}"
            )
        last, explicit, stats, rules = (
            state["last"],
            state["explicit"],
            state["stats"],
            state["rules"],
        )
        if not (isinstance(last, Mapping) and isinstance(explicit, Mapping)):
            raise UsageError(f"summary state 'last' and 'explicit' must be dicts; {expected}")
        if not isinstance(rules, list):
            raise UsageError(f"summary state 'rules' is a {type(rules).__name__}; {expected}")
        summary = cls()
        for record in rules:
            summary.define(MetricRule.from_record(record))
        _check_keys(last)
        _check_keys(explicit)
        summary._last.update(last)
        summary._explicit.update(explicit)
        if not isinstance(stats, Mapping):
            raise UsageError(f"summary state 'stats' is a {type(stats).__name__}; {expected}")
        for key, fields in stats.items():
            if not isinstance(key, str) or not isinstance(fields, list) or len(fields) != 5:
                raise UsageError(
                    f"summary state stats entry {key!r}: {fields!r:.100} is not "
                    f"[first, count, total, low, high]; {expected}"
                )
            entry = _Stats(fields[0])
            entry.count, entry.total, entry.low, entry.high = fields[1:]
            summary._stats[key] = entry
        return summary


def _check_keys(values: Mapping[str, Any]) -> None:
    """Raise UsageError for the first non-str key of an explicit set."""
    for key in values:
        if not isinstance(key, str):
            raise UsageError(
                f"summary key {key!r} is not a str (it is a {type(key).__name__}); use "
                f"str keys, e.g. run.summary[{str(key)!r}] = value"
            )

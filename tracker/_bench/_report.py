"""Comparisons for people: an asv-compare-like table for the terminal, Markdown for a PR.

A value reads ``median±half the interquartile range`` in a unit scaled to its size
(``1.21±0.02ms``). The first column marks the verdict as asv compare does: ``+`` a
regression, ``-`` an improvement, ``~`` a change beyond the threshold that is not
significant (or has no samples to test), blank for unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from tracker._bench._compare import (
    GONE,
    IMPROVEMENT,
    NEW,
    REGRESSION,
    UNCHANGED,
    UNSURE,
    Comparison,
)
from tracker._bench._results import Benchmark

__all__ = ["Section", "counts", "format_value", "markdown", "table"]

_MARKS: Final = {REGRESSION: "+", IMPROVEMENT: "-", UNSURE: "~"}
_BADGES: Final = {
    REGRESSION: ":red_circle: regression",
    IMPROVEMENT: ":green_circle: improvement",
    UNSURE: ":white_circle: unsure",
    NEW: "new",
    GONE: "gone",
}
_TIME_SCALES: Final = ((1.0, "s"), (1e-3, "ms"), (1e-6, "µs"), (1e-9, "ns"))
_SI: Final = ((1e9, "G"), (1e6, "M"), (1e3, "k"))


@dataclass(frozen=True)
class Section:
    """The comparisons on one machine, with what was compared."""

    title: str
    """What against what, e.g. ``a1b2c3d4..e5f6a7b8``."""
    machine: str
    comparisons: Sequence[Comparison]


def format_value(value: float, unit: str, spread: float | None = None) -> str:
    """``value`` (and ``±spread``) with a unit scaled to the value: ``1.21±0.02ms``."""
    if unit in ("seconds", "s"):
        factor, suffix = _scale(value, _TIME_SCALES, _TIME_SCALES[-1])
    elif unit in ("bytes", "instructions", "unit", ""):
        factor, suffix = _scale(value, _SI, (1.0, ""))
        suffix += {"bytes": "B", "instructions": " instr"}.get(unit, "")
    else:
        factor, suffix = 1.0, f" {unit}"
    text = _digits(value / factor)
    if spread is not None and math.isfinite(spread):
        text += "±" + _digits(spread / factor)
    return text + suffix


def _scale(
    value: float, scales: tuple[tuple[float, str], ...], smallest: tuple[float, str]
) -> tuple[float, str]:
    """The first (factor, suffix) of ``scales`` (largest first) that ``value`` reaches."""
    size = abs(float(f"{value:.3g}"))  # 999.8 µs reads 1 ms
    return next(((f, name) for f, name in scales if size >= f), smallest)


def _digits(number: float) -> str:
    return f"{number:.3g}" if abs(number) < 1000 else f"{number:.0f}"


def _value(bench: Benchmark | None) -> str:
    if bench is None:
        return "n/a"
    stats = bench.stats
    middle = stats.get("median")
    if not isinstance(middle, int | float):
        return "n/a"
    iqr = stats.get("iqr")
    return format_value(
        float(middle), bench.unit, iqr / 2 if isinstance(iqr, int | float) else None
    )


def _p(value: float | None) -> str:
    if value is None:
        return "n/a"
    return "<0.001" if value < 0.001 else f"{value:.3f}"


def _ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def counts(comparisons: Sequence[Comparison]) -> str:
    """``1 regression, 2 improvements, 12 unchanged`` (kinds that occur, in that order)."""
    parts = []
    for kind, one, many in (
        (REGRESSION, "regression", "regressions"),
        (IMPROVEMENT, "improvement", "improvements"),
        (UNSURE, "unsure", "unsure"),
        (UNCHANGED, "unchanged", "unchanged"),
        (NEW, "new", "new"),
        (GONE, "gone", "gone"),
    ):
        number = sum(1 for comparison in comparisons if comparison.kind == kind)
        if number:
            parts.append(f"{number} {one if number == 1 else many}")
    return ", ".join(parts) or "no benchmarks"


def table(sections: Sequence[Section], alpha: float, threshold: float) -> str:
    """The terminal table of each section, then the legend."""
    lines = []
    for section in sections:
        lines += [f"{section.title} on {section.machine}: {counts(section.comparisons)}", ""]
        rows = [("", "before", "after", "ratio", "p", "benchmark")]
        rows += [
            (
                _MARKS.get(c.kind, ""),
                _value(c.base),
                _value(c.head),
                _ratio(c.ratio),
                _p(c.p_value),
                c.name + (f" ({c.kind})" if c.kind in (NEW, GONE) else ""),
            )
            for c in section.comparisons
        ]
        widths = [max(len(row[column]) for row in rows) for column in range(5)]
        for row in rows:
            cells = [row[0].ljust(widths[0])] + [
                cell.rjust(width) for cell, width in zip(row[1:5], widths[1:], strict=True)
            ]
            lines.append("  ".join([*cells, row[5]]).rstrip())
        lines.append("")
    lines.append(
        f"+ regression, - improvement: p < {alpha:g} and a change of {threshold:.0%} or more; "
        "~ as large but not significant. Values: median±IQR/2."
    )
    return "\n".join(lines)


def markdown(heading: str, sections: Sequence[Section], alpha: float, threshold: float) -> str:
    """A pull-request comment: per machine the changed benchmarks, the rest folded away."""
    lines = [f"### {heading}", ""]
    for section in sections:
        changed = [c for c in section.comparisons if c.kind != UNCHANGED]
        unchanged = [c for c in section.comparisons if c.kind == UNCHANGED]
        lines += [f"**{counts(section.comparisons)}** on {section.machine} ({section.title})", ""]
        if changed:
            lines += _markdown_rows(changed)
        if unchanged:
            lines += [f"<details><summary>{len(unchanged)} unchanged</summary>", ""]
            lines += [*_markdown_rows(unchanged), "", "</details>"]
        lines.append("")
    lines.append(
        f"A regression or improvement has p < {alpha:g} (Mann-Whitney U on the raw samples) and "
        f"a change of at least {threshold:.0%}; values are median ± IQR/2."
    )
    return "\n".join(lines) + "\n"


def _markdown_rows(comparisons: Sequence[Comparison]) -> list[str]:
    rows = ["| | benchmark | before | after | ratio | p |", "|---|---|--:|--:|--:|--:|"]
    for c in comparisons:
        name = c.name.replace("|", "\\|")
        rows.append(
            f"| {_BADGES.get(c.kind, '')} | `{name}` | {_value(c.base)} | {_value(c.head)} "
            f"| {_ratio(c.ratio)} | {_p(c.p_value)} |"
        )
    return rows

"""The filter and sort language of run listings, parsed once into typed conditions.

Filters (docs/protocol.md, "Reading") are a JSON object of conditions that must all hold:
``state``, ``group``, ``job_type``, ``name`` equal (null: unset); ``tags`` a tag the run
has; ``search`` a substring of the name or id (ASCII case ignored); ``config.KEY`` /
``summary.KEY`` equal (``KEY`` a top-level key, else a dotted path into nested dicts).
Runs sort by a column or by a config or summary value; runs without a value come last
either way, and ties go by creation, in the sort's direction. A backend turns a `RunQuery` into its
own query language; the Python meaning of each condition is here, so backends agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Literal

from tracker._server.storage.errors import BadRequest
from tracker._wire.limits import MAX_STEP

__all__ = [
    "ORDERS",
    "SORT_COLUMNS",
    "ColumnIs",
    "Condition",
    "HasTag",
    "RunQuery",
    "RunSort",
    "Search",
    "ValueIs",
    "ascii_lower",
    "check_page",
    "parse_filters",
    "parse_order",
    "parse_sort",
]

Column = Literal["state", "group", "job_type", "name"]
Document = Literal["config", "summary"]

SORT_COLUMNS: Final = (
    "name",
    "created_at",
    "updated_at",
    "state",
    "group",
    "job_type",
    "runtime",
    "last_step",
)
"""The run columns a listing sorts on; ``name`` sorts by the name (else the id), case ignored."""
ORDERS: Final = ("created_at", "-created_at", "updated_at", "-updated_at", "name", "-name")
"""The ``order`` values of ``GET /api/v1/runs/E/P`` (``-`` for descending)."""
_COLUMNS: Final[tuple[Column, ...]] = ("state", "group", "job_type", "name")
_ASCII_LOWER: Final = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def ascii_lower(text: str) -> str:
    """``text`` with ASCII letters lowered and every other character kept (SQL's ``lower``)."""
    return text.translate(_ASCII_LOWER)


@dataclass(frozen=True)
class ColumnIs:
    """A run column equals ``value`` (None: the column is unset)."""

    column: Column
    value: str | None


@dataclass(frozen=True)
class HasTag:
    """The run has the tag."""

    tag: str


@dataclass(frozen=True)
class Search:
    """``text`` is a substring of the run's name or id, ASCII case ignored."""

    text: str

    def matches(self, name: str | None, run_id: str) -> bool:
        """Whether a run of this name and id matches."""
        wanted = ascii_lower(self.text)
        return wanted in ascii_lower(name or "") or wanted in ascii_lower(run_id)


@dataclass(frozen=True)
class ValueIs:
    """The value at ``path`` in the run's config or summary equals ``value``."""

    document: Document
    path: str
    value: Any

    def holds(self, document: Any) -> bool:
        """Whether ``document[path]`` (a top-level key, else a dotted path) equals the value;
        a bool equals only the same bool (``True`` is not ``1``)."""
        missing = object()
        found: Any = document.get(self.path, missing) if isinstance(document, dict) else missing
        if found is missing:
            found = document
            for part in self.path.split("."):
                if not isinstance(found, dict) or part not in found:
                    return False
                found = found[part]
        if isinstance(found, bool) or isinstance(self.value, bool):
            return found is self.value
        return bool(found == self.value)


Condition = ColumnIs | HasTag | Search | ValueIs


@dataclass(frozen=True)
class RunSort:
    """Sort by a column (``path`` empty) or by the value at ``path`` in ``column``'s
    document (``column`` then ``config`` or ``summary``)."""

    column: str
    path: tuple[str, ...] = ()
    descending: bool = False


@dataclass(frozen=True)
class RunQuery:
    """One page of a project's runs: which runs, in which order."""

    entity: str
    project: str
    conditions: tuple[Condition, ...]
    sort: RunSort
    limit: int
    offset: int


def parse_filters(filters: object) -> tuple[Condition, ...]:
    """The conditions of a filters object.

    Raises:
        BadRequest: ``bad_filter`` for a non-object, an unknown filter or a non-text value.
    """
    if not isinstance(filters, dict):
        raise BadRequest("bad_filter", f"filters {filters!r:.100} is not a JSON object")
    conditions: list[Condition] = []
    for name, value in filters.items():
        prefix, _, path = str(name).partition(".")
        if name in _COLUMNS:
            conditions.append(ColumnIs(name, None if value is None else _text(name, value)))
        elif name == "tags":
            conditions.append(HasTag(_text(name, value)))
        elif name == "search":
            conditions.append(Search(_text(name, value)))
        elif prefix in ("config", "summary") and path:
            conditions.append(ValueIs("config" if prefix == "config" else "summary", path, value))
        else:
            raise BadRequest(
                "bad_filter",
                f"filter {name!r} is unknown; use state, group, job_type, name, tags, search, "
                "config.KEY or summary.KEY",
            )
    return tuple(conditions)


def _text(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise BadRequest("bad_filter", f"filter {name!r} value {value!r:.100} is not a string")
    return value


def parse_order(order: str) -> RunSort:
    """The sort of an API ``order`` (`ORDERS`).

    Raises:
        BadRequest: ``bad_order`` for another value.
    """
    if order not in ORDERS:
        raise BadRequest("bad_order", f"order {order!r:.100} is not one of {', '.join(ORDERS)}")
    return RunSort(order.removeprefix("-"), descending=order.startswith("-"))


def parse_sort(sort: object, descending: bool) -> RunSort:
    """The sort of the dashboard's ``[COLUMN]`` or ``["config" | "summary", KEY, ...]``.

    Raises:
        BadRequest: ``bad_order`` for anything else, or a key holding a ``"``.
    """
    if (
        not isinstance(sort, list)
        or not sort
        or not all(isinstance(part, str) and part for part in sort)
    ):
        raise BadRequest(
            "bad_order", f"sort {sort!r:.100} is not a non-empty list of non-empty strings"
        )
    column, *path = sort
    if column in SORT_COLUMNS and not path:
        return RunSort(column, descending=descending)
    if column in ("config", "summary") and path:
        if any('"' in part for part in path):
            # a SQL backend names the path in a JSON path expression, where '"' quotes
            raise BadRequest(
                "bad_order", f"sort key {path!r:.100} holds a '\"'; sort by another key"
            )
        return RunSort(column, tuple(path), descending)
    raise BadRequest(
        "bad_order",
        f"sort {sort!r:.100} is unknown; use [COLUMN] with COLUMN one of "
        f"{', '.join(SORT_COLUMNS)}, or ['config' or 'summary', KEY, ...]",
    )


def check_page(limit: object, offset: object) -> tuple[int, int]:
    """``limit`` and ``offset``, checked.

    Raises:
        BadRequest: ``bad_request`` when either is not an integer >= 0.
    """
    for name, value in (("limit", limit), ("offset", offset)):
        if type(value) is not int or not 0 <= value <= MAX_STEP:
            raise BadRequest(
                "bad_request", f"{name} {value!r:.40} is not an integer >= 0; pass e.g. 100"
            )
    return limit, offset  # type: ignore[return-value]

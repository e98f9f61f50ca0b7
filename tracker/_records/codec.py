"""The exact encoding of values: orjson, once, on the caller's thread, with an exact round trip.

orjson writes NaN and ±inf as ``null`` and refuses ints beyond 64 bits. A record
holding such values keeps ``null`` (or the int's decimal string) in place and
carries a sidecar list of ``[path, kind]`` pairs after its payload, so the
reader restores them exactly and user data can never be mistaken for a marker.
numpy and torch values are converted to Python numbers and lists. The exact path takes
a ``convert`` hook for the values it does not know (how `log()` binds media values to
their row, `tracker._media`), called only once orjson has refused a value.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, Final

import orjson

from tracker._errors import UsageError
from tracker._wire.limits import MAX_RECORD_BYTES

__all__ = [
    "NOT_CONVERTED",
    "Convert",
    "check_size",
    "decode_value",
    "default",
    "encode_exact",
    "encode_record",
    "encode_value",
    "restore_exact",
    "restore_payload",
]

_NEWLINE: Final = orjson.OPT_APPEND_NEWLINE
# orjson refuses a 255th nested container; a payload sits inside the record array, so
# payload containers may nest 253 deep: the fast and the exact path then agree.
_MAX_DEPTH: Final = 253
_INT_MIN: Final = -(2**63)
_INT_MAX: Final = 2**64 - 1
_ACCEPTED = (
    "log bool, int, float, str, None, lists and dicts of those, numpy scalars and arrays, "
    "or torch tensors (convert other objects first, e.g. float(x) or str(x))"
)
_SPECIAL_FLOATS: Final = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}

Path = list[str | int]
Convert = Callable[[Any, Path], Any]
"""A hook of the exact path: the plain value for a value at a path, or `NOT_CONVERTED`."""
NOT_CONVERTED: Final[Any] = object()
"""What a `Convert` hook returns for a value it does not convert."""


def default(value: Any) -> Any:
    """orjson's hook for types it does not know: numpy and torch values become Python values."""
    module = type(value).__module__
    if module == "numpy":
        if hasattr(value, "tolist"):  # ndarray and numpy scalars alike
            return value.tolist()
    elif module.startswith("torch") and hasattr(value, "detach"):
        tensor = value.detach().cpu()
        return tensor.item() if tensor.dim() == 0 else tensor.tolist()
    raise TypeError(type(value).__qualname__)


def encode_record(
    head: tuple[Any, ...], payload: Any, what: str, convert: Convert | None = None
) -> bytes:
    """Encode ``[*head, payload]`` as one newline-terminated JSON line, exactly; values
    orjson refuses go through ``convert`` when given (see `encode_exact`).

    Raises:
        UsageError: a value cannot be encoded; the message names ``what`` and the key.
    """
    try:
        line = orjson.dumps((*head, payload), default=default, option=_NEWLINE)
    except TypeError:
        line = b""  # fall through to the precise path, which names the culprit
    if line and line.find(b"null") < 0:
        return check_size(line, what)
    return encode_exact(head, payload, what, convert)


def encode_exact(
    head: tuple[Any, ...], payload: Any, what: str, convert: Convert | None = None
) -> bytes:
    """The slow path of `encode_record`: normalise, note special values, encode.

    ``convert`` is offered each value that is not JSON, numpy or torch (and each list),
    with its path; what it returns in its place is encoded instead.
    """
    specials: list[list[Any]] = []
    plain = _normalize(payload, [], specials, what, 0, convert)
    record = (*head, plain, specials) if specials else (*head, plain)
    return check_size(orjson.dumps(record, option=_NEWLINE), what)


def check_size(line: bytes, what: str) -> bytes:
    """Return ``line`` if it is small enough to be a record.

    Raises:
        UsageError: the record is over `MAX_RECORD_BYTES`; the message names ``what``.
    """
    if len(line) > MAX_RECORD_BYTES:
        raise UsageError(
            f"{what}: this is {len(line) / 2**20:.1f} MB encoded; one record holds at most "
            f"{MAX_RECORD_BYTES // 2**20} MB. Store large objects as files with run.save(), "
            "or log them in smaller pieces"
        )
    return line


def encode_value(value: Any, what: str) -> bytes:
    """Encode one value exactly (NaN differs from None); used to validate and size values.

    Raises:
        UsageError: the value cannot be encoded; the message names ``what``.
    """
    return encode_record((), value, what)


def decode_value(document: bytes | str) -> Any:
    """Decode what `encode_value` wrote (``[value]`` or ``[value, specials]``), exactly."""
    return restore_exact(orjson.loads(document))


def restore_exact(wrapped: Any) -> Any:
    """The value of an already parsed exact encoding ``[value]`` or ``[value, specials]``."""
    if not isinstance(wrapped, list) or len(wrapped) not in (1, 2):
        raise ValueError("not an exactly encoded value")
    return restore_payload(wrapped[0], wrapped[1]) if len(wrapped) == 2 else wrapped[0]


def restore_payload(payload: Any, specials: list[list[Any]]) -> Any:
    """``payload`` with the special values its sidecar lists put back in place.

    Raises:
        TypeError, KeyError, IndexError, ValueError: the sidecar is malformed.
    """
    for path, kind in specials:
        value: Any = _SPECIAL_FLOATS[kind] if kind in _SPECIAL_FLOATS else int(_get(payload, path))
        if not path:
            payload = value
            continue
        _get(payload, path[:-1])[path[-1]] = value
    return payload


def _get(node: Any, path: list[Any]) -> Any:
    for part in path:
        node = node[part]
    return node


def _normalize(
    value: Any,
    path: Path,
    specials: list[list[Any]],
    what: str,
    depth: int,
    convert: Convert | None = None,
) -> Any:
    """Return ``value`` as plain JSON types, recording NaN, ±inf and big ints in ``specials``."""
    if value is None or value is True or value is False:
        return value
    if isinstance(value, str):
        _check_text(value, path, what)
        return value
    if isinstance(value, int):
        number = int(value)
        if _INT_MIN <= number <= _INT_MAX:
            return number
        specials.append([list(path), "int"])
        return str(number)
    if isinstance(value, float):
        real = float(value)
        if math.isfinite(real):
            return real
        kind = "nan" if math.isnan(real) else ("inf" if real > 0 else "-inf")
        specials.append([list(path), kind])
        return None
    if depth >= _MAX_DEPTH:
        raise UsageError(
            f"{what}: the value at {_render(path)} is nested more than {_MAX_DEPTH} levels deep "
            "(or refers to itself); flatten it"
        )
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise UsageError(
                    f"{what}: key {key!r} at {_render(path)} has type {type(key).__name__}; "
                    "keys must be str (convert it, e.g. str(key))"
                )
            _check_text(key, path, what)
            out[key] = _normalize(item, [*path, key], specials, what, depth + 1, convert)
        return out
    if isinstance(value, (list, tuple)):
        if convert is not None and (converted := convert(value, path)) is not NOT_CONVERTED:
            return _normalize(converted, path, specials, what, depth, None)
        return [
            _normalize(item, [*path, index], specials, what, depth + 1, convert)
            for index, item in enumerate(value)
        ]
    try:
        converted = default(value)
    except TypeError:
        if convert is not None and (converted := convert(value, path)) is not NOT_CONVERTED:
            return _normalize(converted, path, specials, what, depth, None)
        raise UsageError(
            f"{what}: the value at {_render(path)} has type {type(value).__qualname__}, "
            f"which cannot be logged; {_ACCEPTED}"
        ) from None
    return _normalize(converted, path, specials, what, depth, convert)


def _check_text(text: str, path: Path, what: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise UsageError(
            f"{what}: the text {text[:40]!r} at {_render(path)} holds a lone surrogate, "
            "which is not valid unicode; fix the string (e.g. text.encode('utf-8', 'replace'))"
        ) from None


def _render(path: Path) -> str:
    if not path:
        return "the top level"
    if len(path) > 12:  # a deep path: its ends say where
        return (
            "".join(f"[{part!r}]" for part in path[:6])
            + "..."
            + "".join(f"[{part!r}]" for part in path[-4:])
        )
    return "".join(f"[{part!r}]" for part in path)

"""The protobuf wire format, decoded by hand: just what TensorBoard's events need.

A message is a sequence of fields, each a varint key (field number << 3 | wire type)
then its value: a varint (type 0), 8 bytes (1), a length and that many bytes (2: a
string, a nested message or a packed repeated field), or 4 bytes (5). Unknown fields
are skipped, so newer writers' events still decode.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Final

__all__ = ["ProtoError", "doubles", "fields", "floats", "signed", "varints"]

_TWO_TO_64: Final = 1 << 64
_TWO_TO_63: Final = 1 << 63


class ProtoError(ValueError):
    """Bytes that are not a protobuf message."""


def _varint(data: bytes, position: int) -> tuple[int, int]:
    """The varint at ``position`` and the position after it."""
    result = 0
    shift = 0
    while True:
        if position >= len(data) or shift > 63:
            raise ProtoError("a varint runs past the end of the message")
        byte = data[position]
        position += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, position
        shift += 7


def fields(data: bytes) -> Iterator[tuple[int, int, int | bytes]]:
    """``(field number, wire type, value)`` for each field of a message: varints as ints,
    the other wire types as their bytes.

    Raises:
        ProtoError: the bytes are not a message (a field runs past the end, or a
            group or unknown wire type).
    """
    position = 0
    end = len(data)
    while position < end:
        key, position = _varint(data, position)
        number, wire = key >> 3, key & 7
        value: int | bytes
        if wire == 0:
            value, position = _varint(data, position)
        elif wire == 1:
            value, position = data[position : position + 8], position + 8
        elif wire == 2:
            length, position = _varint(data, position)
            value, position = data[position : position + length], position + length
        elif wire == 5:
            value, position = data[position : position + 4], position + 4
        else:
            raise ProtoError(f"field {number} has wire type {wire}, which events do not use")
        if position > end:
            raise ProtoError(f"field {number} runs past the end of the message")
        yield number, wire, value


def signed(value: int) -> int:
    """A varint read as a two's complement int64 (how negative int32/int64 are written)."""
    return value - _TWO_TO_64 if value >= _TWO_TO_63 else value


def doubles(wire: int, value: int | bytes) -> list[float]:
    """The doubles of one occurrence of a repeated double field (packed or not)."""
    if isinstance(value, int) or (wire == 1 and len(value) != 8) or len(value) % 8:
        raise ProtoError("a double field does not hold 8-byte values")
    return list(struct.unpack(f"<{len(value) // 8}d", value))


def floats(wire: int, value: int | bytes) -> list[float]:
    """The floats of one occurrence of a repeated float field (packed or not)."""
    if isinstance(value, int) or len(value) % 4:
        raise ProtoError("a float field does not hold 4-byte values")
    return list(struct.unpack(f"<{len(value) // 4}f", value))


def varints(wire: int, value: int | bytes) -> list[int]:
    """The ints of one occurrence of a repeated varint field (packed or not)."""
    if isinstance(value, int):
        return [signed(value)]
    found = []
    position = 0
    while position < len(value):
        number, position = _varint(value, position)
        found.append(signed(number))
    return found

"""TensorBoard's ``Event`` messages: the scalars, histograms and images they carry.

The fields read (tensorflow/core/util/event.proto, framework/summary.proto,
tensor.proto): ``Event`` {wall_time 1, step 2, summary 5}; ``Summary`` {value 1};
``Summary.Value`` {tag 1, simple_value 2, image 4, histo 5, tensor 8, metadata 9};
``Summary.Image`` {encoded_image_string 4}; ``HistogramProto`` {min 1, max 2,
bucket_limit 6, bucket 7}; ``TensorProto`` {dtype 1, tensor_content 4, float_val 5,
double_val 6, int_val 7, string_val 8, int64_val 10, bool_val 11, half_val 13};
``SummaryMetadata`` {plugin_data 1: {plugin_name 1}}. Scalars come as ``simple_value``
(torch's default, tensorboardX) or as a one-value tensor of the ``scalars`` plugin
(``tf.summary``, torch's ``new_style``); histograms as a ``HistogramProto`` or a k x 3
tensor (left, right, count) of the ``histograms`` plugin; images as PNG bytes, or a
tensor of strings (width, height, PNG...) of the ``images`` plugin.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Final

from tracker._tensorboard._proto import doubles, fields, floats, signed, varints

__all__ = ["Event", "Histogram", "decode_event"]

_DOUBLE_MAX: Final = 1.7976931348623157e308
# TensorProto dtypes and their struct formats (tensorflow/core/framework/types.proto)
_CONTENT_FORMATS: Final = {1: "f", 2: "d", 3: "i", 4: "B", 5: "h", 6: "b", 9: "q", 10: "?", 19: "e"}
_STRING: Final = 7


@dataclass(frozen=True)
class Histogram:
    """A histogram summary: counts and edges (one more edge than counts)."""

    counts: list[float]
    edges: list[float]


@dataclass
class Event:
    """The values one event carries, by tag: floats, `Histogram`s or PNG bytes."""

    step: int = 0
    wall_time: float = 0.0
    values: dict[str, float | Histogram | bytes] = field(default_factory=dict)


def decode_event(data: bytes) -> Event:
    """The step and supported summary values of one serialized ``Event``.

    Raises:
        tracker._tensorboard._proto.ProtoError: the bytes are not an event.
    """
    event = Event()
    for number, wire, value in fields(data):
        if number == 1 and wire == 1 and isinstance(value, bytes):
            (event.wall_time,) = struct.unpack("<d", value)
        elif number == 2 and wire == 0 and isinstance(value, int):
            event.step = signed(value)
        elif number == 5 and wire == 2 and isinstance(value, bytes):
            for part, part_wire, summary_value in fields(value):
                if part == 1 and part_wire == 2 and isinstance(summary_value, bytes):
                    _add_value(event.values, summary_value)
    return event


def _add_value(values: dict[str, float | Histogram | bytes], data: bytes) -> None:
    """Decode one ``Summary.Value`` into ``values`` (kinds not supported are skipped)."""
    tag = ""
    plugin = ""
    found: float | Histogram | bytes | None = None
    tensor: bytes | None = None
    for number, wire, value in fields(data):
        if isinstance(value, int):
            continue
        if number == 1 and wire == 2:
            tag = value.decode("utf-8", "replace")
        elif number == 2 and wire == 5:
            (found,) = struct.unpack("<f", value)
        elif number == 4 and wire == 2:
            found = _image(value)
        elif number == 5 and wire == 2:
            found = _histogram_proto(value)
        elif number == 8 and wire == 2:
            tensor = value
        elif number == 9 and wire == 2:
            plugin = _plugin_name(value)
    if found is None and tensor is not None:
        found = _from_tensor(tensor, plugin)
    if tag and found is not None:
        values[tag] = found


def _image(data: bytes) -> bytes | None:
    for number, wire, value in fields(data):
        if number == 4 and wire == 2 and isinstance(value, bytes):
            return value
    return None


def _histogram_proto(data: bytes) -> Histogram | None:
    low = high = 0.0
    limits: list[float] = []
    counts: list[float] = []
    for number, wire, value in fields(data):
        if number == 1 and wire == 1:
            (low,) = doubles(wire, value)
        elif number == 2 and wire == 1:
            (high,) = doubles(wire, value)
        elif number == 6:
            limits += doubles(wire, value)
        elif number == 7:
            counts += doubles(wire, value)
    if not counts or len(limits) != len(counts):
        return None
    # bucket_limit holds each bucket's right edge; the first left edge is the minimum, and
    # an open last edge (DBL_MAX) closes at the maximum
    edges = [low, *(min(limit, high) if limit >= _DOUBLE_MAX else limit for limit in limits)]
    return Histogram(counts, edges)


def _plugin_name(data: bytes) -> str:
    for number, wire, value in fields(data):
        if number == 1 and wire == 2 and isinstance(value, bytes):
            for part, part_wire, name in fields(value):
                if part == 1 and part_wire == 2 and isinstance(name, bytes):
                    return name.decode("utf-8", "replace")
    return ""


def _from_tensor(data: bytes, plugin: str) -> float | Histogram | bytes | None:
    """A scalar, histogram or image of a tensor summary, by its plugin."""
    dtype = 0
    numbers: list[float] = []
    strings: list[bytes] = []
    for number, wire, value in fields(data):
        if number == 1 and isinstance(value, int):
            dtype = value
        elif number == 4 and isinstance(value, bytes) and dtype in _CONTENT_FORMATS:
            code = _CONTENT_FORMATS[dtype]
            size = struct.calcsize(code)
            count = len(value) // size
            numbers += [float(v) for v in struct.unpack(f"<{count}{code}", value[: count * size])]
        elif number == 5:
            numbers += floats(wire, value)
        elif number == 6:
            numbers += doubles(wire, value)
        elif number in (7, 10, 11):
            numbers += [float(v) for v in varints(wire, value)]
        elif number == 13:
            numbers += [_half(v) for v in varints(wire, value)]
        elif number == 8 and isinstance(value, bytes):
            strings.append(value)
    if plugin == "images" or (dtype == _STRING and len(strings) >= 3):
        return strings[2] if len(strings) >= 3 else None
    if plugin == "histograms":
        if not numbers or len(numbers) % 3:
            return None
        triples = [numbers[index : index + 3] for index in range(0, len(numbers), 3)]
        edges = [triples[0][0], *(right for _, right, _ in triples)]
        return Histogram([count for _, _, count in triples], edges)
    if len(numbers) == 1 and plugin in ("", "scalars"):
        return numbers[0]
    return None


def _half(bits: int) -> float:
    """An IEEE half-precision float stored in the low 16 bits of an int (half_val)."""
    (value,) = struct.unpack("<e", struct.pack("<H", bits & 0xFFFF))
    return float(value)

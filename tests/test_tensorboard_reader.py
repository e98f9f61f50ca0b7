"""The pure-Python TensorBoard reader: TFRecord framing with CRC-32C, and Event decoding,
on bytes built here by the wire format's rules (the integration tests use real writers)."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from tracker._tensorboard._events import Histogram, decode_event
from tracker._tensorboard._proto import ProtoError
from tracker._tensorboard._records import RecordReader, crc32c, masked_crc32c


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _field(number: int, wire: int, value: int | bytes) -> bytes:
    key = _varint(number << 3 | wire)
    if wire == 0:
        assert isinstance(value, int)
        return key + _varint(value)
    assert isinstance(value, bytes)
    return key + (_varint(len(value)) + value if wire == 2 else value)


def _event(step: int, *values: bytes) -> bytes:
    summary = b"".join(_field(1, 2, value) for value in values)
    return _field(1, 1, struct.pack("<d", 1.5e9)) + _field(2, 0, step) + _field(5, 2, summary)


def _scalar(tag: str, value: float) -> bytes:
    return _field(1, 2, tag.encode()) + _field(2, 5, struct.pack("<f", value))


def _record(data: bytes) -> bytes:
    header = struct.pack("<Q", len(data))
    return (
        header
        + struct.pack("<I", masked_crc32c(header))
        + data
        + struct.pack("<I", masked_crc32c(data))
    )


def test_crc32c_matches_the_standard_check_value() -> None:
    """CRC-32C of "123456789" is 0xE3069283 (the Castagnoli check value)."""
    assert crc32c(b"123456789") == 0xE3069283
    assert crc32c(b"") == 0


def test_records_are_read_as_they_are_appended(tmp_path: Path) -> None:
    """A record cut in the middle is left for the next read; whole ones come in order."""
    path = tmp_path / "events.out.tfevents.1"
    first, second = _record(b"one"), _record(b"second record")
    path.write_bytes(first + second[:7])
    reader = RecordReader(path)
    assert reader.read() == [b"one"]
    assert reader.read() == []
    with path.open("ab") as file:
        file.write(second[7:])
    assert reader.read() == [b"second record"]
    assert reader.offset == len(first) + len(second)


def test_a_record_failing_its_checksum_is_left_out_and_a_bad_length_stops_the_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Data whose CRC fails is skipped (counted, logged); a length whose CRC fails stops
    reading the file, since nothing after it can be framed."""
    path = tmp_path / "events.out.tfevents.2"
    damaged = bytearray(_record(b"damaged"))
    damaged[14] ^= 0xFF
    bad_length = bytearray(_record(b"x"))
    bad_length[0] ^= 0x01
    path.write_bytes(_record(b"a") + bytes(damaged) + _record(b"b") + bytes(bad_length))
    reader = RecordReader(path)
    assert reader.read() == [b"a", b"b"]
    assert (reader.skipped, reader.broken) == (1, True)
    assert "fails its checksum" in caplog.text


def test_scalar_histogram_and_image_summaries_decode() -> None:
    """simple_value scalars, HistogramProto (packed doubles, an open last edge) and encoded
    images decode with their event's step; a negative step stays negative."""
    histogram = (
        _field(1, 1, struct.pack("<d", -1.0))
        + _field(2, 1, struct.pack("<d", 3.0))
        + _field(6, 2, struct.pack("<3d", 0.0, 1.0, 1.7976931348623157e308))
        + _field(7, 2, struct.pack("<3d", 2.0, 5.0, 1.0))
    )
    image = _field(1, 0, 4) + _field(2, 0, 4) + _field(4, 2, b"\x89PNG...")
    event = decode_event(
        _event(
            -3,
            _scalar("loss", 0.25),
            _field(1, 2, b"weights") + _field(5, 2, histogram),
            _field(1, 2, b"sample") + _field(4, 2, image),
        )
    )
    assert event.step == -3
    assert event.wall_time == 1.5e9
    assert event.values == {
        "loss": 0.25,
        "weights": Histogram([2.0, 5.0, 1.0], [-1.0, 0.0, 1.0, 3.0]),
        "sample": b"\x89PNG...",
    }


def _tensor_value(tag: str, plugin: str, tensor: bytes) -> bytes:
    metadata = _field(1, 2, _field(1, 2, plugin.encode()))
    return _field(1, 2, tag.encode()) + _field(8, 2, tensor) + _field(9, 2, metadata)


def test_tensor_summaries_of_tf_summary_decode() -> None:
    """tf.summary's tensors: a float scalar (float_val or tensor_content), a double, a
    k x 3 histogram tensor, and an image tensor of strings [width, height, png]."""
    scalar = _field(1, 0, 1) + _field(5, 2, struct.pack("<f", 0.5))
    content = _field(1, 0, 2) + _field(4, 2, struct.pack("<d", 2.5))
    buckets = _field(1, 0, 2) + _field(4, 2, struct.pack("<6d", 0, 1, 3, 1, 2, 4))
    images = _field(1, 0, 7) + b"".join(_field(8, 2, part) for part in (b"4", b"4", b"PNG"))
    event = decode_event(
        _event(
            7,
            _tensor_value("a", "scalars", scalar),
            _tensor_value("b", "scalars", content),
            _tensor_value("h", "histograms", buckets),
            _tensor_value("i", "images", images),
            _tensor_value("text", "text", _field(1, 0, 7) + _field(8, 2, b"words")),
        )
    )
    assert event.values == {
        "a": 0.5,
        "b": 2.5,
        "h": Histogram([3.0, 4.0], [0.0, 1.0, 2.0]),
        "i": b"PNG",
    }


def test_bytes_that_are_not_an_event_raise_proto_error() -> None:
    """A field running past the end of the message is a ProtoError."""
    with pytest.raises(ProtoError):
        decode_event(_field(5, 2, b"abc")[:-1])

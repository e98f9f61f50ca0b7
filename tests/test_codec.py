"""Tests for exact encoding (tracker._records.codec) and the public round trip: every value
read back equals what was logged; bad values are refused with a precise message; a
torn run log keeps every complete frame."""

from __future__ import annotations

import math
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from exact import same
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tracker
from tracker._records.codec import default, encode_record, encode_value
from tracker._records.kinds import decode_record

HEAD = (0, "row", 0, 1.0)
META = ("_step", "_timestamp", "_runtime")


def round_trip(value: Any) -> Any:
    """Encode ``{"k": value}`` as a row record and decode it; return what "k" holds."""
    line = encode_record(HEAD, {"k": value}, "log()")
    assert line.endswith(b"\n")
    assert line.count(b"\n") == 1, "a record is one line"
    record = decode_record(line)
    assert record[:4] == list(HEAD)
    assert len(record) == 5, "the sidecar is removed"
    assert list(record[4]) == ["k"]
    return record[4]["k"]


def start(tmp_path: Path, **kwargs: Any) -> tracker.Run:
    """A silent offline run in tmp_path."""
    kwargs.setdefault("project", "tests")
    return tracker.init(dir=tmp_path, settings={"silent": True}, **kwargs)


def stored_rows(run_dir: str | Path) -> list[tuple[int, dict[str, Any]]]:
    """The stored history as (step, data without _step/_timestamp/_runtime)."""
    return [
        (row["_step"], {key: value for key, value in row.items() if key not in META})
        for row in tracker.read_run(run_dir).history()
    ]


def test_same_helper_is_strict() -> None:
    """The deep-equal helper tells apart what the round trip must keep apart."""
    assert same(math.nan, math.nan)
    assert same([{"a": math.nan}], [{"a": math.nan}])
    assert not same(1, 1.0)
    assert not same(True, 1)
    assert not same(0.0, -0.0)
    assert not same(None, math.nan)
    assert not same({"a": 1}, {"a": 1, "b": 2})
    assert not same([1], [1, 1])


# -- property: any JSON-like value round-trips exactly ---------------------------------

TEXT = st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=12)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=2**64)
    | st.integers(max_value=-(2**63) - 1)
    | st.sampled_from([2**64 - 1, 2**64, -(2**63), -(2**63) - 1, 2**63, 10**40, -(10**40)])
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from([math.nan, math.inf, -math.inf, -0.0])
    | TEXT
)
VALUES = st.recursive(
    SCALARS,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(TEXT, children, max_size=5),
    max_leaves=20,
)


@settings(max_examples=400, deadline=None, database=None)
@given(VALUES)
def test_any_value_round_trips_exactly(value: Any) -> None:
    """encode_record then decode_record gives back an equal value, types and NaN kept."""
    assert same(round_trip(value), value)


@settings(max_examples=200, deadline=None, database=None)
@given(VALUES)
def test_encode_value_round_trips_at_the_top_level(value: Any) -> None:
    """A special value at the very top of a record's payload round-trips too."""
    record = decode_record(encode_record((0, "summary"), value, "summary"))
    assert same(record[2], value)
    assert encode_value(value, "x").endswith(b"\n")


def test_values_logged_through_the_public_api_read_back_equal(tmp_path: Path) -> None:
    """Values logged with run.log read back equal from read_run, types and NaN kept."""
    run = start(tmp_path)
    logged: list[Any] = []

    @settings(
        max_examples=50,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(VALUES)
    def log_one(value: Any) -> None:
        run.log({"k": value})
        logged.append(value)

    log_one()
    run.finish()
    rows = stored_rows(run.dir)
    assert [step for step, _ in rows] == list(range(len(logged)))
    for (_, data), value in zip(rows, logged, strict=True):
        assert same(data["k"], value), (data["k"], value)


# -- explicit edge values --------------------------------------------------------------


def test_negative_zero_keeps_its_sign() -> None:
    """-0.0 reads back as -0.0, not 0.0."""
    result = round_trip(-0.0)
    assert result == 0.0
    assert math.copysign(1.0, result) == -1.0
    assert same(round_trip([0.0, -0.0]), [0.0, -0.0])


@pytest.mark.parametrize("number", [2**64 - 1, -(2**63), 2**63, 0, -1])
def test_64_bit_ints_stay_plain(number: int) -> None:
    """Ints in orjson's range are written as plain JSON numbers, with no sidecar."""
    line = encode_record(HEAD, {"k": number}, "log()")
    assert line == f'[0,"row",0,1.0,{{"k":{number}}}]\n'.encode()
    assert same(round_trip(number), number)


@pytest.mark.parametrize("number", [2**64, -(2**63) - 1, 3**100, -(7**77)])
def test_big_ints_stay_ints(number: int) -> None:
    """Ints beyond 64 bits read back as the same int (not a str or a float)."""
    assert same(round_trip(number), number)
    assert same(round_trip({"a": [number, math.nan]}), {"a": [number, math.nan]})


def test_str_that_looks_like_a_special_value_stays_a_str() -> None:
    """User text such as "nan", "null" or digits is never mistaken for a marker."""
    value = {"a": "nan", "b": "null", "c": "123456789012345678901234567890", "d": None}
    assert same(round_trip(value), value)
    assert same(round_trip([math.nan, "nan", None, "inf"]), [math.nan, "nan", None, "inf"])


def test_user_data_shaped_like_a_sidecar_is_kept() -> None:
    """A payload that looks like a [path, kind] sidecar list is user data, kept as is."""
    value = [[["k"], "nan"], [[], "int"]]
    assert same(round_trip(value), value)
    record = decode_record(encode_record((0, "config"), value, "config"))
    assert same(record[2], value)


@pytest.mark.parametrize(
    "text",
    [
        "😀🚀👩‍👩‍👧‍👦",
        "中文字符, 日本語, 한국어",
        "e\u0301 a\u0308 \u0915\u094d\u0937",
        '\x00\t\n"\\\u2028\u2029',
        "\U0010ffff",
    ],
)
def test_unicode_round_trips(text: str) -> None:
    """Emoji, CJK, combining marks and control characters round-trip exactly, as keys too."""
    assert same(round_trip(text), text)
    assert same(round_trip({text: [text]}), {text: [text]})


def test_unicode_round_trips_through_the_public_api(tmp_path: Path) -> None:
    """Unicode keys and values logged with run.log read back unchanged."""
    run = start(tmp_path)
    row = {"😀": "🚀", "损失": "中文", "cafe\u0301": ["e\u0301", math.nan]}
    run.log(row)
    run.finish()
    [(_, data)] = stored_rows(run.dir)
    assert same(data, row)


# -- numpy and torch ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (np.float32(1.5), 1.5),
        (np.float32(0.1), float(np.float32(0.1))),
        (np.float64(-2.25), -2.25),
        (np.float64("nan"), math.nan),
        (np.float32("-inf"), -math.inf),
        (np.int64(-(2**63)), -(2**63)),
        (np.int64(42), 42),
        (np.int32(-7), -7),
        (np.uint64(2**64 - 1), 2**64 - 1),
        (np.bool_(True), True),
        (np.bool_(False), False),
    ],
)
def test_numpy_scalars_become_python_numbers(value: Any, expected: Any) -> None:
    """numpy scalars read back as the Python number of the same value and kind."""
    assert same(round_trip(value), expected)
    assert same(round_trip({"nested": [value]}), {"nested": [expected]})


def test_numpy_arrays_become_nested_lists() -> None:
    """1-d and 2-d arrays (NaN included) read back as nested lists, elementwise equal."""
    one = np.array([1.0, np.nan, -np.inf, 3.5])
    two = np.array([[1, 2, 3], [4, 5, 6]], dtype=np.int64)
    with_nan = np.array([[np.nan, 1.0], [2.0, np.nan]], dtype=np.float32)
    assert same(round_trip(one), [1.0, math.nan, -math.inf, 3.5])
    assert same(round_trip(two), [[1, 2, 3], [4, 5, 6]])
    result = round_trip(with_nan)
    assert same(result, with_nan.tolist())
    assert np.array_equal(np.isnan(np.array(result)), np.isnan(with_nan))
    assert same(round_trip(np.array([True, False])), [True, False])
    assert same(round_trip(np.zeros((0, 3))), [])


def test_numpy_values_through_the_public_api(tmp_path: Path) -> None:
    """numpy scalars and arrays logged with run.log read back as Python values."""
    run = start(tmp_path)
    run.log({"f": np.float32(0.5), "i": np.int64(3), "b": np.bool_(True)})
    run.log({"a": np.array([[1.0, np.nan], [np.inf, 2.0]])})
    run.finish()
    rows = stored_rows(run.dir)
    assert same(rows[0][1], {"f": 0.5, "i": 3, "b": True})
    assert same(rows[1][1], {"a": [[1.0, math.nan], [math.inf, 2.0]]})


class FakeTensor:
    """Stands in for a torch tensor: the encoder recognises torch by module name."""

    __module__ = "torch"

    def __init__(self, value: Any) -> None:
        self.value = value
        self.calls: list[str] = []

    def detach(self) -> FakeTensor:
        self.calls.append("detach")
        return self

    def cpu(self) -> FakeTensor:
        self.calls.append("cpu")
        return self

    def dim(self) -> int:
        depth, node = 0, self.value
        while isinstance(node, list):
            depth, node = depth + 1, node[0] if node else None
        return depth

    def item(self) -> Any:
        assert self.dim() == 0, "item() is only for 0-d tensors"
        return self.value

    def tolist(self) -> Any:
        return self.value


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (2.5, 2.5),
        (7, 7),
        (math.nan, math.nan),
        ([1.0, 2.0], [1.0, 2.0]),
        ([[1, 2], [3, 4]], [[1, 2], [3, 4]]),
        ([math.inf, math.nan], [math.inf, math.nan]),
    ],
)
def test_torch_tensors_become_numbers_and_lists(value: Any, expected: Any) -> None:
    """A 0-d tensor becomes a number, others nested lists, after detach().cpu()."""
    tensor = FakeTensor(value)
    assert same(round_trip(tensor), expected)
    assert tensor.calls[:2] == ["detach", "cpu"]
    assert same(default(FakeTensor(value)), expected)


def test_torch_tensors_through_the_public_api(tmp_path: Path) -> None:
    """Tensors logged with run.log read back as a number and a list."""
    run = start(tmp_path)
    run.log({"loss": FakeTensor(0.25), "grad": FakeTensor([1.0, math.nan])})
    run.finish()
    [(_, data)] = stored_rows(run.dir)
    assert same(data, {"loss": 0.25, "grad": [1.0, math.nan]})


def test_default_refuses_unknown_types() -> None:
    """default() raises TypeError for a type that is neither numpy nor torch."""
    with pytest.raises(TypeError, match="object"):
        default(object())


# -- errors ---------------------------------------------------------------------------


def deep(levels: int, leaf: Any) -> Any:
    """``leaf`` wrapped in ``levels`` nested lists."""
    value = leaf
    for _ in range(levels):
        value = [value]
    return value


def self_list() -> list[Any]:
    """A list that contains itself."""
    value: list[Any] = [1]
    value.append(value)
    return value


def self_dict() -> dict[str, Any]:
    """A dict that contains itself."""
    value: dict[str, Any] = {"a": 1}
    value["me"] = value
    return value


@pytest.mark.parametrize(
    ("value", "fragments"),
    [
        pytest.param(object(), ["['k']", "object", "convert"], id="object"),
        pytest.param({1, 2}, ["['k']", "set", "convert"], id="set"),
        pytest.param({"a": [0, object()]}, ["['k']['a'][1]", "convert"], id="nested-object"),
        pytest.param({"a": {1: 2}}, ["key 1", "['k']['a']", "must be str"], id="int-key"),
        pytest.param({("t",): 2}, ["('t',)", "['k']", "must be str"], id="tuple-key"),
        pytest.param(deep(300, 1), ["['k'][0][0]", "nested", "flatten"], id="deep-300"),
        pytest.param(deep(300, math.nan), ["['k'][0]", "flatten"], id="deep-300-nan"),
        pytest.param(self_list(), ["['k']", "itself", "flatten"], id="self-list"),
        pytest.param(self_dict(), ["['k']", "itself", "flatten"], id="self-dict"),
        pytest.param("a\ud800b", ["['k']", "surrogate", "fix"], id="surrogate"),
        pytest.param({"\udfff": 1}, ["['k']", "surrogate", "fix"], id="surrogate-key"),
    ],
)
def test_unencodable_values_raise_usage_error_naming_the_path(
    value: Any, fragments: list[str]
) -> None:
    """A value that cannot be encoded raises UsageError naming the call, the key path and
    what to do."""
    with pytest.raises(tracker.UsageError) as caught:
        encode_record(HEAD, {"k": value}, "log()")
    message = str(caught.value)
    assert message.startswith("log():")
    for fragment in fragments:
        assert fragment in message, (fragment, message[:300])


def test_nesting_limit_does_not_depend_on_nan() -> None:
    """A nested value is accepted or refused alike whether or not it holds a NaN, at
    every depth around the limit, in a row and as a whole payload."""
    for levels in (150, 210, *range(245, 260)):
        for head, wrap in ((HEAD, lambda v: {"k": v}), ((0, "summary"), lambda v: v)):
            outcomes = []
            for leaf in (1.0, math.nan):
                value = wrap(deep(levels, leaf))
                try:
                    record = decode_record(encode_record(head, value, "log()"))
                except tracker.UsageError:
                    outcomes.append("refused")
                else:
                    outcomes.append(same(record[len(head)], value))
            assert outcomes[0] == outcomes[1], (levels, head, outcomes)
            assert "refused" in outcomes or outcomes == [True, True]


def test_decode_record_rejects_non_records() -> None:
    """decode_record refuses a line that is not a tracker record."""
    for line in (b"[]\n", b'["x","row"]\n', b"[1]\n", b'[0,"row",0,1.0,{},[],[]]\n'):
        with pytest.raises(ValueError, match="record"):
            decode_record(line)


# -- a torn run log -------------------------------------------------------------------

HEADER_SIZE = 16
FRAME = struct.Struct("<II")


def frame_spans(log: Path) -> list[tuple[int, int]]:
    """(start, end) byte offsets of each whole frame of a run log (the documented layout),
    up to a torn tail."""
    data = log.read_bytes()
    spans, offset = [], HEADER_SIZE
    while offset + FRAME.size <= len(data):
        length, _ = FRAME.unpack_from(data, offset)
        end = offset + FRAME.size + length
        if end > len(data):
            break
        spans.append((offset, end))
        offset = end
    return spans


def write_run(tmp_path: Path) -> tuple[tracker.Run, Path, list[tuple[int, int]]]:
    """A finished run of 30 rows written in three flushed batches, and its frames."""
    run = start(tmp_path)
    for batch in range(3):
        for index in range(10):
            step = batch * 10 + index
            run.log({"i": step, "x": step / 4, "nan": math.nan})
        assert run.flush(timeout=10)
    run.finish()
    log = Path(run.dir).parent / "run.log"
    spans = frame_spans(log)
    assert spans[-1][1] == log.stat().st_size
    return run, log, spans


def rows_in_frames(log: Path, end: int) -> list[int]:
    """The steps of the rows held by the frames that end at or before ``end``."""
    data = log.read_bytes()
    steps = []
    for start_at, stop in frame_spans(log):
        if stop > end:
            break
        for line in data[start_at + FRAME.size : stop].splitlines():
            record = decode_record(line)
            if record[1] == "row":
                steps.append(record[2])
    return steps


def corrupt(log: Path, spans: list[tuple[int, int]], how: str) -> int:
    """Damage ``log``; return the byte offset up to which its frames are intact."""
    size = log.stat().st_size
    last_start, last_end = spans[-1]
    if how == "garbage":
        with log.open("ab") as handle:
            handle.write(b"\x07\x00\x00\x00garbage-not-a-frame")
        return size
    if how == "half-last-frame":
        with log.open("r+b") as handle:
            handle.truncate((last_start + last_end) // 2)
        return last_start
    if how == "cut-frame-header":
        with log.open("r+b") as handle:
            handle.truncate(last_start + 5)
        return last_start
    if how == "bad-crc":
        data = bytearray(log.read_bytes())
        data[last_end - 3] ^= 0xFF
        log.write_bytes(bytes(data))
        return last_start
    # "cut-rows": tear the second frame of rows, losing it and everything after it
    row_frames = [
        span for span in spans if rows_in_frames(log, span[1]) != rows_in_frames(log, span[0])
    ]
    start_at, stop = row_frames[1]
    with log.open("r+b") as handle:
        handle.truncate(stop - 2)
    return start_at


@pytest.mark.parametrize(
    "how", ["garbage", "half-last-frame", "cut-frame-header", "bad-crc", "cut-rows"]
)
def test_torn_run_log_keeps_complete_frames_and_resumes(tmp_path: Path, how: str) -> None:
    """read_run reads every complete frame of a torn run log; a resumed run continues
    after them and reads back whole (old rows + new rows)."""
    run, log, spans = write_run(tmp_path)
    assert len(spans) >= 4, "run record, three row batches and the exit"
    intact = corrupt(log, spans, how)
    expected_steps = rows_in_frames(log, intact) if how != "garbage" else list(range(30))
    assert expected_steps == list(range(len(expected_steps)))
    assert len(expected_steps) >= 10

    stored = tracker.read_run(run.dir)
    assert stored.torn
    old = stored_rows(run.dir)
    assert [step for step, _ in old] == expected_steps
    for step, data in old:
        assert same(data, {"i": step, "x": step / 4, "nan": math.nan})

    resumed = tracker.init(
        id=run.id, resume="allow", dir=tmp_path, project="tests", settings={"silent": True}
    )
    assert resumed.resumed
    assert resumed.dir == run.dir
    first_new = len(expected_steps)
    assert resumed.step == first_new
    for index in range(5):
        resumed.log({"new": index})
    resumed.finish()

    after = tracker.read_run(run.dir)
    assert not after.torn
    assert after.state == "finished"
    rows = stored_rows(run.dir)
    assert [step for step, _ in rows] == list(range(first_new + 5))
    assert same(rows[:first_new], old)
    assert [data for _, data in rows[first_new:]] == [{"new": index} for index in range(5)]

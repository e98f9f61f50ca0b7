"""Hostile input: every bad request gets a 4xx with a clear message, and the server carries on."""

from __future__ import annotations

import asyncio
import base64
import math
import os
import random
import struct
from typing import Any

import aiohttp
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from yarl import URL

from tracker._records.batch import parse_batch
from tracker._records.codec import decode_value, encode_record
from tracker._records.kinds import decode_record
from tracker._records.state import RecordError
from tracker._wire.limits import MAX_BATCH_BYTES

pytestmark = pytest.mark.anyio

RUN = "/api/v1/runs/local/proj/run1"
START = "/api/v1/runs/start"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"", "bad_json"),
        (b"{", "bad_json"),
        (b"\xff\xfe\x00garbage", "bad_json"),
        (b"[" * 5000 + b"]" * 5000, "bad_json"),
        (b"[1, 2, 3]", "bad_request"),
        (b'"text"', "bad_request"),
        (
            b'{"protocol": 1, "project": ["x"], "run_id": "a", "log_id": null, "mode": 1}',
            "bad_name",
        ),
    ],
)
async def test_malformed_handshake_bodies_are_400(client: Any, body: bytes, code: str) -> None:
    """Empty, truncated, non-UTF-8, deeply nested or mistyped bodies are 400s."""
    await client.error("POST", START, 400, code, data=body)
    await client.healthy()


async def test_an_oversized_json_body_is_413(client: Any) -> None:
    """A JSON body over 1 MiB is refused with too_large."""
    body = orjson.dumps(client.handshake(notes="x" * (2 * 1024 * 1024)))
    await client.error("POST", START, 413, "too_large", data=body)
    await client.healthy()


async def test_random_bytes_as_a_batch_are_400_bad_batch(client: Any) -> None:
    """Batches of random bytes are refused as bad_batch and store nothing."""
    await client.start()
    generator = random.Random(7)
    for size in (1, 10, 1000, 100_000):
        junk = generator.randbytes(size)
        status, answer = await client.post_batch("run1", junk)
        assert (status, answer["error"]["code"]) == (400, "bad_batch"), answer
    assert await client.history("run1") == []
    await client.healthy()


@pytest.mark.parametrize(
    ("lines", "needle"),
    [
        ([b'[0,"run",{}]', b'[2,"config",{}]'], "line 2"),
        ([b'[0,"run",{}]', b'[0,"config",{}]'], "line 2"),
        ([b'{"seq": 0}'], "line 1"),
        ([b'[true,"run",{}]'], "line 1"),
        ([b'[-1,"run",{}]'], "line 1"),
        ([b"[0,5,{}]"], "line 1"),
        ([b'[0,"row","step",1.0,{}]'], "step"),
        ([b'[0,"row",0,"noon",{}]'], "line 1"),
        ([b'[0,"row",0,1.0,[1,2]]'], "dict"),
        ([b'[0,"config",[1]]'], "dict"),
        ([b'[0,"summary_delete",[1]]'], "line 1"),
        ([b'[0,"run",{},[[["a","b","c"],"int"]]]'], "line 1"),
        ([b'[0,"run",{"a":"x"},[[["a"],"int"]]]'], "line 1"),
        ([b'[0,"run",{},"specials"]'], "line 1"),
        ([b'[0,"run",{}]', b"", b'[1,"run",{}]'], "line 2"),
        ([b'[0,"row",0,0.0,{}]', b"[1,[],null,null,null]"], "line 2"),
    ],
)
async def test_malformed_batches_name_the_bad_line(
    client: Any, lines: list[bytes], needle: str
) -> None:
    """A batch of records that are not well-formed is a 400 naming the line; nothing stored."""
    await client.start()
    message = await client.error(
        "POST",
        f"{RUN}/records",
        400,
        "bad_batch",
        data=b"\n".join(lines) + b"\n",
        params={"log_id": client.LOG_ID},
    )
    assert needle in message
    assert (await client.call("GET", RUN))[1][0]["last_step"] == -1
    await client.healthy()


async def test_a_special_value_at_a_nonsense_path_is_refused(client: Any) -> None:
    """A sidecar that puts a value under a non-str key is a 400, never a 500."""
    await client.start()
    status, answer = await client.post_batch("run1", b'[0,"config",{"a":1},[[[5],"nan"]]]\n')
    assert status == 400, answer
    await client.healthy()


async def test_an_oversized_batch_is_413(client: Any) -> None:
    """A batch over 16 MiB is refused with too_large."""
    await client.start()
    status, answer = await client.post_batch("run1", b" " * (MAX_BATCH_BYTES + 1))
    assert (status, answer["error"]["code"]) == (413, "too_large")
    await client.healthy()


async def test_too_many_records_are_413(client: Any) -> None:
    """A batch of more than 100,000 records is refused with too_large."""
    await client.start()
    batch = b"".join(b'[%d,"x",{}]\n' % seq for seq in range(100_001))
    status, answer = await client.post_batch("run1", batch)
    assert (status, answer["error"]["code"]) == (413, "too_large")
    await client.healthy()


async def test_an_oversized_websocket_message_closes_with_1009(client: Any) -> None:
    """A websocket message announcing more than 16 MiB closes the stream with code 1009."""
    await client.start()
    # a raw socket: a client sending the whole 16 MiB would be reset mid-send instead
    url = URL(client.url)
    reader, writer = await asyncio.open_connection(url.host, url.port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        f"GET {RUN}/stream?log_id={client.LOG_ID} HTTP/1.1\r\nHost: {url.host}:{url.port}\r\n"
        "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
        f"X-Tracker-Client: test\r\nSec-WebSocket-Key: {key}\r\n\r\n".encode()
    )
    assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 101")
    # the header of a masked binary frame one byte over the limit
    writer.write(struct.pack("!BBQ", 0x82, 0x80 | 127, MAX_BATCH_BYTES + 1) + os.urandom(4))
    await writer.drain()
    close = await reader.readexactly(4)
    writer.close()
    await writer.wait_closed()
    assert close[0] == 0x88
    assert struct.unpack("!H", close[2:4])[0] == aiohttp.WSCloseCode.MESSAGE_TOO_BIG
    await client.healthy()


async def test_a_file_announcing_more_than_512_mib_is_413_before_any_upload(client: Any) -> None:
    """A PUT whose Content-Length is over 512 MiB is refused at once, body unread."""
    await client.start()
    url = URL(client.url)
    reader, writer = await asyncio.open_connection(url.host, url.port)
    writer.write(
        f"PUT {RUN}/files/huge.bin HTTP/1.1\r\nHost: {url.host}:{url.port}\r\n"
        "Content-Type: application/octet-stream\r\n"
        f"Content-Length: {600 * 1024 * 1024}\r\n\r\n".encode()
    )
    head = await reader.readuntil(b"\r\n\r\n")
    writer.close()
    await writer.wait_closed()
    assert head.startswith(b"HTTP/1.1 413"), head
    await client.healthy()


async def test_the_stream_endpoint_without_an_upgrade_is_400(client: Any) -> None:
    """A plain GET of the stream endpoint is told to connect as a websocket."""
    await client.start()
    message = await client.error(
        "GET", f"{RUN}/stream", 400, "bad_request", params={"log_id": client.LOG_ID}
    )
    assert "websocket" in message


async def test_a_malformed_websocket_batch_is_an_error_message(
    client: Any, session: aiohttp.ClientSession
) -> None:
    """Random bytes over the websocket get a bad_batch error message, then a close."""
    await client.start()
    url = f"{client.url}{RUN}/stream"
    async with session.ws_connect(url, params={"log_id": client.LOG_ID}) as socket:
        await socket.send_bytes(random.Random(3).randbytes(500))
        error = orjson.loads((await socket.receive()).data)
        assert (error["type"], error["status"], error["code"]) == ("error", 400, "bad_batch")
    await client.healthy()


@pytest.mark.parametrize(
    "name",
    [
        "..%2F..%2Fetc%2Fpasswd",
        "a%2F..%2Fb",
        "%2Fabsolute",
        "a%5Cb",
        "a%00b",
        "a%2F%2Fb",
        "x" * 513,
    ],
)
async def test_unsafe_file_names_are_400(
    client: Any, session: aiohttp.ClientSession, name: str
) -> None:
    """File names that climb out, are absolute, hold backslashes or NULs are bad_name."""
    await client.start()
    url = URL(f"{client.url}{RUN}/files/{name}", encoded=True)
    async with session.put(url, data=b"x") as response:
        answer = orjson.loads(await response.read())
        assert (response.status, answer["error"]["code"]) == (400, "bad_name"), answer
    await client.healthy()


async def test_sql_looking_names_are_stored_literally(client: Any) -> None:
    """Names and filters that look like SQL are data: stored as given, matched literally."""
    sneaky = 'x" OR "1"="1 --'
    await client.start("plain")
    status, answer = await client.call("POST", START, json=client.handshake(sneaky, project="p"))
    assert status == 200, answer
    assert answer["run_id"] == sneaky
    status, body = await client.raw("GET", "/api/v1/runs/local/p")
    assert [run["id"] for run in decode_value(body)["runs"]] == [sneaky]
    for filters in ("{\"name\": \"x' OR '1'='1\"}", '{"config.a\') OR 1=1 --": 1}'):
        status, body = await client.raw(
            "GET", "/api/v1/runs/local/proj", params={"filters": filters}
        )
        assert status in (200, 400), body
        if status == 200:
            assert decode_value(body)["total"] == 0
    await client.error("POST", START, 400, "bad_name", json=client.handshake("a'; DROP TABLE runs"))
    status, body = await client.raw("GET", "/api/v1/runs/local/proj")
    assert [run["id"] for run in decode_value(body)["runs"]] == ["plain"]
    await client.healthy()


async def test_wrong_types_everywhere_are_400(client: Any) -> None:
    """Wrong query and body types are 400s on every endpoint that takes them."""
    await client.start()
    await client.error("GET", f"{RUN}/history", 400, "bad_request", params={"min_step": "x"})
    await client.error("GET", f"{RUN}/history", 400, "bad_request", params={"samples": "0"})
    await client.error("POST", f"{RUN}/records", 400, "bad_request", params={"log_id": "no"})
    await client.error("PATCH", RUN, 400, "bad_json", data=b"{")
    await client.error("PATCH", RUN, 400, "bad_request", json={"notes": 5})
    await client.error("GET", "/api/v1/projects", 400, "bad_name", params={"entity": "a/b"})
    await client.healthy()


def test_parse_batch_accepts_records_and_a_missing_final_newline() -> None:
    """parse_batch decodes records in order, with their lines; the last newline is optional."""
    lines = ['[0,"run",{"a":1}]', '[1,"row",0,1.5,{"x":null},[[["x"],"nan"]]]']
    records, got_lines = parse_batch("\n".join(lines).encode())
    assert records[0] == [0, "run", {"a": 1}]
    assert records[1][:4] == [1, "row", 0, 1.5]
    assert math.isnan(records[1][4]["x"])
    assert got_lines == lines


@settings(max_examples=200, deadline=None)
@given(
    first=st.integers(0, 2**40),
    rows=st.lists(
        st.tuples(
            st.integers(0, 2**63 - 1),
            st.floats(allow_nan=False, allow_infinity=False),
            st.dictionaries(st.text(max_size=5), st.one_of(st.floats(), st.integers(), st.none())),
        ),
        min_size=1,
        max_size=20,
    ),
)
def test_parse_batch_decodes_rows_as_decode_record_does(
    first: int, rows: list[tuple[int, float, dict[str, Any]]]
) -> None:
    """Whatever path a batch of rows takes (all plain, or some with special values), its
    records equal decode_record's of each line."""
    lines = [
        encode_record((first + index, "row", step, stamp), data, "row")
        for index, (step, stamp, data) in enumerate(rows)
    ]
    records, _ = parse_batch(b"".join(lines))
    expected = [decode_record(line) for line in lines]
    assert [repr(record) for record in records] == [repr(record) for record in expected]


@pytest.mark.parametrize("body", [b"", b"\n", b"[0]\n", b"not json\n"])
def test_parse_batch_refuses_empty_and_malformed_bodies(body: bytes) -> None:
    """An empty batch or a line that is no record raises RecordError (400 bad_batch)."""
    with pytest.raises(RecordError):
        parse_batch(body)


async def test_rows_are_stored_as_sent_whatever_their_spacing(client: Any) -> None:
    """Rows are stored from their lines as received: spacing, escapes, braces inside
    strings and special values all read back as the values the lines hold."""
    await client.start()
    lines = [
        b'[0, "row", 0, 1.5, {"a": 1, "s": "{not data}"}]',
        b'[1,"r\\u006fw",1,2.5,{"b":{"c":[1,2]}} ]',
        b'[2,"row",2,3.5,{"x":null,"y":null,"z":"18446744073709551617"},'
        b'[[["x"],"nan"],[["z"],"int"]]]',
        b'[3,"row",3,4.5,{}]',
    ]
    status, answer = await client.post_batch("run1", b"\n".join(lines) + b"\n")
    assert status == 200, answer
    rows = [decode_value(line) for line in await client.history("run1")]
    assert [row["_step"] for row in rows] == [0, 1, 2, 3]
    assert (rows[0]["a"], rows[0]["s"]) == (1, "{not data}")
    assert rows[1]["b"] == {"c": [1, 2]}
    assert math.isnan(rows[2]["x"])
    assert rows[2]["y"] is None
    assert rows[2]["z"] == 2**64 + 1
    assert set(rows[3]) == {"_step", "_timestamp", "_runtime"}


async def test_a_row_nested_too_deep_to_read_back_is_refused(client: Any) -> None:
    """A row nested deeper than the exact encoding allows (it would parse, but could not
    be sent back) is a 400 naming the step, and nothing of its batch is stored."""
    await client.start()
    deep = "[" * 300 + "]" * 300
    batch = f'[0,"row",0,1.5,{{"a":1}}]\n[1,"row",1,2.5,{{"x":{deep}}}]\n'.encode()
    status, answer = await client.post_batch("run1", batch)
    assert status == 400, answer
    assert answer["error"]["code"] == "bad_batch"
    assert "step 1" in answer["error"]["message"]
    assert await client.history("run1") == []
    await client.healthy()

"""The API of docs/protocol.md against a real server over a real SQLite file."""

from __future__ import annotations

import math
from typing import Any

import aiohttp
import orjson
import pytest

from tracker._records.codec import decode_value

pytestmark = pytest.mark.anyio

RUN = "/api/v1/runs/local/proj/run1"


async def _streamed(client: Any, run_id: str = "run1", rows: int = 5, **config: Any) -> None:
    """Handshake ``run_id`` and store a session start, ``config`` and ``rows`` rows."""
    await client.start(run_id)
    status, answer = await client.post_batch(run_id, client.run_batch(0, rows=rows, **config))
    assert status == 200, answer


async def test_health_answers_protocol_and_version(client: Any) -> None:
    """GET /health answers ok, the protocol version and the server version."""
    status, answer = await client.call("GET", "/api/v1/health")
    assert status == 200
    assert answer["status"] == "ok"
    assert answer["protocol"] == 1
    assert isinstance(answer["version"], str)


async def test_viewer_is_local_on_a_keyless_loopback_server(client: Any) -> None:
    """Without keys on loopback every request acts as the entity local."""
    assert await client.call("GET", "/api/v1/viewer") == (
        200,
        {"entity": "local", "anonymous": False},
    )


async def test_handshake_creates_a_run_and_answers_where_to_continue(client: Any) -> None:
    """A new run: not resumed, last_step and acked_seq -1, the run's URL and state."""
    answer = await client.start("run1")
    assert answer["protocol"] == 1
    assert (answer["entity"], answer["project"], answer["run_id"]) == ("local", "proj", "run1")
    assert answer["url"] == f"{client.url}/local/proj/runs/run1"
    assert (answer["resumed"], answer["last_step"], answer["acked_seq"]) == (False, -1, -1)
    run = decode_value(orjson.dumps(answer["run"]))
    assert run["config"] == {}
    assert run["tags"] == []


async def test_handshake_resume_modes_follow_the_protocol(client: Any) -> None:
    """never refuses an existing run, must refuses a missing one, allow continues."""
    await _streamed(client, rows=4)
    await client.error(
        "POST", "/api/v1/runs/start", 409, "run_exists", json=client.handshake(mode="never")
    )
    await client.error(
        "POST",
        "/api/v1/runs/start",
        404,
        "run_not_found",
        json=client.handshake("missing", mode="must"),
    )
    answer = await client.start(mode="allow")
    assert (answer["resumed"], answer["last_step"], answer["acked_seq"]) == (True, 3, 4)


async def test_handshake_new_replaces_an_existing_run(client: Any) -> None:
    """mode new on an existing run starts it over: no history, no config."""
    await _streamed(client, rows=4, lr=0.1)
    answer = await client.start(log_id=client.new_log_id())
    assert (answer["resumed"], answer["last_step"]) == (False, -1)
    assert await client.history("run1") == []


@pytest.mark.parametrize(
    ("fields", "code", "needle"),
    [
        ({"protocol": 2}, "bad_protocol", "protocol 1"),
        ({"protocol": "1"}, "bad_protocol", "protocol 1"),
        ({"mode": "sometimes"}, "bad_request", "mode"),
        ({"log_id": "XYZ"}, "bad_request", "log id"),
        ({"run_id": "a/b"}, "bad_name", "run_id"),
        ({"project": ".."}, "bad_name", "project"),
        ({"project": "x" * 129}, "bad_name", "project"),
        ({"entity": 5}, "bad_name", "entity"),
        ({"mode": "fork"}, "bad_request", "fork_from"),
        ({"mode": "rewind", "rewind_to": -1}, "bad_request", "rewind_to"),
        ({"fork_from": {"run_id": "a", "step": 1}}, "bad_request", "fork_from"),
        ({"heartbeat_interval": 0}, "bad_request", "heartbeat_interval"),
        ({"heartbeat_interval": True}, "bad_request", "heartbeat_interval"),
    ],
)
async def test_bad_handshakes_are_refused_with_a_clear_400(
    client: Any, fields: dict[str, Any], code: str, needle: str
) -> None:
    """Every bad handshake field gets a 400 whose message names the field."""
    message = await client.error(
        "POST", "/api/v1/runs/start", 400, code, json=client.handshake(**fields)
    )
    assert needle in message


async def test_handshake_missing_a_field_names_it(client: Any) -> None:
    """A handshake without run_id is refused, naming run_id."""
    body = client.handshake()
    del body["run_id"]
    message = await client.error("POST", "/api/v1/runs/start", 400, "bad_request", json=body)
    assert "run_id" in message


async def test_bad_protocol_lists_the_versions_spoken(client: Any) -> None:
    """The bad_protocol error carries the versions the server speaks."""
    status, answer = await client.call(
        "POST", "/api/v1/runs/start", json=client.handshake(protocol=99)
    )
    assert status == 400
    assert answer["error"]["versions"] == [1]


async def test_fork_copies_history_up_to_the_step(client: Any) -> None:
    """A fork starts with the parent's rows up to its step and records the parent."""
    await _streamed(client, rows=6)
    answer = await client.start("child", mode="fork", fork_from={"run_id": "run1", "step": 2})
    assert answer["last_step"] == 2
    status, run = await client.call("GET", "/api/v1/runs/local/proj/child")
    assert status == 200
    assert run[0]["parent"] == {"run_id": "run1", "step": 2}


async def test_websocket_stream_acks_each_batch_and_resends_are_harmless(
    client: Any, session: aiohttp.ClientSession
) -> None:
    """Batches over the websocket are acked; a resent batch is acked again, stored once."""
    await client.start()
    url = f"{client.url}{RUN}/stream"
    async with session.ws_connect(url, params={"log_id": client.LOG_ID}) as socket:
        await socket.send_bytes(client.run_batch(0, rows=3))
        assert orjson.loads((await socket.receive()).data) == {"type": "ack", "seq": 3}
        await socket.send_bytes(client.run_batch(0, rows=3))
        assert orjson.loads((await socket.receive()).data) == {"type": "ack", "seq": 3}
        await socket.send_str('{"type": "heartbeat"}')
        await socket.send_bytes(client.run_batch(4, rows=2, first_step=3, start=False))
        assert orjson.loads((await socket.receive()).data) == {"type": "ack", "seq": 5}
    lines = await client.history("run1")
    assert [decode_value(line)["_step"] for line in lines] == [0, 1, 2, 3, 4]


async def test_websocket_seq_gap_sends_the_stored_seq_then_closes(
    client: Any, session: aiohttp.ClientSession
) -> None:
    """A batch beyond acked_seq + 1 gets an error message with acked_seq, then a close."""
    await client.start()
    url = f"{client.url}{RUN}/stream"
    async with session.ws_connect(url, params={"log_id": client.LOG_ID}) as socket:
        await socket.send_bytes(client.run_batch(0, rows=1))
        assert orjson.loads((await socket.receive()).data)["seq"] == 1
        await socket.send_bytes(client.run_batch(5, rows=1, start=False))
        error = orjson.loads((await socket.receive()).data)
        assert error["type"] == "error"
        assert (error["status"], error["code"], error["acked_seq"]) == (409, "seq_gap", 1)
        assert (await socket.receive()).type == aiohttp.WSMsgType.CLOSE


async def test_websocket_refuses_a_bad_text_message(
    client: Any, session: aiohttp.ClientSession
) -> None:
    """A text message that is not a JSON object with a type is refused, then closed."""
    await client.start()
    url = f"{client.url}{RUN}/stream"
    async with session.ws_connect(url, params={"log_id": client.LOG_ID}) as socket:
        await socket.send_str("hello")
        error = orjson.loads((await socket.receive()).data)
        assert (error["status"], error["code"]) == (400, "bad_message")


async def test_websocket_before_the_handshake_is_404(
    client: Any, session: aiohttp.ClientSession
) -> None:
    """The stream of a run nobody started is refused with 404 before the upgrade."""
    with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
        await session.ws_connect(f"{client.url}{RUN}/stream", params={"log_id": client.LOG_ID})
    assert caught.value.status == 404


async def test_http_records_ack_and_refuse_gaps(client: Any) -> None:
    """HTTP batches answer acked_seq; a resend is harmless; a gap is 409 with acked_seq."""
    await client.start()
    assert await client.post_batch("run1", client.run_batch(0, rows=2)) == (200, {"acked_seq": 2})
    assert await client.post_batch("run1", client.run_batch(0, rows=2)) == (200, {"acked_seq": 2})
    status, answer = await client.post_batch("run1", client.run_batch(7, rows=1, start=False))
    assert status == 409
    assert (answer["error"]["code"], answer["error"]["acked_seq"]) == ("seq_gap", 2)
    assert len(await client.history("run1")) == 2


async def test_http_records_before_the_handshake_are_404(client: Any) -> None:
    """A batch for a run that was never started is refused with run_not_found."""
    status, answer = await client.post_batch("nobody", client.run_batch(0, rows=1))
    assert (status, answer["error"]["code"]) == (404, "run_not_found")


async def test_heartbeat_answers_204(client: Any) -> None:
    """POST .../heartbeat of a started run answers 204 with no body."""
    await client.start()
    assert await client.raw("POST", f"{RUN}/heartbeat") == (204, b"")


async def test_files_upload_list_and_download(client: Any) -> None:
    """A PUT file is listed with its size and sha256, and downloads byte for byte."""
    await client.start()
    content = bytes(range(256)) * 10
    assert await client.raw("PUT", f"{RUN}/files/ckpt/model.bin", data=content) == (204, b"")
    status, listing = await client.call("GET", f"{RUN}/files")
    assert status == 200
    [entry] = listing["files"]
    assert (entry["name"], entry["size"]) == ("ckpt/model.bin", len(content))
    assert len(entry["sha256"]) == 64
    assert await client.raw("GET", f"{RUN}/files/ckpt/model.bin") == (200, content)
    await client.error("GET", f"{RUN}/files/nothing.txt", 404, "file_not_found")


async def test_history_is_exact_json_lines_with_keys_steps_and_samples(client: Any) -> None:
    """History lines restore NaN and big ints; keys, step bounds and samples narrow them."""
    await client.start()
    rows = [
        client.record(
            1 + step, "row", {"v": float(step), "w": 2**70 if step == 3 else step}, step, 1.0
        )
        for step in range(10)
    ]
    rows[4] = client.record(5, "row", {"v": math.nan}, 4, 1.0)
    batch = client.run_batch(0) + b"".join(rows)
    assert (await client.post_batch("run1", batch))[0] == 200
    every = [decode_value(line) for line in await client.history("run1")]
    assert [row["_step"] for row in every] == list(range(10))
    assert {"_step", "_timestamp", "_runtime", "v"} <= set(every[0])
    assert math.isnan(every[4]["v"])
    assert every[3]["w"] == 2**70
    picked = [
        decode_value(line)
        for line in await client.history("run1", keys="w", min_step="2", max_step="5")
    ]
    assert picked == [{"_step": 2, "w": 2}, {"_step": 3, "w": 2**70}, {"_step": 5, "w": 5}]
    assert len(await client.history("run1", samples="4")) <= 6


async def test_a_stream_reads_by_seq_and_time_and_refuses_bad_reads(client: Any) -> None:
    """GET .../streams/system pages a run's system records (after, limit, start, end,
    newest), apart from its history; an unknown stream and bad parameters are 400."""
    await client.start()
    samples = [
        client.record(1 + index, "system", {"_timestamp": 1000.0 + index, "cpu": index})
        for index in range(6)
    ]
    assert (await client.post_batch("run1", client.run_batch(0) + b"".join(samples)))[0] == 200
    assert await client.history("run1") == []
    path = RUN + "/streams/system"
    status, body = await client.raw("GET", path)
    assert status == 200
    answer = decode_value(body)
    assert answer["stream"] == "system"
    assert answer["records"][1] == {
        "seq": 1,
        "time": 1001.0,
        "data": {"_timestamp": 1001.0, "cpu": 1},
    }

    async def seqs(**params: str) -> list[int]:
        status, body = await client.raw("GET", path, params=params)
        assert status == 200, body
        return [record["seq"] for record in decode_value(body)["records"]]

    assert await seqs(after="1", limit="2") == [2, 3]
    assert await seqs(start="1002.5", end="1004") == [3, 4]
    assert await seqs(limit="2", newest="1") == [4, 5]
    message = await client.error("GET", RUN + "/streams/gpu", 400, "unknown_stream")
    assert "system" in message
    for bad in ({"limit": "0"}, {"after": "x"}, {"start": "noon"}, {"newest": "2"}):
        await client.error("GET", path, 400, "bad_request", params=bad)
    await client.error("GET", "/api/v1/runs/local/proj/nosuch/streams/system", 404, "run_not_found")


async def test_a_big_batch_stores_and_its_history_streams_back(client: Any) -> None:
    """A batch over 1 MiB (decoded off the loop) stores; its long history streams back whole."""
    await client.start()
    batch = client.run_batch(0, rows=25_000)
    assert len(batch) > 1024 * 1024
    assert await client.post_batch("run1", batch) == (200, {"acked_seq": 25_000})
    lines = await client.history("run1")
    assert len(lines) == 25_000
    assert decode_value(lines[-1])["n"] == 24_999


async def test_runs_list_filters_orders_and_pages(client: Any) -> None:
    """The runs list honours state, config, tags, search filters, limit and offset."""
    for index, lr in enumerate((0.1, 0.01, 0.001)):
        await _streamed(client, f"r{index}", rows=1, lr=lr)
    await client.call("PATCH", "/api/v1/runs/local/proj/r1", json={"tags": ["best"]})

    async def ids(**params: str) -> tuple[list[str], int]:
        status, body = await client.raw("GET", "/api/v1/runs/local/proj", params=params)
        assert status == 200, body
        answer = decode_value(body)
        return sorted(run["id"] for run in answer["runs"]), answer["total"]

    assert await ids() == (["r0", "r1", "r2"], 3)
    assert await ids(filters='{"config.lr": 0.01}') == (["r1"], 1)
    assert await ids(filters='{"tags": "best"}') == (["r1"], 1)
    assert await ids(filters='{"search": "r2"}') == (["r2"], 1)
    assert await ids(filters='{"state": "finished"}') == ([], 0)
    page, total = await ids(limit="2", offset="0", order="created_at")
    assert (len(page), total) == (2, 3)


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"filters": "{nope"}, "bad_filter"),
        ({"filters": "[1, 2]"}, "bad_filter"),
        ({"filters": '{"colour": "red"}'}, "bad_filter"),
        ({"filters": '{"state": 5}'}, "bad_filter"),
        ({"limit": "0"}, "bad_request"),
        ({"limit": "ten"}, "bad_request"),
        ({"offset": "-1"}, "bad_request"),
        ({"order": "created_at; DROP TABLE runs"}, "bad_order"),
    ],
)
async def test_runs_list_refuses_bad_query_parameters(
    client: Any, params: dict[str, str], code: str
) -> None:
    """Malformed filters, limits, offsets and orders are 400s, not 500s."""
    await client.error("GET", "/api/v1/runs/local/proj", 400, code, params=params)
    await client.healthy()


async def test_run_document_is_exact_and_patch_edits_tags_and_notes(client: Any) -> None:
    """GET the run document (NaN config survives); PATCH changes tags and notes."""
    await _streamed(client, rows=2, lr=math.nan, big=2**80)
    status, body = await client.raw("GET", RUN)
    assert status == 200
    run = decode_value(body)
    assert math.isnan(run["config"]["lr"])
    assert run["config"]["big"] == 2**80
    assert (run["id"], run["entity"], run["project"], run["last_step"]) == (
        "run1",
        "local",
        "proj",
        1,
    )
    assert run["url"] == f"{client.url}/local/proj/runs/run1"
    status, body = await client.raw("PATCH", RUN, json={"tags": ["a", "b"], "notes": "hello"})
    assert status == 200
    edited = decode_value(body)
    assert (edited["tags"], edited["notes"]) == (["a", "b"], "hello")
    await client.error("PATCH", RUN, 400, "bad_request", json={"tags": "a"})
    await client.error("PATCH", RUN, 400, "bad_request", json={"state": "finished"})
    await client.error("GET", "/api/v1/runs/local/proj/missing", 404, "run_not_found")


async def test_projects_list_counts_runs(client: Any) -> None:
    """GET /projects lists the caller's projects with their run counts."""
    await client.start("a")
    await client.start("b")
    status, answer = await client.call("GET", "/api/v1/projects")
    assert status == 200
    [project] = answer["projects"]
    assert (project["name"], project["runs"]) == ("proj", 2)


async def test_unknown_endpoints_and_methods_are_json_errors(client: Any) -> None:
    """An unknown path is a 404 and a wrong method a 405, both in the error format."""
    await client.error("GET", "/api/v1/nothing-here", 404, "not_found")
    await client.error("GET", "/api/v1/runs/start", 405, "method_not_allowed")

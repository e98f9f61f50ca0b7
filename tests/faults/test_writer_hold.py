"""No request and no compaction step holds a real server's only writer for long (issue 11,
item 3): while one run sends a huge row (refused, 400 too_many_keys), a 16 MB batch of
rows or a batch of rows as wide as allowed, another run's one-row batches are still
acknowledged at once; and a run past MAX_RUN_KEYS is refused saying the limit."""

from __future__ import annotations

import http.client
import time
import uuid
from typing import Any

import orjson
from ack_probe import AckProbe
from server_process import ServerProcess

from tracker._wire.limits import MAX_BATCH_BYTES, MAX_BATCH_RECORDS, MAX_ROW_KEYS, MAX_RUN_KEYS

from .conftest import Figures

WORST_ACK_MS = 2000.0
"""The slowest ack the probe may see: generous, on a shared 2-core machine (measured 0.25-0.5 s,
the 13 MB row's parse included)."""


class Sender:
    """One run streaming through HTTP records of its own (no client library)."""

    def __init__(self, server: ServerProcess, run_id: str) -> None:
        """Start the run ``run_id`` on ``server``."""
        self.conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)
        self.run_id = run_id
        self.log_id = uuid.uuid4().hex
        self.seq = 0
        handshake = {
            "protocol": 1,
            "entity": None,
            "project": "big",
            "run_id": run_id,
            "log_id": self.log_id,
            "mode": "new",
            "heartbeat_interval": 10.0,
        }
        assert self.post("/api/v1/runs/start", orjson.dumps(handshake))[0] == 200

    def post(self, path: str, body: bytes) -> tuple[int, Any]:
        """POST ``body``; the status and the decoded answer."""
        self.conn.request("POST", path, body, {"Content-Type": "application/json"})
        answer = self.conn.getresponse()
        decoded = orjson.loads(answer.read())
        return answer.status, decoded.get("error", decoded)

    def rows(self, datas: list[dict[str, float]]) -> tuple[int, Any, float]:
        """Send rows with ``datas`` as one batch; status, answer, seconds to the answer."""
        lines = b"".join(
            orjson.dumps([self.seq + index, "row", self.seq + index, 1000.0 + index, data]) + b"\n"
            for index, data in enumerate(datas)
        )
        began = time.perf_counter()
        path = f"/api/v1/runs/local/big/{self.run_id}/records?log_id={self.log_id}"
        status, answer = self.post(path, lines)
        if status == 200:
            self.seq += len(datas)
        return status, answer, time.perf_counter() - began

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()


def run_history_length(server: ServerProcess, run_id: str) -> int:
    """How many history rows the server answers for the run."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)
    try:
        conn.request("GET", f"/api/v1/runs/local/big/{run_id}/history")
        return len(conn.getresponse().read().splitlines())
    finally:
        conn.close()


def test_big_requests_and_compaction_leave_other_runs_acks_quick(
    tracker_server: ServerProcess, figures: Figures
) -> None:
    """A 700k-key row is 400 too_many_keys naming the limit; a 16 MB batch of rows and a
    batch of 9,000-key rows are acked and compacted in steps; meanwhile a probe run's
    acks (one row each) stay under WORST_ACK_MS, and everything acked is read back."""
    probe = AckProbe(tracker_server.url, "probe").start()
    time.sleep(0.3)
    big = Sender(tracker_server, "big")
    huge = {f"k{index}": float(index) for index in range(700_000)}
    status, answer, refused_s = big.rows([huge])
    assert status == 400, answer
    assert answer["code"] == "too_many_keys"
    assert f"at most {MAX_ROW_KEYS}" in answer["message"]
    row = {f"m{index}": index / 3 for index in range(10)}
    longest = len(orjson.dumps([99_999, "row", 99_999, 1000.0 + 99_999, row]) + b"\n")
    count = min(MAX_BATCH_BYTES // longest, MAX_BATCH_RECORDS)
    status, answer, batch_s = big.rows([row] * count)
    assert status == 200, answer
    wide = {f"w{index}": index / 7 for index in range(MAX_ROW_KEYS - 1000)}
    status, answer, wide_s = big.rows([wide] * 40)
    assert status == 200, answer
    big.close()
    assert run_history_length(tracker_server, "big") == count + 40
    time.sleep(3.0)  # the compactor folds it all meanwhile, in steps
    measured = probe.stop()
    assert measured["acks"] > 50
    assert measured["max_ms"] < WORST_ACK_MS, measured
    figures.extra.update(
        {
            "huge_row_refused_s": round(refused_s, 3),
            "batch_rows": count,
            "batch_acked_s": round(batch_s, 3),
            "wide_batch_acked_s": round(wide_s, 3),
            "probe_acks": measured["acks"],
            "probe_p50_ms": round(measured["p50_ms"], 1),
            "probe_p99_ms": round(measured["p99_ms"], 1),
            "probe_worst_ms": round(measured["max_ms"], 1),
        }
    )


def test_a_run_past_the_run_key_limit_is_refused(tracker_server: ServerProcess) -> None:
    """A row adding keys past MAX_RUN_KEYS, after several batches, is refused: the ack
    names the limit and what to do, the row is not stored, the rows after it and the run's
    known keys are."""
    sender = Sender(tracker_server, "many")
    per_row = MAX_ROW_KEYS // 2
    for batch in range(MAX_RUN_KEYS // per_row):
        data = {f"b{batch}k{index}": 1.0 for index in range(per_row)}
        status, answer, _ = sender.rows([data])
        assert status == 200, answer
        assert "refused" not in answer
    status, answer, _ = sender.rows([{"one_more": 1.0}, {"b0k0": 2.0}])
    sender.close()
    assert status == 200, answer
    assert f"holds at most {MAX_RUN_KEYS} keys: 1 row(s)" in answer["refused"]
    assert "reuse keys" in answer["refused"]

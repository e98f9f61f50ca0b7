"""How long a real server takes to acknowledge a small batch while it does something else,
for tests and benchmarks/stream.py: a thread streams one-row batches to a run of its own
over HTTP (`POST .../records`), one at a time, and keeps each round trip's time."""

from __future__ import annotations

import http.client
import statistics
import threading
import time
import uuid
from typing import Any
from urllib.parse import urlsplit

import orjson

__all__ = ["AckProbe"]


class AckProbe:
    """Acks of one-row batches to the run ``run_id``, every ``interval`` seconds, in a
    thread, from `start` to `stop`; `figures` are their round trips in milliseconds."""

    def __init__(self, base_url: str, run_id: str, interval: float = 0.02) -> None:
        """Probe the server at ``base_url`` (no API key: a loopback server)."""
        parts = urlsplit(base_url)
        self._host, self._port = parts.hostname or "127.0.0.1", parts.port or 80
        self.run_id = run_id
        self.interval = interval
        self.log_id = uuid.uuid4().hex
        self.latencies_ms: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="ack-probe", daemon=True)
        self._failure: BaseException | None = None

    def _post(self, conn: http.client.HTTPConnection, path: str, body: bytes) -> bytes:
        conn.request("POST", path, body, {"Content-Type": "application/json"})
        answer = conn.getresponse()
        data = answer.read()
        if answer.status != 200:
            raise RuntimeError(f"{path}: {answer.status} {data[:300]!r}")
        return data

    def start(self) -> AckProbe:
        """Start the probe's run (mode new), then its thread."""
        conn = http.client.HTTPConnection(self._host, self._port, timeout=60)
        handshake = {
            "protocol": 1,
            "entity": None,
            "project": "probe",
            "run_id": self.run_id,
            "log_id": self.log_id,
            "mode": "new",
            "heartbeat_interval": 10.0,
        }
        self._post(conn, "/api/v1/runs/start", orjson.dumps(handshake))
        conn.close()
        self._thread.start()
        return self

    def _loop(self) -> None:
        path = f"/api/v1/runs/local/probe/{self.run_id}/records?log_id={self.log_id}"
        conn = http.client.HTTPConnection(self._host, self._port, timeout=60)
        seq = 0
        try:
            while not self._stop.is_set():
                line = orjson.dumps([seq, "row", seq, time.time(), {"probe": float(seq)}])
                began = time.perf_counter()
                self._post(conn, path, line + b"\n")
                self.latencies_ms.append((time.perf_counter() - began) * 1000)
                seq += 1
                self._stop.wait(self.interval)
        except BaseException as exc:  # reported by stop()
            self._failure = exc
        finally:
            conn.close()

    def stop(self) -> dict[str, Any]:
        """Stop the thread; the figures (raises what the thread failed with)."""
        self._stop.set()
        self._thread.join(timeout=120)
        if self._failure is not None:
            raise RuntimeError(f"the ack probe failed: {self._failure}") from self._failure
        return self.figures()

    def figures(self) -> dict[str, Any]:
        """Acks measured, and their p50, p99 and worst round trip (ms)."""
        ordered = sorted(self.latencies_ms)
        if not ordered:
            return {"acks": 0}
        return {
            "acks": len(ordered),
            "p50_ms": statistics.median(ordered),
            "p99_ms": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))],
            "max_ms": ordered[-1],
        }

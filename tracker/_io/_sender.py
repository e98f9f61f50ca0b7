"""The sender: streams a run log's unacknowledged records to the server, from disk.

It reads frames from the run log (never from memory), so memory stays bounded
however long the server is away, and it resends from the server's acknowledged
sequence number after any failure, so the server stores each record once.
Reconnects back off with jitter (tenacity, `_retry.py`); after three websocket
failures in a row it carries on over HTTP.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import orjson

from tracker._io._retry import stream_retrying
from tracker._io._thread import wait_event
from tracker._records.kinds import LOST, last_seq
from tracker._runlog import FrameCursor, seq_range
from tracker._wire.errors import TransportError
from tracker._wire.limits import MAX_FILE_BYTES
from tracker._wire.protocol import START_PATH, handshake_body, read_answer, run_path

if TYPE_CHECKING:
    import asyncio

    from tracker._io._transport import BatchTransport, ServerClient

__all__ = ["Sender", "StreamTarget", "handshake"]

logger = logging.getLogger(__name__)

_WINDOW_BYTES = 16 * 2**20  # batches in flight, awaiting their acks
_FIRST_BATCH_BYTES = 256 * 2**10
"""A run's first batch; then AIMD: +_BATCH_STEP_BYTES per acknowledged batch up to
batch_max_bytes, halved (down to _MIN_BATCH_BYTES) by each connection that fails."""
_BATCH_STEP_BYTES = 64 * 2**10
_MIN_BATCH_BYTES = 4 * 2**10
_WEBSOCKET_FAILURES_BEFORE_HTTP = 3
_WATERMARK_EVERY_SECONDS = 1.0
_PACE_SECONDS = 0.02
WATERMARK_NAME = "sync.json"


@dataclass(frozen=True)
class StreamTarget:
    """Where a run log streams to: the server, the run, and the log's identity."""

    base_url: str
    api_key: str | None
    entity: str
    project: str
    run_id: str
    log_id: str
    heartbeat_interval: float
    sessions: tuple[tuple[int, str], ...] = ()
    """The log's writer sessions, told at each handshake (`tracker._wire.protocol`)."""

    @property
    def path(self) -> str:
        """The run's API path."""
        return run_path(self.entity, self.project, self.run_id)


def _last_seq(line: bytes) -> int:
    """The last sequence number a record line stands for (a ``lost`` record's span)."""
    if b',"lost",' in line[:32]:
        return last_seq(orjson.loads(line))
    return int(line[1 : line.index(b",")])


async def handshake(client: ServerClient, body: dict[str, Any]) -> dict[str, Any]:
    """POST a run handshake over the I/O loop's client."""
    return read_answer(await client.request("POST", START_PATH, json=body))


class _Reconnect(Exception):
    """The connection failed after making progress: reconnect with a fresh backoff."""


class Sender:
    """Streams one run log; runs as a task on the I/O loop until the log is complete and
    acknowledged, or is cancelled."""

    def __init__(
        self,
        target: StreamTarget,
        log_path: Path,
        acked_seq: int,
        *,
        transport: str,
        retry_initial: float,
        retry_max: float,
        batch_max_bytes: int,
        log_complete: Callable[[], bool],
    ) -> None:
        """Prepare to stream ``log_path`` from ``acked_seq + 1``; `run()` does the work."""
        self.target = target
        self.acked_seq = acked_seq
        self.sent_seq = acked_seq
        self.connection = "connecting"
        self.last_error: str | None = None
        self.fatal: TransportError | None = None
        self.done = threading.Event()
        self._log_path = log_path
        self._log_complete = log_complete
        self._transport_name = transport
        self._batch_max_bytes = batch_max_bytes
        self._retry = (retry_initial, retry_max)
        self._wake: asyncio.Event | None = None  # made on the loop thread, by _connect()
        self._task: asyncio.Task[None] | None = None
        self._client: ServerClient | None = None
        self._inflight: deque[tuple[int, int, int]] = deque()  # last seq, end offset, bytes
        self._inflight_bytes = 0
        self._acked_offset = 0
        # Batches are sized to what the link carries: a connection that dies after a few
        # hundred KB must still get batches through, or nothing is ever acknowledged.
        self._batch_limit = min(_FIRST_BATCH_BYTES, batch_max_bytes)
        self._acks_on_connection = 0
        # The records of the frame being sent that are not sent yet (a frame larger than a
        # batch goes out in pieces), and where that frame starts and ends in the run log.
        self._rest = b""
        self._rest_frame = (0, 0)
        self._cursor = FrameCursor(log_path)
        self._uploads: deque[tuple[str, Path]] = deque()
        # files go up beside the records, never in their way: a large file, or a server
        # that stops answering mid-upload, must not hold the rows or the pings back
        self._uploading: asyncio.Task[None] | None = None
        self._websocket_failures = 0
        self._refusal_said = False
        self._handshake_done = True  # init made the first handshake
        self._watermark_at = 0.0

    # -- called on the loop thread ---------------------------------------------------

    def notify(self) -> None:
        """New records are on disk (the writer calls this after each write)."""
        if self._wake is not None:
            self._wake.set()  # before run() starts, there is nothing to wake: it reads the log

    def upload(self, name: str, path: Path) -> None:
        """Queue a stored file for upload."""
        self._uploads.append((name, path))
        self.notify()

    # -- the task --------------------------------------------------------------------

    def start(self) -> None:
        """Start `run()` as a task on the running loop (call it there)."""
        import asyncio

        self._connect()
        self._task = asyncio.get_running_loop().create_task(self.run())

    def _connect(self) -> None:
        """Make the client and the wake-up event, on the loop thread: aiohttp loads here
        (an init does not wait for it; a fork does, see `IOThread.wait_queued`)."""
        import asyncio

        from tracker._io._transport import ServerClient

        if self._client is None:
            self._wake = asyncio.Event()
            self._client = ServerClient(self.target.base_url, self.target.api_key)

    def cancel(self) -> None:
        """Stop the task `start()` began (call it on the loop thread)."""
        if self._task is not None:
            self._task.cancel()

    async def aclose(self) -> None:
        """Close the connection to the server; safe to call twice."""
        if self._client is not None:
            await self._client.close()

    @property
    def client(self) -> ServerClient:
        """The HTTP client to the server (made on the loop thread, by `_connect`)."""
        assert self._client is not None, "run() makes the client first"
        return self._client

    async def run(self) -> None:
        """Stream until everything is acknowledged; a final error is kept in ``fatal``."""
        import asyncio

        self._connect()
        self._cursor.seek_to_seq(self.acked_seq + 1)
        try:
            while True:
                try:
                    async for attempt in stream_retrying(*self._retry, self._note_retry):
                        with attempt:
                            await self._session()
                    return
                except _Reconnect as reconnect:
                    cause = reconnect.__cause__
                    if isinstance(cause, TransportError) and cause.retry_after is not None:
                        await asyncio.sleep(min(cause.retry_after, self._retry[1]))
        except TransportError as exc:
            self.fatal = exc
            self.connection = "failed"
            self.last_error = str(exc)
        except Exception as exc:
            # A failure that is not the network's: stop streaming, say so; the rows stay
            # in the run log for `tracker sync`.
            logger.exception("tracker: streaming %s stopped", self.target.run_id)
            self.fatal = TransportError(f"streaming stopped: {exc!r}")
            self.connection = "failed"
            self.last_error = str(self.fatal)
        finally:
            self._cursor.close()
            self._write_watermark(force=True)
            self.done.set()

    def _note_retry(self, state: Any) -> None:
        outcome = state.outcome
        exc = outcome.exception() if outcome is not None else None
        self.connection = "retrying"
        self.last_error = str(exc)

    async def _session(self) -> None:
        """One connection: handshake if needed, then stream until done or broken."""
        target = self.target
        if not self._handshake_done:
            answer = await handshake(
                self.client,
                handshake_body(
                    entity=target.entity,
                    project=target.project,
                    run_id=target.run_id,
                    log_id=target.log_id,
                    mode="continue",
                    heartbeat_interval=target.heartbeat_interval,
                    sessions=target.sessions,
                ),
            )
            self._reposition(int(answer["acked_seq"]))
        self._handshake_done = False  # every later connection re-learns the stored seq
        transport = self._open_transport()
        progress = self.acked_seq
        self._acks_on_connection = 0
        try:
            try:
                await transport.open()
            except TransportError as exc:
                if transport.name != "websocket" or exc.retryable or exc.status in (401, 403):
                    raise  # 408/429/5xx say "later", not "no websocket here": wait and retry
                # An upgrade refused for good (a proxy that does not speak websocket): count
                # it toward the HTTP fallback (a status-0 failure), and try again.
                raise TransportError(str(exc)) from exc
            self.connection = "connected"
            await self._pump(transport)
        except TransportError as exc:
            self._batch_limit = max(_MIN_BATCH_BYTES, self._batch_limit // 2)
            if transport.name == "websocket" and exc.status == 0:
                self._websocket_failures += 1
            if exc.code == "seq_gap" or (self.acked_seq > progress and exc.retryable):
                self.connection = "retrying"
                self.last_error = str(exc)
                raise _Reconnect from exc
            raise
        finally:
            await self._stop_uploading()
            await transport.close()

    def _open_transport(self) -> BatchTransport:
        from tracker._io._transport import HttpTransport, WebSocketTransport

        target = self.target
        use_http = (
            self._transport_name == "http"
            or self._websocket_failures >= _WEBSOCKET_FAILURES_BEFORE_HTTP
        )
        if use_http:
            return HttpTransport(self.client, target.path, target.log_id, self._on_ack)
        return WebSocketTransport(
            self.client,
            target.path,
            target.log_id,
            target.heartbeat_interval,
            self._on_ack,
            self.notify,
        )

    def _reposition(self, acked_seq: int) -> None:
        """Resume sending after ``acked_seq``, as the server says, whatever was in flight."""
        hint = self._acked_offset if acked_seq >= self.acked_seq else 0
        self.acked_seq = acked_seq
        self.sent_seq = acked_seq
        self._inflight.clear()
        self._inflight_bytes = 0
        self._rest = b""
        self._cursor.seek_to_seq(acked_seq + 1, hint)

    async def _pump(self, transport: BatchTransport) -> None:
        import asyncio

        wake = self._wake
        assert wake is not None, "run() makes it first"
        last_activity = last_send = time.monotonic()
        while True:
            wake.clear()
            failure = transport.failure()
            if failure is not None:
                raise failure
            self._keep_uploading()
            complete = self._log_complete()
            if not complete:
                # While the run lives, one message per _PACE_SECONDS carries many batches of
                # the writer: the I/O thread then costs a 1 ms training step ~28 µs, against
                # ~135 µs for a message per batch (docs/benchmarks.md). A finished log is
                # sent at once.
                pause = _PACE_SECONDS - (time.monotonic() - last_send)
                if pause > 0:
                    await asyncio.sleep(pause)
                    complete = self._log_complete()
            while self._inflight_bytes < self._window():
                batch = self._next_batch()
                if batch is None:
                    break
                await transport.send(batch)
                last_activity = last_send = time.monotonic()
                self._websocket_failures = 0
            if complete and not self._inflight and not self._uploads and self._at_end():
                self.connection = "done"
                return
            idle = time.monotonic() - last_activity
            if idle >= self.target.heartbeat_interval:
                await transport.heartbeat()
                last_activity = time.monotonic()
                continue
            await wait_event(wake, self.target.heartbeat_interval - idle)

    def _next_batch(self) -> bytes | None:
        """Up to ``_batch_limit`` bytes of whole records (at least one) after what was sent:
        whole frames while they fit, a large frame in pieces cut between records."""
        parts: list[bytes] = []
        size = 0
        end_offset = self._acked_offset
        while size < self._batch_limit:
            if not self._rest and not self._read_frame():
                break
            room = self._batch_limit - size
            if len(self._rest) <= room:
                piece, self._rest = self._rest, b""
                end_offset = self._rest_frame[1]
            else:
                cut = self._rest.rfind(b"\n", 0, room) + 1 or self._rest.find(b"\n") + 1
                if parts and cut > room:
                    break  # a record larger than the room left: the next batch takes it
                piece, self._rest = self._rest[:cut], self._rest[cut:]
                end_offset = self._rest_frame[0]
            parts.append(piece)
            size += len(piece)
            self.sent_seq = _last_seq(piece[piece.rfind(b"\n", 0, len(piece) - 1) + 1 :])
        if not parts:
            return None
        self._inflight.append((self.sent_seq, end_offset, size))
        self._inflight_bytes += size
        return b"".join(parts)

    def _read_frame(self) -> bool:
        """Take the next frame holding unsent records into ``_rest``; False at the end."""
        cursor = self._cursor
        while True:
            start = cursor.offset
            payload = cursor.next_frame(resync=self._log_complete())
            if payload is None:
                return False
            first, last = seq_range(payload)
            if last > self.sent_seq:
                break  # else fully sent already (re-read from a frame boundary)
        data = bytes(payload)
        position = 0
        for _ in range(self.sent_seq + 1 - first):  # records of it sent before a reconnect
            position = data.index(b"\n", position) + 1
        self._rest = data[position:]
        if first > self.sent_seq + 1:  # a damaged stretch of the log held these records
            lost = {"through": first - 1, "offset": cursor.skipped_at}
            self._rest = orjson.dumps([self.sent_seq + 1, LOST, lost]) + b"\n" + self._rest
        self._rest_frame = (start, cursor.offset)
        return True

    def _at_end(self) -> bool:
        if self._rest:
            return False
        cursor = self._cursor
        before = cursor.offset
        at_end = cursor.next_frame(resync=self._log_complete()) is None
        cursor.offset = before
        return at_end

    def _window(self) -> int:
        """Bytes the pump may have in flight: until the connection's first ack, one batch
        (a link that dies early loses little), then `_WINDOW_BYTES`."""
        return _WINDOW_BYTES if self._acks_on_connection else self._batch_limit

    def _on_ack(self, seq: int, refused: str | None = None) -> None:
        """The server stored the log through ``seq``; ``refused``: why it refused rows of
        the batch (past the run's key limit): in ``last_error``, and on the log the first
        time (a run adding a key every step would say it with every batch)."""
        if refused is not None:
            if not self._refusal_said:
                self._refusal_said = True
                logger.error("tracker: %s", refused)
            self.last_error = f"the server refused rows: {refused}"
        # the window in effect when the batch went, before this ack widens it
        window_was_full = self._inflight_bytes >= self._window()
        if seq > self.acked_seq:
            self._acks_on_connection += 1
            self._batch_limit = min(self._batch_max_bytes, self._batch_limit + _BATCH_STEP_BYTES)
        self.acked_seq = max(self.acked_seq, seq)
        inflight = self._inflight
        while inflight and inflight[0][0] <= seq:
            _, end, size = inflight.popleft()
            self._acked_offset = end
            self._inflight_bytes -= size
        self._write_watermark()
        if window_was_full or self._log_complete():  # otherwise new data wakes the pump
            self.notify()

    def _keep_uploading(self) -> None:
        """Start a task sending the queued files when there are some and none runs; raise
        what ended the last one (the session then fails and reconnects, as for records)."""
        import asyncio

        task = self._uploading
        if task is not None and task.done():
            self._uploading = None
            task.result()
        if self._uploads and self._uploading is None:
            self._uploading = asyncio.get_running_loop().create_task(self._send_uploads())
            self._uploading.add_done_callback(lambda _: self.notify())  # the pump looks again

    async def _stop_uploading(self) -> None:
        """Cancel the upload in flight (its file stays queued, sent again next session)."""
        import asyncio

        task, self._uploading = self._uploading, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, TransportError):
                await task

    async def _send_uploads(self) -> None:
        """PUT the queued files, each read from disk as it is sent; a file over the server's
        limit is left out with an error (it stays in the run directory), never failing the
        stream of the run's records."""
        while self._uploads:
            name, path = self._uploads[0]
            size = path.stat().st_size if path.is_file() else None
            if size is not None and size > MAX_FILE_BYTES:
                logger.error(
                    "tracker: file %r is %d bytes, over the limit of %d (MAX_FILE_BYTES) for a "
                    "file stored with a run: it is not uploaded and stays at %s; split it into "
                    "smaller files and save those to store it",
                    name,
                    size,
                    MAX_FILE_BYTES,
                    path,
                )
            elif size is not None:
                try:
                    await self.client.request(
                        "PUT",
                        f"{self.target.path}/files/{quote(name)}",  # '?', '#', '%' stay in the name
                        data=path,
                        content_type="application/octet-stream",
                    )
                except TransportError as exc:
                    if exc.status != 413:
                        raise
                    logger.error(
                        "tracker: file %r is not uploaded (it stays at %s): %s", name, path, exc
                    )
            self._uploads.popleft()

    def _write_watermark(self, *, force: bool = False) -> None:
        """Persist the acknowledged position in the run directory (at most once a second)."""
        now = time.monotonic()
        if not force and now - self._watermark_at < _WATERMARK_EVERY_SECONDS:
            return
        self._watermark_at = now
        document = {
            "log_id": self.target.log_id,
            "acked_seq": self.acked_seq,
            "acked_offset": self._acked_offset,
            "server": self.target.base_url.rstrip("/"),
            "path": f"{self.target.entity}/{self.target.project}/{self.target.run_id}",
        }
        target = self._log_path.parent / WATERMARK_NAME
        temporary = target.with_suffix(".tmp")
        with contextlib.suppress(OSError):
            temporary.write_bytes(orjson.dumps(document))
            os.replace(temporary, target)

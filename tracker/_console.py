"""Console capture: the program's stdout and stderr, teed into its run (`settings.console`).

``"auto"`` wraps ``sys.stdout`` and ``sys.stderr`` with a tee that writes through to the
stream it replaced. ``"redirect"`` points file descriptors 1 and 2 at pipes that a
"tracker-console" thread reads and writes through to the saved descriptors, so C
extensions and child processes are captured too. Either way the printing thread only
appends to a bounded `ConsoleBuffer` (past its bound the oldest text is dropped and
counted), and the run's I/O thread turns the buffer into ``console`` records.

Removing a capture restores exactly what it replaced. When something else has replaced
it since (the user, pytest's capsys, a later run's capture), that stays in place and the
capture is left there passing text through, until the one on top goes: a capture that
restores skips the pass-through ones below it.
"""

from __future__ import annotations

import codecs
import contextlib
import os
import selectors
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Final, TextIO

from tracker._io._thread import io_thread

if TYPE_CHECKING:
    import asyncio

__all__ = ["MAX_BUFFER_CHARS", "MAX_LINE_CHARS", "ConsoleBuffer", "ConsoleCapture"]

STDOUT: Final = "stdout"
STDERR: Final = "stderr"
MAX_BUFFER_CHARS: Final = 2**20
"""How much captured text waits for the I/O thread at most; past it the oldest is dropped."""
MAX_LINE_CHARS: Final = 2**16
"""The longest unterminated line kept whole: past it a line with ``\\r`` keeps only its
last ``\\r`` part (what reading shows of it anyway), one without is cut."""
_SHIP_SECONDS: Final = 0.1
"""How long captured text gathers before the I/O thread ships it (more lines per record)."""
_HURRY_FRACTION: Final = 4
"""Text past 1/this of the buffer's bound is shipped at once, not after `_SHIP_SECONDS`: a
program printing megabytes a second would otherwise overflow the buffer between ships."""
_MERGE_SECONDS: Final = 0.01
"""Lines of one stream written within this time of each other share a record (and its time)."""
_DRAIN_SECONDS: Final = 1.0
"""How long `stop` waits for the redirect thread to read what is left in the pipes."""
_READ_BYTES: Final = 2**16

Chunk = tuple[float, str, str]
"""Captured text: its time (unix seconds), its stream, whole lines (or a line cut)."""


class ConsoleBuffer:
    """Captured text on its way to the run's records, bounded by `MAX_BUFFER_CHARS`.

    `write` takes a re-entrant lock for a few list operations and calls nothing that
    waits, so a print from any thread, a signal handler or the I/O thread itself never
    blocks on tracker; lines are completed per stream before they are queued.
    """

    def __init__(self, max_chars: int = MAX_BUFFER_CHARS) -> None:
        """An empty buffer; `wake` is called when text arrives in an empty one."""
        self._lock = threading.RLock()
        self._max = max_chars
        self._chunks: deque[Chunk] = deque()
        self._size = 0
        self._partial: dict[str, list[str]] = {STDOUT: [], STDERR: []}
        self._partial_size = {STDOUT: 0, STDERR: 0}
        self._dropped = 0
        self._asleep = True
        self._hurried = False
        self.capturing = True
        self.wake: Callable[[], None] = _nothing
        self.hurry: Callable[[], None] = _nothing

    def write(self, stream: str, text: str) -> None:
        """Add ``text`` written to ``stream``; whole lines are queued, the rest waits."""
        if not text or not self.capturing:
            return
        now = time.time()
        with self._lock:
            pieces = self._partial[stream]
            cut = text.rfind("\n") + 1
            if cut:
                whole = text[:cut]
                if pieces:
                    whole = "".join(pieces) + whole
                    pieces.clear()
                self._partial_size[stream] = 0
                self._queue(now, stream, whole)
                text = text[cut:]
            if text:
                pieces.append(text)
                self._partial_size[stream] += len(text)
                if self._partial_size[stream] > MAX_LINE_CHARS:
                    self._shorten(now, stream)
            wake, self._asleep = self._asleep, False
            hurry = not self._hurried and self._size > self._max // _HURRY_FRACTION
            self._hurried |= hurry
        if hurry:
            self.hurry()
        elif wake:
            self.wake()

    def _shorten(self, now: float, stream: str) -> None:
        pieces = self._partial[stream]
        line = "".join(pieces)
        pieces.clear()
        line = line[max(line.rfind("\r"), 0) :]
        if len(line) > MAX_LINE_CHARS:
            self._partial_size[stream] = 0
            self._queue(now, stream, line)
        else:
            pieces.append(line)
            self._partial_size[stream] = len(line)

    def _queue(self, now: float, stream: str, text: str) -> None:
        chunks = self._chunks
        chunks.append((now, stream, text))
        self._size += len(text)
        while self._size > self._max:
            stamp, name, oldest = chunks[0]
            if len(chunks) > 1:
                chunks.popleft()
                self._size -= len(oldest)
                self._dropped += _utf8_size(oldest)
                continue
            cut = len(oldest) - self._max
            line_start = oldest.find("\n", cut - 1) + 1  # keep whole lines when there are
            if 0 < line_start < len(oldest):
                cut = line_start
            keep = oldest[cut:]
            self._dropped += _utf8_size(oldest[:cut])
            chunks[0] = (stamp, name, keep)
            self._size = len(keep)

    def take(self, final: bool) -> list[dict[str, Any]]:
        """The ``console`` record payloads of everything queued (``final``: with the
        unterminated rest of each stream), a dropped-text marker first; the next write
        wakes again."""
        with self._lock:
            if final:
                now = time.time()
                for stream, pieces in self._partial.items():
                    if pieces:
                        self._queue(now, stream, "".join(pieces))
                        pieces.clear()
                        self._partial_size[stream] = 0
            chunks, self._chunks = self._chunks, deque()
            dropped, self._dropped = self._dropped, 0
            self._size = 0
            self._asleep = True
            self._hurried = False
        payloads = _payloads(chunks)
        if dropped:
            stamp = payloads[0]["time"] if payloads else time.time()
            marker = f"[tracker: {dropped} bytes of console output dropped]\n"
            payloads.insert(0, {"time": stamp, "stream": STDERR, "text": marker})
        return payloads


def _payloads(chunks: Iterable[Chunk]) -> list[dict[str, Any]]:
    """Chunks as record payloads, consecutive ones of a stream close in time merged."""
    payloads: list[dict[str, Any]] = []
    texts: list[str] = []
    last: dict[str, Any] | None = None
    for stamp, stream, text in chunks:
        if last is not None and last["stream"] == stream and stamp - last["time"] <= _MERGE_SECONDS:
            texts.append(text)
            continue
        if last is not None:
            last["text"] = _json_text("".join(texts))
        last = {"time": stamp, "stream": stream, "text": ""}
        payloads.append(last)
        texts = [text]
    if last is not None:
        last["text"] = _json_text("".join(texts))
    return payloads


def _json_text(text: str) -> str:
    """``text`` as JSON can carry it: lone surrogates (undecodable bytes some streams let
    through) become "?"."""
    if text.isascii():
        return text
    return text.encode("utf-8", "replace").decode("utf-8")


def _utf8_size(text: str) -> int:
    return len(text.encode("utf-8", "replace"))


def _nothing() -> None:
    """The I/O thread has not attached yet; it ships what is queued when it does."""


class _Tee:
    """A text stream that writes through to ``original`` and captures what it writes."""

    def __init__(self, original: TextIO, stream: str, buffer: ConsoleBuffer) -> None:
        """Wrap ``original`` (``sys.stdout`` or ``sys.stderr``)."""
        self.original = original
        self.stream = stream
        self.buffer = buffer
        self.active = True

    def write(self, text: str) -> int:
        """Write through, then capture (what the original refuses is not captured)."""
        written = self.original.write(text)
        if self.active and isinstance(text, str):
            self.buffer.write(self.stream, text)
        return written

    def writelines(self, lines: Iterable[str]) -> None:
        """Write each of ``lines``, captured."""
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> Any:
        """Everything else is the original stream's (``flush``, ``fileno``, ``encoding``...)."""
        return getattr(self.original, name)


def _below(stream: Any) -> Any:
    """What a capture restores: ``stream``, or what is below it when it passes through."""
    while isinstance(stream, _Tee) and not stream.active:
        stream = stream.original
    return stream


class _Wrap:
    """``"auto"``: ``sys.stdout`` and ``sys.stderr`` replaced by tees."""

    def __init__(self, buffer: ConsoleBuffer) -> None:
        """Install the tees (a stream that is None, as under pythonw, stays None)."""
        self._tees: dict[str, _Tee] = {}
        for name in (STDOUT, STDERR):
            original = getattr(sys, name)
            if original is not None:
                tee = _Tee(original, name, buffer)
                setattr(sys, name, tee)
                self._tees[name] = tee

    def stop(self) -> None:
        """Restore what each tee replaced, unless something replaced the tee since."""
        for name, tee in self._tees.items():
            tee.active = False
            if getattr(sys, name) is tee:
                setattr(sys, name, _below(tee.original))

    remove_in_child = stop


class _Pipe:
    """One redirected descriptor: the pipe's read end, the saved original, its identity."""

    def __init__(self, fd: int, stream: str) -> None:
        """Point ``fd`` at a new pipe, saving what it was."""
        self.fd = fd
        self.stream = stream
        self.saved = os.dup(fd)
        self.read, write = os.pipe()
        self.identity = _identity(self.read)
        os.dup2(write, fd)
        os.close(write)
        self.forward = True


_passing: dict[tuple[int, int], _Pipe] = {}
"""Pipes of stopped captures left in place (something replaced them), by identity: their
thread still passes text through to their saved descriptor, until the pipe closes."""


def _identity(fd: int) -> tuple[int, int] | None:
    try:
        status = os.fstat(fd)
    except OSError:
        return None
    return status.st_dev, status.st_ino


def _restore_target(saved: int) -> int:
    """The descriptor a capture restores: its saved one, or, when that is the pipe of a
    capture passing through, what that capture saved (and so on down)."""
    below = _passing.get(_identity(saved) or (-1, -1))
    while below is not None:
        saved = below.saved
        below = _passing.get(_identity(saved) or (-1, -1))
    return saved


class _Redirect:
    """``"redirect"``: file descriptors 1 and 2 onto pipes read by a thread."""

    def __init__(self, buffer: ConsoleBuffer) -> None:
        """Redirect the descriptors that are open and start the thread reading them."""
        self._buffer = buffer
        _flush_python_streams()
        self._pipes: list[_Pipe] = []
        for fd, stream in ((1, STDOUT), (2, STDERR)):
            if _identity(fd) is not None:
                self._pipes.append(_Pipe(fd, stream))
        self._thread = threading.Thread(target=self._pump, name="tracker-console", daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        """Pass what the pipes carry through to the saved descriptors, and capture it."""
        decoders = {
            pipe.read: codecs.getincrementaldecoder("utf-8")("replace") for pipe in self._pipes
        }
        with selectors.DefaultSelector() as selector:
            for pipe in self._pipes:
                selector.register(pipe.read, selectors.EVENT_READ, pipe)
            while selector.get_map():
                for key, _ in selector.select():
                    pipe = key.data
                    try:
                        data = os.read(pipe.read, _READ_BYTES)
                    except OSError:
                        data = b""
                    if not data:
                        selector.unregister(pipe.read)
                        self._close(pipe)
                        continue
                    if pipe.forward:
                        pipe.forward = _write_all(pipe.saved, data)
                    self._buffer.write(pipe.stream, decoders[pipe.read].decode(data))

    def _close(self, pipe: _Pipe) -> None:
        if pipe.identity is not None:
            _passing.pop(pipe.identity, None)
        os.close(pipe.read)
        os.close(pipe.saved)

    def stop(self) -> None:
        """Restore each descriptor still ours, and wait (at most `_DRAIN_SECONDS`) until
        the thread has read what the pipes held; a child process still holding a pipe
        keeps its output passing through, no longer captured."""
        _flush_python_streams()
        left = False
        for pipe in self._pipes:
            if pipe.identity is not None and _identity(pipe.fd) == pipe.identity:
                os.dup2(_restore_target(pipe.saved), pipe.fd)
            elif pipe.identity is not None:
                _passing[pipe.identity] = pipe
                left = True
        if not left:
            self._thread.join(_DRAIN_SECONDS)
        self._buffer.capturing = False

    def remove_in_child(self) -> None:
        """In a forked child (the thread is the parent's): restore the descriptors and
        close the child's copies of the pipes and saved descriptors."""
        for pipe in self._pipes:
            if pipe.identity is not None and _identity(pipe.fd) == pipe.identity:
                os.dup2(_restore_target(pipe.saved), pipe.fd)
            with contextlib.suppress(OSError):
                os.close(pipe.read)
            with contextlib.suppress(OSError):
                os.close(pipe.saved)
        self._buffer.capturing = False


def _write_all(fd: int, data: bytes) -> bool:
    """Write all of ``data`` to ``fd``; False when it refuses (a closed terminal, say)."""
    view = memoryview(data)
    try:
        while view:
            view = view[os.write(fd, view) :]
    except OSError:
        return False
    return True


def _flush_python_streams() -> None:
    """Flush Python's buffers of stdout and stderr into their descriptors."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            if stream is not None:
                stream.flush()


class ConsoleCapture:
    """One run's capture and the I/O thread's shipping of it.

    ``ship(buffer, final)`` is the run's: it appends the buffer's records to the run
    under its outbox lock and returns False when the outbox has no room (the text
    stays in the buffer, which drops its oldest past its bound, and is shipped later).
    """

    def __init__(self, mode: str, ship: Callable[[ConsoleBuffer, bool], bool]) -> None:
        """Install the capture of ``mode`` ("auto" or "redirect")."""
        self.buffer = ConsoleBuffer()
        self._ship = ship
        self._loop: asyncio.AbstractEventLoop | None = None
        self._installed: _Wrap | _Redirect = (
            _Redirect(self.buffer) if mode == "redirect" else _Wrap(self.buffer)
        )
        io_thread().call_soon(self._attach)

    def _attach(self) -> None:
        """On the I/O thread: from now on text arriving wakes it."""
        import asyncio

        self._loop = asyncio.get_running_loop()
        self.buffer.wake = self._wake
        self.buffer.hurry = self._hurry
        self._schedule()

    def _wake(self) -> None:
        """From any thread: ship soon. Only a loop call, which takes no lock."""
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # closed at exit; finish() ships the rest
                loop.call_soon_threadsafe(self._schedule)

    def _hurry(self) -> None:
        """From any thread: ship now, the buffer is filling."""
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._ship_now)

    def _schedule(self) -> None:
        if self._loop is not None:
            self._loop.call_later(_SHIP_SECONDS, self._ship_now)

    def _ship_now(self) -> None:
        if not self._ship(self.buffer, False):
            self._schedule()

    def stop(self) -> None:
        """Remove the capture (at `finish()`); the run then ships the rest, final."""
        self._installed.stop()

    def remove_in_child(self) -> None:
        """Remove the capture in a forked child: the child writes to the console as before."""
        self.buffer.capturing = False
        self._installed.remove_in_child()

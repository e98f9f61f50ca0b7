"""The one "tracker-io" daemon thread per process, running an asyncio loop (uvloop if installed).

A daemon thread, because CPython joins non-daemon threads *before* atexit handlers
run: a non-daemon I/O thread would hang the process at exit before we could flush.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    import asyncio
    import concurrent.futures

__all__ = ["IOThread", "io_thread", "reset_after_fork", "wait_event"]

T = TypeVar("T")


def _new_loop() -> asyncio.AbstractEventLoop:
    import asyncio  # loaded with the first run, not with `import tracker`

    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


class IOThread:
    """Starts the loop thread on first use and hands work to it.

    The thread imports asyncio and builds its loop itself, so that a caller starting it
    (an offline `init()`) does not wait for that import: tens of milliseconds, most of a
    process's first init. `call_soon` queues work until the loop runs; `loop()` waits for it.
    """

    def __init__(self) -> None:
        """Create the handle; no thread starts until `call_soon` or `loop()`."""
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._pending: list[Callable[[], object]] = []
        self._queued = 0  # callbacks handed over with call_soon that have not run yet
        self._drained = threading.Event()
        self._drained.set()

    def _start_locked(self) -> None:
        if self._thread is None:
            self._ready.clear()
            self._failure = None
            self._thread = threading.Thread(target=self._serve, name="tracker-io", daemon=True)
            self._thread.start()

    def loop(self) -> asyncio.AbstractEventLoop:
        """The running loop, starting the thread if needed and waiting until its loop runs."""
        loop = self._loop
        if loop is not None:
            return loop
        with self._lock:
            self._start_locked()
        self._ready.wait()
        with self._lock:
            if self._loop is None:
                raise RuntimeError(f"the tracker I/O loop did not start: {self._failure!r}")
            return self._loop

    def wait_queued(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds until what `call_soon` handed over has run: the
        starts of runs, and the imports they make on the loop thread (asyncio, aiohttp)."""
        self._drained.wait(timeout)

    def call_soon(self, callback: Callable[[], object]) -> None:
        """Run ``callback`` on the loop thread as soon as its loop runs, without waiting."""
        with self._lock:
            self._queued += 1
            self._drained.clear()
            loop = self._loop
            if loop is None:
                self._pending.append(callback)
                self._start_locked()
                return
        loop.call_soon_threadsafe(self._run_queued, callback)

    def _run_queued(self, callback: Callable[[], object]) -> None:
        try:
            callback()
        finally:
            with self._lock:
                self._queued -= 1
                if not self._queued:
                    self._drained.set()

    def submit(self, coroutine: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Schedule ``coroutine`` on the loop; the future resolves with its result."""
        import asyncio

        return asyncio.run_coroutine_threadsafe(coroutine, self.loop())

    def stop(self, timeout: float) -> None:
        """Stop the loop and wait up to ``timeout`` seconds for the thread to end."""
        if self._thread is not None:
            self._ready.wait(timeout)  # a thread still starting: let it build its loop
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
            self._pending.clear()
            self._queued = 0
            self._drained.set()
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)

    def _serve(self) -> None:
        try:
            loop = _new_loop()
        except BaseException as exc:
            with self._lock:
                self._failure, self._thread = exc, None
            self._ready.set()
            self._drained.set()  # nothing queued runs until a later start
            return
        import asyncio

        asyncio.set_event_loop(loop)
        with self._lock:
            self._loop = loop
            for callback in self._pending:
                loop.call_soon(self._run_queued, callback)
            self._pending.clear()
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.close()


async def wait_event(event: asyncio.Event, timeout: float) -> None:
    """Wait until ``event`` is set or ``timeout`` seconds pass (the timer sets it).

    asyncio.wait_for would create a Task, a timer and a cancellation on every call:
    measured as a third of the I/O thread's time per batch at 1,000 rows/s.
    """
    if event.is_set():
        return
    import asyncio

    timer = asyncio.get_running_loop().call_later(max(timeout, 0.0), event.set)
    try:
        await event.wait()
    finally:
        timer.cancel()


_io_thread = IOThread()


def io_thread() -> IOThread:
    """The process's I/O thread handle."""
    return _io_thread


def reset_after_fork() -> None:
    """In a forked child: forget the parent's thread (it does not exist here); start anew on use."""
    global _io_thread
    _io_thread = IOThread()

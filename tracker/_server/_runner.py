"""Running the server: open the database, check the bind is safe, serve, shut down gracefully.

`serve` is what `tracker server` runs (until SIGINT or SIGTERM); `EmbeddedServer` runs
the same thing in a thread of its own on ``127.0.0.1:0``, for `tracker demo` and tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import ipaddress
import logging
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from types import TracebackType
from typing import Final

from aiohttp import web

from tracker._errors import UsageError
from tracker._server._app import build_app
from tracker._server._connections import ConnectionCaps
from tracker._server._keys import GivenKey, parse_api_key, store_keys
from tracker._server.storage import open_storage

__all__ = ["EmbeddedServer", "serve"]

IDLE_CONNECTION_SECONDS: Final = 5.0

SHUTDOWN_SECONDS: Final = 10.0
"""How long in-flight requests may take to finish once shutdown starts."""

_logger = logging.getLogger(__name__)


async def serve(
    host: str,
    port: int,
    db_url: str,
    api_keys: Sequence[GivenKey],
    allow_anonymous: bool,
    insecure: bool,
    ready: Callable[[str], None] | None = None,
    *,
    stop: asyncio.Event | None = None,
    base_url: str | None = None,
    max_connections: int | None = None,
    max_connections_per_ip: int | None = None,
) -> None:
    """Serve the API on ``host:port`` until SIGINT/SIGTERM (or ``stop`` is set).

    Args:
        host: the address to bind; a non-loopback one needs API keys or ``insecure``.
        port: the port; 0 picks a free one (the real one is reported).
        db_url: ``sqlite:///PATH``, ``postgresql://USER@HOST:PORT/DATABASE`` or ``memory:``.
        api_keys: keys to add to the database (`tracker._server._keys`).
        allow_anonymous: requests without a key act as the entity ``anonymous``.
        insecure: allow a non-loopback bind without API keys (everyone is ``local``).
        ready: called with the server's URL once it listens; default: print a line.
        stop: set it to shut down (signals are only handled on the main thread).
        base_url: the server's public root URL (behind a proxy or under another name): run
            URLs use it, and requests may name its host (docs/server.md, "Security").
        max_connections: connections held at once (default: the open-file limit less 64).
        max_connections_per_ip: connections one client address may hold (default: half).

    Raises:
        UsageError: a bad ``db_url``, API key or port, or an unsafe bind.
    """
    loopback = _is_loopback(host)
    storage = await open_storage(db_url)
    try:
        storage.start_compactor()  # batches logged before a restart are folded now
        await storage.listen()  # other replicas' changes wake this one's live pages
        await store_keys(storage, api_keys)
        # keys stored by an earlier start count too
        has_keys = await storage.has_api_keys()
        if not loopback and not has_keys and not insecure:
            raise _unsafe_bind(host)
        open_access = not has_keys and (loopback or insecure)
        app = build_app(
            storage,
            allow_anonymous=allow_anonymous,
            open_access=open_access,
            base_url=base_url,
            bound_host=host,
        )
        caps = ConnectionCaps(max_connections, max_connections_per_ip)
        await _run_app(app, host, port, db_url, ready, stop, caps)
    finally:
        await storage.close()


def _unsafe_bind(host: str) -> UsageError:
    return UsageError(
        f"--host {host} is reachable from other machines and the server has no API keys; "
        "add --api-key ENTITY:KEY (clients send it as TRACKER_API_KEY), bind 127.0.0.1, "
        "or pass --insecure to let anyone read and write"
    )


async def _run_app(
    app: web.Application,
    host: str,
    port: int,
    db_url: str,
    ready: Callable[[str], None] | None,
    stop: asyncio.Event | None,
    caps: ConnectionCaps,
) -> None:
    """Listen, report, wait for a stop, then shut down gracefully."""
    stop = stop or asyncio.Event()
    # keepalive_timeout also closes a connection that has not sent a whole request head
    # within it: a client holding connections open idle cannot starve the others.
    runner = web.AppRunner(
        app,
        handle_signals=False,
        shutdown_timeout=SHUTDOWN_SECONDS,
        keepalive_timeout=IDLE_CONNECTION_SECONDS,
    )
    # signals first: a SIGTERM right after the "listening" line must still stop gracefully
    with _signals_set(stop):
        await runner.setup()
        listener: asyncio.Server | None = None
        try:
            assert runner.server is not None, "setup() made it"
            try:
                # not a web.TCPSite: each connection passes the caps' gate before aiohttp
                listener = await asyncio.get_running_loop().create_server(
                    caps.protocol_factory(runner.server), host, port, backlog=128
                )
            except OSError as exc:
                raise UsageError(
                    f"cannot listen on {host}:{port} ({exc.strerror or exc}); choose another "
                    "--port (0 picks a free one) or stop the program using it"
                ) from None
            url = _url(host, listener.sockets[0].getsockname()[1])
            if ready is None:  # the `tracker server` process, not an embedded server
                # The objects of start-up live as long as the server: keep the collector
                # from re-scanning them on every batch (measured ~8 ms per 10k-row batch).
                gc.freeze()
                print(f"tracker server: listening on {url} (db: {db_url})", flush=True)
            else:
                ready(url)
            await stop.wait()
        finally:
            if listener is not None:
                listener.close()  # stop accepting, as a site's stop() does
            # closes idle connections and streams with 1001 (on_shutdown), lets in-flight
            # requests finish within SHUTDOWN_SECONDS, then runs the app's cleanup
            await runner.cleanup()


@contextlib.contextmanager
def _signals_set(stop: asyncio.Event) -> Iterator[None]:
    """Make SIGINT and SIGTERM set ``stop``, when this is the main thread of a POSIX process."""
    loop = asyncio.get_running_loop()
    handled: list[signal.Signals] = []
    # Only the main thread gets signals, and Windows loops have no add_signal_handler.
    if threading.current_thread() is threading.main_thread() and sys.platform != "win32":
        for number in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(number, stop.set)
            handled.append(number)
    try:
        yield
    finally:
        for number in handled:
            loop.remove_signal_handler(number)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _url(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host and not host.startswith("[") else host
    return f"http://{shown}:{port}"


class EmbeddedServer:
    """A server on ``127.0.0.1`` (a free port by default) in a thread with its own event loop.

    ``with EmbeddedServer("sqlite:///runs.db") as server: ... server.url ...``
    """

    def __init__(
        self,
        db_url: str,
        *,
        port: int = 0,
        api_keys: Sequence[str] = (),
        allow_anonymous: bool = False,
        startup_timeout: float = 30.0,
    ) -> None:
        """Describe the server; `start` (or ``with``) runs it."""
        self._db_url = db_url
        self._port = port
        self._api_keys = [parse_api_key(text, "api_keys") for text in api_keys]
        self._allow_anonymous = allow_anonymous
        self._startup_timeout = startup_timeout
        self._url: str | None = None
        self._error: BaseException | None = None
        self._started = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The server's root URL, e.g. ``http://127.0.0.1:50123``."""
        if self._url is None:
            raise UsageError("the embedded server is not running; call start() or use `with`")
        return self._url

    def start(self) -> EmbeddedServer:
        """Start serving; return when it listens.

        Raises:
            UsageError: the server could not start (the message says why).
        """
        if self._thread is not None:
            raise UsageError("the embedded server was already started; create a new one")
        self._thread = threading.Thread(target=self._main, name="tracker-server", daemon=True)
        self._thread.start()
        if not self._started.wait(self._startup_timeout):
            self.stop()
            raise UsageError(f"the embedded server did not start within {self._startup_timeout} s")
        if self._error is not None:
            self._thread.join()
            if isinstance(self._error, UsageError):
                raise self._error
            raise UsageError(f"the embedded server failed to start: {self._error!r}")
        return self

    def stop(self) -> None:
        """Shut down gracefully and wait for the thread; idempotent."""
        thread, loop, stop = self._thread, self._loop, self._stop
        if thread is None:
            return
        if loop is not None and stop is not None and thread.is_alive():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(stop.set)
        thread.join(SHUTDOWN_SECONDS + 5)
        self._url = None

    def __enter__(self) -> EmbeddedServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _main(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:
            if self._url is None:
                self._error = exc  # start() raises it
            else:
                _logger.exception("the embedded tracker server stopped with an error")
        finally:
            self._started.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        await serve(
            "127.0.0.1",
            self._port,
            self._db_url,
            self._api_keys,
            self._allow_anonymous,
            insecure=False,
            ready=self._ready,
            stop=self._stop,
        )

    def _ready(self, url: str) -> None:
        self._url = url
        self._started.set()

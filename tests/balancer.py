"""nginx in front of several `tracker server` replicas, for tests and benchmarks/stream.py.

`nginx_config` is the configuration docs/server.md ("Running for a team") shows: an
upstream of the replicas, websocket upgrades passed through, a failed connection retried
on the next replica, request bodies streamed (not buffered to disk) and server-sent
events passed on at once. `Balancer` runs Debian's nginx with it as a subprocess (in the
foreground, every path in its own directory), bounded in time, stopped on exit.
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

NGINX_PATHS = ("/usr/sbin/nginx", "/usr/bin/nginx")
START_SECONDS = 15.0
STOP_SECONDS = 10.0


def nginx_binary() -> str | None:
    """The nginx executable (on PATH, or where Debian installs it), or None."""
    found = shutil.which("nginx")
    if found:
        return found
    return next((path for path in NGINX_PATHS if os.access(path, os.X_OK)), None)


def require_nginx() -> str:
    """The nginx executable; skip the test when it is absent, fail it under CI."""
    import pytest

    binary = nginx_binary()
    if binary is None:
        reason = "nginx is not installed (apt-get install nginx; .ci/run installs it)"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}, and CI is set: the replica tests must run")
        pytest.skip(reason)
    return binary


def nginx_config(
    listen: str, upstreams: Sequence[str], directory: Path, user: str | None = None
) -> str:
    """An nginx configuration: listen on ``listen`` (``ADDRESS:PORT``) and balance over the
    replicas at ``upstreams`` (``HOST:PORT`` each), every file nginx writes under
    ``directory``, its workers run as ``user`` (``"USER GROUP"``; None: nginx's default)."""
    user_line = "" if user is None else f"user {user};\n"
    servers = "".join(
        f"        server {upstream} max_fails=1 fail_timeout=2s;\n" for upstream in upstreams
    )
    return f"""{user_line}worker_processes 1;
error_log {directory}/error.log warn;
events {{
    worker_connections 1024;
}}
http {{
    access_log off;
    client_body_temp_path {directory}/body;
    proxy_temp_path {directory}/proxy;
    fastcgi_temp_path {directory}/fastcgi;
    uwsgi_temp_path {directory}/uwsgi;
    scgi_temp_path {directory}/scgi;

    map $http_upgrade $connection_upgrade {{
        default upgrade;
        ''      '';
    }}
    upstream tracker {{
{servers}        keepalive 32;
    }}
    server {{
        listen {listen};
        # file uploads may be 512 MiB; the server enforces the limits itself
        client_max_body_size 0;
        location / {{
            proxy_pass http://tracker;
            proxy_http_version 1.1;
            proxy_set_header Host $http_host;
            # websockets (the record stream): pass the upgrade on
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            # a replica that refuses or drops the connection: try the next one
            proxy_next_upstream error timeout http_502 http_503;
            proxy_next_upstream_tries 0;
            proxy_connect_timeout 2s;
            # stream bodies both ways: batches go on as they arrive, live events at once
            proxy_request_buffering off;
            proxy_buffering off;
            # longer than the websocket ping (10 s) and the live stream's ping (15 s)
            proxy_read_timeout 60s;
            proxy_send_timeout 60s;
        }}
    }}
}}
"""


def worker_user() -> str | None:
    """As root, this user and group: nginx's default (nobody) could not reach the test's
    directory. Otherwise None: nginx runs its workers as the user it runs as."""
    if os.geteuid() != 0:
        return None
    return f"{pwd.getpwuid(os.geteuid()).pw_name} {grp.getgrgid(os.getegid()).gr_name}"


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.2)
        return probe.connect_ex(("127.0.0.1", port)) == 0


class Balancer:
    """nginx on a loopback port in front of the replicas on ``upstream_ports``."""

    def __init__(
        self, binary: str, directory: Path, listen_port: int, upstream_ports: Sequence[int]
    ) -> None:
        """Write the configuration into ``directory``; `start` runs nginx on it."""
        self.binary = binary
        self.directory = directory
        self.port = listen_port
        self.url = f"http://127.0.0.1:{listen_port}"
        directory.mkdir(parents=True, exist_ok=True)
        self.config = directory / "nginx.conf"
        upstreams = [f"127.0.0.1:{port}" for port in upstream_ports]
        self.config.write_text(
            nginx_config(f"127.0.0.1:{listen_port}", upstreams, directory, worker_user())
        )
        self.output = directory / "nginx.out"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = START_SECONDS) -> Balancer:
        """Start nginx in the foreground and wait until it listens."""
        pid = self.directory / "nginx.pid"
        with self.output.open("ab") as sink:
            self.process = subprocess.Popen(
                [
                    self.binary,
                    "-p",
                    str(self.directory),
                    "-c",
                    str(self.config),
                    "-e",
                    str(self.directory / "error.log"),
                    "-g",
                    f"daemon off; pid {pid};",
                ],
                stdout=sink,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # its workers too are stopped by the group
            )
        deadline = time.monotonic() + timeout
        while not _listening(self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"nginx did not start:\n{self.log_text()}")
            time.sleep(0.02)
        return self

    def log_text(self) -> str:
        """What nginx printed and logged so far."""
        texts = []
        for path in (self.output, self.directory / "error.log"):
            if path.exists():
                texts.append(path.read_text(errors="replace"))
        return "\n".join(texts)

    def stop(self) -> None:
        """Stop nginx quickly (SIGTERM), or kill it after `STOP_SECONDS`; idempotent."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(STOP_SECONDS)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(STOP_SECONDS)

    def __enter__(self) -> Balancer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

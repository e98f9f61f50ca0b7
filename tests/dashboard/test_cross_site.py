"""A hostile page in the user's browser cannot change runs on the keyless loopback server
(CSRF), nor reach it under another name (DNS rebinding); the server answers every such
attempt with a 4xx in its error shape."""

from __future__ import annotations

import http.server
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest

from tracker._api import Api
from tracker._run import Run
from tracker._server._runner import EmbeddedServer

from .conftest import CHROMIUM

pytestmark = pytest.mark.dashboard

StartRun = Callable[..., Run]

ATTACK = """<!doctype html>
<html><body>
<iframe name="sink"></iframe>
<form id="form" method="POST" enctype="text/plain" target="sink"
      action="{target}/api/v1/runs/start">
  <input type="hidden" name='{form_name}' value='"}}'>
</form>
<script>
const target = "{target}";
const run = target + "/api/v1/runs/local/proj/{run_id}";
const results = {{}};
const handshake = {handshake};
const batch = '[0,"config",{{"lr":666}}]\\n[1,"run",{{"notes":"pwned"}}]\\n';
async function attempt(name, call) {{
  try {{ await call(); results[name] = "sent"; }} catch (error) {{ results[name] = "blocked"; }}
}}
async function attack() {{
  await attempt("text/plain start", () => fetch(target + "/api/v1/runs/start", {{
    method: "POST", mode: "no-cors", headers: {{"Content-Type": "text/plain"}},
    body: JSON.stringify(handshake)}}));
  await attempt("text/plain batch", () => fetch(run + "/records?log_id=" + "e".repeat(32), {{
    method: "POST", mode: "no-cors", headers: {{"Content-Type": "text/plain"}}, body: batch}}));
  await attempt("blob batch", () => fetch(run + "/records?log_id=" + "d".repeat(32), {{
    method: "POST", mode: "no-cors", body: new Blob([batch])}}));
  await attempt("json patch", () => fetch(run, {{
    method: "PATCH", headers: {{"Content-Type": "application/json"}},
    body: JSON.stringify({{notes: "pwned", tags: ["pwned"]}})}}));
  await new Promise(resolve => {{
    const frame = document.querySelector("iframe");
    frame.addEventListener("load", resolve, {{once: true}});
    document.getElementById("form").submit();
  }});
  results["form post"] = "submitted";
  results.websocket = await new Promise(resolve => {{
    const socket = new WebSocket(run.replace("http", "ws") + "/stream?log_id=" + "c".repeat(32));
    socket.onopen = () => {{
      socket.send(new Blob([batch]));
      resolve("opened");
    }};
    socket.onerror = () => resolve("refused");
  }});
  window.done = true;
}}
attack();
</script>
</body></html>
"""


class _AttackerSite(http.server.ThreadingHTTPServer):
    """Another origin (another port on loopback) serving one hostile page."""

    def __init__(self, page: str) -> None:
        """Listen on a free port and serve ``page`` at every path."""
        super().__init__(("127.0.0.1", 0), _PageHandler)
        self.page = page.encode()
        self.url = f"http://127.0.0.1:{self.server_address[1]}"


class _PageHandler(http.server.BaseHTTPRequestHandler):
    server: _AttackerSite

    def do_GET(self) -> None:
        """The hostile page."""
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(self.server.page)))
        self.end_headers()
        self.wfile.write(self.server.page)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


@pytest.fixture
def attacker() -> Iterator[Callable[[str], _AttackerSite]]:
    """Start an attacker site serving a page: ``attacker(html).url``."""
    sites: list[_AttackerSite] = []

    def start(page: str) -> _AttackerSite:
        site = _AttackerSite(page)
        threading.Thread(target=site.serve_forever, daemon=True).start()
        sites.append(site)
        return site

    yield start
    for site in sites:
        site.shutdown()
        site.server_close()


def _snapshot(server: EmbeddedServer, path: str) -> tuple[Any, ...]:
    """What an attack could change: the run's fields and its history."""
    run = Api(server.url).run(path)
    return run.name, run.state, run.config, run.summary, run.tags, run.notes, run.history()


def test_a_page_of_another_origin_cannot_change_a_run(
    browser: Any,
    server: EmbeddedServer,
    start_run: StartRun,
    attacker: Callable[[str], _AttackerSite],
) -> None:
    """From a page on another port, Chromium's text/plain POSTs to runs/start and to a
    run's records, a typeless Blob POST, a JSON PATCH, a form POST and a websocket all fail:
    the server answers each POST 403 (the PATCH's preflight fails, so it is never sent),
    and the run's history, config, summary, notes and tags are unchanged."""
    run = start_run(server, project="proj", config={"lr": 0.1}, tags=["kept"], notes="kept")
    for step in range(20):
        run.log({"x": step})
    run.finish(quiet=True)
    before = _snapshot(server, run.path)
    handshake = {
        "protocol": 1,
        "entity": None,
        "project": "proj",
        "run_id": run.id,
        "log_id": "f" * 32,
        "mode": "new",
        "fork_from": None,
        "rewind_to": None,
        "heartbeat_interval": 10,
    }
    form_name = orjson.dumps(handshake).decode()[:-1] + ',"pad":"'
    site = attacker(
        ATTACK.format(
            target=server.url,
            run_id=run.id,
            handshake=orjson.dumps(handshake).decode(),
            form_name=form_name,
        )
    )
    context = browser.new_context()
    answers: list[tuple[str, str, int]] = []
    try:
        page = context.new_page()
        page.on(
            "response",
            lambda response: (
                answers.append((response.request.method, response.url, response.status))
                if response.url.startswith(server.url)
                else None
            ),
        )
        page.goto(site.url)
        page.wait_for_function("window.done === true", timeout=15_000)
        results = page.evaluate("results")
    finally:
        context.close()
    assert _snapshot(server, run.path) == before
    assert results == {
        "text/plain start": "sent",  # no-cors: the page cannot see the answer
        "text/plain batch": "sent",
        "blob batch": "sent",
        "json patch": "blocked",  # the preflight failed
        "form post": "submitted",
        "websocket": "refused",
    }
    # the PATCH's preflight failed in the browser: the PATCH itself never left it
    assert [(method, status) for method, _, status in answers] == [("POST", 403)] * 4


REBOUND = "rebind.test"
REBINDING = """<script>
const run = "/api/v1/runs/local/proj/{run_id}";
window.results = Promise.all([
  fetch(run).then(answer => answer.status),
  fetch("/api/v1/runs/start", {{method: "POST", headers: {{"Content-Type": "application/json"}},
                                body: JSON.stringify({handshake})}}).then(answer => answer.status),
  fetch(run, {{method: "PATCH", headers: {{"Content-Type": "application/json"}},
              body: JSON.stringify({{notes: "pwned"}})}}).then(answer => answer.status),
]);
</script>"""


@pytest.fixture(scope="module")
def rebinding_browser(browser: Any) -> Iterator[Any]:
    """Chromium resolving rebind.test to 127.0.0.1, as an attacker's DNS does after a page
    loads. Its local-network checks are off: Firefox and Safari have none."""
    launched = browser.browser_type.launch(
        executable_path=CHROMIUM,
        headless=True,
        args=[
            "--no-sandbox",
            "--disable-gpu",
            f"--host-resolver-rules=MAP {REBOUND} 127.0.0.1",
            "--disable-features=BlockInsecurePrivateNetworkRequests,"
            "PrivateNetworkAccessSendPreflights,LocalNetworkAccessChecks",
        ],
    )
    yield launched
    launched.close()


def test_a_page_under_a_rebound_name_cannot_read_or_change_a_run(
    rebinding_browser: Any, server: EmbeddedServer, start_run: StartRun
) -> None:
    """A page at http://rebind.test:PORT whose name then resolves to 127.0.0.1 (DNS
    rebinding) makes same-origin JSON requests to the server: reading a run, replacing it
    and editing it are each answered 400 bad_host, and the run is unchanged."""
    run = start_run(server, project="proj", config={"lr": 0.1}, tags=["kept"], notes="kept")
    run.log({"x": 1})
    run.finish(quiet=True)
    before = _snapshot(server, run.path)
    port = server.url.rsplit(":", 1)[1]
    handshake = {"protocol": 1, "project": "proj", "run_id": run.id, "log_id": "f" * 32}
    page_html = REBINDING.format(
        run_id=run.id, handshake=orjson.dumps({**handshake, "mode": "new"}).decode()
    )
    context = rebinding_browser.new_context()
    try:
        page = context.new_page()
        # the attacker's own server answers the page itself, before the name is rebound
        page.route(
            f"http://{REBOUND}:{port}/attack",
            lambda route: route.fulfill(body=page_html, content_type="text/html"),
        )
        page.goto(f"http://{REBOUND}:{port}/attack")
        statuses = page.evaluate("window.results")
    finally:
        context.close()
    assert _snapshot(server, run.path) == before
    assert statuses == [400, 400, 400]


def test_requests_naming_another_host_are_refused(server: EmbeddedServer) -> None:
    """A raw request whose Host is not the server's name (as after DNS rebinding) gets 400
    bad_host, for reads and writes; loopback names on any port are answered."""
    host, port = server.url.removeprefix("http://").split(":")

    def ask(request: str) -> tuple[int, Any]:
        with socket.create_connection((host, int(port)), timeout=10) as connection:
            connection.sendall(request.encode())
            answer = b""
            while chunk := connection.recv(65536):
                answer += chunk
        head, _, body = answer.partition(b"\r\n\r\n")
        return int(head.split()[1]), orjson.loads(body) if body.startswith(b"{") else None

    for name in ("evil.example:" + port, "evil.example", "127.0.0.1.nip.io:" + port):
        for request in (
            f"GET /api/v1/projects HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n",
            f"POST /api/v1/runs/start HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n"
            "Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}",
        ):
            status, answer = ask(request)
            assert (status, answer["error"]["code"]) == (400, "bad_host"), answer
            assert "--base-url" in answer["error"]["message"]
    for name in (f"127.0.0.1:{port}", "localhost:1", "[::1]:8765", "127.1.2.3"):
        status, _ = ask(
            f"GET /api/v1/projects HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n"
        )
        assert status == 200, name
    health = "GET /api/v1/health HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n"
    assert ask(health)[0] == 200  # public, and tells nothing

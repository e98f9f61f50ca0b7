"""Refusing what a web page in the user's browser could forge: cross-site requests (CSRF)
and DNS rebinding.

A keyless loopback server trusts every request, so a page of any site the user visits
could otherwise post to it (a ``text/plain`` POST or a form needs no CORS preflight) or,
by making its own name resolve to 127.0.0.1, read from it as the same origin. So:

- the ``Host`` header must name this server: a loopback name (``localhost``, ``127.0.0.1``
  and the rest of 127/8, ``[::1]``; any port), the address it is bound to, or the host
  of its public ``base_url``. A server bound to every address (``0.0.0.0``) without a
  ``base_url`` cannot know its names, and answers any Host; it needs API keys (or
  ``--insecure``) anyway, and keys are not sent by browsers on their own;
- an ``Origin`` header, when present, must be the origin of the Host (the dashboard's
  own pages) or of the ``base_url``;
- a request that changes something (POST, PUT, PATCH, DELETE) must carry a content
  type a page cannot send to another origin without a preflight (``application/json``,
  ``application/x-ndjson``, ``application/octet-stream``) or the ``X-Tracker-Client``
  header, which tracker's client sends on every request; a websocket upgrade must carry
  that header (browsers cannot set headers on websockets).

The health check is exempt: it is public and tells nothing. Refusals are `ApiError`s.
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING, Final
from urllib.parse import urlsplit

from aiohttp import web

from tracker._server._auth import HEALTH_PATH, ApiError
from tracker._wire.protocol import CLIENT_HEADER

if TYPE_CHECKING:
    from aiohttp.typedefs import Handler, Middleware

__all__ = ["guard_middleware"]

SAFE_CONTENT_TYPES: Final = frozenset(
    {"application/json", "application/x-ndjson", "application/octet-stream"}
)
_CHANGES: Final = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_WILDCARDS: Final = frozenset({"", "0.0.0.0", "::", "[::]"})
_DEFAULT_PORTS: Final = (":80", ":443")


def guard_middleware(bound_host: str | None, base_url: str | None) -> Middleware:
    """Build the middleware refusing forged requests (see the module docstring).

    Args:
        bound_host: the address the server listens on (None: unknown, as for a wildcard).
        base_url: the server's public root URL, whose host and origin are accepted.
    """
    public = urlsplit(base_url) if base_url else None
    names = {"localhost"}
    if bound_host is not None and bound_host.lower() not in _WILDCARDS:
        names.add(_hostname(bound_host))
    if public is not None and public.hostname:
        names.add(_hostname(public.hostname))
    any_host = public is None and (bound_host is None or bound_host.lower() in _WILDCARDS)
    public_origin = None if public is None else _netloc(public.netloc)

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path == HEALTH_PATH and request.method == "GET":
            return await handler(request)
        host = request.headers.get("Host")
        if host is not None and not any_host and not _is_own_name(host, names):
            raise ApiError(
                400,
                "bad_host",
                f"the Host header names {host[:100]!r}, which is not a name of this server "
                "(a web page may be trying DNS rebinding); use http://127.0.0.1:PORT or "
                "http://localhost:PORT, or start the server with --base-url naming its "
                "public address",
            )
        origin = request.headers.get("Origin")
        same = {public_origin} if host is None else {public_origin, _netloc(host)}
        if origin is not None and _netloc(urlsplit(origin).netloc) not in same:
            raise ApiError(
                403,
                "bad_origin",
                f"requests from pages of {origin[:100]!r} are refused: this server answers "
                "only its own pages (and those of its --base-url) and clients that are not "
                "browsers",
            )
        if CLIENT_HEADER not in request.headers:
            _check_unforgeable(request)
        return await handler(request)

    return guard


def _check_unforgeable(request: web.Request) -> None:
    """Refuse a change a page of another site could have sent without a preflight."""
    if request.headers.get("Upgrade", "").lower() == "websocket":
        raise ApiError(
            403,
            "client_header_required",
            f"a websocket needs the {CLIENT_HEADER} header (tracker's client sends it; "
            "web pages cannot), so that no page of another site can open one",
        )
    if request.method in _CHANGES:
        given = request.headers.get("Content-Type", "")
        if given.partition(";")[0].strip().lower() not in SAFE_CONTENT_TYPES:
            raise ApiError(
                415,
                "bad_content_type",
                f"{request.method} needs Content-Type application/json, "
                f"application/x-ndjson or application/octet-stream, or an {CLIENT_HEADER} "
                f"header, so that no page of another site can send it; got "
                f"{given[:60] or 'none'!r}",
            )


def _is_own_name(host: str, names: set[str]) -> bool:
    """Whether a Host header (``name``, ``name:port``, ``[v6]:port``) names this server."""
    name = _hostname(host)
    if name in names:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _hostname(host: str) -> str:
    """The host of a Host header or address, lowercase, without port, brackets or final dot."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:].partition("]")[0]
    if host.count(":") == 1:
        host = host.partition(":")[0]
    return host.rstrip(".")


def _netloc(netloc: str) -> str:
    """``host[:port]`` lowercase, without a default port, for comparing origins."""
    netloc = netloc.strip().lower()
    for port in _DEFAULT_PORTS:
        if netloc.endswith(port):
            return netloc[: -len(port)]
    return netloc

"""Who is calling: API keys, anonymous and open access, and the one-entity rule.

Every request but the health check passes the middleware built here. It decides the
caller's entity (docs/protocol.md, "Authentication") and refuses a request whose
URL names another entity; handlers check entities that arrive in bodies or queries
with `check_entity`. Refusals are `ApiError`s, rendered by the app's error middleware.
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from aiohttp import web

from tracker._server.storage import Store

if TYPE_CHECKING:
    from aiohttp.typedefs import Handler, Middleware

__all__ = ["HEALTH_PATH", "ApiError", "Caller", "auth_middleware", "caller", "check_entity"]

HEALTH_PATH: Final = "/api/v1/health"
ANONYMOUS: Final = "anonymous"
LOCAL: Final = "local"


class ApiError(Exception):
    """An error answer of the API (docs/protocol.md, "Errors"): status, stable code, message,
    and any extra fields of the answer (``versions``, ``acked_seq``)."""

    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        """Describe the answer: HTTP status, a stable code, and a message saying what to do."""
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.extra = extra


@dataclass(frozen=True)
class Caller:
    """The entity a request acts as, and whether it came without a key."""

    entity: str
    anonymous: bool


# A context variable, not a request key: each request's handler runs in the context the
# middleware set, and aiohttp >= 3.13 warns about str request keys (older ones lack RequestKey).
_CALLER: contextvars.ContextVar[Caller] = contextvars.ContextVar("tracker_caller")


def caller() -> Caller:
    """The caller of the request being handled (set by the auth middleware)."""
    return _CALLER.get()


def check_entity(entity: str) -> None:
    """Refuse (403 forbidden) a request touching runs of an entity other than the caller's."""
    own = caller().entity
    if entity != own:
        raise ApiError(
            403,
            "forbidden",
            f"entity {entity!r} is not yours: your API key acts as {own!r}; "
            f"use entity {own!r} or a key of {entity!r}",
        )


def auth_middleware(storage: Store, *, allow_anonymous: bool, open_access: bool) -> Middleware:
    """Build the middleware that sets the caller of each request, or refuses it.

    Args:
        storage: where API keys are looked up (by hash, in the storage).
        allow_anonymous: a request without a key acts as the entity ``anonymous``.
        open_access: no keys exist and the server is loopback-only (or ``--insecure``):
            every request acts as the entity ``local``.
    """

    @web.middleware
    async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path == HEALTH_PATH:
            return await handler(request)
        who = await _identify(request, storage, allow_anonymous, open_access)
        token = _CALLER.set(who)
        try:
            entity = request.match_info.get("entity")
            if entity is not None:
                check_entity(entity)
            return await handler(request)
        finally:
            _CALLER.reset(token)

    return authenticate


async def _identify(
    request: web.Request, storage: Store, allow_anonymous: bool, open_access: bool
) -> Caller:
    header = request.headers.get("Authorization")
    if header is None:
        if allow_anonymous:
            return Caller(ANONYMOUS, anonymous=True)
        if open_access:
            return Caller(LOCAL, anonymous=False)
        raise ApiError(
            401,
            "auth_required",
            "this server needs an API key: send 'Authorization: Bearer KEY' "
            "(run `tracker login`, or set TRACKER_API_KEY)",
        )
    if open_access:
        # no key exists on this server, so a client's stale key cannot be checked: ignore it
        return Caller(LOCAL, anonymous=False)
    scheme, _, key = header.strip().partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not key:
        raise ApiError(
            401,
            "auth_invalid",
            "the Authorization header must be 'Bearer KEY'; got a header of another form",
        )
    entity = await storage.entity_for_key(key)
    if entity is None:
        raise ApiError(
            401,
            "auth_invalid",
            "this server does not know the API key; check the key "
            "(`tracker login`, TRACKER_API_KEY) or ask for one (`tracker server --api-key`)",
        )
    return Caller(entity, anonymous=False)

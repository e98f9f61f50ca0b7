"""Authentication and the one-entity rule, against real servers with and without keys."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from tracker._errors import UsageError
from tracker._server._keys import parse_api_key
from tracker._server._runner import EmbeddedServer, serve

pytestmark = pytest.mark.anyio


async def test_health_is_public(alice: Any) -> None:
    """GET /health needs no key even on a keyed server."""
    status, answer = await alice.as_key(None).call("GET", "/api/v1/health")
    assert (status, answer["status"]) == (200, "ok")


async def test_a_key_acts_as_its_entity(alice: Any) -> None:
    """The viewer of alice's key is alice; a null handshake entity becomes alice."""
    assert await alice.call("GET", "/api/v1/viewer") == (
        200,
        {"entity": "alice", "anonymous": False},
    )
    answer = await alice.start(entity=None)
    assert answer["entity"] == "alice"
    assert answer["url"].endswith("/alice/proj/runs/run1")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/v1/viewer"),
        ("GET", "/api/v1/projects"),
        ("GET", "/api/v1/runs/alice/proj"),
        ("GET", "/api/v1/runs/alice/proj/run1"),
        ("GET", "/api/v1/runs/alice/proj/run1/history"),
        ("POST", "/api/v1/runs/start"),
    ],
)
async def test_requests_without_a_key_need_one(alice: Any, method: str, path: str) -> None:
    """Reading is protected like writing: no key is 401 auth_required."""
    message = await alice.as_key(None).error(method, path, 401, "auth_required")
    assert "Bearer" in message


@pytest.mark.parametrize("header", ["Bearer wrong-key", "Bearer ", "Basic abc", "alice-secret-key"])
async def test_bad_keys_are_401_auth_invalid(alice: Any, header: str) -> None:
    """An unknown key, an empty one or another scheme is 401 auth_invalid."""
    await alice.as_key(None).error(
        "GET", "/api/v1/viewer", 401, "auth_invalid", headers={"Authorization": header}
    )


async def test_another_entitys_runs_are_forbidden(alice: Any) -> None:
    """bob can neither read, write nor start runs of alice: 403 forbidden."""
    await alice.start()
    bob = alice.as_key(alice.BOB_KEY)
    await bob.error("GET", "/api/v1/runs/alice/proj/run1", 403, "forbidden")
    await bob.error("GET", "/api/v1/runs/alice/proj", 403, "forbidden")
    await bob.error("GET", "/api/v1/projects", 403, "forbidden", params={"entity": "alice"})
    status, answer = await bob.post_batch("run1", bob.run_batch(0, rows=1), entity="alice")
    assert (status, answer["error"]["code"]) == (403, "forbidden")
    await bob.error(
        "POST", "/api/v1/runs/start", 403, "forbidden", json=bob.handshake(entity="alice")
    )
    await bob.error("PUT", "/api/v1/runs/alice/proj/run1/files/x", 403, "forbidden", data=b"x")
    await bob.error("GET", "/alice/proj/runs/run1", 403, "forbidden")
    status, answer = await bob.call("GET", "/api/v1/projects")
    assert (status, answer) == (200, {"projects": []})


async def test_anonymous_requests_act_as_anonymous_when_allowed(guest: Any) -> None:
    """With --allow-anonymous a keyless request is the entity anonymous; keys still count."""
    assert await guest.call("GET", "/api/v1/viewer") == (
        200,
        {"entity": "anonymous", "anonymous": True},
    )
    assert (await guest.start())["entity"] == "anonymous"
    await guest.error(
        "POST", "/api/v1/runs/start", 403, "forbidden", json=guest.handshake(entity="alice")
    )
    keyed = guest.as_key(guest.ALICE_KEY)
    assert (await keyed.call("GET", "/api/v1/viewer"))[1]["entity"] == "alice"
    await guest.as_key("wrong").error("GET", "/api/v1/viewer", 401, "auth_invalid")


async def test_anonymous_requests_are_refused_without_the_flag(alice: Any) -> None:
    """A keyed server without --allow-anonymous refuses keyless handshakes."""
    guest = alice.as_key(None)
    await guest.error("POST", "/api/v1/runs/start", 401, "auth_required", json=guest.handshake())


def test_non_loopback_bind_without_keys_is_refused(tmp_path: Path) -> None:
    """Binding 0.0.0.0 without API keys (and without --insecure) refuses to start."""
    db_url = f"sqlite:///{tmp_path / 'tracker.db'}"
    with pytest.raises(UsageError, match="--insecure"):
        asyncio.run(serve("0.0.0.0", 0, db_url, [], allow_anonymous=False, insecure=False))
    with pytest.raises(UsageError, match="--insecure"):
        asyncio.run(serve("0.0.0.0", 0, db_url, [], allow_anonymous=True, insecure=False))


@pytest.mark.parametrize(
    ("db_url", "needle"),
    [
        ("mysql://db/tracker", "mysql://db/tracker"),
        ("sqlite:///", "names no file"),
        ("sqlite:///no/such/dir/tracker.db", "does not exist"),
    ],
)
def test_bad_database_urls_are_usage_errors(db_url: str, needle: str) -> None:
    """--db values the server cannot open are refused with a message naming the problem."""
    with pytest.raises(UsageError, match=needle):
        EmbeddedServer(db_url).start()


@pytest.mark.parametrize(
    ("text", "parsed"),
    [("abc", ("local", "abc")), ("team:abc", ("team", "abc")), ("a:b:c", ("a", "b:c"))],
)
def test_api_keys_parse_as_entity_and_key(text: str, parsed: tuple[str, str]) -> None:
    """--api-key takes KEY (entity local) or ENTITY:KEY; the key may hold colons."""
    given = parse_api_key(text)
    assert (given.entity, given.key) == parsed


@pytest.mark.parametrize("text", ["", "alice:", " key", "a/b:key"])
def test_bad_api_keys_are_usage_errors(text: str) -> None:
    """An empty key, a key with spaces or a bad entity is refused, naming --api-key."""
    with pytest.raises(UsageError, match="--api-key"):
        parse_api_key(text)

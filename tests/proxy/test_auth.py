"""`--auth keystone` in the proxy, against a real Keystone: tokens in, projects and roles out.

Nodes and catalog are in-process (the memory catalog); Keystone is the session's real one.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from proxy.settings import AuthMode
from tests.conftest import FakeClock
from tests.keystone import ADMIN, ALICE, BOB, OPERATOR, Keystone
from tests.proxy.cluster import Cluster, cluster
from tests.proxy.keystone import keystone_settings, send
from tests.proxy.test_forward import recording
from tests.services import free_port

pytestmark = pytest.mark.keystone

UNAUTHORIZED = {
    "title": "Unauthorized",
    "description": "The request you have made requires authentication.",
}
MESSAGES = {"messages": [{"body": {"n": 1}, "ttl": 300}]}


@pytest.fixture
async def c(tmp_path: Path, clock: FakeClock, keystone_server: Keystone) -> AsyncIterator[Cluster]:
    async with cluster(tmp_path, clock, **keystone_settings(keystone_server)) as made:
        yield made


def validations() -> float:
    total = 0.0
    for result in ("valid", "refused", "error"):
        value = REGISTRY.get_sample_value(
            "marconi_proxy_token_validations_total", {"result": result}
        )
        total += value or 0.0
    return total


async def test_a_token_is_forwarded_as_its_project_and_roles_never_as_itself(
    tmp_path: Path, clock: FakeClock, keystone_server: Keystone
) -> None:
    seen: list[dict[str, str]] = []
    settings = keystone_settings(keystone_server)
    async with cluster(tmp_path, clock, wrap_node=recording(seen), **settings) as c:
        alice = keystone_server.token(ALICE)
        alpha = keystone_server.projects["alpha"]
        spoofed = {"X-Roles": "admin", "X-User-ID": "someone", "X-Identity-Status": "Confirmed"}
        status, _, _ = await send(c.proxy, "PUT", "/v2/queues/q", token=alice, headers=spoofed)
        assert status == 201
        forwarded = seen[-1]
        assert forwarded["X-Project-ID"] == alpha
        assert set(forwarded["X-Roles"].split(",")) == {"member", "reader"}
        assert "X-Auth-Token" not in forwarded and "X-User-ID" not in forwarded
        assert "X-Identity-Status" not in forwarded
        # Stored under the token's project, and placed in the catalog under it.
        storage = [p.deps.storage for p in c.partitions.values()]
        assert [await s.queues.exists(alpha, "q") for s in storage].count(True) == 1
        assert await c.catalog.placement(alpha, "q") is not None
        # Naming the token's own project is fine too.
        status, _, _ = await send(c.proxy, "GET", "/v2/queues/q/stats", token=alice, project=alpha)
        assert status == 200


async def test_missing_and_garbage_tokens_are_401(c: Cluster, keystone_server: Keystone) -> None:
    for token in (None, "", "gAAAAABgarbage-token", "x" * 4000):
        status, body, headers = await send(c.proxy, "GET", "/v2/queues", token=token)
        assert (status, body) == (401, UNAUTHORIZED), token
        assert headers["WWW-Authenticate"] == f'Keystone uri="{keystone_server.url}"'
        assert headers["Content-Type"].startswith("application/json")


async def test_another_project_in_the_header_is_refused(
    c: Cluster, keystone_server: Keystone
) -> None:
    alice = keystone_server.token(ALICE)
    for claimed in (keystone_server.projects["beta"], "beta", "", "tenant"):
        status, body, _ = await send(c.proxy, "PUT", "/v2/queues/q", token=alice, project=claimed)
        assert status == 403 and body["title"] == "Not authorized", claimed
        assert "project" in body["description"]
    beta = keystone_server.projects["beta"]
    assert await c.catalog.placement(beta, "q") is None


async def test_the_admin_api_needs_the_admin_role_in_the_token(
    c: Cluster, keystone_server: Keystone
) -> None:
    alice, operator = keystone_server.token(ALICE), keystone_server.token(OPERATOR)
    for headers in ({}, {"X-Roles": "admin"}):  # the header is the token's, not the client's
        status, body, _ = await send(
            c.proxy, "GET", "/admin/partitions", token=alice, headers=headers
        )
        assert (status, body["title"]) == (403, "Not authorized")
    status, body, _ = await send(c.proxy, "GET", "/admin/partitions", token=operator)
    assert status == 200 and [p["name"] for p in body["partitions"]] == ["p1", "p2"]
    status, _, _ = await send(
        c.proxy, "GET", "/admin/health", headers={"X-Roles": "admin"}, token=None
    )
    assert status == 401


async def test_tokens_scoped_to_no_project(c: Cluster, keystone_server: Keystone) -> None:
    """A system-scoped admin may use the admin API but names no project's queues; an unscoped
    token carries no role at all."""
    system = await asyncio.to_thread(keystone_server.login, ADMIN, "system")
    unscoped = await asyncio.to_thread(keystone_server.login, ALICE, "")
    assert (await send(c.proxy, "GET", "/admin/partitions", token=system))[0] == 200
    for token in (system, unscoped):
        status, body, _ = await send(c.proxy, "GET", "/v2/queues", token=token, project="x")
        assert status == 403 and "no project" in body["description"]
    assert (await send(c.proxy, "GET", "/admin/partitions", token=unscoped))[0] == 403


async def test_public_paths(c: Cluster) -> None:
    """The versions document, the proxy's probes and metrics need no token; everything else
    does, ping included (keystonemiddleware in front of Zaqar authenticates every path)."""
    async with c.proxy.get("/metrics") as resp:
        assert resp.status == 200
    async with c.proxy.get("/") as resp:
        assert resp.status == 300
    async with c.proxy.get("/readyz") as resp:
        assert resp.status == 200
    async with c.proxy.get("/healthz") as resp:
        assert resp.status == 204
    for path in ("/v2/ping", "/v2/health", "/v1/health", "/v2", "/admin/health"):
        assert (await send(c.proxy, "GET", path, token=None))[0] == 401, path


async def test_an_expired_token_is_refused_once_it_expires(
    c: Cluster, keystone_server: Keystone
) -> None:
    token, expires_at = await asyncio.to_thread(keystone_server.short_token, ALICE, 4.0)
    assert (await send(c.proxy, "PUT", "/v2/queues/short", token=token))[0] == 201
    assert (await send(c.proxy, "GET", "/v2/queues/short/stats", token=token))[0] == 200
    await asyncio.sleep(max(0.0, expires_at - time.time()) + 0.1)
    status, body, _ = await send(c.proxy, "GET", "/v2/queues/short/stats", token=token)
    assert (status, body) == (401, UNAUTHORIZED)


async def test_a_revoked_token_is_refused_within_the_cache_ttl(
    tmp_path: Path, clock: FakeClock, keystone_server: Keystone
) -> None:
    """keystonemiddleware's trade-off, bounded: a cached validation outlives a revocation by
    at most the cache TTL (here 1 s)."""
    settings = keystone_settings(keystone_server, token_cache_ttl=1.0)
    async with cluster(tmp_path, clock, **settings) as c:
        token = await asyncio.to_thread(keystone_server.login, BOB)
        assert (await send(c.proxy, "PUT", "/v2/queues/r", token=token))[0] == 201
        validated = time.monotonic()
        await asyncio.to_thread(keystone_server.revoke, token)
        if time.monotonic() - validated < 0.9:  # still within the TTL: served from the cache
            assert (await send(c.proxy, "GET", "/v2/queues/r/stats", token=token))[0] == 200
        await asyncio.sleep(max(0.0, validated + 1.05 - time.monotonic()))
        status, body, _ = await send(c.proxy, "GET", "/v2/queues/r/stats", token=token)
        assert (status, body) == (401, UNAUTHORIZED)


async def test_validations_are_cached_and_shared(c: Cluster, keystone_server: Keystone) -> None:
    token = await asyncio.to_thread(keystone_server.login, ALICE)
    before = validations()
    answers = await asyncio.gather(
        *(send(c.proxy, "GET", "/v2/queues", token=token) for _ in range(20))
    )
    assert [a[0] for a in answers] == [200] * 20
    assert (await send(c.proxy, "GET", "/v2/queues", token=token))[0] == 200
    assert validations() - before == 1  # twenty at once, then one more: one Keystone call
    for _ in range(3):
        assert (await send(c.proxy, "GET", "/v2/queues", token="gAAAAABbad"))[0] == 401
    assert validations() - before == 2  # a refusal is remembered too


async def test_tokens_validate_themselves_without_a_service_user(
    tmp_path: Path, clock: FakeClock, keystone_server: Keystone
) -> None:
    settings = keystone_settings(keystone_server, keystone_username="", keystone_password="")
    async with cluster(tmp_path, clock, **settings) as c:
        status, _, _ = await send(c.proxy, "PUT", "/v2/queues/s", token=keystone_server.token(BOB))
        assert status == 201
        assert await c.catalog.placement(keystone_server.projects["beta"], "s") is not None
        assert (await send(c.proxy, "PUT", "/v2/queues/s", token="gAAAAABbad"))[0] == 401


async def test_an_unreachable_keystone_is_503(tmp_path: Path, clock: FakeClock) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    settings = {"auth": AuthMode.KEYSTONE, "keystone_url": url, "keystone_timeout": 2.0}
    async with cluster(tmp_path, clock, **settings) as c:
        status, body, headers = await send(c.proxy, "GET", "/v2/queues", token="gAAAAABx")
        assert status == 503 and set(body) == {"title", "description"}
        assert headers["Retry-After"] == "5"
        assert "reached" in body["description"]

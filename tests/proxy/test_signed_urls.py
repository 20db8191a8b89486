"""Pre-signed URLs through a proxy under `--auth keystone`, against the session's real Keystone:
a valid signature stands in for a token, for exactly the signed project, paths and methods until
expiry, on the lean path and on aiohttp's; anything beyond it is 404 as Zaqar answers, with no
roles and no other project ever reaching a node."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import FakeClock
from tests.keystone import ALICE, BOB, Keystone
from tests.proxy.cluster import Cluster, cluster
from tests.proxy.keystone import keystone_settings, send
from tests.proxy.test_forward import recording
from wire import signed_urls

pytestmark = pytest.mark.keystone

SECRET = "cluster-signed-url-secret"
Q = "/v2/queues/shared"
# aiohttp's server takes a request with `Connection: close` (the lean path takes the rest).
PATHS = {"lean": {}, "aiohttp": {"Connection": "close"}}


@pytest.fixture
async def signed(
    tmp_path: Path, clock: FakeClock, keystone_server: Keystone
) -> AsyncIterator[tuple[Cluster, list[dict[str, str]]]]:
    seen: list[dict[str, str]] = []
    settings = keystone_settings(keystone_server, signed_url_key=SECRET)
    async with cluster(tmp_path, clock, wrap_node=recording(seen), **settings) as c:
        yield c, seen


def guest_headers(made: dict[str, Any], **changes: str) -> dict[str, str]:
    headers = {
        "X-Project-ID": made["project"],
        "URL-Signature": made["signature"],
        "URL-Expires": made["expires"],
        "URL-Methods": ",".join(made["methods"]),
        "URL-Paths": ",".join(made["paths"]),
    }
    return {**headers, **changes}


async def share(c: Cluster, token: str, document: Any) -> dict[str, Any]:
    status, body, _ = await send(c.proxy, "POST", f"{Q}/share", token=token, json=document)
    assert status == 200, body
    return dict(body)


@pytest.mark.parametrize("path", PATHS)
async def test_a_signature_stands_in_for_a_token(
    signed: tuple[Cluster, list[dict[str, str]]], keystone_server: Keystone, path: str
) -> None:
    c, seen = signed
    alice = keystone_server.token(ALICE)
    alpha = keystone_server.projects["alpha"]
    made = await share(c, alice, {"paths": ["messages"], "methods": ["GET", "POST"]})
    assert made["project"] == alpha
    guest = guest_headers(made, **PATHS[path])
    # Identity a guest might send to pass for more: dropped, as for token holders.
    spoofed = {"X-Roles": "admin", "X-User-ID": "root", "X-Identity-Status": "Confirmed"}
    post = {"messages": [{"body": {"n": 1}, "ttl": 300}]}
    status, body, _ = await send(
        c.proxy, "POST", f"{Q}/messages", token=None, json=post, headers={**guest, **spoofed}
    )
    assert status == 201, body
    forwarded = {k.lower(): v for k, v in seen[-1].items()}
    assert forwarded["x-project-id"] == alpha and forwarded["url-signature"] == made["signature"]
    assert not {"x-roles", "x-user-id", "x-identity-status", "x-auth-token"} & set(forwarded)
    status, body, _ = await send(
        c.proxy, "GET", f"{Q}/messages?echo=true", token=None, headers=guest
    )
    assert status == 200 and [m["body"] for m in body["messages"]] == [{"n": 1}]
    # The owner sees the message in its project.
    status, body, _ = await send(c.proxy, "GET", f"{Q}/stats", token=alice)
    assert status == 200 and body["messages"]["total"] == 1


@pytest.mark.parametrize("path", PATHS)
async def test_nothing_beyond_the_signature(
    signed: tuple[Cluster, list[dict[str, str]]], keystone_server: Keystone, path: str
) -> None:
    c, seen = signed
    alice, bob = keystone_server.token(ALICE), keystone_server.token(BOB)
    made = await share(c, alice, {"methods": ["GET"]})
    guest = guest_headers(made, **PATHS[path])
    before = len(seen)
    beyond = [
        ("POST", f"{Q}/messages", guest),  # a method not signed
        ("DELETE", Q, guest),
        ("GET", f"{Q}/stats", guest),  # a path not signed
        ("POST", f"{Q}/share", guest),
        ("GET", "/v2/queues/other/messages", guest),  # another queue
        ("GET", "/v2/queues", guest),
        ("GET", "/admin/partitions", guest),  # the admin API
        ("GET", f"{Q}/messages", {**guest, "X-Project-ID": keystone_server.projects["beta"]}),
        ("GET", f"{Q}/messages", {**guest, "URL-Signature": "f" * 64}),  # tampered
        ("GET", f"{Q}/messages", {**guest, "URL-Methods": "DELETE,GET"}),
        ("GET", f"{Q}/messages", {**guest, "URL-Expires": "2099-01-01T00:00:00"}),
    ]
    for method, target, headers in beyond:
        status, body, _ = await send(c.proxy, method, target, token=None, headers=headers)
        assert status == 404 and set(body) == {"title", "description"}, (method, target)
    # Another project named in place of the signed one.
    status, _, _ = await send(
        c.proxy, "GET", f"{Q}/messages", token=None, headers=guest, project="x"
    )
    assert status == 404
    # Without the project header at all.
    no_project = {k: v for k, v in guest.items() if k != "X-Project-ID"}
    status, _, _ = await send(c.proxy, "GET", f"{Q}/messages", token=None, headers=no_project)
    assert status == 404
    # A token does not widen a signature (as in Zaqar, the signature decides alone).
    status, _, _ = await send(c.proxy, "GET", f"{Q}/stats", token=bob, headers=guest)
    assert status == 404
    # Expired: signed as of two minutes ago, valid for one.
    then = signed_urls.utcnow() - timedelta(minutes=2)
    expired = signed_urls.sign(
        SECRET, made["paths"], made["project"], (then + timedelta(minutes=1)).isoformat(), now=then
    )
    headers = guest_headers(expired, **PATHS[path])
    status, _, _ = await send(c.proxy, "GET", f"{Q}/messages", token=None, headers=headers)
    assert status == 404
    assert len(seen) == before  # none of them reached a node
    # v1 and v1.1 always need a token, as in Zaqar.
    status, _, _ = await send(
        c.proxy, "GET", "/v1.1/queues/shared/messages", token=None, headers=guest
    )
    assert status == 401


async def test_without_a_secret_a_signature_lets_nothing_in(
    tmp_path: Path, clock: FakeClock, keystone_server: Keystone
) -> None:
    async with cluster(tmp_path, clock, **keystone_settings(keystone_server)) as c:
        alice = keystone_server.token(ALICE)
        status, body, _ = await send(c.proxy, "POST", f"{Q}/share", token=alice, json={})
        assert status == 400 and body["description"] == "The `key` can't be None"
        made = signed_urls.sign(SECRET, [f"{Q}/messages"], keystone_server.projects["alpha"])
        status, _, _ = await send(
            c.proxy, "GET", f"{Q}/messages", token=None, headers=guest_headers(made)
        )
        assert status == 404

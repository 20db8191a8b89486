"""No way into another project: a member of alpha, through every route of every API version,
never sees or changes beta's queue, messages, claims or subscriptions, whatever X-Project-ID it
sends.

The routes come from the node's own route tables (v1, v1.1, v2), checked against the proxy's
(`proxy.routing.QUEUE_ROUTES`), so a route added later is swept too.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from node.api import v1, v1_1, v2
from proxy.routing import QUEUE_ROUTES
from tests.conftest import FakeClock
from tests.keystone import ALICE, BOB, Keystone
from tests.proxy.cluster import cluster
from tests.proxy.conftest import CLIENT_ID
from tests.proxy.keystone import keystone_settings, send

pytestmark = pytest.mark.keystone

QUEUE = "bobs"
SECRETS = [{"secret": "bob-secret-1"}, {"secret": "bob-secret-2"}]
SUBSCRIBER = "http://example.test/bob-secret-hook"
PATCH_TYPE = "application/openstack-messaging-v2.0-json-patch"


def route_table(deps: Any) -> list[tuple[str, str, str]]:
    """(version, method, path) of every route the node serves."""
    tables = {"v2": v2.routes(deps), "v1.1": v1_1.routes(deps), "v1": v1.routes(deps)}
    return [
        (version, route.method, f"/{version}{route.path}")
        for version, routes in tables.items()
        for route in routes
    ]


def requests_for(
    version: str, method: str, path: str, ids: dict[str, str]
) -> list[tuple[str, dict[str, Any]]]:
    """The path filled in with beta's ids, and what to send (queries and bodies that would
    reach beta's data if the project were not the token's)."""
    filled = path.format(
        queue_name=QUEUE,
        message_id=ids["message"],
        claim_id=ids["claim"],
        subscription_id=ids["subscription"],
    )
    sent: list[tuple[str, dict[str, Any]]] = []
    if "/subscriptions" in filled:
        bodies = {
            "POST": {"subscriber": SUBSCRIBER},
            "PATCH": {"ttl": 600, "subscriber": "http://example.test/hijacked"},
            "PUT": {"confirmed": False},
        }
        sent.append((filled, {"json": bodies[method]} if method in bodies else {}))
        if method == "GET" and filled.endswith("/subscriptions"):
            sent.append((f"{filled}?limit=20&marker=0", {}))
    elif filled.endswith("/messages"):
        if method == "POST":
            posted = [{"ttl": 300, "body": {"stolen": True}}]
            sent.append((filled, {"json": posted if version == "v1" else {"messages": posted}}))
        else:
            sent.append((f"{filled}?ids={ids['message']},{ids['claimed']}", {}))
            sent.append((f"{filled}?echo=true&include_claimed=true", {}))
            if method == "DELETE" and version != "v1":
                sent.append((f"{filled}?pop=5", {}))
    elif "/messages/" in filled:
        sent += [(filled, {}), (f"{filled}?claim_id={ids['claim']}", {})]
        claimed = filled.replace(ids["message"], ids["claimed"])
        sent.append((f"{claimed}?claim_id={ids['claim']}", {}))
    elif filled.endswith("/claims"):
        sent.append((f"{filled}?limit=10", {"json": {"ttl": 300, "grace": 60}}))
    elif "/claims/" in filled:
        sent.append((filled, {"json": {"ttl": 600, "grace": 60}} if method == "PATCH" else {}))
    elif method == "PATCH":
        patch = [{"op": "add", "path": "/metadata/hijacked", "value": True}]
        sent.append((filled, {"data": json.dumps(patch), "headers": {"Content-Type": PATCH_TYPE}}))
    elif method in ("PUT", "POST"):
        body = {"resource_types": ["messages"]} if filled.endswith("/purge") else {"hijacked": 1}
        sent.append((filled, {"json": body}))
    else:
        sent.append((filled, {}))
    return sent


async def raw(
    client: TestClient, method: str, path: str, token: str, project: str | None, **kw: Any
) -> tuple[int, bytes]:
    headers = {"Client-ID": CLIENT_ID, "X-Auth-Token": token, **kw.pop("headers", {})}
    if project is not None:
        headers["X-Project-ID"] = project
    async with client.request(method, path, headers=headers, **kw) as resp:
        return resp.status, await resp.read()


async def beta_state(client: TestClient, bob: str, ids: dict[str, str]) -> dict[str, Any]:
    """Everything alice could have touched in beta, as bob sees it."""
    q = f"/v2/queues/{QUEUE}"
    state: dict[str, Any] = {}
    for name, path in {
        "queue": q,
        "stats": f"{q}/stats",
        "messages": f"{q}/messages?ids={ids['message']},{ids['claimed']}",
        "claim": f"{q}/claims/{ids['claim']}",
        "listing": "/v2/queues?detailed=true",
        "subscriptions": f"{q}/subscriptions",
    }.items():
        status, body, _ = await send(client, "GET", path, token=bob)
        state[name] = (status, body)
    for key in ("messages", "claim"):  # ages and remaining TTLs move on with the clock
        body = state[key][1]
        for message in body.get("messages", []) if isinstance(body, dict) else []:
            message.pop("age", None)
            message.pop("ttl", None)
        if key == "claim":
            body.pop("age", None)
    for subscription in state["subscriptions"][1]["subscriptions"]:
        subscription.pop("age")
    return state


async def test_a_member_never_reaches_another_projects_queue(
    tmp_path: Path, clock: FakeClock, keystone_server: Keystone
) -> None:
    async with cluster(tmp_path, clock, **keystone_settings(keystone_server)) as c:
        alice, bob = keystone_server.token(ALICE), keystone_server.token(BOB)
        beta = keystone_server.projects["beta"]
        q = f"/v2/queues/{QUEUE}"
        assert (await send(c.proxy, "PUT", q, token=bob, json={"owner": "bob"}))[0] == 201
        messages = {"messages": [{"ttl": 3600, "body": body} for body in SECRETS]}
        status, posted, _ = await send(c.proxy, "POST", f"{q}/messages", token=bob, json=messages)
        assert status == 201
        status, claimed, headers = await send(
            c.proxy, "POST", f"{q}/claims?limit=1", token=bob, json={"ttl": 3600, "grace": 60}
        )
        assert status == 201
        claimed_id = claimed["messages"][0]["id"]
        ids = {
            "claimed": claimed_id,
            "message": next(
                r.rsplit("/", 1)[1] for r in posted["resources"] if not r.endswith(claimed_id)
            ),
            "claim": headers["Location"].rsplit("/", 1)[1],
        }
        status, subscribed, _ = await send(
            c.proxy, "POST", f"{q}/subscriptions", token=bob, json={"subscriber": SUBSCRIBER}
        )
        assert status == 201
        ids["subscription"] = subscribed["subscription_id"]
        status, _, _ = await send(
            c.proxy,
            "PUT",
            f"{q}/subscriptions/{ids['subscription']}/confirm",
            token=bob,
            json={"confirmed": True},
        )
        assert status == 204
        before = await beta_state(c.proxy, bob, ids)
        assert before["stats"][1]["messages"]["claimed"] == 1
        assert before["subscriptions"][1]["subscriptions"][0]["confirmed"] is True
        secrets = [b"bob-secret", b"owner"]  # never in any answer to alice
        found = [i.encode() for i in ids.values()]  # in no success (errors echo what was sent)

        table = route_table(c.partitions["p1"].deps)
        templates = {re.sub(r"^/v[^/]+/queues/\{queue_name\}", "", p) for _, _, p in table}
        assert {s for s in QUEUE_ROUTES if "{rest" not in s} <= templates  # nothing unswept
        table.append(("v2", "GET", "/v2/queues/{queue_name}/anything/else"))
        swept = 0
        for version, method, template in table:
            for path, kw in requests_for(version, method, template, ids):
                # Naming beta in X-Project-ID: refused before anything is forwarded.
                status, body = await raw(c.proxy, method, path, alice, beta, **kw)
                assert status == 403, (method, path, status, body)
                # Without it, the request is alice's own project's: nothing of beta's shows.
                status, body = await raw(c.proxy, method, path, alice, None, **kw)
                assert status != 401, (method, path)
                leaks = secrets + (found if status < 300 else [])
                assert not [leak for leak in leaks if leak in body], (method, path, body)
                swept += 1
        assert swept > 60
        assert await beta_state(c.proxy, bob, ids) == before  # unchanged, to the claim
        storage = [p.deps.storage for p in c.partitions.values()]
        assert [await s.queues.exists(beta, QUEUE) for s in storage].count(True) == 1

"""`trust+http://` subscribers under `--auth keystone`, against the session's real Keystone: the
proxy makes the trust from the subscriber's token, a node's deliverer gets a token of that trust
as the trustee, and the receiver checks with Keystone that the token is good and speaks for the
subscriber's user and project."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from node.notify.deliverer import Deliverer
from node.notify.service import senders
from node.notify.settings import NotifySettings
from node.storage.base import Storage
from tests.conftest import FakeClock
from tests.keystone import ADMIN, ALICE, BOB, SERVICE, Keystone
from tests.node.notify.receivers import Receiver, eventually
from tests.proxy.cluster import Cluster, cluster
from tests.proxy.conftest import CLIENT_ID
from tests.proxy.keystone import keystone_settings, send

pytestmark = pytest.mark.keystone


@dataclass(kw_only=True)
class CheckingReceiver(Receiver):
    """Answers 204 to a notification whose `X-Auth-Token` Keystone says is valid, 401 else;
    keeps what Keystone said of each token."""

    keystone: Keystone
    seen: list[tuple[Any, dict[str, Any]]] = field(default_factory=list)  # body, token

    async def _handle(self, request: web.Request) -> web.Response:
        token = request.headers.get("X-Auth-Token", "")
        admin = self.keystone.token(ADMIN)
        status, document, _ = await asyncio.to_thread(
            self.keystone.call, "GET", "/auth/tokens", None, admin, token
        )
        if status != 200:
            return web.Response(status=401)
        self.seen.append((await request.json(), document["token"]))
        return web.Response(status=204)


def user_id(keystone: Keystone, name: str) -> str:
    admin = keystone.token(ADMIN)
    found = keystone.expect(200, "GET", f"/users?name={name}", token=admin)["users"]
    return str(found[0]["id"])


@pytest.fixture
async def c(tmp_path: Path, clock: FakeClock, keystone_server: Keystone) -> AsyncIterator[Cluster]:
    trustee = await asyncio.to_thread(user_id, keystone_server, SERVICE.name)
    settings = keystone_settings(keystone_server, trustee_user_id=trustee)
    async with cluster(tmp_path, clock, **settings) as made:
        yield made


@contextlib.asynccontextmanager
async def delivering(storages: list[Storage], keystone: Keystone) -> AsyncIterator[None]:
    """A deliverer on each partition that logs in to Keystone as the trustee."""
    settings = NotifySettings(
        poll_interval=0.02,
        keystone_url=keystone.url,
        trustee_username=SERVICE.name,
        trustee_password=SERVICE.password,
    )
    tasks = [
        asyncio.create_task(
            Deliverer(
                s.outbox, s.queues, senders(settings), settings, subscriptions=s.subscriptions
            ).run()
        )
        for s in storages
    ]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def test_a_trust_subscriber_gets_a_valid_token_of_the_subscribers_trust(
    c: Cluster, keystone_server: Keystone
) -> None:
    receiver = CheckingReceiver(keystone=keystone_server)
    await receiver.start()
    try:
        alice = keystone_server.token(ALICE)
        subscriber = f"trust+http://127.0.0.1:{receiver.port}/hook"
        document = {"subscriber": subscriber, "ttl": 600, "options": {"k": "v"}}
        path = "/v2/queues/orders/subscriptions"
        status, created, _ = await send(c.proxy, "POST", path, token=alice, json=document)
        assert status == 201, created
        sid = created["subscription_id"]
        status, got, _ = await send(c.proxy, "GET", f"{path}/{sid}", token=alice)
        assert status == 200 and got["subscriber"] == subscriber
        trust_id = got["options"]["trust_id"]
        assert got["options"]["k"] == "v"
        # The trust: Alice's, on her project, to the trustee, with impersonation.
        trust = keystone_server.expect(200, "GET", f"/OS-TRUST/trusts/{trust_id}", token=alice)
        assert trust["trust"]["impersonation"] is True
        assert trust["trust"]["trustee_user_id"] == c.settings.trustee_user_id
        assert trust["trust"]["project_id"] == keystone_server.projects["alpha"]

        messages = {"messages": [{"body": {"n": 1}, "ttl": 300}]}
        posts = "/v2/queues/orders/messages"
        status, _, _ = await send(c.proxy, "POST", posts, token=alice, json=messages)
        assert status == 201
        storages = [p.deps.storage for p in c.partitions.values()]
        async with delivering(storages, keystone_server):
            await eventually(lambda: len(receiver.seen) == 1, within=30)
        body, token = receiver.seen[0]
        assert body == {"ttl": 300, "body": {"n": 1}, "Message_Type": "Notification",
                        "queue_name": "orders"}  # fmt: skip
        assert token["OS-TRUST:trust"]["id"] == trust_id
        assert token["user"]["id"] == trust["trust"]["trustor_user_id"]  # impersonated: Alice
        assert token["project"]["id"] == keystone_server.projects["alpha"]
    finally:
        await receiver.stop()


async def test_naming_someone_elses_trust_is_refused(c: Cluster, keystone_server: Keystone) -> None:
    alice, bob = keystone_server.token(ALICE), keystone_server.token(BOB)
    path = "/v2/queues/orders/subscriptions"
    document = {"subscriber": "trust+http://127.0.0.1:1/a", "ttl": 600}
    status, created, _ = await send(c.proxy, "POST", path, token=alice, json=document)
    assert status == 201
    _, got, _ = await send(c.proxy, "GET", f"{path}/{created['subscription_id']}", token=alice)
    stolen = {**document, "subscriber": "trust+http://127.0.0.1:2/b",
              "options": {"trust_id": got["options"]["trust_id"]}}  # fmt: skip
    status, body, _ = await send(c.proxy, "POST", path, token=bob, json=stolen)
    assert status == 403, body
    status, body, _ = await send(c.proxy, "POST", path, token=alice, json=stolen)
    assert status == 201, body  # her own trust, named again: fine


@pytest.mark.parametrize("how", ["chunked", "expect"])
async def test_a_trust_subscription_sent_through_aiohttps_server_gets_its_trust(
    c: Cluster, keystone_server: Keystone, how: str
) -> None:
    """A chunked body, or `Expect: 100-continue`, takes the proxy's aiohttp path rather than
    its lean one: the subscription gets its trust there too."""
    alice = keystone_server.token(ALICE)
    path = "/v2/queues/orders/subscriptions"
    raw = json.dumps({"subscriber": "trust+http://127.0.0.1:1/hook", "ttl": 600}).encode()

    async def chunks() -> AsyncIterator[bytes]:
        yield raw[:10]
        yield raw[10:]

    headers = {"Client-ID": CLIENT_ID, "X-Auth-Token": alice, "Content-Type": "application/json"}
    if how == "chunked":
        sent = c.proxy.post(path, data=chunks(), headers=headers)
    else:
        sent = c.proxy.post(path, data=raw, headers=headers, expect100=True)
    async with sent as answer:
        assert answer.status == 201, await answer.text()
        created = await answer.json()
    status, got, _ = await send(c.proxy, "GET", f"{path}/{created['subscription_id']}", token=alice)
    assert status == 200
    trust_id = got["options"]["trust_id"]
    trust = keystone_server.expect(200, "GET", f"/OS-TRUST/trusts/{trust_id}", token=alice)
    assert trust["trust"]["trustee_user_id"] == c.settings.trustee_user_id
    assert trust["trust"]["project_id"] == keystone_server.projects["alpha"]

"""A post through the node's API notifies its queue's live subscriptions: the outbox row is
written with the messages, the node's own deliverer sends it to a real HTTP receiver."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from node.api.app import create_app
from node.api.deps import Deps
from node.encryption import MessageCipher
from node.notify.deliverer import Deliverer
from node.notify.service import senders
from node.notify.settings import NotifySettings
from node.storage import open_storage
from node.storage.base import Storage
from tests.conftest import FakeClock, storage_uri
from tests.node.notify.receivers import Receiver, eventually

NOTIFY = NotifySettings(poll_interval=0.02)
HEADERS = {"Client-ID": "3b8a7c52-52f1-4a3b-9e7f-1d2c3b4a5f60", "X-Project-ID": "p"}


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param("postgresql", marks=pytest.mark.postgresql),
        pytest.param("mongodb", marks=pytest.mark.mongodb),
    ]
)
async def node(
    request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock
) -> AsyncIterator[tuple[TestClient, Storage]]:
    storage = await open_storage(storage_uri(request.param, tmp_path, request), clock)
    deps = Deps(storage=storage, clock=clock)
    app = create_app(deps, notify=NotifySettings(poll_interval=0.02))
    async with TestClient(TestServer(app)) as client:
        yield client, storage


async def call(client: TestClient, method: str, path: str, body: Any = None) -> Any:
    async with client.request(method, path, json=body, headers=HEADERS) as answer:
        assert answer.status < 300, await answer.text()
        return await answer.json() if answer.status != 204 else None


async def test_a_post_is_notified_as_zaqar_sends_it(
    node: tuple[TestClient, Storage], receiver: Receiver
) -> None:
    client, _ = node
    await call(client, "POST", "/v2/queues/orders/subscriptions", {"subscriber": receiver.url()})
    messages = [{"body": {"order": 1}, "ttl": 300}, {"body": "two", "ttl": 120}]
    await call(client, "POST", "/v2/queues/orders/messages", {"messages": messages})
    await eventually(lambda: len(receiver.hits) == 2)
    assert [h.json() for h in receiver.hits] == [
        {"ttl": 300, "body": {"order": 1}, "Message_Type": "Notification", "queue_name": "orders"},
        {"ttl": 120, "body": "two", "Message_Type": "Notification", "queue_name": "orders"},
    ]


async def test_a_queue_without_subscriptions_owes_nothing(
    node: tuple[TestClient, Storage],
) -> None:
    client, storage = node
    await call(client, "POST", "/v2/queues/quiet/messages", {"messages": [{"body": 1}]})
    assert await storage.outbox.depth() == 0


async def test_expired_subscriptions_receive_nothing(
    node: tuple[TestClient, Storage], receiver: Receiver, clock: FakeClock
) -> None:
    client, storage = node
    short = {"subscriber": receiver.url("short"), "ttl": 60}
    await call(client, "POST", "/v2/queues/orders/subscriptions", short)
    clock.advance(61)
    await call(client, "POST", "/v2/queues/orders/subscriptions", {"subscriber": receiver.url()})
    await call(client, "POST", "/v2/queues/orders/messages", {"messages": [{"body": 1}]})
    await eventually(lambda: len(receiver.hits) == 1)
    await asyncio.sleep(0.2)
    assert [h.path for h in receiver.hits] == ["/hook"]
    assert await storage.outbox.depth() == 0


async def test_an_encrypted_queue_notifies_bodies_as_posted(
    tmp_path: Path, clock: FakeClock, receiver: Receiver
) -> None:
    """Bodies are stored as ciphertext, so the outbox holds ciphertext too: the subscriber gets
    what the client posted, as Zaqar notifies before it encrypts."""
    storage = await open_storage(f"sqlite:///{tmp_path}/p.db", clock)
    cipher = MessageCipher("notify-test-key")
    app = create_app(Deps(storage=storage, clock=clock, cipher=cipher), notify=NOTIFY)
    try:
        await _post_to_encrypted_queue(app, storage, receiver)
    finally:
        await storage.close()


async def _post_to_encrypted_queue(app: Any, storage: Storage, receiver: Receiver) -> None:
    async with TestClient(TestServer(app)) as client:
        metadata = {"_enable_encrypt_messages": True}
        async with client.put("/v2/queues/secret", json=metadata, headers=HEADERS) as answer:
            assert answer.status == 201
        await call(
            client, "POST", "/v2/queues/secret/subscriptions", {"subscriber": receiver.url()}
        )
        await call(
            client, "POST", "/v2/queues/secret/messages", {"messages": [{"body": {"pin": 42}}]}
        )
        await eventually(lambda: len(receiver.hits) == 1)
        stored = await storage.messages.list(
            "p",
            "secret",
            marker=None,
            limit=1,
            echo=True,
            include_claimed=True,
            include_delayed=True,
            client_id="c",
        )
    assert isinstance(stored[0].body, str) and "pin" not in stored[0].body  # at rest: ciphertext
    assert receiver.hits[0].json()["body"] == {"pin": 42}


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param("postgresql", marks=pytest.mark.postgresql),
        pytest.param("mongodb", marks=pytest.mark.mongodb),
    ]
)
async def quiet_node(
    request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock
) -> AsyncIterator[tuple[TestClient, Storage]]:
    """A node whose own deliverer does not run: tests start one when they choose."""
    storage = await open_storage(storage_uri(request.param, tmp_path, request), clock)
    app = create_app(Deps(storage=storage, clock=clock), notify=NotifySettings(enabled=False))
    async with TestClient(TestServer(app)) as client:
        yield client, storage


@contextlib.asynccontextmanager
async def delivering(storage: Storage, clock: FakeClock) -> AsyncIterator[Deliverer]:
    deliverer = Deliverer(
        storage.outbox,
        storage.queues,
        senders(NOTIFY),
        NOTIFY,
        clock,
        subscriptions=storage.subscriptions,
    )
    task = asyncio.create_task(deliverer.run())
    try:
        yield deliverer
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def subscribe(client: TestClient, subscriber: str, **document: Any) -> str:
    created = await call(
        client, "POST", "/v2/queues/orders/subscriptions", {"subscriber": subscriber, **document}
    )
    return str(created["subscription_id"])


async def test_a_subscription_deleted_after_the_post_receives_nothing(
    quiet_node: tuple[TestClient, Storage], receiver: Receiver, clock: FakeClock
) -> None:
    client, storage = quiet_node
    gone = await subscribe(client, receiver.url("gone"))
    kept = await subscribe(client, receiver.url("kept"))
    for n in range(3):
        await call(client, "POST", "/v2/queues/orders/messages", {"messages": [{"body": n}]})
    await call(client, "DELETE", f"/v2/queues/orders/subscriptions/{gone}")
    # What was owed to it went with it (in the delete's own write on SQLite and PostgreSQL).
    owed = await storage.outbox.export_outbox("p", "orders")
    assert {d.subscription_id for d in owed} == {kept} and len(owed) == 3
    async with delivering(storage, clock):
        await eventually(lambda: len(receiver.hits) == 3)
        await asyncio.sleep(0.3)  # anything for the deleted one would have arrived by now
    assert sorted(h.json()["body"] for h in receiver.hits) == [0, 1, 2]
    assert {h.path for h in receiver.hits} == {"/kept"}
    assert await storage.outbox.depth() == 0


async def test_a_subscription_expired_after_the_post_receives_nothing(
    quiet_node: tuple[TestClient, Storage], receiver: Receiver, clock: FakeClock
) -> None:
    client, storage = quiet_node
    await subscribe(client, receiver.url("short"), ttl=60)
    await subscribe(client, receiver.url("long"), ttl=3600)
    await call(client, "POST", "/v2/queues/orders/messages", {"messages": [{"body": 1}]})
    assert await storage.outbox.depth() == 2
    clock.advance(61)  # the short one expires with its delivery still owed
    async with delivering(storage, clock):
        await eventually(lambda: len(receiver.hits) == 1)
        await asyncio.sleep(0.3)
        assert await storage.outbox.depth() == 0  # settled unsent
    assert [h.path for h in receiver.hits] == ["/long"]


async def test_a_delivery_waiting_for_its_retry_is_dropped_with_its_subscription(
    quiet_node: tuple[TestClient, Storage], receiver: Receiver, clock: FakeClock
) -> None:
    client, storage = quiet_node
    policy = {"retries_with_no_delay": 0, "minimum_delay_retries": 1, "minimum_delay": 5,
              "maximum_delay": 5, "maximum_delay_retries": 0}  # fmt: skip
    sid = await subscribe(client, receiver.url(), options={"_retry_policy": policy})
    receiver.failing = [503]
    await call(client, "POST", "/v2/queues/orders/messages", {"messages": [{"body": 1}]})
    async with delivering(storage, clock):
        await eventually(lambda: receiver.failing == [])  # failed once: due again in 5 s
        await asyncio.sleep(0.2)
        await call(client, "DELETE", f"/v2/queues/orders/subscriptions/{sid}")
        clock.advance(6)
        await asyncio.sleep(0.5)
    assert receiver.hits == []
    assert await storage.outbox.depth() == 0


async def test_a_deleted_queue_owes_nothing_more(
    quiet_node: tuple[TestClient, Storage], receiver: Receiver
) -> None:
    client, storage = quiet_node
    await subscribe(client, receiver.url())
    await call(client, "POST", "/v2/queues/orders/messages", {"messages": [{"body": 1}]})
    await call(client, "DELETE", "/v2/queues/orders")
    assert await storage.outbox.depth() == 0

"""A post through the node's API notifies its queue's live subscriptions: the outbox row is
written with the messages, the node's own deliverer sends it to a real HTTP receiver."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from node.api.app import create_app
from node.api.deps import Deps
from node.encryption import MessageCipher
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

"""Confirmation required: a new webhook subscription is sent Zaqar's confirmation request, and
is notified of posts only once it confirmed itself."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from node.api.app import DEPS, create_app
from node.api.deps import Deps
from node.notify.settings import NotifySettings
from node.storage.sqlite import SqliteStorage
from tests.node.notify.receivers import Mailbox, Receiver, eventually

HEADERS = {"Client-ID": "3b8a7c52-52f1-4a3b-9e7f-1d2c3b4a5f60", "X-Project-ID": "p"}
EXPIRES = "2030-01-01T00:00:00"


def signer(paths: list[str], project: str, methods: list[str]) -> Mapping[str, Any]:
    """A stand-in for the signed-URL module's signing: an HMAC over what it is given."""
    text = f"{','.join(paths)}|{','.join(methods)}|{project}|{EXPIRES}"
    signature = hmac.new(b"test-key", text.encode(), hashlib.sha256).hexdigest()
    return {"paths": paths, "methods": methods, "project": project, "expires": EXPIRES,
            "signature": signature}  # fmt: skip


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[TestClient]:
    storage = await SqliteStorage.open(f"sqlite:///{tmp_path}/p.db")
    deps = Deps(storage=storage, confirmations=signer)
    settings = NotifySettings(poll_interval=0.02, require_confirmation=True)
    async with TestClient(TestServer(create_app(deps, notify=settings))) as c:
        yield c


async def call(client: TestClient, method: str, path: str, body: Any = None) -> Any:
    async with client.request(method, path, json=body, headers=HEADERS) as answer:
        assert answer.status < 300, await answer.text()
        return await answer.json() if answer.status != 204 else None


async def test_confirmation_request_then_notifications_once_confirmed(
    client: TestClient, receiver: Receiver
) -> None:
    created = await call(
        client, "POST", "/v2/queues/orders/subscriptions", {"subscriber": receiver.url()}
    )
    sid = created["subscription_id"]
    await eventually(lambda: len(receiver.hits) == 1)
    path = f"/v2/queues/orders/subscriptions/{sid}/confirm"
    assert receiver.hits[0].json() == {
        "Message_Type": "SubscriptionConfirmation",
        "Message": "You have chosen to subscribe to the queue: orders",
        "URL-Signature": signer([path], "p", ["PUT"])["signature"],
        "URL-Methods": "PUT",
        "URL-Paths": path,
        "X-Project-ID": "p",
        "URL-Expires": EXPIRES,
        "SubscribeBody": {"confirmed": True},
        "UnsubscribeBody": {"confirmed": False},
        "queue_name": "orders",
    }
    await call(client, "POST", "/v2/queues/orders/messages", {"messages": [{"body": 1}]})
    await asyncio.sleep(0.3)
    assert len(receiver.hits) == 1  # not confirmed: not notified
    await call(client, "PUT", path, {"confirmed": True})
    await call(client, "POST", "/v2/queues/orders/messages", {"messages": [{"body": 2}]})
    await eventually(lambda: len(receiver.hits) == 2)
    assert receiver.hits[1].json()["body"] == 2


async def test_a_mailto_subscriber_gets_zaqars_confirmation_email(
    tmp_path: Path, mailbox: Mailbox
) -> None:
    storage = await SqliteStorage.open(f"sqlite:///{tmp_path}/m.db")
    deps = Deps(storage=storage, confirmations=signer)
    settings = NotifySettings(
        poll_interval=0.02,
        require_confirmation=True,
        smtp_port=mailbox.port,
        external_confirmation_url="https://confirm.example.org/page",
    )
    async with TestClient(TestServer(create_app(deps, notify=settings))) as c:
        subscriber = "mailto:ops@example.org?subject=Orders"
        created = await call(
            c, "POST", "/v2/queues/orders/subscriptions", {"subscriber": subscriber}
        )
        sid = created["subscription_id"]
        await eventually(lambda: len(mailbox.mails) == 1)
        envelope_from, rcpt, mail = mailbox.mails[0]
        path = f"/v2/queues/orders/subscriptions/{sid}/confirm"
        signature = signer([path], "p", ["PUT"])["signature"]
        link = (
            f"https://confirm.example.org/page?Signature={signature}"
            f"&Methods=PUT&Paths={path}&Project=p&Expires={EXPIRES}&Url=&Queue=orders"
        )
        assert rcpt == ["ops@example.org"]
        assert (mail["To"], mail["From"], mail["Subject"]) == (
            "ops@example.org",
            "Zaqar Notifications <no-reply@openstack.org>",
            "Zaqar Notification - Subscription Confirmation",
        )
        assert str(mail.get_payload()).rstrip("\r\n") == (
            "You have chosen to subscribe to the queue: orders. This queue belongs to project: p."
            f" To confirm this subscription, click or visit this link below: {link}"
        )
        await call(c, "POST", "/v2/queues/orders/messages", {"messages": [{"body": 1}]})
        await asyncio.sleep(0.3)
        assert len(mailbox.mails) == 1  # not confirmed: not notified
        await call(c, "PUT", path, {"confirmed": True})
        await call(c, "POST", "/v2/queues/orders/messages", {"messages": [{"body": 2}]})
        await eventually(lambda: len(mailbox.mails) == 2)
        assert json.loads(str(mailbox.mails[1][2].get_payload()))["body"] == 2
        assert mailbox.mails[1][2]["Subject"] == "Orders"


async def test_no_confirmation_email_without_a_confirmation_page(
    client: TestClient, receiver: Receiver
) -> None:
    """As Zaqar: the email needs `external_confirmation_url`; without it none is sent (the
    outbox entry goes), and webhooks are asked as ever."""
    await call(client, "POST", "/v2/queues/q/subscriptions", {"subscriber": "mailto:a@b.org"})
    storage = client.server.app[DEPS].storage
    await asyncio.sleep(0.3)  # its confirmation request was taken and given up
    assert await storage.outbox.export_outbox("p", "q") == []
    await call(client, "POST", "/v2/queues/q/subscriptions", {"subscriber": receiver.url()})
    await eventually(lambda: len(receiver.hits) == 1)
    assert receiver.hits[0].json()["Message_Type"] == "SubscriptionConfirmation"

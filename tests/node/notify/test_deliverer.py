"""The deliverer over a SQLite outbox, sending to a real HTTP receiver and a real SMTP server."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from node.models import Subscription
from node.notify.deliverer import Deliverer
from node.notify.mailto import MailtoSender
from node.notify.metrics import ABANDONED, RETRIES
from node.notify.settings import NotifySettings
from node.notify.webhook import WebhookSender
from node.storage.outbox import Delivery
from node.storage.sqlite import SqliteStorage
from tests.node.notify.receivers import Mailbox, Receiver, eventually

P = "project-a"
Q = "orders"
SETTINGS = NotifySettings(poll_interval=0.02, lease=5.0)
SUB = "5f0000000000000000000001"  # the live subscription the test deliveries are owed to

Run = Callable[..., Awaitable[Deliverer]]


@pytest.fixture
async def storage(tmp_path: Path) -> AsyncIterator[SqliteStorage]:
    store = await SqliteStorage.open(f"sqlite:///{tmp_path}/p.db")
    await store.queues.create(P, Q, None)
    now = time.time()
    live = Subscription(SUB, Q, "http://127.0.0.1:1/any", 3600, now, now + 3600, {}, True)
    await store.subscriptions.import_subscriptions(P, Q, [live])
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture
async def run(storage: SqliteStorage) -> AsyncIterator[Run]:
    tasks: list[asyncio.Task[None]] = []

    async def start(settings: NotifySettings = SETTINGS, smtp_port: int = 1) -> Deliverer:
        senders = {
            "http": WebhookSender(settings.webhook_timeout),
            "mailto": MailtoSender("127.0.0.1", smtp_port, "zaqar@example.org", 5.0),
        }
        deliverer = Deliverer(
            storage.outbox,
            storage.queues,
            senders,  # type: ignore[arg-type]
            settings,
            subscriptions=storage.subscriptions,
        )
        tasks.append(asyncio.create_task(deliverer.run()))
        return deliverer

    yield start
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def delivery(
    subscriber: str, notices: list[dict[str, Any]], options: dict[str, Any] | None = None, **kw: Any
) -> Delivery:
    now = time.time()
    return Delivery(
        id=kw.pop("id", "post:sub"),
        project=P,
        queue=Q,
        subscription_id=kw.pop("subscription_id", SUB),
        subscriber=subscriber,
        options=options or {},
        confirmed=kw.pop("confirmed", True),
        notices=notices,
        posted=now,
        due=now,
        **kw,
    )


def notice(n: int) -> dict[str, Any]:
    return {"ttl": 300, "body": {"n": n}, "Message_Type": "Notification", "queue_name": Q}


async def test_webhook_gets_zaqars_body_and_headers_in_order(
    storage: SqliteStorage, receiver: Receiver, run: Run
) -> None:
    options = {"post_headers": {"X-Trace": "t1"}}
    await storage.outbox.enqueue([delivery(receiver.url(), [notice(1), notice(2)], options)])
    await run()
    await eventually(lambda: len(receiver.hits) == 2)
    assert [h.json() for h in receiver.hits] == [notice(1), notice(2)]
    assert receiver.hits[0].headers["Content-Type"] == "application/json"
    assert receiver.hits[0].headers["X-Trace"] == "t1"
    await asyncio.sleep(0.1)  # the delivery is settled after its last send
    assert await storage.outbox.depth() == 0


async def test_post_data_template_wraps_the_notice(
    storage: SqliteStorage, receiver: Receiver, run: Run
) -> None:
    options = {"post_data": '{"wrapped": "$zaqar_message$", "k": 1}'}
    await storage.outbox.enqueue([delivery(receiver.url(), [notice(7)], options)])
    await run()
    await eventually(lambda: len(receiver.hits) == 1)
    assert receiver.hits[0].json() == {"wrapped": notice(7), "k": 1}


async def test_mailto_sends_zaqars_email(
    storage: SqliteStorage, mailbox: Mailbox, run: Run
) -> None:
    options = {"from": "queues@example.org", "subject": "fallback"}
    subscriber = "mailto:ops@example.org?subject=Orders"
    await storage.outbox.enqueue([delivery(subscriber, [notice(3)], options)])
    await run(smtp_port=mailbox.port)
    await eventually(lambda: len(mailbox.mails) == 1)
    envelope_from, rcpt, mail = mailbox.mails[0]
    assert (envelope_from, rcpt) == ("zaqar@example.org", ["ops@example.org"])
    assert (mail["To"], mail["From"], mail["Subject"]) == (
        "ops@example.org",
        "queues@example.org",
        "Orders",
    )
    assert json.loads(str(mail.get_payload())) == notice(3)


async def test_failures_are_retried_per_the_subscription_policy(
    storage: SqliteStorage, receiver: Receiver, run: Run
) -> None:
    receiver.failing = [503, 500]
    policy = {"retries_with_no_delay": 1, "minimum_delay_retries": 1, "minimum_delay": 1,
              "maximum_delay": 1, "maximum_delay_retries": 0}  # fmt: skip
    retried = RETRIES.labels("http")._value.get()
    await storage.outbox.enqueue([delivery(receiver.url(), [notice(1)], {"_retry_policy": policy})])
    started = time.monotonic()
    await run()
    await eventually(lambda: len(receiver.hits) == 1)
    # Fails, retried at once, fails, retried after the minimum delay of 1 s: delivered.
    assert time.monotonic() - started >= 1.0
    assert RETRIES.labels("http")._value.get() - retried == 2
    assert receiver.hits[0].json() == notice(1)


async def test_spent_policy_gives_the_notice_up_and_the_next_one_still_goes(
    storage: SqliteStorage, receiver: Receiver, run: Run
) -> None:
    receiver.failing = [500, 502]
    policy = {"retries_with_no_delay": 1, "minimum_delay_retries": 0, "minimum_delay": 1,
              "maximum_delay": 1, "maximum_delay_retries": 0}  # fmt: skip
    given_up = ABANDONED.labels("retries")._value.get()
    await storage.outbox.enqueue(
        [delivery(receiver.url(), [notice(1), notice(2)], {"_retry_policy": policy})]
    )
    await run()
    await eventually(lambda: len(receiver.hits) == 1)
    assert receiver.hits[0].json() == notice(2)
    assert ABANDONED.labels("retries")._value.get() - given_up == 1


async def test_queue_policy_applies_when_the_subscription_has_none(
    storage: SqliteStorage, receiver: Receiver, run: Run
) -> None:
    await storage.queues.set_metadata(
        P, Q, {"_retry_policy": {"retries_with_no_delay": 0, "minimum_delay_retries": 0,
                                 "minimum_delay": 1, "maximum_delay": 1,
                                 "maximum_delay_retries": 0}}
    )  # fmt: skip
    receiver.failing = [500]
    await storage.outbox.enqueue([delivery(receiver.url(), [notice(1), notice(2)])])
    await run()
    await eventually(lambda: len(receiver.hits) == 1)
    await asyncio.sleep(0.2)
    assert [h.json() for h in receiver.hits] == [notice(2)]  # no retry at all: notice 1 is lost


async def test_a_4xx_answer_is_delivered_not_retried(
    storage: SqliteStorage, receiver: Receiver, run: Run
) -> None:
    receiver.failing = [404]
    await storage.outbox.enqueue([delivery(receiver.url(), [notice(1)])])
    await run()
    await eventually(lambda: receiver.failing == [])
    await asyncio.sleep(0.2)
    assert receiver.hits == []
    assert await storage.outbox.depth() == 0


async def test_unconfirmed_subscriptions_get_nothing_when_confirmation_is_required(
    storage: SqliteStorage, receiver: Receiver, run: Run
) -> None:
    await storage.outbox.enqueue(
        [
            delivery(receiver.url("no"), [notice(1)], id="p:1", confirmed=False),
            delivery(receiver.url("yes"), [notice(2)], id="p:2", confirmed=True),
        ]
    )
    settings = NotifySettings(poll_interval=0.02, require_confirmation=True)
    await run(settings)
    await eventually(lambda: len(receiver.hits) == 1)
    await asyncio.sleep(0.2)
    assert [h.path for h in receiver.hits] == ["/yes"]
    assert await storage.outbox.depth() == 0


async def test_a_dead_deliverers_lease_is_taken_over(
    storage: SqliteStorage, receiver: Receiver, run: Run
) -> None:
    await storage.outbox.enqueue([delivery(receiver.url(), [notice(1)])])
    # A deliverer took it and died before sending: its lease (3 s) must expire first. (The
    # lease is long enough that a busy machine starting the deliverer does not outlast it.)
    assert len(await storage.outbox.lease("dead", limit=10, lasts=3.0)) == 1
    await run()
    await asyncio.sleep(0.5)
    assert receiver.hits == []
    await eventually(lambda: len(receiver.hits) == 1, within=10)


async def test_a_delivery_whose_subscription_is_gone_is_settled_unsent(
    storage: SqliteStorage, receiver: Receiver, run: Run
) -> None:
    unsubscribed = ABANDONED.labels("unsubscribed")._value.get()
    await storage.outbox.enqueue(
        [
            delivery(receiver.url("gone"), [notice(1)], id="p:gone", subscription_id="deleted"),
            delivery(receiver.url("live"), [notice(2)], id="p:live"),
        ]
    )
    await run()
    await eventually(lambda: len(receiver.hits) == 1)
    await eventually(lambda: ABANDONED.labels("unsubscribed")._value.get() - unsubscribed == 1)
    await asyncio.sleep(0.2)
    assert [h.path for h in receiver.hits] == ["/live"]
    assert await storage.outbox.depth() == 0

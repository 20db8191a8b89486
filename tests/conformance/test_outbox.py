"""The outbox seam (node/storage/outbox.py), on every driver that has one."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from node.models import Fence, NewMessage
from node.storage import open_storage
from node.storage.outbox import Delivery
from tests.conftest import FakeClock, storage_uri

P = "project-a"
Q = "orders"


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param("postgresql", marks=pytest.mark.postgresql),
        pytest.param("mongodb", marks=pytest.mark.mongodb),
    ]
)
async def storage(
    request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock
) -> AsyncIterator[Any]:
    uri = storage_uri(request.param, tmp_path, request)
    store = await open_storage(uri, clock)
    store.test_uri = uri  # for a test that opens the same partition again, as another node
    try:
        yield store
    finally:
        await store.close()


def delivery(n: int, due: float, queue: str = Q) -> Delivery:
    return Delivery(
        id=f"post{n:04d}:sub",
        project=P,
        queue=queue,
        subscription_id="sub",
        subscriber="http://127.0.0.1:1/hook",
        options={"post_headers": {"X-A": "b"}},
        confirmed=True,
        notices=[{"body": n, "ttl": 60}],
        posted=due,
        due=due,
    )


async def test_one_holder_at_a_time_and_an_expired_lease_is_taken_over(
    storage: Any, clock: FakeClock
) -> None:
    outbox = storage.outbox
    await outbox.enqueue([delivery(n, clock.now) for n in range(3)])
    first = await outbox.lease("a", limit=2, lasts=30)
    assert [d.notices for d in first] == [[{"body": 0, "ttl": 60}], [{"body": 1, "ttl": 60}]]
    assert first[0].options == {"post_headers": {"X-A": "b"}}
    second = await outbox.lease("b", limit=10, lasts=30)
    assert [d.id for d in second] == ["post0002:sub"]  # the rest is held by "a"
    assert await outbox.lease("b", limit=10, lasts=30) == []
    clock.advance(31)  # "a" died: its leases expire
    taken = await outbox.lease("b", limit=10, lasts=30)
    assert {d.id for d in taken} == {d.id for d in first} | {"post0002:sub"}
    assert await outbox.done("a", [d.id for d in first]) == 0  # no longer a's to settle
    assert await outbox.done("b", [d.id for d in taken]) == 3
    assert await outbox.depth() == 0


async def test_retry_keeps_progress_and_waits_until_due(storage: Any, clock: FakeClock) -> None:
    outbox = storage.outbox
    await outbox.enqueue([delivery(1, clock.now)])
    (held,) = await outbox.lease("a", limit=1, lasts=30)
    assert await outbox.retry("a", held.id, due=clock.now + 5, failures=2, sent=1)
    assert await outbox.lease("a", limit=1, lasts=30) == []
    clock.advance(5)
    (again,) = await outbox.lease("b", limit=1, lasts=30)
    assert (again.failures, again.sent) == (2, 1)
    assert not await outbox.retry("a", held.id, due=clock.now, failures=0, sent=0)


async def test_a_fenced_queue_is_left_alone_and_moves_whole(storage: Any, clock: FakeClock) -> None:
    outbox = storage.outbox
    await storage.queues.create(P, Q, None)
    await outbox.enqueue([delivery(1, clock.now), delivery(2, clock.now, queue="other")])
    await storage.transfer.freeze(P, Q, Fence.FROZEN)
    assert [d.queue for d in await outbox.lease("a", limit=10, lasts=30)] == ["other"]
    exported = await outbox.export_outbox(P, Q)
    assert [d.id for d in exported] == ["post0001:sub"]
    assert await outbox.import_outbox(P, Q, exported) == 0  # already here: idempotent
    assert await outbox.drop_outbox(P, Q) == 1
    assert await outbox.import_outbox(P, Q, exported) == 1
    await storage.transfer.unfreeze(P, Q)
    assert [d.id for d in await outbox.lease("a", limit=10, lasts=30)] == ["post0001:sub"]


async def test_a_post_owes_each_live_subscription_its_notices(
    storage: Any, clock: FakeClock
) -> None:
    await storage.queues.create(P, Q, None)
    await storage.queues.create(P, "quiet", None)
    hook = await storage.subscriptions.create(P, Q, "http://127.0.0.1:1/a", 600, {"k": "v"})
    await storage.subscriptions.create(P, Q, "mailto:ops@example.org", 60, {})
    clock.advance(61)  # the mailto subscription expired
    await storage.messages.post(P, Q, [NewMessage({"n": 1}, 300), NewMessage("two", 120)], "c")
    await storage.messages.post(P, "quiet", [NewMessage(3, 300)], "c")
    owed = await storage.outbox.lease("a", limit=10, lasts=30)
    assert len(owed) == 1
    (d,) = owed
    assert (d.project, d.queue, d.subscription_id, d.subscriber) == (
        P,
        Q,
        hook,
        "http://127.0.0.1:1/a",
    )
    assert (d.options, d.confirmed, d.posted, d.sent, d.failures) == (
        {"k": "v"},
        False,
        clock.now,
        0,
        0,
    )
    assert d.notices == [
        {"ttl": 300, "body": {"n": 1}, "Message_Type": "Notification", "queue_name": Q},
        {"ttl": 120, "body": "two", "Message_Type": "Notification", "queue_name": Q},
    ]
    assert await storage.outbox.depth() == 1


async def test_concurrent_deliverers_never_take_one_delivery_twice(
    storage: Any, clock: FakeClock
) -> None:
    """Four nodes of one partition (each its own connections) lease at once, over and over:
    each delivery is taken by exactly one of them (FerretDB applies an update as a read and a
    write, so a conditional update alone would let two win)."""
    nodes = [storage] + [await open_storage(storage.test_uri, clock) for _ in range(3)]
    try:
        await storage.outbox.enqueue([delivery(n, clock.now) for n in range(120)])
        taken: list[str] = []

        async def take(node: Any, owner: str) -> None:
            while got := await node.outbox.lease(owner, limit=5, lasts=30):
                taken.extend(d.id for d in got)

        await asyncio.gather(
            *(take(node, f"n{i}w{w}") for i, node in enumerate(nodes) for w in range(2))
        )
        assert sorted(taken) == sorted(f"post{n:04d}:sub" for n in range(120))
    finally:
        for node in nodes[1:]:
            await node.close()

"""The subscription store's conformance suite, run on every driver (SQLite, MongoDB over
FerretDB, PostgreSQL)."""

from __future__ import annotations

import dataclasses

import pytest

from node.errors import (
    QueueFrozen,
    SubscriptionAlreadyExists,
    SubscriptionDoesNotExist,
    TransferConflict,
)
from node.models import Fence, is_id
from node.storage.base import Storage
from tests.conftest import FakeClock

P = "project-a"
Q = "orders"
HOOK = "http://example.test/hook"


async def make(storage: Storage, subscriber: str = HOOK, ttl: int = 600, **options: object) -> str:
    sid = await storage.subscriptions.create(P, Q, subscriber, ttl, dict(options))
    assert sid is not None
    return sid


async def ids(storage: Storage, project: str = P, queue: str = Q) -> list[str]:
    return [s.id for s in await storage.subscriptions.live(project, queue)]


async def test_create_and_get(storage: Storage, clock: FakeClock) -> None:
    sid = await make(storage, ttl=600, a=1, _retry_policy={"minimum_delay": 5})
    assert is_id(sid)
    got = await storage.subscriptions.get(P, Q, sid)
    assert got.id == sid
    assert (got.source, got.subscriber, got.ttl, got.confirmed) == (Q, HOOK, 600, False)
    assert got.options == {"a": 1, "_retry_policy": {"minimum_delay": 5}}
    assert (got.created, got.expires) == (clock.now, clock.now + 600)
    clock.advance(42)
    assert (await storage.subscriptions.get(P, Q, sid)).age(clock.now) == 42


async def test_get_missing_malformed_or_elsewhere(storage: Storage) -> None:
    sid = await make(storage)
    for project, queue, wanted in [
        (P, Q, "0" * 24),
        (P, Q, "fake"),
        (P, "other", sid),
        ("project-b", Q, sid),
    ]:
        with pytest.raises(SubscriptionDoesNotExist):
            await storage.subscriptions.get(project, queue, wanted)


async def test_unique_by_project_source_and_subscriber(storage: Storage) -> None:
    sid = await make(storage)
    assert await storage.subscriptions.create(P, Q, HOOK, 300, {}) is None
    found = await storage.subscriptions.find(P, Q, HOOK)
    assert found is not None and found.id == sid and found.ttl == 600
    assert await storage.subscriptions.find(P, Q, "http://example.test/none") is None
    assert await storage.subscriptions.create(P, "other", HOOK, 600, {}) is not None
    assert await storage.subscriptions.create("project-b", Q, HOOK, 600, {}) is not None
    assert await ids(storage) == [sid]


async def test_list_in_id_order_with_marker_and_limit(storage: Storage) -> None:
    made = [await make(storage, f"http://example.test/{i}") for i in range(7)]
    await storage.subscriptions.create(P, "other", HOOK, 600, {})
    assert made == sorted(made)
    page = await storage.subscriptions.list(P, Q, marker=None, limit=3)
    assert [s.id for s in page] == made[:3]
    page = await storage.subscriptions.list(P, Q, marker=made[2], limit=3)
    assert [s.id for s in page] == made[3:6]
    page = await storage.subscriptions.list(P, Q, marker=made[5], limit=3)
    assert [s.id for s in page] == made[6:]
    assert await storage.subscriptions.list(P, Q, marker=made[6], limit=3) == []
    # A marker that is not an id compares as text, as ids do (lowercase hex).
    assert [s.id for s in await storage.subscriptions.list(P, Q, marker="0", limit=10)] == made
    assert await storage.subscriptions.list(P, Q, marker="g", limit=10) == []


async def test_expiry(storage: Storage, clock: FakeClock) -> None:
    short = await make(storage, "http://example.test/short", ttl=60)
    long = await make(storage, "http://example.test/long", ttl=120)
    assert await storage.subscriptions.subscribed(P, Q)
    clock.advance(60)
    with pytest.raises(SubscriptionDoesNotExist):
        await storage.subscriptions.get(P, Q, short)
    assert await ids(storage) == [long]
    assert [s.id for s in await storage.subscriptions.list(P, Q, marker=None, limit=10)] == [long]
    assert await storage.subscriptions.find(P, Q, "http://example.test/short") is None
    with pytest.raises(SubscriptionDoesNotExist):
        await storage.subscriptions.update(P, Q, short, ttl=600)
    with pytest.raises(SubscriptionDoesNotExist):
        await storage.subscriptions.confirm(P, Q, short, True)
    # The expired one no longer holds its subscriber.
    again = await make(storage, "http://example.test/short")
    assert again != short
    clock.advance(60)
    assert await ids(storage) == [again]
    clock.advance(600)
    assert not await storage.subscriptions.subscribed(P, Q)
    assert await storage.subscriptions.live(P, Q) == []


async def test_update(storage: Storage, clock: FakeClock) -> None:
    sid = await make(storage, ttl=600, a=1)
    clock.advance(500)
    await storage.subscriptions.update(P, Q, sid, ttl=300)
    got = await storage.subscriptions.get(P, Q, sid)
    assert (got.ttl, got.expires, got.created, got.options) == (
        300,
        clock.now + 300,
        got.created,
        {"a": 1},
    )
    await storage.subscriptions.update(
        P, Q, sid, subscriber="mailto:a@example.test", options={"b": 2}
    )
    got = await storage.subscriptions.get(P, Q, sid)
    assert (got.subscriber, got.options, got.ttl) == ("mailto:a@example.test", {"b": 2}, 300)
    assert await storage.subscriptions.find(P, Q, HOOK) is None
    other = await make(storage, HOOK)
    with pytest.raises(SubscriptionAlreadyExists):
        await storage.subscriptions.update(P, Q, other, subscriber="mailto:a@example.test")
    assert (await storage.subscriptions.get(P, Q, other)).subscriber == HOOK
    with pytest.raises(SubscriptionDoesNotExist):
        await storage.subscriptions.update(P, Q, "0" * 24, ttl=300)
    with pytest.raises(SubscriptionDoesNotExist):
        await storage.subscriptions.update(P, "other", sid, ttl=300)


async def test_update_takes_an_expired_subscribers_place(
    storage: Storage, clock: FakeClock
) -> None:
    await make(storage, "http://example.test/old", ttl=60)
    sid = await make(storage, HOOK, ttl=600)
    clock.advance(60)
    await storage.subscriptions.update(P, Q, sid, subscriber="http://example.test/old")
    assert (await storage.subscriptions.get(P, Q, sid)).subscriber == "http://example.test/old"


async def test_confirm(storage: Storage) -> None:
    sid = await make(storage)
    await storage.subscriptions.confirm(P, Q, sid, True)
    assert (await storage.subscriptions.get(P, Q, sid)).confirmed is True
    await storage.subscriptions.confirm(P, Q, sid, False)
    assert (await storage.subscriptions.get(P, Q, sid)).confirmed is False
    with pytest.raises(SubscriptionDoesNotExist):
        await storage.subscriptions.confirm(P, Q, "0" * 24, True)
    with pytest.raises(SubscriptionDoesNotExist):
        await storage.subscriptions.confirm("project-b", Q, sid, True)


async def test_delete_and_purge(storage: Storage) -> None:
    first, second = await make(storage, "http://example.test/1"), await make(storage)
    kept = await storage.subscriptions.create(P, "other", HOOK, 600, {})
    await storage.subscriptions.delete(P, "other", first)  # another source's id: nothing
    await storage.subscriptions.delete(P, Q, first)
    await storage.subscriptions.delete(P, Q, first)  # missing: not an error
    await storage.subscriptions.delete(P, Q, "fake")
    assert await ids(storage) == [second]
    await make(storage, "http://example.test/3")
    assert await storage.subscriptions.purge(P, Q) == 2
    assert await ids(storage) == []
    assert not await storage.subscriptions.subscribed(P, Q)
    assert await ids(storage, queue="other") == [kept]


async def test_queue_delete_deletes_its_subscriptions(storage: Storage) -> None:
    await storage.queues.create(P, Q, None)
    await make(storage)
    await storage.queues.create(P, "other", None)
    kept = await storage.subscriptions.create(P, "other", HOOK, 600, {})
    await storage.queues.purge(P, Q)  # messages only
    assert len(await ids(storage)) == 1
    await storage.queues.delete(P, Q)
    assert await ids(storage) == []
    assert await ids(storage, queue="other") == [kept]


async def test_collect_garbage_removes_expired(storage: Storage, clock: FakeClock) -> None:
    await make(storage, ttl=60)
    kept = await make(storage, "http://example.test/kept", ttl=600)
    clock.advance(61)
    assert await storage.collect_garbage() >= 1
    assert await ids(storage) == [kept]
    assert await storage.subscriptions.create(P, Q, HOOK, 60, {}) is not None


async def test_fenced_source_refuses_writes(storage: Storage) -> None:
    await storage.queues.create(P, Q, None)
    sid = await make(storage)
    await storage.transfer.freeze(P, Q, Fence.FROZEN)
    for write in (
        storage.subscriptions.create(P, Q, "http://example.test/new", 600, {}),
        storage.subscriptions.update(P, Q, sid, ttl=300),
        storage.subscriptions.confirm(P, Q, sid, True),
        storage.subscriptions.delete(P, Q, sid),
        storage.subscriptions.purge(P, Q),
    ):
        with pytest.raises(QueueFrozen):
            await write
    got = await storage.subscriptions.get(P, Q, sid)  # reads go on while frozen
    assert (got.ttl, got.confirmed) == (600, False)
    assert await ids(storage) == [sid]
    await storage.transfer.freeze(P, Q, Fence.MOVED)
    with pytest.raises(QueueFrozen):
        await storage.subscriptions.get(P, Q, sid)
    with pytest.raises(QueueFrozen):
        await storage.subscriptions.list(P, Q, marker=None, limit=10)
    # The deliverer's and the migration's reads are never refused.
    assert await ids(storage) == [sid]
    assert await storage.subscriptions.subscribed(P, Q)
    assert [s.id for s in await storage.subscriptions.export_subscriptions(P, Q)] == [sid]
    await storage.transfer.unfreeze(P, Q)
    await storage.subscriptions.delete(P, Q, sid)
    assert await ids(storage) == []


async def test_export_import_round_trip(storage: Storage, clock: FakeClock) -> None:
    first = await make(storage, "http://example.test/1", ttl=600, a=1)
    second = await make(storage, "mailto:b@example.test", ttl=900)
    await storage.subscriptions.confirm(P, Q, second, True)
    exported = await storage.subscriptions.export_subscriptions(P, Q)
    assert [s.id for s in exported] == [first, second]
    assert await storage.subscriptions.import_subscriptions(P, Q, exported) == 0  # same: no-op
    assert await storage.subscriptions.delete_subscriptions(P, Q, [first, second, "fake"]) == 2
    assert await ids(storage) == []
    clock.advance(100)  # an import keeps the exported expiry and creation time, not now's
    assert await storage.subscriptions.import_subscriptions(P, Q, exported) == 2
    assert await storage.subscriptions.export_subscriptions(P, Q) == exported
    assert await storage.subscriptions.import_subscriptions(P, Q, exported) == 0
    # A changed copy is updated in place.
    changed = dataclasses.replace(exported[0], ttl=60, expires=clock.now + 60, confirmed=True)
    assert await storage.subscriptions.import_subscriptions(P, Q, [changed]) == 1
    assert await storage.subscriptions.get(P, Q, first) == changed


async def test_import_replaces_the_same_subscriber_under_another_id(storage: Storage) -> None:
    theirs = await make(storage)
    exported = await storage.subscriptions.export_subscriptions(P, Q)
    await storage.subscriptions.delete_subscriptions(P, Q, [theirs])
    ours = await make(storage)  # made here meanwhile, the same subscriber
    assert ours != theirs
    assert await storage.subscriptions.import_subscriptions(P, Q, exported) == 1
    assert await ids(storage) == [theirs]


async def test_import_conflicts_with_another_sources_id(storage: Storage) -> None:
    sid = await storage.subscriptions.create(P, "other", HOOK, 600, {})
    assert sid is not None
    (exported,) = await storage.subscriptions.export_subscriptions(P, "other")
    moved = dataclasses.replace(exported, source=Q)
    with pytest.raises(TransferConflict):
        await storage.subscriptions.import_subscriptions(P, Q, [moved])
    assert await ids(storage) == []

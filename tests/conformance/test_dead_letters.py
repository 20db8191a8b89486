"""Claim counts and dead letters, on every driver (SQLite, MongoDB over FerretDB, PostgreSQL):
each claim counts one more for each message it takes; `ClaimStore.dead_letter` moves the
messages claimed `max_claims` times to the dead-letter queue of the same partition, once; the
count travels with a migration."""

from __future__ import annotations

import pytest

from node.errors import QueueFrozen
from node.models import DeadLetter, Fence, NewMessage
from node.storage.base import Storage
from tests.conftest import FakeClock

P = "project-a"
Q = "orders"
DLQ = "orders-dead"
CLIENT = "3b8a7c52-52f1-4a3b-9e7f-1d2c3b4a5f60"


async def post(s: Storage, *bodies: object, queue: str = Q) -> list[str]:
    await s.queues.create(P, queue, None)
    return await s.messages.post(P, queue, [NewMessage(body=b, ttl=300) for b in bodies], CLIENT)


async def claim_and_release(s: Storage, limit: int = 10) -> list[object]:
    claim, held = await s.claims.create(P, Q, ttl=60, grace=60, limit=limit)
    await s.claims.delete(P, Q, claim.id)
    return [m.body for m in held]


async def counts(s: Storage, queue: str = Q) -> dict[object, int]:
    found = await s.transfer.export_messages(P, queue, after_marker=0, limit=100)
    return {m.body: m.claim_count for m in found}


async def test_each_claim_counts_once_per_message(storage: Storage, clock: FakeClock) -> None:
    await post(storage, "a", "b", "c")
    assert await counts(storage) == {"a": 0, "b": 0, "c": 0}
    assert await claim_and_release(storage, limit=2) == ["a", "b"]
    claim, held = await storage.claims.create(P, Q, ttl=60, grace=60, limit=2)
    assert [m.body for m in held] == ["a", "b"]
    assert [m.claim_count for m in held] == [2, 2]
    await storage.claims.update(P, Q, claim.id, ttl=120, grace=60)  # a renewal is no new claim
    assert await counts(storage) == {"a": 2, "b": 2, "c": 0}
    clock.advance(121)  # the claim expired: claiming again counts again
    assert await claim_and_release(storage) == ["a", "b", "c"]
    assert await counts(storage) == {"a": 3, "b": 3, "c": 1}


async def test_messages_claimed_enough_move_to_the_dead_letter_queue(
    storage: Storage, clock: FakeClock
) -> None:
    await post(storage, "x", queue=DLQ)
    ids = await post(storage, "a", "b", "c")
    policy = DeadLetter(DLQ, max_claims=2)
    for _ in range(2):
        assert await storage.claims.dead_letter(P, Q, policy, limit=10) == 0
        assert await claim_and_release(storage, limit=2) == ["a", "b"]
    # "a" and "b" were claimed twice: the third claim finds them in the dead-letter queue.
    assert await storage.claims.dead_letter(P, Q, policy, limit=10) == 2
    assert await storage.claims.dead_letter(P, Q, policy, limit=10) == 0  # moved once
    claim, held = await storage.claims.create(P, Q, ttl=60, grace=60, limit=10)
    assert [m.body for m in held] == ["c"]
    moved = await storage.transfer.export_messages(P, DLQ, after_marker=0, limit=10)
    assert [(m.body, m.marker, m.claim_count) for m in moved] == [
        ("x", 1, 0),
        ("a", 2, 2),
        ("b", 3, 2),
    ]
    assert [m.id for m in moved[1:]] == ids[:2]  # the same messages, not copies
    assert all(m.claim_id is None for m in moved)
    assert (await storage.messages.get(P, DLQ, ids[0])).body == "a"
    assert await storage.messages.bulk_get(P, Q, ids[:2]) == []
    stats = await storage.queues.stats(P, Q)
    assert (stats.free, stats.claimed) == (0, 1)
    # The dead-letter queue's own posts continue after the moved markers.
    assert (
        await storage.messages.get(P, DLQ, (await post(storage, "y", queue=DLQ))[0])
    ).marker == 4


async def test_dead_letter_ttl_replaces_the_ttl_from_the_move(
    storage: Storage, clock: FakeClock
) -> None:
    await storage.queues.create(P, DLQ, None)
    (mid,) = await post(storage, "a")
    await claim_and_release(storage)
    clock.advance(100)
    assert await storage.claims.dead_letter(P, Q, DeadLetter(DLQ, 1, ttl=90), limit=10) == 1
    moved = await storage.messages.get(P, DLQ, mid)
    assert moved.ttl == 90 and moved.expires == pytest.approx(clock() + 90)
    clock.advance(91)
    assert await storage.transfer.export_messages(P, DLQ, after_marker=0, limit=10) == []


async def test_nothing_moves_to_a_dead_letter_queue_not_on_this_partition(
    storage: Storage,
) -> None:
    await post(storage, "a")
    await claim_and_release(storage)
    policy = DeadLetter(DLQ, max_claims=1)
    assert await storage.claims.dead_letter(P, Q, policy, limit=10) == 0  # no such queue here
    await storage.queues.create(P, DLQ, None)
    await storage.transfer.freeze(P, DLQ, Fence.MOVED)  # it moved to another partition
    assert await storage.claims.dead_letter(P, Q, policy, limit=10) == 0
    assert await claim_and_release(storage) == ["a"]  # claimed as any other message
    await storage.transfer.unfreeze(P, DLQ)
    assert await storage.claims.dead_letter(P, Q, policy, limit=10) == 1


async def test_a_frozen_source_moves_nothing(storage: Storage) -> None:
    await storage.queues.create(P, DLQ, None)
    await post(storage, "a")
    await claim_and_release(storage)
    await storage.transfer.freeze(P, Q, Fence.FROZEN)
    with pytest.raises(QueueFrozen):
        await storage.claims.dead_letter(P, Q, DeadLetter(DLQ, 1), limit=10)


async def test_claim_counts_move_with_the_queue(storage: Storage) -> None:
    await post(storage, "a", "b")
    await claim_and_release(storage, limit=1)
    export = await storage.transfer.export_queue(P, Q)
    assert export is not None
    messages = await storage.transfer.export_messages(P, Q, after_marker=0, limit=10)
    rows = await storage.transfer.export_rows(P, Q, after_marker=0, limit=10)
    assert [r.claim_count for r in rows] == [1, 0]
    for how in ("messages", "rows"):
        await storage.queues.delete(P, Q)
        await storage.transfer.import_queue(P, Q, export)
        if how == "messages":
            assert await storage.transfer.import_messages(P, Q, messages) == 2
        else:
            assert await storage.transfer.import_rows(P, Q, rows) == 2
        assert await counts(storage) == {"a": 1, "b": 0}


async def test_a_verify_sees_claim_counts(storage: Storage) -> None:
    """The digest a migration's verify compares covers the counts: a claim made and released
    leaves the messages as they were but for their counts, and changes the digest."""
    await post(storage, "a", "b")
    before = await storage.transfer.digest(P, Q)
    await claim_and_release(storage, limit=1)
    after = await storage.transfer.digest(P, Q)
    assert (after.count, after.max_marker) == (before.count, before.max_marker)
    assert after.checksum != before.checksum

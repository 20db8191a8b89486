"""Claim counts and dead letters, on every driver (SQLite, MongoDB over FerretDB, PostgreSQL):
each claim counts one more for each message it takes; `ClaimStore.dead_letter` moves the
messages claimed `max_claims` times to the dead-letter queue of the same partition, once, or,
when it is not there, to the partition's outgoing pile, which `DeadLetterStore` empties into the
dead-letter queue's partition; the count travels with a migration."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from node.errors import QueueDoesNotExist, QueueFrozen
from node.models import DeadLetter, Fence, Message, NewMessage
from node.storage import open_storage
from node.storage.base import Storage
from tests.conftest import FakeClock, storage_uri

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


async def test_a_dead_letter_queue_not_here_gets_them_through_the_pile(
    storage: Storage, clock: FakeClock
) -> None:
    """The dead-letter queue is missing here, or fenced: the claim takes the messages out of the
    queue all the same, into the partition's outgoing pile, where no client sees them."""
    (mid,) = await post(storage, "a")
    await claim_and_release(storage)
    policy = DeadLetter(DLQ, max_claims=1, ttl=600)
    assert await storage.claims.dead_letter(P, Q, policy, limit=10) == 1  # no such queue here
    assert await storage.claims.dead_letter(P, Q, policy, limit=10) == 0  # taken once
    assert await claim_and_release(storage) == []  # nobody claims it
    listed = await storage.messages.list(
        P,
        Q,
        marker=None,
        limit=10,
        echo=True,
        include_claimed=True,
        include_delayed=True,
        client_id=CLIENT,
    )
    assert listed == [] and await storage.messages.bulk_get(P, Q, [mid]) == []
    stats = await storage.queues.stats(P, Q)
    assert stats.total == 0
    for topics in (False, True):  # the pile is no queue and no topic
        names = await storage.queues.list(P, marker=None, limit=10, detailed=False, topics=topics)
        assert [q.name for q in names] == ([Q] if not topics else [])
    (out,) = await storage.dead_letters.waiting(limit=10)
    assert (out.project, out.queue, out.sent) == (P, DLQ, False)
    assert (out.message.id, out.message.body, out.message.claim_count) == (mid, "a", 1)
    assert out.message.ttl == 600 and out.message.expires == pytest.approx(clock() + 600)
    assert out.message.claim_id is not None  # its hold
    # A fenced dead-letter queue (moved to another partition) is no place for them either.
    await post(storage, "b")
    await claim_and_release(storage)
    await storage.queues.create(P, DLQ, None)
    await storage.transfer.freeze(P, DLQ, Fence.MOVED)
    assert await storage.claims.dead_letter(P, Q, policy, limit=10) == 1
    waiting = await storage.dead_letters.waiting(limit=10)
    assert [w.message.body for w in waiting] == ["a", "b"]
    assert await storage.dead_letters.waiting(limit=1) == waiting[:1]


@pytest.fixture
async def other(
    storage: Storage, request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock
) -> AsyncIterator[Storage]:
    """A second partition on the same driver."""
    driver = request.node.callspec.params["storage"]
    store = await open_storage(storage_uri(driver, tmp_path / "other", request), clock)
    try:
        yield store
    finally:
        await store.close()


async def test_a_pile_moves_once_held_then_released(
    storage: Storage, other: Storage, clock: FakeClock
) -> None:
    """The mover's four steps from `storage`'s pile to the dead-letter queue on `other`: each
    idempotent, the copy held until the pile says it is whole, then released, then the pile's
    copy discarded."""
    (mid,) = await post(storage, "a")
    await claim_and_release(storage)
    assert await storage.claims.dead_letter(P, Q, DeadLetter(DLQ, 1), limit=10) == 1
    (out,) = await storage.dead_letters.waiting(limit=10)
    with pytest.raises(QueueDoesNotExist):
        await other.dead_letters.receive(P, DLQ, [out.message])
    await post(other, "x", queue=DLQ)
    await other.transfer.freeze(P, DLQ, Fence.FROZEN)
    with pytest.raises(QueueFrozen):
        await other.dead_letters.receive(P, DLQ, [out.message])
    await other.transfer.unfreeze(P, DLQ)
    assert await other.dead_letters.receive(P, DLQ, [out.message]) == 1
    assert await other.dead_letters.receive(P, DLQ, [out.message]) == 0  # a retry
    copy = await other.messages.get(P, DLQ, mid)
    assert (copy.marker, copy.body, copy.claim_count) == (2, "a", 1)
    assert copy.claim_id == out.message.claim_id and copy.is_claimed(clock())
    claim, held = await other.claims.create(P, DLQ, ttl=60, grace=60, limit=10)
    assert [m.body for m in held] == ["x"]  # held: no consumer takes it yet
    assert await storage.dead_letters.sent(P, DLQ, [mid]) == 1
    (out,) = await storage.dead_letters.waiting(limit=10)
    assert out.sent
    await other.transfer.freeze(P, DLQ, Fence.FROZEN)
    with pytest.raises(QueueFrozen):
        await other.dead_letters.release(P, DLQ, [out.message])
    await other.transfer.unfreeze(P, DLQ)
    another = Message(**{**_fields(out.message), "claim_id": claim.id})
    assert await other.dead_letters.release(P, DLQ, [another]) == 0  # not its hold
    assert await other.dead_letters.release(P, DLQ, [out.message]) == 1
    assert await other.dead_letters.release(P, DLQ, [out.message]) == 0
    assert await storage.dead_letters.discard(P, DLQ, [mid]) == 1
    assert await storage.dead_letters.discard(P, DLQ, [mid]) == 0
    assert await storage.dead_letters.waiting(limit=10) == []
    _, held = await other.claims.create(P, DLQ, ttl=60, grace=60, limit=10)
    assert [(m.id, m.claim_count) for m in held] == [(mid, 2)]


async def test_a_pile_whose_dead_letter_queue_came_here_moves_within(storage: Storage) -> None:
    """The dead-letter queue was created on the pile's own partition since: `receive` moves the
    pile's message into it, once."""
    (mid,) = await post(storage, "a")
    await claim_and_release(storage)
    await storage.claims.dead_letter(P, Q, DeadLetter(DLQ, 1), limit=10)
    (out,) = await storage.dead_letters.waiting(limit=10)
    await storage.queues.create(P, DLQ, None)
    assert await storage.dead_letters.receive(P, DLQ, [out.message]) == 1
    assert await storage.dead_letters.receive(P, DLQ, [out.message]) == 0
    assert await storage.dead_letters.waiting(limit=10) == []
    assert await storage.dead_letters.sent(P, DLQ, [mid]) == 0
    assert await storage.dead_letters.release(P, DLQ, [out.message]) == 1
    assert await storage.dead_letters.discard(P, DLQ, [mid]) == 0
    moved = await storage.transfer.export_messages(P, DLQ, after_marker=0, limit=10)
    assert [(m.id, m.marker, m.claim_id) for m in moved] == [(mid, 1, None)]


async def test_a_received_dead_letter_is_a_change_of_a_tracked_queue(storage: Storage) -> None:
    """A dead-letter queue being migrated: what `receive` and `release` write is tracked, so the
    migration's catch-up carries the copy and its hold."""
    (mid,) = await post(storage, "a")
    await claim_and_release(storage)
    await storage.claims.dead_letter(P, Q, DeadLetter(DLQ, 1), limit=10)
    (out,) = await storage.dead_letters.waiting(limit=10)
    await storage.queues.create(P, DLQ, None)
    await storage.transfer.track(P, DLQ, True)
    since = await storage.transfer.sequence(P, DLQ)
    await storage.dead_letters.receive(P, DLQ, [out.message])
    changed = await storage.transfer.changes(P, DLQ, since=since, limit=10)
    assert [(m.id, m.claim_id) for m in changed.messages] == [(mid, out.message.claim_id)]
    since = await storage.transfer.sequence(P, DLQ)
    await storage.dead_letters.release(P, DLQ, [out.message])
    changed = await storage.transfer.changes(P, DLQ, since=since, limit=10)
    assert [(m.id, m.claim_id) for m in changed.messages] == [(mid, None)]


async def test_letters_leaving_a_moving_queue_for_the_pile_are_its_changes(
    storage: Storage,
) -> None:
    """A queue being migrated: letters it loses to the pile are deletes the catch-up applies
    to the copy, so they are not in the queue on the target either (the pile stays here and
    is moved from here)."""
    (mid,) = await post(storage, "a")
    await claim_and_release(storage)
    await storage.transfer.track(P, Q, True)
    since = await storage.transfer.sequence(P, Q)
    assert await storage.claims.dead_letter(P, Q, DeadLetter(DLQ, 1), limit=10) == 1
    changed = await storage.transfer.changes(P, Q, since=since, limit=10)
    assert [r.id for r in changed.removed] == [mid]


def _fields(message: Message) -> dict[str, object]:
    return {f: getattr(message, f) for f in Message.__dataclass_fields__}


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

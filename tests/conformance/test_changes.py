"""Change tracking (`TransferStore.track`, `sequence`, `changes`) and fingerprints, on every
driver. MongoDB reports positions lowered by a margin (see `node.storage.mongodb.changes`), so
"what changed after p" is checked as: every change after p is there, and nothing that did not
change since the queue was tracked."""

from __future__ import annotations

import dataclasses

import pytest

from node.errors import ChangesLost, QueueDoesNotExist
from node.models import Changes, Claim, Message, NewMessage, QueueExport, Removed, new_id
from node.storage.base import Storage
from node.storage.transfer import TOMBSTONE_RETENTION
from tests.conftest import FakeClock

P = "project-a"
Q = "orders"
CLIENT = "3b8a7c52-52f1-4a3b-9e7f-1d2c3b4a5f60"


def msgs(*bodies: object, ttl: int = 300) -> list[NewMessage]:
    return [NewMessage(body=b, ttl=ttl) for b in bodies]


async def everything_after(s: Storage, since: int, limit: int = 100) -> Changes:
    """Every page of changes after `since`, as one."""
    messages: list[Message] = []
    removed: list[Removed] = []
    claims: list[Claim] = []
    released: list[str] = []
    while True:
        page = await s.transfer.changes(P, Q, since=since, limit=limit)
        messages += page.messages
        removed += page.removed
        claims += page.claims
        released += page.released
        since = page.upto
        if not page.more:
            return Changes(
                tuple(messages), tuple(removed), since, False, tuple(claims), tuple(released)
            )


async def test_every_write_after_a_position_is_a_change(storage: Storage) -> None:
    await storage.queues.create(P, Q, None)
    quiet = await storage.messages.post(P, Q, msgs("before"), CLIENT)  # untracked: no trace
    await storage.transfer.track(P, Q, True)
    start = await storage.transfer.sequence(P, Q)
    a, b, c, d, e = await storage.messages.post(P, Q, msgs(*"abcde"), CLIENT)
    claim, held = await storage.claims.create(P, Q, ttl=60, grace=60, limit=3)  # before, a, b
    assert [m.id for m in held] == [quiet[0], a, b]
    await storage.messages.delete(P, Q, c, None)
    await storage.messages.bulk_delete(P, Q, [d], None)
    [popped] = await storage.messages.pop(P, Q, 1)
    assert popped.id == e

    changes = await everything_after(storage, start)
    now = {m.id: m for m in await storage.transfer.export_messages(P, Q, after_marker=0, limit=9)}
    written = {m.id: m for m in changes.messages}
    assert set(written) == {quiet[0], a, b, c, d, e} - {c, d, e}  # as they are now: claimed
    assert all(written[i] == now[i] and now[i].claim_id == claim.id for i in written)
    assert {(r.id, r.marker) for r in changes.removed} == {(c, 4), (d, 5), (e, 6)}

    # After a later position: only what changed after it.
    middle = await storage.transfer.sequence(P, Q)
    await storage.claims.delete(P, Q, claim.id)
    [f] = await storage.messages.post(P, Q, msgs("f"), CLIENT)
    later = await everything_after(storage, middle)
    assert {f, quiet[0], a, b} <= {m.id for m in later.messages} <= {f, quiet[0], a, b, c, d, e}
    assert all(m.claim_id is None for m in later.messages)  # released
    assert {r.id for r in later.removed} <= {c, d, e}


async def test_claims_made_renewed_and_released_are_changes(
    storage: Storage, clock: FakeClock
) -> None:
    await storage.queues.create(P, Q, None)
    await storage.messages.post(P, Q, msgs(*"abcdef"), CLIENT)
    untracked, _ = await storage.claims.create(P, Q, ttl=60, grace=60, limit=1)
    await storage.transfer.track(P, Q, True)
    start = await storage.transfer.sequence(P, Q)
    made, _ = await storage.claims.create(P, Q, ttl=60, grace=60, limit=1)
    renewed, [held] = await storage.claims.create(P, Q, ttl=60, grace=60, limit=1)
    gone, _ = await storage.claims.create(P, Q, ttl=60, grace=60, limit=1)
    clock.advance(5)
    await storage.claims.update(P, Q, renewed.id, ttl=120, grace=60)
    await storage.claims.delete(P, Q, gone.id)
    # A claim whose messages were all deleted stays a claim (until it expires): no change.
    await storage.messages.delete(P, Q, held.id, renewed.id)

    changes = await everything_after(storage, start)
    live = {c.id: c for c in await storage.transfer.export_claims(P, Q)}
    written = {c.id: c for c in changes.claims}
    assert set(written) == {made.id, renewed.id}  # not the one claimed before tracking
    assert written[renewed.id] == live[renewed.id]  # as it is now: renewed
    assert written[renewed.id].expires == clock() + 120
    assert set(changes.released) == {gone.id}

    # After a later position: only what changed after it; the copy's own writes count too.
    middle = await storage.transfer.sequence(P, Q)
    await storage.transfer.delete_claims(P, Q, [made.id])
    await storage.transfer.import_claims(
        P, Q, [dataclasses.replace(live[untracked.id], expires=clock() + 9)]
    )
    later = await everything_after(storage, middle)
    assert {c.id for c in later.claims} <= {untracked.id, made.id, renewed.id, gone.id}
    assert untracked.id in {c.id for c in later.claims}
    assert made.id in later.released


async def test_claims_are_exported_by_id(storage: Storage) -> None:
    await storage.queues.create(P, Q, None)
    await storage.messages.post(P, Q, msgs(*"abc"), CLIENT)
    first, _ = await storage.claims.create(P, Q, ttl=60, grace=60, limit=1)
    second, _ = await storage.claims.create(P, Q, ttl=60, grace=60, limit=1)
    await storage.queues.create(P, "other", None)
    await storage.messages.post(P, "other", msgs("x"), CLIENT)
    theirs, _ = await storage.claims.create(P, "other", ttl=60, grace=60, limit=1)
    wanted = [second.id, theirs.id, new_id(), "not-an-id"]
    assert [c.id for c in await storage.transfer.export_claims(P, Q, ids=wanted)] == [second.id]
    assert await storage.transfer.export_claims(P, Q, ids=[]) == []
    assert [c.id for c in await storage.transfer.export_claims(P, Q)] == [first.id, second.id]


async def test_pages_never_split_one_write(storage: Storage) -> None:
    await storage.queues.create(P, Q, None)
    await storage.transfer.track(P, Q, True)
    start = await storage.transfer.sequence(P, Q)
    batch = await storage.messages.post(P, Q, msgs(*range(5)), CLIENT)  # one stamp for five
    singles = [(await storage.messages.post(P, Q, msgs(n), CLIENT))[0] for n in range(3)]
    await storage.messages.bulk_delete(P, Q, batch[:3], None)  # one stamp, three tombstones

    first = await storage.transfer.changes(P, Q, since=start, limit=2)
    assert first.more
    assert {m.id for m in first.messages} >= set(batch[3:])  # the whole post, past the limit
    changes = await everything_after(storage, start, limit=2)
    ids = [m.id for m in changes.messages]
    assert sorted(ids) == sorted(batch[3:] + singles)  # each once
    assert sorted(r.id for r in changes.removed) == sorted(batch[:3])


async def test_imports_and_catch_up_deletes_are_changes_of_the_copy(
    storage: Storage, clock: FakeClock
) -> None:
    now = clock()
    exported = [Message(new_id(), n, {"n": n}, 300, now, now + 300, CLIENT) for n in range(1, 5)]
    await storage.transfer.import_queue(P, Q, QueueExport({}, 4, clock()))
    await storage.transfer.track(P, Q, True)
    start = await storage.transfer.sequence(P, Q)
    assert await storage.transfer.import_messages(P, Q, exported) == 4
    imported = await everything_after(storage, start)
    assert sorted(m.id for m in imported.messages) == sorted(m.id for m in exported)

    again = await storage.transfer.sequence(P, Q)
    assert await storage.transfer.import_messages(P, Q, exported) == 0  # nothing written
    assert await storage.transfer.delete_messages(P, Q, [exported[1].id]) == 1
    after = await everything_after(storage, again)
    assert {(r.id, r.marker) for r in after.removed} == {(exported[1].id, 2)}
    assert {m.id for m in after.messages} <= {m.id for m in exported}


async def test_changes_that_can_no_longer_be_told(storage: Storage, clock: FakeClock) -> None:
    with pytest.raises(QueueDoesNotExist):
        await storage.transfer.track(P, Q, True)
    assert await storage.transfer.sequence(P, Q) == 0
    await storage.queues.create(P, Q, None)
    with pytest.raises(ChangesLost):  # not tracked
        await storage.transfer.changes(P, Q, since=0, limit=10)
    await storage.transfer.track(P, Q, True)
    start = await storage.transfer.sequence(P, Q)
    ids = await storage.messages.post(P, Q, msgs(1, 2), CLIENT)
    await storage.messages.delete(P, Q, ids[0], None)

    # Tombstones are collected after their retention: changes from before are lost.
    clock.advance(TOMBSTONE_RETENTION - 10)
    await storage.collect_garbage()
    assert [r.id for r in (await everything_after(storage, start)).removed] == [ids[0]]
    clock.advance(20)
    await storage.collect_garbage()
    with pytest.raises(ChangesLost):
        await storage.transfer.changes(P, Q, since=start, limit=10)
    fresh = await storage.transfer.sequence(P, Q)
    [late] = await storage.messages.post(P, Q, msgs(3), CLIENT)
    assert late in {m.id for m in (await everything_after(storage, fresh)).messages}

    # A purge forgets every change before it, without a tombstone per message.
    await storage.queues.purge(P, Q)
    with pytest.raises(ChangesLost):
        await storage.transfer.changes(P, Q, since=fresh, limit=10)
    assert (await everything_after(storage, await storage.transfer.sequence(P, Q))).removed == ()

    # Untracked again, or deleted and created again: nothing can be told.
    position = await storage.transfer.sequence(P, Q)
    await storage.transfer.track(P, Q, False)
    with pytest.raises(ChangesLost):
        await storage.transfer.changes(P, Q, since=position, limit=10)
    await storage.transfer.track(P, Q, True)
    position = await storage.transfer.sequence(P, Q)
    await storage.queues.delete(P, Q)
    await storage.queues.create(P, Q, None)
    with pytest.raises(ChangesLost):
        await storage.transfer.changes(P, Q, since=position, limit=10)


async def test_fingerprints_follow_what_a_copy_must_keep(
    storage: Storage, clock: FakeClock
) -> None:
    await storage.queues.create(P, Q, None)
    ids = await storage.messages.post(P, Q, msgs("a", "b", "c"), CLIENT)
    first = await storage.transfer.fingerprints(P, Q, after_marker=0, limit=10)
    assert [marker for marker, _ in first] == [1, 2, 3]
    assert len({value for _, value in first}) == 3
    assert await storage.transfer.fingerprints(P, Q, after_marker=1, limit=1) == first[1:2]

    claim, _ = await storage.claims.create(P, Q, ttl=60, grace=0, limit=1)
    claimed = await storage.transfer.fingerprints(P, Q, after_marker=0, limit=10)
    assert claimed[0] != first[0] and claimed[1:] == first[1:]
    clock.advance(61)  # the claim expired: no claim (its grace kept the message), but the
    # message's claim count, which a copy must keep too
    expired = await storage.transfer.fingerprints(P, Q, after_marker=0, limit=10)
    assert expired[0] not in (first[0], claimed[0]) and expired[1:] == first[1:]
    await storage.messages.delete(P, Q, ids[1], None)
    assert await storage.transfer.fingerprints(P, Q, after_marker=0, limit=10) == [
        expired[0],
        first[2],
    ]

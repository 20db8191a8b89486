"""A post's notifications in the same write as its messages, on MongoDB (node.storage.mongodb.owed),
on both FerretDB backends: the writer dies (simulated: its connection's writes stop at a chosen
point and the post never returns) and another node of the partition delivers what it owes, or
nothing when nothing was stored, whatever a consumer removed meanwhile."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from pymongo.errors import BulkWriteError

from node.errors import StorageUnavailable
from node.models import NewMessage
from node.storage.mongodb import MongoStorage, owed
from tests.conftest import FakeClock
from tests.node.test_mongodb_load import every, fresh_database, open_store, server  # noqa: F401

pytestmark = pytest.mark.mongodb

P = "project-a"
Q = "orders"
HOOK = "http://127.0.0.1:1/hook"


class Died(Exception):
    """The writer's process is gone: nothing after this point of its post happens."""


class Dying:
    """The messages collection of a writer that dies at its insert of messages: before it
    (nothing stored) or right after it (stored, the post never acknowledged)."""

    def __init__(self, docs: Any, *, after_write: bool) -> None:
        self._docs = docs
        self._after_write = after_write
        self.attempted: list[dict[str, Any]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._docs, name)

    async def insert_many(self, docs: list[dict[str, Any]], **kwargs: Any) -> Any:
        self.attempted = [dict(d) for d in docs]
        if self._after_write:
            await self._docs.insert_many(docs, **kwargs)
        raise Died()


@pytest.fixture
async def nodes(server: str, clock: FakeClock) -> AsyncIterator[tuple[MongoStorage, MongoStorage]]:  # noqa: F811
    """The writer and a survivor: two nodes of one partition."""
    database = fresh_database()
    writer, survivor = [await open_store(server, database, clock) for _ in range(2)]
    try:
        await writer.queues.create(P, Q, None)
        await writer.subscriptions.create(P, Q, HOOK, 3600, {})
        yield writer, survivor
    finally:
        await writer.close()
        await survivor.close()


async def post_and_die(writer: MongoStorage, *, after_write: bool) -> list[dict[str, Any]]:
    dying = Dying(writer.posts._messages, after_write=after_write)
    writer.posts._messages = dying  # type: ignore[assignment]
    with pytest.raises(Died):
        await writer.messages.post(P, Q, [NewMessage({"n": 1}, 600), NewMessage("two", 600)], "c")
    writer.posts._messages = dying._docs
    return dying.attempted


async def listed(store: MongoStorage) -> list[str]:
    found = await every(store, 10)
    return [m.id for m in found]


async def owed_notices(store: MongoStorage) -> list[Any]:
    return [
        [n["body"] for n in d.notices] for d in await store.outbox.lease("s", limit=10, lasts=30)
    ]


async def leftovers(store: MongoStorage) -> tuple[int, int]:
    return (
        await store.outbox.owed.intents.count_documents({}),
        await store.outbox.owed.evidence.count_documents({}),
    )


async def test_a_writer_dead_right_after_its_messages_leaves_them_notified(
    nodes: tuple[MongoStorage, MongoStorage],
) -> None:
    """Where the deliveries used to be the second write: the messages are stored, so their
    notifications are owed, though the post was never acknowledged."""
    writer, survivor = nodes
    attempted = await post_and_die(writer, after_write=True)
    assert await listed(survivor) == [str(d["_id"]) for d in attempted]
    assert await survivor.outbox.depth() == 1
    assert await owed_notices(survivor) == [[{"n": 1}, "two"]]
    assert await leftovers(survivor) == (0, 0)


async def test_a_writer_dead_before_its_messages_owes_nothing(
    nodes: tuple[MongoStorage, MongoStorage], clock: FakeClock
) -> None:
    """Nothing stored, nothing notified: the intent waits `GRACE` for its messages (the post
    may be slow, not dead), then goes, and the slow post can no longer store them."""
    writer, survivor = nodes
    groups = [await post_and_die(writer, after_write=False) for _ in range(3)]
    assert await owed_notices(survivor) == []
    assert await survivor.outbox.depth() == 3  # undecided yet
    clock.advance(owed.GRACE + 1)
    assert await owed_notices(survivor) == []
    assert await survivor.outbox.depth() == 0
    assert await leftovers(survivor) == (0, 0)
    # The writer was only slow: its groups, tried now, are refused whole (never acknowledged).
    for attempted in groups:
        with pytest.raises(BulkWriteError):
            await survivor.message_docs.insert_many(attempted, ordered=True)
    with pytest.raises(StorageUnavailable):
        await writer.posts._store((P, Q), groups[0])
    assert await listed(survivor) == []
    assert await owed_notices(survivor) == []


async def delete(store: MongoStorage, mid: str) -> None:
    await store.messages.delete(P, Q, mid, None)


async def delete_claimed(store: MongoStorage, mid: str) -> None:
    claim, held = await store.claims.create(P, Q, ttl=60, grace=60, limit=1)
    assert [m.id for m in held] == [mid]
    await store.messages.delete(P, Q, mid, claim.id)


async def bulk_delete(store: MongoStorage, mid: str) -> None:
    await store.messages.bulk_delete(P, Q, [mid], None)


async def pop(store: MongoStorage, mid: str) -> None:
    assert [m.id for m in await store.messages.pop(P, Q, 1)] == [mid]


async def purge(store: MongoStorage, mid: str) -> None:
    await store.queues.purge(P, Q)


async def expire(store: MongoStorage, mid: str) -> None:
    store.clock.advance(601)  # type: ignore[attr-defined]
    assert await store.collect_garbage() >= 2


REMOVALS: dict[str, Callable[[MongoStorage, str], Awaitable[None]]] = {
    "delete": delete,
    "delete with its claim": delete_claimed,
    "bulk delete": bulk_delete,
    "pop": pop,
    "purge": purge,
    "expiry": expire,
}


@pytest.mark.parametrize("removal", REMOVALS)
@pytest.mark.parametrize("late", [False, True], ids=["young", "after grace"])
async def test_a_message_removed_before_its_deliveries_are_decided_is_still_notified(
    nodes: tuple[MongoStorage, MongoStorage], clock: FakeClock, removal: str, late: bool
) -> None:
    """A consumer removes the post's first message before any deliverer looked: its evidence
    stays, and the post is notified (also when the deliverer first blocks the id, late)."""
    writer, survivor = nodes
    attempted = await post_and_die(writer, after_write=True)
    if late:
        clock.advance(owed.GRACE + 1)
    await REMOVALS[removal](survivor, str(attempted[0]["_id"]))
    assert str(attempted[0]["_id"]) not in await listed(survivor)
    assert await owed_notices(survivor) == [[{"n": 1}, "two"]]
    assert await leftovers(survivor) == (0, 0)


async def test_a_post_acknowledged_leaves_nothing_behind_its_delivery(
    nodes: tuple[MongoStorage, MongoStorage],
) -> None:
    """The usual way: the deliverer decides the intent, delivers, and the messages are then
    removed like any other (no evidence: nothing is undecided)."""
    writer, survivor = nodes
    ids = await writer.messages.post(P, Q, [NewMessage(1, 600), NewMessage(2, 600)], "c")
    taken = await survivor.outbox.lease("s", limit=10, lasts=30)
    assert [[n["body"] for n in d.notices] for d in taken] == [[1, 2]]
    assert await survivor.outbox.done("s", [d.id for d in taken]) == 1
    await survivor.messages.delete(P, Q, ids[0], None)
    await survivor.messages.bulk_delete(P, Q, ids[1:], None)
    assert await listed(survivor) == []
    assert await leftovers(survivor) == (0, 0)
    assert await survivor.outbox.depth() == 0


async def test_a_queue_deleted_owes_nothing(
    nodes: tuple[MongoStorage, MongoStorage], clock: FakeClock
) -> None:
    """As on SQLite: a queue's delete forgets what its posts still owed."""
    writer, survivor = nodes
    await post_and_die(writer, after_write=True)
    await survivor.queues.delete(P, Q)
    assert await owed_notices(survivor) == []
    assert await leftovers(survivor) == (0, 0)
    assert await survivor.outbox.depth() == 0


@pytest.mark.parametrize("late", [False, True], ids=["young", "after grace"])
async def test_removals_racing_two_deliverers_lose_nothing_and_leave_nothing(
    nodes: tuple[MongoStorage, MongoStorage],
    server: str,  # noqa: F811
    clock: FakeClock,
    late: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Twenty posts whose writer died after their messages; a consumer pops and deletes them
    while two other nodes lease and settle at once (FerretDB applies conditional writes as a
    read then a write: only unique inserts arbitrate). Every post is notified, and nothing
    hidden is left behind once stray evidence (a removal that raced its post's promotion) is
    collected."""
    writer, survivor = nodes
    groups = [await post_and_die(writer, after_write=True) for _ in range(20)]
    if late:
        clock.advance(owed.GRACE + 1)
    other = await open_store(server, survivor.message_docs.database.name, clock)
    notified: list[str] = []

    async def deliver(node: MongoStorage, owner: str) -> None:
        for _ in range(30):
            taken = await node.outbox.lease(owner, limit=3, lasts=30)
            notified.extend(d.id.split(":")[0] for d in taken)
            await node.outbox.done(owner, [d.id for d in taken])
            await asyncio.sleep(0)

    async def consume() -> None:
        for n, group in enumerate(groups):
            first = str(group[0]["_id"])
            if n % 2:
                await survivor.messages.delete(P, Q, first, None)
            else:
                await survivor.messages.bulk_delete(P, Q, [str(d["_id"]) for d in group], None)
            await asyncio.sleep(0)

    try:
        await asyncio.gather(deliver(other, "a"), deliver(survivor, "b"), consume())
        while taken := await other.outbox.lease("a", limit=50, lasts=30):
            notified.extend(d.id.split(":")[0] for d in taken)
            await other.outbox.done("a", [d.id for d in taken])
    finally:
        await other.close()
    assert set(notified) == {str(g[0]["_id"]) for g in groups}
    assert await survivor.outbox.depth() == 0
    monkeypatch.setattr(owed, "SWEEP", 0.0)
    clock.advance(owed.GRACE + 1)
    assert await survivor.outbox.lease("b", limit=10, lasts=30) == []
    assert await leftovers(survivor) == (0, 0)

"""MongoDB-driver specifics the conformance suite does not reach: error translation, the database
name, and races that FerretDB 1.x (no atomic read-modify-write) would lose without holds."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from node.errors import MessageIsClaimed, StorageUnavailable
from node.models import NewMessage
from node.storage.mongodb import MongoStorage
from tests.conftest import FakeClock, storage_uri
from tests.services import free_port

P = "project-a"
Q = "orders"
CLIENT = "3b8a7c52-52f1-4a3b-9e7f-1d2c3b4a5f60"


def msgs(*bodies: object) -> list[NewMessage]:
    return [NewMessage(body=b, ttl=300) for b in bodies]


@pytest.fixture
async def mongo(
    request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock
) -> AsyncIterator[MongoStorage]:
    store = await MongoStorage.open(storage_uri("mongodb", tmp_path, request), clock)
    try:
        yield store
    finally:
        await store.close()


def dead_uri() -> str:
    return f"mongodb://127.0.0.1:{free_port()}/marconi?serverSelectionTimeoutMS=200"


async def close_dead(store: MongoStorage) -> None:
    """Close a store whose server never answered.

    pymongo 4.20 leaks the socket of a monitor connect that `close()` cancels (only OSError and
    TimeoutError close it), and a failed server selection has just woken the monitor to connect
    again: let that attempt fail on its own first.
    """
    await asyncio.sleep(0.1)
    await store.close()


async def test_operations_on_unreachable_server_are_storage_unavailable(clock: FakeClock) -> None:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(dead_uri())
    store = MongoStorage(client, "marconi", clock)
    try:
        assert await store.ping() is False
        with pytest.raises(StorageUnavailable):
            await store.queues.create(P, Q, None)
        with pytest.raises(StorageUnavailable):
            await store.claims.create(P, Q, ttl=60, grace=60, limit=5)
        with pytest.raises(StorageUnavailable):
            await store.collect_garbage()
    finally:
        await close_dead(store)


@pytest.mark.mongodb
async def test_database_named_by_uri_path(mongodb_url: str, clock: FakeClock) -> None:
    base = mongodb_url.rstrip("/")
    named = await MongoStorage.open(f"{base}/marconi_named", clock)
    default = await MongoStorage.open(f"{base}/", clock)
    try:
        assert (named.database, default.database) == ("marconi_named", "marconi")
    finally:
        await named.close()
        await default.close()


@pytest.mark.mongodb
async def test_concurrent_creates_report_one_new_queue(mongo: MongoStorage) -> None:
    created = await asyncio.gather(*(mongo.queues.create(P, Q, {"n": i}) for i in range(10)))
    assert created.count(True) == 1
    assert (await mongo.queues.get_metadata(P, Q)).keys() == {"n"}


@pytest.mark.mongodb
async def test_concurrent_posts_get_distinct_markers(mongo: MongoStorage) -> None:
    await mongo.queues.create(P, Q, None)

    async def poster(n: int) -> list[str]:
        ids: list[str] = []
        for i in range(5):
            ids += await mongo.messages.post(
                P, Q, msgs(*(f"{n}-{i}-{j}" for j in range(3))), CLIENT
            )
        return ids

    posted = [mid for ids in await asyncio.gather(*(poster(n) for n in range(6))) for mid in ids]
    listed = []
    marker = None
    while page := await mongo.messages.list(
        P,
        Q,
        marker=marker,
        limit=20,
        echo=True,
        include_claimed=True,
        include_delayed=True,
        client_id=CLIENT,
    ):
        listed += page
        marker = page[-1].marker
    assert sorted(m.id for m in listed) == sorted(posted)
    markers = [m.marker for m in listed]
    assert len(set(markers)) == len(markers) == 90


@pytest.mark.mongodb
async def test_a_counter_gone_back_never_puts_a_post_before_an_earlier_one(
    mongo: MongoStorage,
) -> None:
    """FerretDB may lose an update of the counter (a racing write of the queue document): the
    next post must still come after every message stored, or its producer's order breaks."""
    await mongo.queues.create(P, Q, None)
    ids = [(await mongo.messages.post(P, Q, msgs(f"a{n}"), CLIENT))[0] for n in range(3)]
    for consumed in ids[:2]:  # markers 1 and 2 are free again; 3 is still stored
        await mongo.messages.delete(P, Q, consumed, None)
    # The counter goes back to 0, as a lost update would leave it.
    await mongo.queue_docs.update_one({"project": P, "name": Q}, {"$set": {"counter": 0}})
    (later,) = await mongo.messages.post(P, Q, msgs("b"), CLIENT)
    listed = await mongo.messages.list(
        P,
        Q,
        marker=None,
        limit=10,
        echo=True,
        include_claimed=True,
        include_delayed=True,
        client_id=CLIENT,
    )
    assert [m.body for m in listed] == ["a2", "b"]
    assert listed[-1].id == later and listed[-1].marker > listed[0].marker


@pytest.mark.mongodb
async def test_a_counter_gone_back_never_hands_out_a_consumed_marker_again(
    mongo: MongoStorage, mongodb_url: str, clock: FakeClock
) -> None:
    """FerretDB may lose an update of the counter when reservations race: the counter goes
    back below markers already handed out. Once their messages are consumed, the unique index
    of the messages no longer holds them, and another process (whose floor knows nothing of
    them) must still not hand them out again: a client that paged past them would miss it."""
    if not mongo.reservations.enabled:
        pytest.skip("MongoDB's $inc is atomic: its counter never goes back")
    await mongo.queues.create(P, Q, None)
    ids = await mongo.messages.post(P, Q, msgs("a", "b", "c"), CLIENT)
    assert [m.marker for m in await mongo.messages.bulk_get(P, Q, ids)] == [1, 2, 3]
    await mongo.messages.bulk_delete(P, Q, ids, None)
    # The counter goes back to 1, as a lost update would leave it.
    await mongo.queue_docs.update_one({"project": P, "name": Q}, {"$set": {"counter": 1}})
    other = await MongoStorage.open(f"{mongodb_url.rstrip('/')}/{mongo.database}", clock)
    try:
        later = await other.messages.post(P, Q, msgs("d", "e"), CLIENT)
        markers = [m.marker for m in await other.messages.bulk_get(P, Q, later)]
    finally:
        await other.close()
    assert markers[0] > 3 and markers == [markers[0], markers[0] + 1]


@pytest.mark.mongodb
async def test_pops_and_claims_never_share(mongo: MongoStorage) -> None:
    await mongo.queues.create(P, Q, None)
    for chunk in range(6):
        await mongo.messages.post(P, Q, msgs(*range(chunk * 10, chunk * 10 + 10)), CLIENT)

    async def claimer() -> list[str]:
        got: list[str] = []
        while held := (await mongo.claims.create(P, Q, ttl=60, grace=60, limit=4))[1]:
            got += [m.id for m in held]
        return got

    async def popper() -> list[str]:
        got: list[str] = []
        while popped := await mongo.messages.pop(P, Q, 3):
            got += [m.id for m in popped]
        return got

    results = await asyncio.gather(*(claimer() for _ in range(3)), *(popper() for _ in range(3)))
    everything = [mid for got in results for mid in got]
    assert len(everything) == len(set(everything)) == 60


@pytest.mark.mongodb
async def test_delete_without_claim_races_claims_cleanly(mongo: MongoStorage) -> None:
    """Each message is either deleted or claimed, never both."""
    await mongo.queues.create(P, Q, None)
    ids = await mongo.messages.post(P, Q, msgs(*range(20)), CLIENT)
    deleted: list[str] = []

    async def deleter() -> None:
        for mid in ids:
            try:
                await mongo.messages.delete(P, Q, mid, None)
            except MessageIsClaimed:
                continue
            deleted.append(mid)

    async def claimer() -> list[str]:
        got: list[str] = []
        while held := (await mongo.claims.create(P, Q, ttl=60, grace=60, limit=2))[1]:
            got += [m.id for m in held]
        return got

    _, *claimed = await asyncio.gather(deleter(), claimer(), claimer())
    held = [mid for got in claimed for mid in got]
    assert len(held) == len(set(held))
    assert not set(held) & set(deleted)


@pytest.mark.mongodb
async def test_expired_claim_is_taken_over(mongo: MongoStorage, clock: FakeClock) -> None:
    await mongo.queues.create(P, Q, None)
    await mongo.messages.post(P, Q, msgs(1, 2), CLIENT)
    first, held = await mongo.claims.create(P, Q, ttl=60, grace=60, limit=5)
    assert len(held) == 2
    clock.advance(61)  # the claim expired without a release: its holds must not block
    second, again = await mongo.claims.create(P, Q, ttl=60, grace=60, limit=5)
    assert [m.id for m in again] == [m.id for m in held]
    assert all(m.claim_id == second.id for m in again)
    await mongo.claims.delete(P, Q, first.id)  # a late release of the old claim frees nothing
    _, messages = await mongo.claims.get(P, Q, second.id)
    assert len(messages) == 2

"""One storage conformance suite, run on every driver (SQLite, MongoDB over FerretDB,
PostgreSQL)."""

from __future__ import annotations

import asyncio

import pytest

from node.errors import (
    ClaimDoesNotExist,
    InvalidClaim,
    MessageDoesNotExist,
    MessageIsClaimed,
    MessageNotClaimed,
    QueueDoesNotExist,
)
from node.models import NewMessage, is_id, new_id
from node.storage.base import Storage
from tests.conftest import FakeClock
from wire.topics import container

P = "project-a"
Q = "orders"
CLIENT = "3b8a7c52-52f1-4a3b-9e7f-1d2c3b4a5f60"
OTHER_CLIENT = "8d4e2f10-0a1b-4c5d-8e9f-a1b2c3d4e5f6"


def msgs(*bodies: object, ttl: int = 300, delay: int = 0) -> list[NewMessage]:
    return [NewMessage(body=b, ttl=ttl, delay=delay) for b in bodies]


async def listing(s: Storage, **overrides: object) -> list[object]:
    kwargs: dict[str, object] = {
        "marker": None,
        "limit": 20,
        "echo": True,
        "include_claimed": False,
        "include_delayed": False,
        "client_id": CLIENT,
    }
    kwargs.update(overrides)
    found = await s.messages.list(P, Q, **kwargs)  # type: ignore[arg-type]
    return [m.body for m in found]


# --- queues --------------------------------------------------------------------------------------


async def test_create_reports_whether_new(storage: Storage) -> None:
    assert await storage.queues.create(P, Q, None) is True
    assert await storage.queues.create(P, Q, None) is False
    assert await storage.queues.exists(P, Q)
    assert not await storage.queues.exists(P, "other")


async def test_metadata_round_trip_and_replace(storage: Storage) -> None:
    await storage.queues.create(P, Q, {"a": 1, "nested": {"b": [1, 2]}})
    assert await storage.queues.get_metadata(P, Q) == {"a": 1, "nested": {"b": [1, 2]}}
    await storage.queues.set_metadata(P, Q, {"c": "x"})
    assert await storage.queues.get_metadata(P, Q) == {"c": "x"}
    await storage.queues.create(P, Q, {"d": True})
    assert await storage.queues.get_metadata(P, Q) == {"d": True}
    await storage.queues.create(P, Q, None)
    assert await storage.queues.get_metadata(P, Q) == {"d": True}


async def test_missing_queue_errors(storage: Storage) -> None:
    with pytest.raises(QueueDoesNotExist):
        await storage.queues.get_metadata(P, Q)
    with pytest.raises(QueueDoesNotExist):
        await storage.queues.set_metadata(P, Q, {})
    with pytest.raises(QueueDoesNotExist):
        await storage.queues.stats(P, Q)
    with pytest.raises(QueueDoesNotExist):
        await storage.messages.post(P, Q, msgs(1), CLIENT)
    await storage.queues.delete(P, Q)  # not an error


async def test_list_queues_sorted_paged_per_project(storage: Storage) -> None:
    for name in ["c", "a", "e", "b", "d"]:
        await storage.queues.create(P, name, {"n": name})
    await storage.queues.create("project-b", "zz", None)
    page = await storage.queues.list(P, marker=None, limit=2, detailed=False)
    assert [q.name for q in page] == ["a", "b"]
    assert page[0].metadata is None
    page = await storage.queues.list(P, marker="b", limit=10, detailed=True)
    assert [(q.name, q.metadata) for q in page] == [
        ("c", {"n": "c"}),
        ("d", {"n": "d"}),
        ("e", {"n": "e"}),
    ]
    assert [
        q.name for q in await storage.queues.list("project-b", marker=None, limit=5, detailed=False)
    ] == ["zz"]


async def test_topic_containers_are_listed_apart_from_queues(storage: Storage) -> None:
    for name in ["c", "a", "b"]:
        await storage.queues.create(P, name, {"kind": "queue"})
        await storage.queues.create(P, container(name), {"kind": "topic"})
    await storage.messages.post(P, container("a"), msgs("t"), CLIENT)
    queues = await storage.queues.list(P, marker=None, limit=10, detailed=True)
    assert [(q.name, q.metadata) for q in queues] == [(n, {"kind": "queue"}) for n in "abc"]
    page = await storage.queues.list(P, marker=None, limit=2, detailed=False, topics=True)
    assert [q.name for q in page] == [container("a"), container("b")]
    page = await storage.queues.list(P, marker="b", limit=10, detailed=True, topics=True)
    assert [(q.name, q.metadata) for q in page] == [(container("c"), {"kind": "topic"})]
    assert await storage.queues.list(P, marker="c", limit=10, detailed=False, topics=True) == []
    assert (await storage.queues.stats(P, container("a"))).total == 1
    assert (await storage.queues.stats(P, "a")).total == 0


async def test_projects_are_isolated(storage: Storage) -> None:
    await storage.queues.create("p1", Q, {"owner": 1})
    await storage.queues.create("p2", Q, {"owner": 2})
    await storage.messages.post("p1", Q, msgs("for p1"), CLIENT)
    assert await storage.queues.get_metadata("p2", Q) == {"owner": 2}
    found = await storage.messages.list(
        "p2",
        Q,
        marker=None,
        limit=20,
        echo=True,
        include_claimed=True,
        include_delayed=True,
        client_id=CLIENT,
    )
    assert found == []
    await storage.queues.delete("p2", Q)
    assert await storage.queues.exists("p1", Q)
    assert (await storage.queues.stats("p1", Q)).total == 1


async def test_delete_queue_removes_messages(storage: Storage) -> None:
    await storage.queues.create(P, Q, None)
    ids = await storage.messages.post(P, Q, msgs(1, 2), CLIENT)
    await storage.queues.delete(P, Q)
    assert not await storage.queues.exists(P, Q)
    await storage.queues.create(P, Q, None)
    assert await storage.messages.bulk_get(P, Q, ids) == []


# --- messages ------------------------------------------------------------------------------------


async def test_post_assigns_ids_and_rising_markers(storage: Storage) -> None:
    await storage.queues.create(P, Q, None)
    first = await storage.messages.post(P, Q, msgs("a", "b"), CLIENT)
    second = await storage.messages.post(P, Q, msgs("c"), CLIENT)
    assert len(set(first + second)) == 3
    assert all(is_id(i) for i in first + second)
    found = await storage.messages.list(
        P,
        Q,
        marker=None,
        limit=20,
        echo=True,
        include_claimed=False,
        include_delayed=False,
        client_id=CLIENT,
    )
    assert [m.id for m in found] == first + second
    assert [m.marker for m in found] == [1, 2, 3]


async def test_message_fields_preserved(storage: Storage, clock: FakeClock) -> None:
    await storage.queues.create(P, Q, None)
    body = {"event": "x", "n": [1, 2.5, None, True], "s": "ünïcode"}
    [mid] = await storage.messages.post(P, Q, msgs(body, ttl=120), CLIENT)
    clock.advance(30)
    m = await storage.messages.get(P, Q, mid)
    assert m.body == body
    assert m.ttl == 120
    assert m.age(clock()) == 30
    assert m.client_id == CLIENT
    assert m.claim_id is None


async def test_list_pages_by_marker(storage: Storage) -> None:
    await storage.queues.create(P, Q, None)
    await storage.messages.post(P, Q, msgs(*range(7)), CLIENT)
    page1 = await storage.messages.list(
        P,
        Q,
        marker=None,
        limit=3,
        echo=True,
        include_claimed=False,
        include_delayed=False,
        client_id=CLIENT,
    )
    page2 = await storage.messages.list(
        P,
        Q,
        marker=page1[-1].marker,
        limit=3,
        echo=True,
        include_claimed=False,
        include_delayed=False,
        client_id=CLIENT,
    )
    assert [m.body for m in page1] == [0, 1, 2]
    assert [m.body for m in page2] == [3, 4, 5]


async def test_list_echo_filters_own_messages(storage: Storage) -> None:
    await storage.queues.create(P, Q, None)
    await storage.messages.post(P, Q, msgs("mine"), CLIENT)
    await storage.messages.post(P, Q, msgs("theirs"), OTHER_CLIENT)
    assert await listing(storage, echo=False) == ["theirs"]
    assert await listing(storage, echo=True) == ["mine", "theirs"]


async def test_list_missing_queue_is_empty(storage: Storage) -> None:
    assert await listing(storage) == []


async def test_expired_messages_invisible_then_collected(
    storage: Storage, clock: FakeClock
) -> None:
    await storage.queues.create(P, Q, None)
    [short] = await storage.messages.post(P, Q, msgs("short", ttl=60), CLIENT)
    await storage.messages.post(P, Q, msgs("long", ttl=600), CLIENT)
    clock.advance(61)
    assert await listing(storage) == ["long"]
    with pytest.raises(MessageDoesNotExist):
        await storage.messages.get(P, Q, short)
    assert await storage.messages.bulk_get(P, Q, [short]) == []
    assert (await storage.queues.stats(P, Q)).total == 1
    assert await storage.collect_garbage() >= 1
    assert await listing(storage) == ["long"]


async def test_delayed_messages_hidden_until_due(storage: Storage, clock: FakeClock) -> None:
    await storage.queues.create(P, Q, None)
    await storage.messages.post(P, Q, msgs("later", delay=30), CLIENT)
    await storage.messages.post(P, Q, msgs("now"), CLIENT)
    assert await listing(storage) == ["now"]
    assert await listing(storage, include_delayed=True) == ["later", "now"]
    claim, claimed = await storage.claims.create(P, Q, ttl=60, grace=60, limit=10)
    assert [m.body for m in claimed] == ["now"]
    stats = await storage.queues.stats(P, Q)
    assert (stats.delayed, stats.claimed, stats.free) == (1, 1, 0)
    clock.advance(31)
    assert await listing(storage) == ["later"]


async def test_get_unknown_or_malformed_id(storage: Storage) -> None:
    await storage.queues.create(P, Q, None)
    with pytest.raises(MessageDoesNotExist):
        await storage.messages.get(P, Q, new_id())
    with pytest.raises(MessageDoesNotExist):
        await storage.messages.get(P, Q, "not-an-id")


async def test_bulk_get_skips_unknown(storage: Storage) -> None:
    await storage.queues.create(P, Q, None)
    ids = await storage.messages.post(P, Q, msgs("a", "b", "c"), CLIENT)
    found = await storage.messages.bulk_get(P, Q, [ids[2], new_id(), "junk", ids[0]])
    assert sorted(m.body for m in found) == ["a", "c"]


async def test_delete_rules(storage: Storage) -> None:
    await storage.queues.create(P, Q, None)
    a, b, c = await storage.messages.post(P, Q, msgs("a", "b", "c"), CLIENT)
    await storage.messages.delete(P, Q, a, None)
    await storage.messages.delete(P, Q, a, None)  # already gone: not an error
    claim, held = await storage.claims.create(P, Q, ttl=60, grace=60, limit=1)
    assert [m.id for m in held] == [b]
    with pytest.raises(MessageIsClaimed):
        await storage.messages.delete(P, Q, b, None)
    with pytest.raises(MessageIsClaimed):
        await storage.messages.delete(P, Q, b, new_id())
    with pytest.raises(MessageNotClaimed):
        await storage.messages.delete(P, Q, c, claim.id)
    with pytest.raises(InvalidClaim):
        await storage.messages.delete(P, Q, c, "bogus")
    await storage.messages.delete(P, Q, b, claim.id)
    assert await storage.messages.bulk_get(P, Q, [a, b, c]) == [await storage.messages.get(P, Q, c)]


async def test_bulk_delete(storage: Storage) -> None:
    await storage.queues.create(P, Q, None)
    ids = await storage.messages.post(P, Q, msgs(1, 2, 3, 4), CLIENT)
    await storage.messages.bulk_delete(P, Q, [ids[0], ids[2], "junk", new_id()], None)
    assert await listing(storage) == [2, 4]


async def test_bulk_delete_with_claim_ids_only_held(storage: Storage) -> None:
    await storage.queues.create(P, Q, None)
    ids = await storage.messages.post(P, Q, msgs(1, 2, 3), CLIENT)
    claim, _ = await storage.claims.create(P, Q, ttl=60, grace=60, limit=1)
    await storage.messages.bulk_delete(P, Q, ids, [claim.id])
    assert await listing(storage) == [2, 3]


async def test_pop_removes_oldest_free(storage: Storage) -> None:
    await storage.queues.create(P, Q, None)
    await storage.messages.post(P, Q, msgs(1, 2, 3, 4), CLIENT)
    await storage.claims.create(P, Q, ttl=60, grace=60, limit=1)
    popped = await storage.messages.pop(P, Q, 2)
    assert [m.body for m in popped] == [2, 3]
    assert await listing(storage, include_claimed=True) == [1, 4]


async def test_purge_keeps_queue_and_counter(storage: Storage) -> None:
    await storage.queues.create(P, Q, {"k": 1})
    await storage.messages.post(P, Q, msgs(1, 2), CLIENT)
    await storage.queues.purge(P, Q)
    assert await storage.queues.get_metadata(P, Q) == {"k": 1}
    assert (await storage.queues.stats(P, Q)).total == 0
    await storage.messages.post(P, Q, msgs(3), CLIENT)
    [m] = await storage.messages.list(
        P,
        Q,
        marker=None,
        limit=20,
        echo=True,
        include_claimed=False,
        include_delayed=False,
        client_id=CLIENT,
    )
    assert m.marker == 3


async def test_stats_counts_and_ends(storage: Storage) -> None:
    await storage.queues.create(P, Q, None)
    ids = await storage.messages.post(P, Q, msgs(1, 2, 3), CLIENT)
    await storage.claims.create(P, Q, ttl=60, grace=60, limit=2)
    stats = await storage.queues.stats(P, Q)
    assert (stats.free, stats.claimed, stats.total) == (1, 2, 3)
    assert stats.oldest is not None and stats.oldest.id == ids[0]
    assert stats.newest is not None and stats.newest.id == ids[2]
    await storage.queues.purge(P, Q)
    empty = await storage.queues.stats(P, Q)
    assert (empty.total, empty.oldest) == (0, None)


# --- claims --------------------------------------------------------------------------------------


async def test_claim_takes_oldest_free_and_extends_life(storage: Storage, clock: FakeClock) -> None:
    await storage.queues.create(P, Q, None)
    ids = await storage.messages.post(P, Q, msgs(1, 2, 3, ttl=60), CLIENT)
    claim, held = await storage.claims.create(P, Q, ttl=100, grace=50, limit=2)
    assert is_id(claim.id)
    assert [m.id for m in held] == ids[:2]
    assert all(m.claim_id == claim.id for m in held)
    clock.advance(120)  # past the messages' own ttl, inside claim + grace
    survivors = await storage.messages.bulk_get(P, Q, ids)
    assert sorted(m.id for m in survivors) == sorted(ids[:2])
    clock.advance(40)  # 160 > 100 + 50
    assert await storage.messages.bulk_get(P, Q, ids) == []


async def test_claim_get_update_and_expiry(storage: Storage, clock: FakeClock) -> None:
    await storage.queues.create(P, Q, None)
    await storage.messages.post(P, Q, msgs(1, 2, ttl=3600), CLIENT)
    claim, held = await storage.claims.create(P, Q, ttl=60, grace=60, limit=5)
    clock.advance(10)
    got, messages = await storage.claims.get(P, Q, claim.id)
    assert (got.id, got.ttl, got.age(clock())) == (claim.id, 60, 10)
    assert [m.body for m in messages] == [1, 2]
    await storage.claims.update(P, Q, claim.id, ttl=120, grace=60)
    clock.advance(100)  # 110s after creation: alive only thanks to the renewal
    got, messages = await storage.claims.get(P, Q, claim.id)
    assert got.ttl == 120 and len(messages) == 2
    assert await listing(storage) == []
    clock.advance(21)
    with pytest.raises(ClaimDoesNotExist):
        await storage.claims.get(P, Q, claim.id)
    with pytest.raises(ClaimDoesNotExist):
        await storage.claims.update(P, Q, claim.id, ttl=60, grace=60)
    assert await listing(storage) == [1, 2]  # expired claim: free again


async def test_claim_nothing_free(storage: Storage) -> None:
    await storage.queues.create(P, Q, None)
    claim, held = await storage.claims.create(P, Q, ttl=60, grace=60, limit=5)
    assert held == []
    with pytest.raises(ClaimDoesNotExist):
        await storage.claims.get(P, Q, claim.id)


async def test_claim_release(storage: Storage) -> None:
    await storage.queues.create(P, Q, None)
    await storage.messages.post(P, Q, msgs(1, 2), CLIENT)
    claim, _ = await storage.claims.create(P, Q, ttl=60, grace=60, limit=5)
    assert await listing(storage) == []
    await storage.claims.delete(P, Q, claim.id)
    await storage.claims.delete(P, Q, claim.id)  # idempotent
    await storage.claims.delete(P, Q, "junk")
    assert await listing(storage) == [1, 2]
    with pytest.raises(ClaimDoesNotExist):
        await storage.claims.get(P, Q, claim.id)


async def test_claim_errors_for_unknown(storage: Storage) -> None:
    await storage.queues.create(P, Q, None)
    for cid in (new_id(), "junk"):
        with pytest.raises(ClaimDoesNotExist):
            await storage.claims.get(P, Q, cid)
        with pytest.raises(ClaimDoesNotExist):
            await storage.claims.update(P, Q, cid, ttl=60, grace=60)


async def test_claim_is_scoped_to_queue(storage: Storage) -> None:
    await storage.queues.create(P, Q, None)
    await storage.queues.create(P, "other", None)
    await storage.messages.post(P, Q, msgs(1), CLIENT)
    claim, _ = await storage.claims.create(P, Q, ttl=60, grace=60, limit=5)
    with pytest.raises(ClaimDoesNotExist):
        await storage.claims.get(P, "other", claim.id)


async def test_concurrent_claimers_never_share(storage: Storage) -> None:
    await storage.queues.create(P, Q, None)
    for chunk in range(10):
        await storage.messages.post(P, Q, msgs(*range(chunk * 10, chunk * 10 + 10)), CLIENT)

    async def claimer() -> list[str]:
        got: list[str] = []
        while True:
            _, held = await storage.claims.create(P, Q, ttl=60, grace=60, limit=3)
            if not held:
                return got
            got.extend(m.id for m in held)

    results = await asyncio.gather(*(claimer() for _ in range(8)))
    everything = [mid for r in results for mid in r]
    assert len(everything) == 100
    assert len(set(everything)) == 100


async def test_fifo_for_single_producer(storage: Storage) -> None:
    await storage.queues.create(P, Q, None)
    for i in range(30):
        await storage.messages.post(P, Q, msgs(i), CLIENT)
    order: list[object] = []
    while True:
        claim, held = await storage.claims.create(P, Q, ttl=60, grace=60, limit=4)
        if not held:
            break
        order.extend(m.body for m in held)
        for m in held:
            await storage.messages.delete(P, Q, m.id, claim.id)
    assert order == list(range(30))


async def test_ping(storage: Storage) -> None:
    assert await storage.ping() is True

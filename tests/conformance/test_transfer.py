"""The transfer seam (`TransferStore`) on every driver: fences, exports, imports, digests, drop;
then whole queues copied between two partitions of every pairing of drivers."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from node.errors import QueueDoesNotExist, QueueFrozen, TransferConflict
from node.models import Claim, Fence, Message, NewMessage, QueueExport, new_id
from node.storage import open_storage, transfer
from node.storage.base import Storage
from tests.conftest import FakeClock, storage_uri

P = "project-a"
Q = "orders"
CLIENT = "3b8a7c52-52f1-4a3b-9e7f-1d2c3b4a5f60"
OTHER_CLIENT = "8d4e2f10-0a1b-4c5d-8e9f-a1b2c3d4e5f6"


def msgs(*bodies: object, ttl: int = 300, delay: int = 0) -> list[NewMessage]:
    return [NewMessage(body=b, ttl=ttl, delay=delay) for b in bodies]


async def ids_listed(s: Storage, marker: int | None = None, limit: int = 20) -> list[str]:
    found = await s.messages.list(
        P,
        Q,
        marker=marker,
        limit=limit,
        echo=True,
        include_claimed=True,
        include_delayed=True,
        client_id=CLIENT,
    )
    return [m.id for m in found]


async def everything(s: Storage) -> list[Message]:
    return await s.transfer.export_messages(P, Q, after_marker=0, limit=1000)


def message(marker: int, created: float, ttl: int = 300, **fields: Any) -> Message:
    defaults: dict[str, Any] = {"id": new_id(), "body": {"n": marker}, "client_id": CLIENT}
    return Message(
        marker=marker, ttl=ttl, created=created, expires=created + ttl, **{**defaults, **fields}
    )


def export_of(metadata: dict[str, Any], *, counter: int, created: float) -> QueueExport:
    return QueueExport(metadata=metadata, counter=counter, created=created)


# --- fences --------------------------------------------------------------------------------------


async def test_freeze_refuses_every_write(storage: Storage) -> None:
    await storage.queues.create(P, Q, {"a": 1})
    ids = await storage.messages.post(P, Q, msgs("one", "two", "three"), CLIENT)
    claim, _ = await storage.claims.create(P, Q, ttl=60, grace=60, limit=1)
    before = await storage.transfer.digest(P, Q)
    await storage.transfer.freeze(P, Q, Fence.FROZEN)
    assert await storage.transfer.fence(P, Q) == "frozen"

    writes: list[Callable[[], Awaitable[Any]]] = [
        lambda: storage.messages.post(P, Q, msgs("four"), CLIENT),
        lambda: storage.messages.delete(P, Q, ids[1], None),
        lambda: storage.messages.delete(P, Q, ids[0], claim.id),
        lambda: storage.messages.bulk_delete(P, Q, ids, None),
        lambda: storage.messages.pop(P, Q, 2),
        lambda: storage.claims.create(P, Q, ttl=60, grace=60, limit=5),
        lambda: storage.claims.update(P, Q, claim.id, ttl=120, grace=60),
        lambda: storage.claims.delete(P, Q, claim.id),
        lambda: storage.queues.set_metadata(P, Q, {"b": 2}),
        lambda: storage.queues.create(P, Q, {"c": 3}),
        lambda: storage.queues.create(P, Q, None),
        lambda: storage.queues.purge(P, Q),
        lambda: storage.queues.delete(P, Q),
    ]
    for write in writes:
        with pytest.raises(QueueFrozen) as refused:
            await write()
        assert refused.value.reason == "frozen"
    # Nothing changed, and every read still answers.
    assert await storage.transfer.digest(P, Q) == before
    assert await storage.queues.get_metadata(P, Q) == {"a": 1}
    assert await storage.queues.exists(P, Q)
    assert (await storage.queues.stats(P, Q)).total == 3
    assert await ids_listed(storage) == ids
    assert (await storage.messages.get(P, Q, ids[2])).body == "three"
    assert [m.id for m in await storage.messages.bulk_get(P, Q, ids[:2])] == ids[:2]
    assert (await storage.claims.get(P, Q, claim.id))[0].id == claim.id

    await storage.transfer.unfreeze(P, Q)
    assert await storage.transfer.fence(P, Q) is None
    [late] = await storage.messages.post(P, Q, msgs("four"), CLIENT)
    assert (await storage.messages.get(P, Q, late)).marker == 4


async def test_moved_queue_refuses_reads_too(storage: Storage) -> None:
    await storage.queues.create(P, Q, None)
    [mid] = await storage.messages.post(P, Q, msgs("one"), CLIENT)
    claim, _ = await storage.claims.create(P, Q, ttl=60, grace=60, limit=1)
    await storage.transfer.freeze(P, Q, Fence.FROZEN)
    await storage.transfer.freeze(P, Q, Fence.MOVED)  # a second freeze replaces the reason
    assert await storage.transfer.fence(P, Q) == "moved"

    reads: list[Callable[[], Awaitable[Any]]] = [
        lambda: storage.queues.exists(P, Q),
        lambda: storage.queues.get_metadata(P, Q),
        lambda: storage.queues.stats(P, Q),
        lambda: ids_listed(storage),
        lambda: storage.messages.get(P, Q, mid),
        lambda: storage.messages.bulk_get(P, Q, [mid]),
        lambda: storage.claims.get(P, Q, claim.id),
        lambda: storage.messages.post(P, Q, msgs("two"), CLIENT),
    ]
    for read in reads:
        with pytest.raises(QueueFrozen) as refused:
            await read()
        assert refused.value.reason == "moved"
    # The migration's own reads are not refused: it still has to copy and verify.
    assert [m.id for m in await everything(storage)] == [mid]
    assert (await storage.transfer.digest(P, Q)).claim_ids == (claim.id,)


async def test_freezing_a_missing_queue_leaves_a_tombstone(storage: Storage) -> None:
    await storage.transfer.freeze(P, Q, Fence.FROZEN)
    assert await storage.transfer.fence(P, Q) == "frozen"
    assert await storage.transfer.export_queue(P, Q) is None
    assert not await storage.queues.exists(P, Q)
    with pytest.raises(QueueDoesNotExist):
        await storage.queues.get_metadata(P, Q)
    for create in (None, {"m": 1}):
        with pytest.raises(QueueFrozen):
            await storage.queues.create(P, Q, create)
    with pytest.raises(QueueFrozen):  # not QueueDoesNotExist: the proxy must retry elsewhere
        await storage.messages.post(P, Q, msgs("x"), CLIENT)
    assert not await storage.queues.exists(P, Q)
    assert await storage.queues.list(P, marker=None, limit=10, detailed=False) == []

    await storage.transfer.freeze(P, Q, Fence.MOVED)
    with pytest.raises(QueueFrozen):
        await storage.queues.exists(P, Q)

    await storage.transfer.unfreeze(P, Q)  # the tombstone goes with the fence
    assert not await storage.queues.exists(P, Q)
    assert await storage.queues.create(P, Q, None) is True


async def test_fences_are_per_queue_and_reasons_are_tokens(storage: Storage) -> None:
    await storage.queues.create(P, Q, None)
    await storage.queues.create("project-b", Q, None)
    await storage.transfer.freeze(P, Q, Fence.FROZEN)
    assert await storage.messages.post("project-b", Q, msgs("x"), CLIENT)
    assert await storage.transfer.fence("project-b", Q) is None
    for bad in ("", "Frozen", "two words", "x" * 40, "frozen\r\nX-Injected: 1"):
        with pytest.raises(ValueError):
            await storage.transfer.freeze(P, "other", bad)
    assert await storage.transfer.fence(P, "other") is None


# --- export --------------------------------------------------------------------------------------


async def test_export_pages_live_messages_with_claims_and_delays(
    storage: Storage, clock: FakeClock
) -> None:
    created = clock()
    await storage.queues.create(P, Q, {"purpose": "orders"})
    ids = await storage.messages.post(P, Q, msgs("a", "b", "c", "d"), CLIENT)
    [delayed] = await storage.messages.post(P, Q, msgs("e", delay=90), OTHER_CLIENT)
    [short] = await storage.messages.post(P, Q, msgs("f", ttl=60), CLIENT)
    claim, _ = await storage.claims.create(P, Q, ttl=100, grace=50, limit=1)
    stale, _ = await storage.claims.create(P, Q, ttl=30, grace=30, limit=1)
    await storage.messages.delete(P, Q, ids[2], None)
    clock.advance(45)  # `stale` has expired; `short` lives until 60

    exported = await storage.transfer.export_queue(P, Q)
    assert exported is not None
    assert (exported.metadata, exported.counter, exported.created) == (
        {"purpose": "orders"},
        6,
        created,
    )
    assert exported.fence is None
    page1 = await storage.transfer.export_messages(P, Q, after_marker=0, limit=2)
    page2 = await storage.transfer.export_messages(P, Q, after_marker=page1[-1].marker, limit=10)
    assert [m.id for m in page1 + page2] == [ids[0], ids[1], ids[3], delayed, short]
    assert [m.marker for m in page1 + page2] == [1, 2, 4, 5, 6]
    first, second = page1
    assert (first.claim_id, first.claim_expires) == (claim.id, created + 100)
    assert first.expires == created + 300  # already outlives the claim and its grace
    assert (second.claim_id, second.claim_expires) == (None, 0.0)  # its claim expired
    assert page2[1].delay_expires == created + 90
    assert page2[1].client_id == OTHER_CLIENT
    assert [c.id for c in await storage.transfer.export_claims(P, Q)] == [claim.id]  # not stale
    assert (await storage.claims.get(P, Q, claim.id))[0].id == claim.id

    clock.advance(20)  # `short` has expired
    assert [m.id for m in await everything(storage)] == [ids[0], ids[1], ids[3], delayed]


async def test_rows_are_the_messages_with_their_bodies_as_stored(
    storage: Storage, clock: FakeClock
) -> None:
    await storage.queues.create(P, Q, None)
    await storage.messages.post(P, Q, msgs({"$x": {"a.b": 10**30}}, [1, 2.5, None], "ünï"), CLIENT)
    await storage.claims.create(P, Q, ttl=100, grace=50, limit=1)
    await storage.claims.create(P, Q, ttl=30, grace=30, limit=1)
    clock.advance(45)  # the second claim has expired: no claim, as in an export
    messages = await storage.transfer.export_messages(P, Q, after_marker=0, limit=10)
    rows = await storage.transfer.export_rows(P, Q, after_marker=0, limit=10)
    assert rows == [transfer.row(m) for m in messages]
    assert [json.loads(r.body) for r in rows] == [m.body for m in messages]
    assert (rows[0].claim_id is not None, rows[1].claim_id, rows[1].claim_expires) == (
        True,
        None,
        0.0,
    )
    assert await storage.transfer.export_rows(P, Q, after_marker=1, limit=1) == rows[1:2]


async def test_export_of_a_missing_queue(storage: Storage) -> None:
    assert await storage.transfer.export_queue(P, Q) is None
    assert await everything(storage) == []
    assert await storage.transfer.export_claims(P, Q) == []
    digest = await storage.transfer.digest(P, Q)
    assert (digest.count, digest.max_marker, digest.claim_ids) == (0, 0, ())


# --- import --------------------------------------------------------------------------------------


async def test_import_preserves_fields_and_is_idempotent(
    storage: Storage, clock: FakeClock
) -> None:
    now = clock()
    claim = Claim(id=new_id(), ttl=120, grace=60, created=now - 10, expires=now + 110)
    brought = [
        message(3, now - 10, ttl=190, claim_id=claim.id, claim_expires=claim.expires),
        message(5, now - 5, delay_expires=now + 30, client_id=OTHER_CLIENT, body=[1, 2.5]),
        message(9, now - 1, body={"$x": {"a.b": 10**30}}),
    ]
    with pytest.raises(QueueDoesNotExist):
        await storage.transfer.import_messages(P, Q, brought)
    await storage.transfer.import_queue(P, Q, export_of({"m": 1}, counter=7, created=now - 99))

    assert await storage.transfer.import_messages(P, Q, brought) == 3
    assert await storage.transfer.import_claims(P, Q, [claim]) == 1
    assert await everything(storage) == brought
    got_claim, held = await storage.claims.get(P, Q, claim.id)
    assert got_claim == claim
    assert [m.id for m in held] == [brought[0].id]
    exported = await storage.transfer.export_queue(P, Q)
    assert exported is not None
    assert (exported.metadata, exported.counter, exported.created) == ({"m": 1}, 9, now - 99)

    digest = await storage.transfer.digest(P, Q)
    assert await storage.transfer.import_messages(P, Q, brought) == 0
    assert await storage.transfer.import_claims(P, Q, [claim]) == 0
    assert await storage.transfer.digest(P, Q) == digest

    released = dataclasses.replace(brought[0], claim_id=None, claim_expires=0.0)
    assert await storage.transfer.import_messages(P, Q, [released, *brought[1:]]) == 1
    assert (await everything(storage))[0] == released
    assert await storage.transfer.digest(P, Q) != digest

    # The next post continues the imported sequence.
    [posted] = await storage.messages.post(P, Q, msgs("next"), CLIENT)
    assert (await storage.messages.get(P, Q, posted)).marker == 10


async def test_import_refuses_to_overwrite_another_message(
    storage: Storage, clock: FakeClock
) -> None:
    await storage.queues.create(P, Q, None)
    [mid] = await storage.messages.post(P, Q, msgs("here first"), CLIENT)
    await storage.queues.create(P, "elsewhere", None)
    with pytest.raises(TransferConflict):  # marker 1 is another message's
        await storage.transfer.import_messages(P, Q, [message(1, clock())])
    with pytest.raises(TransferConflict):  # that id lives in another queue
        await storage.transfer.import_messages(P, "elsewhere", [message(1, clock(), id=mid)])
    assert [m.body for m in await everything(storage)] == ["here first"]


async def test_import_queue_never_lowers_the_counter_and_keeps_the_fence(
    storage: Storage, clock: FakeClock
) -> None:
    await storage.transfer.freeze(P, Q, Fence.MOVED)  # a tombstone: the queue moved away once
    await storage.transfer.import_queue(P, Q, export_of({"v": 1}, counter=12, created=clock()))
    await storage.transfer.import_queue(P, Q, export_of({"v": 2}, counter=5, created=clock()))
    exported = await storage.transfer.export_queue(P, Q)
    assert exported is not None
    assert (exported.metadata, exported.counter, exported.fence) == ({"v": 2}, 12, "moved")
    with pytest.raises(QueueFrozen):  # the tombstone's fence now guards the imported queue
        await storage.messages.post(P, Q, msgs("x"), CLIENT)
    await storage.transfer.unfreeze(P, Q)
    [mid] = await storage.messages.post(P, Q, msgs("x"), CLIENT)
    assert (await storage.messages.get(P, Q, mid)).marker == 13


async def test_catch_up_deletes_are_unconditional(storage: Storage) -> None:
    await storage.queues.create(P, Q, None)
    ids = await storage.messages.post(P, Q, msgs(1, 2, 3), CLIENT)
    claim, _ = await storage.claims.create(P, Q, ttl=60, grace=60, limit=2)
    await storage.transfer.freeze(P, Q, Fence.FROZEN)
    assert await storage.transfer.delete_messages(P, Q, [ids[0], ids[2], new_id(), "junk"]) == 2
    assert await storage.transfer.delete_messages(P, "other", [ids[1]]) == 0
    assert await storage.transfer.delete_claims(P, Q, [claim.id]) == 1
    assert [m.id for m in await everything(storage)] == [ids[1]]
    assert await storage.transfer.export_claims(P, Q) == []


async def test_digest_follows_bodies_claims_and_expiry(storage: Storage, clock: FakeClock) -> None:
    await storage.queues.create(P, Q, None)
    ids = await storage.messages.post(P, Q, msgs("a", "b"), CLIENT)
    await storage.messages.post(P, Q, msgs("short", ttl=60), CLIENT)
    first = await storage.transfer.digest(P, Q)
    assert (first.count, first.max_marker, first.claim_ids) == (3, 3, ())
    assert len(first.checksum) == 16

    claim, _ = await storage.claims.create(P, Q, ttl=30, grace=30, limit=1)
    claimed = await storage.transfer.digest(P, Q)
    assert claimed.claim_ids == (claim.id,)
    assert claimed.checksum != first.checksum
    await storage.claims.delete(P, Q, claim.id)
    released = await storage.transfer.digest(P, Q)  # no claim, but one claim counted
    assert (released.count, released.max_marker, released.claim_ids) == (3, 3, ())
    assert released.checksum not in (first.checksum, claimed.checksum)

    await storage.messages.delete(P, Q, ids[1], None)
    assert (await storage.transfer.digest(P, Q)).count == 2
    clock.advance(61)
    gone = await storage.transfer.digest(P, Q)
    assert (gone.count, gone.max_marker) == (1, 1)


async def test_drop_empties_in_batches_and_keeps_the_fence(storage: Storage) -> None:
    await storage.queues.create(P, Q, {"a": 1})
    await storage.messages.post(P, Q, msgs(*range(5)), CLIENT)
    await storage.claims.create(P, Q, ttl=60, grace=60, limit=1)
    await storage.transfer.freeze(P, Q, Fence.MOVED)

    dropped = [await storage.transfer.drop(P, Q, limit=2) for _ in range(5)]
    assert dropped == [2, 2, 2, 1, 0]  # 5 messages and 1 claim, then the queue's record
    assert await storage.transfer.export_queue(P, Q) is None
    assert await storage.transfer.fence(P, Q) == "moved"
    with pytest.raises(QueueFrozen):
        await storage.queues.exists(P, Q)
    with pytest.raises(QueueFrozen):
        await storage.queues.create(P, Q, None)
    with pytest.raises(ValueError):
        await storage.transfer.drop(P, Q, limit=0)

    # Unfenced (a cancelled copy on its target), nothing is left at all.
    await storage.queues.create(P, "copy", None)
    await storage.messages.post(P, "copy", msgs(1), CLIENT)
    assert [await storage.transfer.drop(P, "copy", limit=10) for _ in range(3)] == [1, 1, 0]
    assert not await storage.queues.exists(P, "copy")
    assert await storage.queues.create(P, "copy", None) is True


# --- a queue copied between two partitions -------------------------------------------------------

PAIRS = [
    ("sqlite", "sqlite"),
    pytest.param(("sqlite", "mongodb"), marks=pytest.mark.mongodb, id="sqlite-mongodb"),
    pytest.param(("mongodb", "sqlite"), marks=pytest.mark.mongodb, id="mongodb-sqlite"),
    pytest.param(("mongodb", "mongodb"), marks=pytest.mark.mongodb, id="mongodb-mongodb"),
    *(
        pytest.param(pair, marks=marks, id="-".join(pair))
        for pair, marks in [
            (("postgresql", "postgresql"), [pytest.mark.postgresql]),
            (("sqlite", "postgresql"), [pytest.mark.postgresql]),
            (("postgresql", "sqlite"), [pytest.mark.postgresql]),
            (("postgresql", "mongodb"), [pytest.mark.postgresql, pytest.mark.mongodb]),
            (("mongodb", "postgresql"), [pytest.mark.postgresql, pytest.mark.mongodb]),
        ]
    ),
]


@pytest.fixture(params=PAIRS, ids=lambda p: "-".join(p) if isinstance(p, tuple) else None)
async def pair(
    request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock
) -> AsyncIterator[tuple[Storage, Storage]]:
    """A source and a target partition, on the drivers the parameter names."""
    stores: list[Storage] = []
    try:
        for role, driver in zip(("source", "target"), request.param, strict=True):
            (tmp_path / role).mkdir()
            uri = storage_uri(driver, tmp_path / role, request)
            stores.append(await open_storage(uri, clock))
        yield stores[0], stores[1]
    finally:
        for store in stores:
            await store.close()


async def copy_queue(source: Storage, target: Storage, *, batch: int = 2) -> None:
    """The copy a migration worker makes: queue, messages in marker order, claims."""
    exported = await source.transfer.export_queue(P, Q)
    assert exported is not None
    await target.transfer.import_queue(P, Q, exported)
    after = 0
    while page := await source.transfer.export_messages(P, Q, after_marker=after, limit=batch):
        await target.transfer.import_messages(P, Q, page)
        after = page[-1].marker
    await target.transfer.import_claims(P, Q, await source.transfer.export_claims(P, Q))


async def catch_up(source: Storage, target: Storage) -> None:
    """Copy again, then remove from the target what the source no longer has."""
    await copy_queue(source, target, batch=100)
    kept = {m.id for m in await everything(source)}
    await target.transfer.delete_messages(
        P, Q, [m.id for m in await everything(target) if m.id not in kept]
    )
    claims = {c.id for c in await source.transfer.export_claims(P, Q)}
    await target.transfer.delete_claims(
        P, Q, [c.id for c in await target.transfer.export_claims(P, Q) if c.id not in claims]
    )


async def busy_queue(s: Storage, clock: FakeClock) -> dict[str, Any]:
    """A queue with claimed, delayed, expiring, expired and deleted messages from two clients."""
    await s.queues.create(P, Q, {"purpose": "orders", "_default_message_ttl": 3600})
    a, b, c, d, e = await s.messages.post(
        P,
        Q,
        [
            NewMessage({"n": 1, "s": "ünï"}, 300),
            NewMessage("deleted", 600),
            NewMessage([3, 2.5, None, True], 120),
            NewMessage(4.5, 900, delay=120),
            NewMessage(None, 61),
        ],
        CLIENT,
    )
    [f] = await s.messages.post(P, Q, msgs("theirs"), OTHER_CLIENT)
    await s.messages.delete(P, Q, b, None)
    claim, held = await s.claims.create(P, Q, ttl=100, grace=300, limit=2)  # a, c; extends both
    stale, _ = await s.claims.create(P, Q, ttl=60, grace=60, limit=1)  # e; extends it to 120
    [g] = await s.messages.post(P, Q, msgs("expires", ttl=60), CLIENT)
    clock.advance(70)  # `stale` and `g` are gone; `e` lives until 120 with no claim
    assert [m.id for m in held] == [a, c]
    return {"ids": [a, c, d, e, f], "claim": claim, "stale": stale, "gone": [b, g]}


async def test_a_copied_queue_is_the_same_queue(
    pair: tuple[Storage, Storage], clock: FakeClock
) -> None:
    source, target = pair
    made = await busy_queue(source, clock)
    # A client paged once before the move; its `next` link carries this marker.
    marker = (
        await source.messages.list(
            P,
            Q,
            marker=None,
            limit=2,
            echo=True,
            include_claimed=True,
            include_delayed=True,
            client_id=CLIENT,
        )
    )[-1].marker
    remaining = await ids_listed(source, marker)

    await source.transfer.freeze(P, Q, Fence.FROZEN)
    await copy_queue(source, target)

    copied = await everything(target)
    assert copied == await everything(source)  # every field of every live message
    assert [m.id for m in copied] == made["ids"]
    assert not {m.id for m in copied} & set(made["gone"])
    a, c, d, e, f = copied
    claim: Claim = made["claim"]
    assert (a.claim_id, a.claim_expires, c.claim_id) == (claim.id, claim.expires, claim.id)
    assert (c.ttl, c.expires) == (400, c.created + 400)  # the claim's grace extended it
    assert d.delay_expires == d.created + 120
    assert (e.claim_id, e.ttl) == (None, 120)
    assert f.client_id == OTHER_CLIENT

    src, dst = await source.transfer.export_queue(P, Q), await target.transfer.export_queue(P, Q)
    assert src is not None and dst is not None
    assert (dst.metadata, dst.counter, dst.created) == (src.metadata, src.counter, src.created)
    assert dst.counter == 7
    assert (src.fence, dst.fence) == ("frozen", None)
    assert await target.transfer.export_claims(P, Q) == [claim]
    assert await target.transfer.digest(P, Q) == await source.transfer.digest(P, Q)
    assert await ids_listed(target, marker) == remaining == [d.id, e.id, f.id]
    got, held = await target.claims.get(P, Q, claim.id)
    assert (got, [m.id for m in held]) == (claim, [a.id, c.id])

    # Copying again changes nothing.
    digest = await target.transfer.digest(P, Q)
    assert await target.transfer.import_messages(P, Q, copied) == 0
    assert await target.transfer.import_claims(P, Q, [claim]) == 0
    await copy_queue(source, target)
    assert await target.transfer.digest(P, Q) == digest

    # The target serves it as the source did: claims, delays and expiry run on.
    probe, taken = await target.claims.create(P, Q, ttl=1, grace=0, limit=10)
    assert [m.id for m in taken] == [e.id, f.id]  # a and c are held; d is delayed
    await target.claims.delete(P, Q, probe.id)
    clock.advance(51)  # t0+121: d is due, e expired, the first claim ended at t0+100
    assert await ids_listed(target) == [a.id, c.id, d.id, f.id]
    _, taken = await target.claims.create(P, Q, ttl=60, grace=60, limit=10)
    assert [m.id for m in taken] == [a.id, c.id, d.id, f.id]
    [posted] = await target.messages.post(P, Q, msgs("after the move"), CLIENT)
    assert (await target.messages.get(P, Q, posted)).marker == 8


async def test_rows_copy_a_queue_as_messages_do(
    pair: tuple[Storage, Storage], clock: FakeClock
) -> None:
    source, target = pair
    await busy_queue(source, clock)
    exported = await source.transfer.export_queue(P, Q)
    assert exported is not None
    await target.transfer.import_queue(P, Q, exported)
    rows = await source.transfer.export_rows(P, Q, after_marker=0, limit=100)
    assert await target.transfer.import_rows(P, Q, rows) == len(rows) == 5
    assert await target.transfer.import_rows(P, Q, rows) == 0  # again: nothing to write
    await target.transfer.import_claims(P, Q, await source.transfer.export_claims(P, Q))
    assert await everything(target) == await everything(source)
    assert await target.transfer.digest(P, Q) == await source.transfer.digest(P, Q)


async def test_catch_up_brings_the_target_level_again(
    pair: tuple[Storage, Storage], clock: FakeClock
) -> None:
    source, target = pair
    made = await busy_queue(source, clock)
    await copy_queue(source, target)  # while clients still use the source
    a, c, d, e, f = made["ids"]
    await source.messages.delete(P, Q, f, None)
    await source.claims.delete(P, Q, made["claim"].id)
    [h] = await source.messages.post(P, Q, msgs("late"), CLIENT)
    newer, _ = await source.claims.create(P, Q, ttl=90, grace=90, limit=1)
    assert await target.transfer.digest(P, Q) != await source.transfer.digest(P, Q)

    await source.transfer.freeze(P, Q, Fence.FROZEN)
    await catch_up(source, target)
    assert await target.transfer.digest(P, Q) == await source.transfer.digest(P, Q)
    assert await everything(target) == await everything(source)
    assert [m.id for m in await everything(target)] == [a, c, d, e, h]
    assert [cl.id for cl in await target.transfer.export_claims(P, Q)] == [newer.id]

    # After the switch: the source answers "moved", then is purged down to its tombstone.
    await source.transfer.freeze(P, Q, Fence.MOVED)
    while await source.transfer.drop(P, Q, limit=3):
        pass
    assert await source.transfer.fence(P, Q) == "moved"
    assert await source.transfer.export_queue(P, Q) is None
    assert len(await everything(target)) == 5


async def test_a_fence_with_a_deadline_lifts_itself(storage: Storage, clock: FakeClock) -> None:
    await storage.queues.create(P, Q, None)
    await storage.messages.post(P, Q, [NewMessage("before", 300)], "c")
    await storage.transfer.freeze(P, Q, Fence.FROZEN, lasts=10)
    with pytest.raises(QueueFrozen) as refused:
        await storage.messages.post(P, Q, [NewMessage("refused", 300)], "c")
    assert refused.value.lifts == pytest.approx(10)
    assert await storage.transfer.extend(P, Q, 20)  # still in force: now 20 s from now
    clock.advance(19.5)
    assert await storage.transfer.fence(P, Q) == Fence.FROZEN
    with pytest.raises(QueueFrozen) as refused:
        await storage.claims.create(P, Q, ttl=60, grace=60, limit=1)
    assert refused.value.lifts == pytest.approx(0.5)
    clock.advance(1)  # lifted: the queue takes writes again, by this partition's clock
    assert await storage.transfer.fence(P, Q) is None
    assert (await storage.transfer.export_queue(P, Q) or QueueExport({}, 0, 0.0)).fence is None
    await storage.messages.post(P, Q, [NewMessage("after", 300)], "c")
    claim, held = await storage.claims.create(P, Q, ttl=60, grace=60, limit=5)
    assert [m.body for m in held] == ["before", "after"]
    assert not await storage.transfer.extend(P, Q, 20)  # lapsed: it cannot be kept any more
    await storage.transfer.freeze(P, Q, Fence.FROZEN)  # no deadline: never lifts itself
    assert not await storage.transfer.extend(P, Q, 20)
    clock.advance(3600)
    assert await storage.transfer.fence(P, Q) == Fence.FROZEN
    with pytest.raises(QueueFrozen) as refused:
        await storage.messages.post(P, Q, [NewMessage("refused", 300)], "c")
    assert refused.value.lifts is None

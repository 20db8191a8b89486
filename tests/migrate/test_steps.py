"""The steps one by one, each run twice (idempotent), over the in-memory catalog and two SQLite
partitions; and the guards that keep a step from dropping the copy the placement names."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from catalog.catalog import Catalog
from catalog.keys import Keys
from catalog.memory import MemoryStore
from catalog.records import Partition, PlacementState
from migrate.errors import Diverged, Unmovable
from migrate.steps import LiveSteps, Move
from node.errors import QueueFrozen
from node.models import Fence, NewMessage
from node.storage import open_storage
from node.storage.base import Storage
from node.storage.outbox import Delivery
from tests.conftest import FakeClock, unique_prefix

P, Q = "tenant", "orders"


@dataclass
class Bench:
    catalog: Catalog
    source: Storage
    target: Storage
    steps: LiveSteps


@pytest.fixture
async def bench(tmp_path: Path, clock: FakeClock) -> AsyncIterator[Bench]:
    catalog = Catalog(MemoryStore(), Keys(unique_prefix()))
    source = await open_storage(f"sqlite:///{tmp_path}/p1.db", clock)
    target = await open_storage(f"sqlite:///{tmp_path}/p2.db", clock)
    for name in ("p1", "p2"):
        await catalog.add_partition(Partition(name, (), storage=f"sqlite:///{tmp_path}/{name}.db"))
    await catalog.place(P, Q, "p1")
    await source.queues.create(P, Q, {"kind": "orders"})
    await source.messages.post(P, Q, [NewMessage({"n": i}, 600) for i in range(30)], "c")
    await source.claims.create(P, Q, ttl=300, grace=60, limit=4)
    steps = LiveSteps(
        Move("m1", P, Q, "p1", "p2"),
        catalog,
        source.transfer,
        target.transfer,
        batch=7,
        subscriptions=(source.subscriptions, target.subscriptions),
    )
    try:
        yield Bench(catalog, source, target, steps)
    finally:
        await source.close()
        await target.close()


async def test_copy_then_catch_up_converges(bench: Bench) -> None:
    s = bench.steps
    await s.copy_queue()
    await s.copy_queue()
    after, copied = 0, 0
    while (batch := await s.copy_batch(after, 7)).read:
        copied, after = copied + batch.copied, batch.marker
    assert copied == 30
    assert (await s.copy_batch(0, 100)).copied == 0  # again: nothing new
    # The claim came with the bulk copy, once: the catch-up follows only changes.
    assert await bench.target.transfer.export_claims(P, Q) == (
        await bench.source.transfer.export_claims(P, Q)
    )
    assert await s.catch_up() == 0
    # The source changes: a post, a delete, a released claim; the catch-up follows.
    src = await bench.source.transfer.export_messages(P, Q, after_marker=0, limit=100)
    await bench.source.messages.post(P, Q, [NewMessage("late", 600)], "c")
    await bench.source.messages.delete(P, Q, src[10].id, None)
    [claim] = await bench.source.transfer.export_claims(P, Q)
    await bench.source.claims.delete(P, Q, claim.id)
    # The counter, the post, the delete, the 4 messages released, the claim.
    assert await s.catch_up() == 1 + 1 + 1 + 4 + 1
    assert await s.catch_up() == 0
    assert await s.verify() == await bench.source.transfer.digest(P, Q)


async def test_freeze_switch_and_purge_are_idempotent(bench: Bench) -> None:
    s = bench.steps
    await s.prepare_target()
    await s.copy_queue()
    await s.catch_up()
    for _ in range(2):
        await s.freeze_source(30.0)
    placement = await bench.catalog.placement(P, Q)
    assert placement is not None and placement.state is PlacementState.FROZEN
    with pytest.raises(QueueFrozen):
        await bench.source.messages.post(P, Q, [NewMessage("refused", 60)], "c")
    with pytest.raises(Unmovable):  # the copy is not the queue yet: it cannot be purged
        await s.purge_source(10)
    await s.verify()
    switched = await s.switch_placement()
    assert await s.switch_placement() == switched
    assert (switched.partition, switched.epoch, switched.state) == ("p2", 2, PlacementState.ACTIVE)
    await s.unfreeze_source()  # after the switch: changes nothing
    assert await bench.catalog.placement(P, Q) == switched
    with pytest.raises(Unmovable):  # the copy is the queue now: it cannot be removed
        await s.remove_partial_copy(10)
    for _ in range(2):
        await s.mark_moved()
    assert await bench.source.transfer.fence(P, Q) == Fence.MOVED
    assert await s.adopt_stragglers(30) == 0
    gone = 0
    while dropped := await s.purge_source(10):
        gone += dropped
    assert gone == 30 + 1 + 1  # messages, the claim, the queue's record
    assert await s.purge_source(10) == 0
    assert await bench.source.transfer.fence(P, Q) is None  # the tombstone lifted at the end


async def test_unfreeze_and_remove_partial_copy(bench: Bench) -> None:
    s = bench.steps
    await s.copy_queue()
    await s.catch_up()
    await s.freeze_source(30.0)
    for _ in range(2):
        await s.unfreeze_source()
    placement = await bench.catalog.placement(P, Q)
    assert placement is not None
    assert (placement.partition, placement.state, placement.migration) == (
        "p1",
        PlacementState.ACTIVE,
        None,
    )
    assert await bench.source.transfer.fence(P, Q) is None
    while await s.remove_partial_copy(10):
        pass
    assert await bench.target.transfer.export_queue(P, Q) is None
    with pytest.raises(Diverged):
        await s.verify()


async def test_move_outbox_after_the_switch_only_and_once(bench: Bench, clock: FakeClock) -> None:
    owed = [
        Delivery(f"post{n}:sub", P, Q, "sub", "http://127.0.0.1:1/", {}, True,
                 [{"body": n}], clock.now, clock.now)
        for n in range(3)
    ]  # fmt: skip
    await bench.source.outbox.enqueue(owed)
    steps = LiveSteps(
        Move("m1", P, Q, "p1", "p2"),
        bench.catalog,
        bench.source.transfer,
        bench.target.transfer,
        outboxes=(bench.source.outbox, bench.target.outbox),
    )
    with pytest.raises(Unmovable):
        await steps.move_outbox()  # the source still owns the queue: it delivers them
    await steps.freeze_source(30)
    await steps.switch_placement()
    await steps.mark_moved()
    assert await steps.move_outbox() == 3
    assert await steps.move_outbox() == 0  # a resumed cleanup: nothing twice
    assert await bench.source.outbox.depth() == 0
    assert await bench.target.outbox.export_outbox(P, Q) == owed


async def test_subscriptions_move_with_the_queue(bench: Bench, clock: FakeClock) -> None:
    s, src, dst = bench.steps, bench.source.subscriptions, bench.target.subscriptions
    kept = await src.create(P, Q, "http://example.test/kept", 600, {"a": 1})
    dropped = await src.create(P, Q, "mailto:ops@example.test", 900, {})
    changed = await src.create(P, Q, "https://example.test/changed", 600, {})
    assert kept and dropped and changed
    await src.confirm(P, Q, kept, True)
    await s.copy_queue()
    assert await dst.export_subscriptions(P, Q) == await src.export_subscriptions(P, Q)
    after = 0
    while (batch := await s.copy_batch(after, 7)).read:
        after = batch.marker
    assert await s.catch_up() == 0
    assert (await dst.get(P, Q, kept)).confirmed is True
    # Changed while the queue moves: the catch-up carries each change over.
    clock.advance(100)
    await src.delete(P, Q, dropped)
    await src.update(P, Q, changed, ttl=3600, options={"b": 2})
    added = await src.create(P, Q, "http://example.test/added", 600, {})
    assert await s.catch_up() == 3
    assert await s.catch_up() == 0
    moved = await dst.export_subscriptions(P, Q)
    assert moved == await src.export_subscriptions(P, Q)
    assert [x.id for x in moved] == [kept, changed, added]
    assert (moved[1].ttl, moved[1].expires, moved[1].options) == (3600, clock.now + 3600, {"b": 2})
    await s.freeze_source(30.0)
    with pytest.raises(QueueFrozen):
        await src.create(P, Q, "http://example.test/late", 600, {})
    await s.verify()
    # A copy that lost one is caught by the verify, and levelled by the next catch-up.
    await dst.delete_subscriptions(P, Q, [added])
    with pytest.raises(Diverged):
        await s.verify()
    assert await s.catch_up() == 1
    await s.verify()
    await s.switch_placement()
    await s.mark_moved()
    while await s.purge_source(10):
        pass
    assert await src.export_subscriptions(P, Q) == []
    assert [x.id for x in await dst.live(P, Q)] == [kept, changed, added]


async def test_expired_subscriptions_are_not_moved(bench: Bench, clock: FakeClock) -> None:
    s, src, dst = bench.steps, bench.source.subscriptions, bench.target.subscriptions
    await src.create(P, Q, "http://example.test/short", 60, {})
    long = await src.create(P, Q, "http://example.test/long", 600, {})
    await s.copy_queue()
    await s.catch_up()
    clock.advance(60)
    assert await s.catch_up() == 0  # expiry is no change: both sides see it at once
    assert [x.id for x in await dst.live(P, Q)] == [long]
    await s.freeze_source(30.0)
    await s.verify()

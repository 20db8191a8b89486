"""The dead-letter mover (`migrate.deadletters`) between two SQLite partitions, on the in-memory
catalog: letters reach the dead-letter queue where the catalog places it, exactly once, however
a pass is cut short; what cannot move yet waits. (The drivers' side of each step is in
tests/conformance/test_dead_letters.py; the same over real processes, with kill -9 of the
worker, in tests/migrate/test_dead_letters_cluster.py.)"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from catalog.catalog import Catalog
from catalog.keys import Keys
from catalog.memory import MemoryStore
from catalog.records import Partition
from migrate import metrics
from migrate.deadletters import Mover
from migrate.ownership import Ownership
from migrate.storages import PinnedClock, Storages
from node.models import DeadLetter, Fence, NewMessage
from node.storage.base import Storage
from tests.conftest import unique_prefix

P = "tenant"
Q = "orders"
DLQ = "orders-dead"
POLICY = DeadLetter(DLQ, max_claims=1)


class Crash(Exception):
    """Stands for kill -9 of the worker right after a step."""


class CrashingMover(Mover):
    def _step(self, done: int) -> None:
        if done == self.crash_after:
            raise Crash(done)


@dataclass
class Two:
    catalog: Catalog
    storages: Storages
    ownership: Ownership
    a: Storage
    b: Storage

    def mover(self, crash_after: int = 0) -> Mover:
        return CrashingMover(
            self.catalog,
            self.storages,
            self.ownership,
            interval=1,
            batch=10,
            crash_after=crash_after,
        )

    async def dead_letter(self, *bodies: object) -> list[str]:
        """Post to the queue on A, claim once, and take them as dead letters: to A's pile."""
        ids = await self.a.messages.post(P, Q, [NewMessage(b, ttl=600) for b in bodies], "c")
        claim, _ = await self.a.claims.create(P, Q, ttl=60, grace=60, limit=10)
        await self.a.claims.delete(P, Q, claim.id)
        assert await self.a.claims.dead_letter(P, Q, POLICY, limit=10) == len(bodies)
        return ids

    async def in_dlq(self) -> list[tuple[str, object, int, bool]]:
        found = await self.b.transfer.export_messages(P, DLQ, after_marker=0, limit=100)
        return [(m.id, m.body, m.marker, m.claim_id is not None) for m in found]


@pytest.fixture
async def two(tmp_path: Path) -> AsyncIterator[Two]:
    store, keys = MemoryStore(), Keys(unique_prefix())
    catalog = Catalog(store, keys)
    for name in ("a", "b"):
        await catalog.add_partition(
            Partition(name, ("127.0.0.1:9",), storage=f"sqlite:///{tmp_path}/{name}.db")
        )
    storages = Storages(catalog, PinnedClock())
    ownership = Ownership(store, keys, "worker", ttl=5)
    await ownership.start()
    a, b = await storages.of("a"), await storages.of("b")
    await a.queues.create(P, Q, None)
    await catalog.place(P, Q, "a")
    try:
        yield Two(catalog, storages, ownership, a, b)
    finally:
        await ownership.close()
        await storages.close()


async def test_letters_reach_the_dead_letter_queue_on_another_partition(two: Two) -> None:
    await two.b.queues.create(P, DLQ, None)
    await two.b.messages.post(P, DLQ, [NewMessage("earlier", ttl=600)], "c")
    await two.catalog.place(P, DLQ, "b")
    ids = await two.dead_letter("a", "b")
    before = metrics.DEAD_LETTERS_MOVED._value.get()
    assert await two.mover().pass_once() == 2
    assert metrics.DEAD_LETTERS_MOVED._value.get() == before + 2
    assert metrics.DEAD_LETTERS_WAITING.labels("a")._value.get() == 2  # as the pass found them
    moved = await two.in_dlq()
    assert [(i, body, marker, held) for i, body, marker, held in moved[1:]] == [
        (ids[0], "a", 2, False),
        (ids[1], "b", 3, False),
    ]
    assert await two.a.dead_letters.waiting(limit=10) == []
    assert await two.mover().pass_once() == 0  # nothing twice
    assert len(await two.in_dlq()) == 3
    _, held = await two.b.claims.create(P, DLQ, ttl=60, grace=60, limit=10)
    assert [(m.body, m.claim_count) for m in held] == [("earlier", 1), ("a", 2), ("b", 2)]


async def test_letters_wait_while_their_queue_is_unplaced_missing_or_fenced(two: Two) -> None:
    (mid,) = await two.dead_letter("a")
    assert await two.mover().pass_once() == 0  # placed nowhere
    await two.catalog.place(P, DLQ, "b")
    assert await two.mover().pass_once() == 0  # placed, not created yet
    await two.b.queues.create(P, DLQ, None)
    await two.b.transfer.freeze(P, DLQ, Fence.FROZEN)
    assert await two.mover().pass_once() == 0  # a migration's freeze
    assert [o.message.id for o in await two.a.dead_letters.waiting(limit=10)] == [mid]
    await two.b.transfer.unfreeze(P, DLQ)
    assert await two.mover().pass_once() == 1
    assert [m[0] for m in await two.in_dlq()] == [mid]


async def test_a_dead_letter_queue_placed_with_the_pile_takes_it_within(two: Two) -> None:
    """The dead-letter queue was created on the pile's own partition after the claim."""
    (mid,) = await two.dead_letter("a")
    await two.a.queues.create(P, DLQ, None)
    await two.catalog.place(P, DLQ, "a")
    assert await two.mover().pass_once() == 1
    moved = await two.a.transfer.export_messages(P, DLQ, after_marker=0, limit=10)
    assert [(m.id, m.claim_id) for m in moved] == [(mid, None)]
    assert await two.a.dead_letters.waiting(limit=10) == []


@pytest.mark.parametrize("step", [1, 2, 3, 4])
async def test_a_pass_cut_short_after_any_step_resumes_exactly_once(two: Two, step: int) -> None:
    await two.b.queues.create(P, DLQ, None)
    await two.catalog.place(P, DLQ, "b")
    (mid,) = await two.dead_letter("a")
    with pytest.raises(Crash):
        await two.mover(crash_after=step).pass_once()
    copies = await two.in_dlq()
    assert [(i, held) for i, _, _, held in copies] == [(mid, step < 3)]
    if step < 3:  # held: no consumer takes it before the pile knows it whole
        _, held = await two.b.claims.create(P, DLQ, ttl=60, grace=60, limit=10)
        assert held == []
    else:  # released: a consumer takes it and deletes it; the resumed pass brings no copy back
        claim, held = await two.b.claims.create(P, DLQ, ttl=60, grace=60, limit=10)
        assert [m.id for m in held] == [mid]
        await two.b.messages.delete(P, DLQ, mid, claim.id)
    resumed = await two.mover().pass_once()
    assert resumed == (1 if step < 4 else 0)
    assert await two.a.dead_letters.waiting(limit=10) == []
    assert await two.in_dlq() == ([(mid, "a", 1, False)] if step < 3 else [])

"""Owner keys bound to a worker's lease (on the in-memory catalog, whose leases follow a fake
clock; the worker tests take a migration over from a crashed worker on real etcd)."""

from __future__ import annotations

import asyncio

import pytest

from catalog.keys import Keys
from catalog.memory import MemoryStore
from migrate.errors import OwnershipLost
from migrate.ownership import Ownership
from tests.conftest import FakeClock, unique_prefix


async def test_one_owner_at_a_time() -> None:
    store, keys = MemoryStore(), Keys(unique_prefix())
    a, b = Ownership(store, keys, "a", ttl=5), Ownership(store, keys, "b", ttl=5)
    await a.start()
    await b.start()
    assert await a.claim("m1")
    assert await a.claim("m1")  # its own already
    assert not await b.claim("m1")
    await b.release("m1")  # not b's to give up
    assert await store.get(keys.owner("m1")) is not None
    await a.release("m1")
    assert await b.claim("m1")
    await b.close()  # the lease revoked: its keys go at once
    assert await store.get(keys.owner("m1")) is None
    assert await a.claim("m1")
    await a.close(revoke=False)  # as a crash: the key stays until the lease expires
    assert await store.get(keys.owner("m1")) is not None
    with pytest.raises(OwnershipLost):
        a.check()


async def test_an_expired_lease_stops_every_run_and_a_new_one_follows() -> None:
    clock = FakeClock(0.0)
    store, keys = MemoryStore(clock), Keys(unique_prefix())
    lost = asyncio.Event()
    a = Ownership(store, keys, "a", ttl=2, on_lost=lost.set)
    await a.start()
    assert await a.claim("m1")
    first, value = a.lease, a.value
    clock.advance(3)  # the worker stalled past its lease (a long pause, a partition)
    await store.expire()
    assert await store.get(keys.owner("m1")) is None
    await asyncio.wait_for(lost.wait(), 5)  # at its next refresh
    for _ in range(500):  # a new lease, granted once the loss was seen
        if a.lease != first and a.valid():
            break
        await asyncio.sleep(0.01)
    assert a.value != value  # keys of the old lease are not this worker's any more
    assert await a.claim("m1")
    await a.close()

"""PlacementCache at scale: ready before the placements are loaded, point reads meanwhile, point
reads and watch events ordered by revision, eviction that spares queues being moved."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest

from catalog.cache import PlacementCache
from catalog.catalog import Catalog
from catalog.errors import CatalogUnavailable
from catalog.memory import MemoryStore
from catalog.records import Event, Lookup, Page, Partition, Placement, PlacementState
from tests.catalog.test_cache import wait_until


class GatedStore(MemoryStore):
    """A MemoryStore whose placement pages, point reads and watch events each wait for a gate."""

    def __init__(self) -> None:
        super().__init__(page_size=2)
        self.pages = asyncio.Event()
        self.lookups = asyncio.Event()
        self.events = asyncio.Event()
        for gate in (self.pages, self.lookups, self.events):
            gate.set()
        self.lookups_made = 0
        self.one_event_at_a_time = False
        self.lookup_started = asyncio.Event()

    async def page(self, prefix: str, start_after: str, limit: int, revision: int = 0) -> Page:
        if "/placements/" in prefix:
            await self.pages.wait()
        return await super().page(prefix, start_after, limit, revision)

    async def lookup(self, key: str) -> Lookup:
        self.lookups_made += 1
        found = await super().lookup(key)  # read now, answered when the gate opens
        self.lookup_started.set()
        await self.lookups.wait()
        return found

    async def watch(self, prefix: str, start_revision: int) -> AsyncIterator[Event]:
        async for event in super().watch(prefix, start_revision):
            await self.events.wait()
            if self.one_event_at_a_time:
                self.events.clear()
            yield event


async def switch(catalog: Catalog, project: str, queue: str, partition: str, epoch: int = 2) -> int:
    """Point the queue's placement at `partition` as a migration's switch does; its revision."""
    key = catalog.keys.placement(project, queue)
    found = await catalog.store.get(key)
    assert found is not None
    moved = Placement(project, queue, partition, epoch=epoch)
    return (await catalog.store.replace(key, moved.to_json(), found.mod_revision)).mod_revision


async def placed(store: MemoryStore, count: int) -> Catalog:
    catalog = Catalog(store)
    await catalog.add_partition(Partition("p1", ("http://n1",)))
    await catalog.add_partition(Partition("p2", ("http://n2",)))
    for i in range(count):
        await catalog.place("proj", f"q{i:02d}", "p1")
    return catalog


async def test_ready_before_placements_load_and_answers_from_etcd_meanwhile() -> None:
    store = GatedStore()
    catalog = await placed(store, 10)
    store.pages.clear()  # the fill cannot read a page yet
    cache = PlacementCache(store, page_size=2)
    await cache.start()
    try:
        assert set(cache.partitions) == {"p1", "p2"} and cache.loading
        assert cache.cached("proj", "q05") is False  # not loaded: unknown, never "not placed"
        found = await cache.placement("proj", "q05")
        assert found is not None and found.partition == "p1"
        assert await cache.placement("proj", "never") is None
        assert store.lookups_made == 2
        # A change while loading reaches the cache through the watch.
        await catalog.place("proj", "new", "p2")
        await wait_until(lambda: getattr(cache.cached("proj", "new"), "partition", "") == "p2")
        store.pages.set()
        await asyncio.wait_for(cache.filled.wait(), 5)
        assert not cache.loading and len(cache) == 12  # 11 placements and one "never placed"
        assert cache.cached("proj", "absent") is None  # complete now: a miss is "not placed"
    finally:
        await cache.stop()


async def test_fill_never_overwrites_a_change_seen_by_the_watch() -> None:
    store = GatedStore()
    catalog = await placed(store, 6)
    store.pages.clear()
    cache = PlacementCache(store, page_size=2)
    await cache.start()
    try:
        # After the load's revision: q04 moves, q05 goes; the fill still reads the old ones.
        moved = await switch(catalog, "proj", "q04", "p2")
        await catalog.unplace("proj", "q05")
        await wait_until(lambda: cache.revision >= moved)
        store.pages.set()
        await asyncio.wait_for(cache.filled.wait(), 5)
        assert getattr(cache.cached("proj", "q04"), "partition", "") == "p2"
        assert cache.cached("proj", "q05") is None
        assert getattr(cache.cached("proj", "q00"), "partition", "") == "p1"
    finally:
        await cache.stop()


async def test_point_read_older_than_a_watch_event_is_not_kept() -> None:
    store = GatedStore()
    catalog = await placed(store, 1)
    store.pages.clear()  # loading: q00 is read from etcd
    cache = PlacementCache(store, page_size=2)
    await cache.start()
    try:
        store.lookups.clear()
        reading = asyncio.create_task(cache.placement("proj", "q00"))
        await store.lookup_started.wait()  # read p1 ...
        moved = await switch(catalog, "proj", "q00", "p2")
        await wait_until(lambda: cache.revision >= moved)  # ... the watch applies p2 ...
        store.lookups.set()  # ... then the read answers p1: too old to keep
        found = await reading
        assert found is not None and found.partition == "p2"
        assert getattr(cache.cached("proj", "q00"), "partition", "") == "p2"
    finally:
        await cache.stop()


async def test_watch_events_older_than_a_point_read_are_skipped() -> None:
    store = GatedStore()
    catalog = await placed(store, 1)
    store.pages.clear()
    cache = PlacementCache(store, page_size=2)
    await cache.start()
    try:
        store.events.clear()  # the watch falls behind
        store.one_event_at_a_time = True
        first = await switch(catalog, "proj", "q00", "p2")
        second = await switch(catalog, "proj", "q00", "p1", epoch=3)
        found = await cache.placement("proj", "q00")  # reads epoch 3 ahead of the watch
        assert found is not None and (found.partition, found.epoch) == ("p1", 3)
        for revision in (first, second):
            store.events.set()  # the watch applies one more event
            await wait_until(lambda: cache.revision >= revision)  # noqa: B023
            now = cache.cached("proj", "q00")
            assert isinstance(now, Placement)
            assert (now.partition, now.epoch) == ("p1", 3)  # never back to the older p2
    finally:
        await cache.stop()


async def test_unknown_queue_while_etcd_is_away_is_unavailable_not_unplaced() -> None:
    store = GatedStore()
    await placed(store, 2)
    store.pages.clear()
    cache = PlacementCache(store, page_size=2)
    await cache.start()

    async def down(key: str) -> Lookup:
        raise CatalogUnavailable("etcd is away")

    try:
        store.lookup = down  # type: ignore[method-assign]
        with pytest.raises(CatalogUnavailable):
            await cache.placement("proj", "q01")
    finally:
        await cache.stop()


async def test_eviction_spares_queues_being_moved() -> None:
    store = MemoryStore()
    catalog = await placed(store, 0)
    for i in range(3):
        key = catalog.keys.placement("proj", f"m{i}")
        frozen = Placement("proj", f"m{i}", "p1", state=PlacementState.FROZEN, migration="x" * 24)
        await store.create(key, frozen.to_json())
    cache = PlacementCache(store, capacity=4)
    await cache.start()
    try:
        await asyncio.wait_for(cache.filled.wait(), 5)
        for i in range(10):
            placement = await catalog.place("proj", f"q{i}", "p2")
            cache.remember(placement)
        assert len(cache) == 4
        for i in range(3):
            kept = cache.cached("proj", f"m{i}")
            assert isinstance(kept, Placement) and kept.state is PlacementState.FROZEN
            assert kept.migration == "x" * 24
        assert cache.cached("proj", "q0") is False  # evicted
    finally:
        await cache.stop()


def test_compact_records_round_trip() -> None:
    cache = PlacementCache(MemoryStore())
    for placement in [
        Placement("proj", "a", "p1"),
        Placement("", "v1-queue", "p-two", epoch=7),
        Placement("proj", "b", "p1", epoch=2, state=PlacementState.FROZEN, migration="m" * 24),
    ]:
        cache.remember(placement)
        assert cache.cached(placement.project, placement.queue) == placement
    assert replace(Placement("proj", "a", "p1")) == cache.cached("proj", "a")


async def test_fill_goes_on_when_its_revision_is_compacted_away() -> None:
    store = GatedStore()
    catalog = await placed(store, 8)
    store.pages.clear()
    cache = PlacementCache(store, page_size=2)
    await cache.start()
    try:
        moved = await switch(catalog, "proj", "q06", "p2")
        await catalog.place("proj", "q99", "p2")
        await wait_until(lambda: cache.revision >= moved + 1)
        store.compact()  # the fill's revision is gone: it goes on at the latest one
        store.pages.set()
        await asyncio.wait_for(cache.filled.wait(), 5)
        assert len(cache) == 9 and cache.cached("proj", "nope") is None
        assert getattr(cache.cached("proj", "q06"), "partition", "") == "p2"
        assert getattr(cache.cached("proj", "q99"), "partition", "") == "p2"
        assert getattr(cache.cached("proj", "q07"), "partition", "") == "p1"
    finally:
        await cache.stop()

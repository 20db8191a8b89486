"""PlacementCache: load then watch; LRU bound; last known value while etcd is away."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from pathlib import Path

import pytest

from catalog.cache import PlacementCache, WatchState
from catalog.catalog import Catalog
from catalog.errors import CatalogUnavailable
from catalog.etcd import EtcdStore
from catalog.keys import Keys
from catalog.memory import MemoryStore
from catalog.records import Partition, PartitionState, PlacementState
from tests.conftest import unique_prefix
from tests.services import Etcd, start_etcd


async def wait_until(predicate: object, within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


async def test_loads_then_follows_changes() -> None:
    store = MemoryStore()
    catalog = Catalog(store)
    await catalog.add_partition(Partition("p1", ("http://n1",)))
    await catalog.place("proj", "a", "p1")
    cache = PlacementCache(store)
    await cache.start()
    try:
        assert cache.state is WatchState.LIVE
        assert set(cache.partitions) == {"p1"}
        placed = await cache.placement("proj", "a")
        assert placed is not None and placed.partition == "p1"
        assert await cache.placement("proj", "nope") is None
        await catalog.add_partition(Partition("p2", ("http://n2",)))
        await catalog.place("proj", "b", "p2")
        await catalog.update_partition("p1", state=PartitionState.DRAINING)
        await catalog.pin("tenant", "p2")
        await wait_until(lambda: cache.pins.get("tenant") is not None)
        assert cache.partitions["p1"].state is PartitionState.DRAINING
        b = cache.cached("proj", "b")
        assert b and b.partition == "p2"  # type: ignore[union-attr]
        await catalog.unplace("proj", "a")
        await wait_until(lambda: cache.cached("proj", "a") is None)
    finally:
        await cache.stop()


async def test_a_busy_queue_looked_up_again_sees_each_change() -> None:
    """The records kept for queues looked up lately never hide a change: a freeze, a move
    (a new epoch on another partition), a migration id, a removal."""
    store = MemoryStore()
    catalog = Catalog(store)
    keys = Keys()
    await catalog.add_partition(Partition("p1", ("http://n1",)))
    await catalog.add_partition(Partition("p2", ("http://n2",)))
    first = await catalog.place("proj", "a", "p1")
    cache = PlacementCache(store, keys)
    await cache.start()
    try:
        await cache.filled.wait()
        assert cache.cached("proj", "a") == first
        assert cache.cached("proj", "a") == first  # the kept record
        changes = [
            replace(first, state=PlacementState.FROZEN),
            replace(first, state=PlacementState.FROZEN, migration="m1"),
            replace(first, partition="p2", epoch=2),
            replace(first, partition="p1", epoch=3),
        ]
        for change in changes:
            item = await store.get(keys.placement("proj", "a"))
            assert item is not None
            await store.replace(item.key, change.to_json(), item.mod_revision)
            await wait_until(lambda change=change: cache.cached("proj", "a") == change)
            assert cache.cached("proj", "a") == change
        await catalog.unplace("proj", "a")
        await wait_until(lambda: cache.cached("proj", "a") is None)
    finally:
        await cache.stop()


async def test_bounded_lru_reads_cold_queues_once() -> None:
    store = MemoryStore()
    catalog = Catalog(store)
    for i in range(10):
        await catalog.place("proj", f"q{i}", "p1")
    cache = PlacementCache(store, capacity=4)
    await cache.start()
    try:
        await cache.filled.wait()
        assert len(cache) == 4
        assert cache.cached("proj", "q9") is False  # unknown: over capacity
        reads = 0
        real_lookup = store.lookup

        async def counting_lookup(key: str):  # type: ignore[no-untyped-def]
            nonlocal reads
            reads += 1
            return await real_lookup(key)

        store.lookup = counting_lookup  # type: ignore[method-assign]
        for _ in range(3):
            placed = await cache.placement("proj", "q9")
            assert placed is not None and placed.partition == "p1"
        assert reads == 1
        assert len(cache) == 4
        # The watch keeps a cached cold entry fresh.
        await catalog.unplace("proj", "q9")
        await catalog.place("proj", "q9", "p2")
        await wait_until(lambda: getattr(cache.cached("proj", "q9"), "partition", None) == "p2")
    finally:
        await cache.stop()


async def test_reloads_after_compaction() -> None:
    store = MemoryStore()
    catalog = Catalog(store)
    cache = PlacementCache(store, retry_delay=0.01)
    await cache.start()
    try:
        await cache.stop()
        await catalog.place("proj", "late", "p1")
        store.compact()
        cache._loaded.clear()
        await cache.start()
        placed = await cache.placement("proj", "late")
        assert placed is not None
    finally:
        await cache.stop()


async def test_change_in_etcd_seen_quickly(etcd_server: Etcd) -> None:
    store = EtcdStore(etcd_server.url)
    keys = Keys(unique_prefix())
    catalog = Catalog(store, keys)
    cache = PlacementCache(store, keys)
    await cache.start()
    try:
        started = time.monotonic()
        await catalog.place("proj", "fast", "p1")
        await wait_until(lambda: cache.cached("proj", "fast") not in (None, False), 1.0)
        assert time.monotonic() - started < 1.0
    finally:
        await cache.stop()
        await store.close()


async def retry(call: object, seconds: float = 10.0) -> None:
    """A client's retry loop: etcd takes a moment to be reachable again."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            await call()  # type: ignore[operator]
            return
        except CatalogUnavailable:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


@pytest.mark.slow
async def test_serves_last_known_while_etcd_is_down_then_catches_up(tmp_path: Path) -> None:
    server = start_etcd(tmp_path / "etcd")
    store = EtcdStore(server.url, timeout=1.0)
    keys = Keys(unique_prefix())
    catalog = Catalog(store, keys)
    await catalog.place("proj", "kept", "p1")
    cache = PlacementCache(store, keys, retry_delay=0.1)
    await cache.start()
    try:
        await cache.filled.wait()  # before: a queue not yet loaded is unknown, not "not placed"
        server.stop()
        placed = await cache.placement("proj", "kept")
        assert placed is not None and placed.partition == "p1"
        refreshed = await cache.refresh("proj", "kept")
        assert refreshed is not None and refreshed.partition == "p1"
        await wait_until(lambda: cache.state is WatchState.RECONNECTING, 10)
        # etcd comes back on the same port and data: the watch resumes from its revision.
        server = start_etcd(
            tmp_path / "etcd", client_port=server.client_port, peer_port=server.peer_port
        )
        await retry(lambda: catalog.place("proj", "after", "p2"))
        await wait_until(lambda: cache.cached("proj", "after") not in (None, False), 15)
        assert cache.state is WatchState.LIVE
    finally:
        await cache.stop()
        await store.close()
        server.stop()


@pytest.mark.parametrize(
    ("project", "queue"), [("", "legacy"), ("_", "q"), ("a/b", "q"), ("%", "q")]
)
async def test_escaped_tenant_keys_are_cached_under_their_own_project(
    project: str, queue: str
) -> None:
    """The fill and the watch see escaped key segments (`catalog/keys.py`); a lookup by project
    and queue must find them there, and answer with the names as the client gave them."""
    store = MemoryStore()
    catalog = Catalog(store)
    await catalog.add_partition(Partition("p1", ("http://n1",)))
    await catalog.place(project, queue, "p1")
    cache = PlacementCache(store)
    await cache.start()
    try:
        await wait_until(lambda: cache.cached(project, queue) not in (False, None))
        loaded = cache.cached(project, queue)
        assert loaded and (loaded.project, loaded.queue) == (project, queue)  # type: ignore[union-attr]
        await catalog.place(project, queue + "-2", "p1")  # through the watch
        await wait_until(lambda: bool(cache.cached(project, queue + "-2")))
        other = "" if project else "_"
        assert cache.cached(other, queue) in (False, None)
    finally:
        await cache.stop()

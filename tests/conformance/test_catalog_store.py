"""One conformance suite for the catalog seam, run on the in-memory store and on real etcd."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import pytest

from catalog import scan
from catalog.errors import CatalogUnavailable, Compacted, Conflict, LeaseExpired
from catalog.etcd import EtcdStore
from catalog.memory import MemoryStore
from catalog.records import Event
from catalog.store import CatalogStore
from tests.conftest import FakeClock, unique_prefix


@pytest.fixture(params=["memory", "etcd"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[tuple[CatalogStore, str]]:
    if request.param == "memory":
        yield MemoryStore(), unique_prefix()
        return
    server = request.getfixturevalue("etcd_server")
    etcd = EtcdStore(server.url)
    try:
        yield etcd, unique_prefix()
    finally:
        await etcd.close()


@pytest.fixture(params=["memory", "etcd"])
async def paged(request: pytest.FixtureRequest) -> AsyncIterator[tuple[CatalogStore, str]]:
    """A store whose whole-prefix reads take pages of 2 keys and whose etcd client refuses any
    answer over 2 KiB: a prefix of a few dozen keys is then larger than one answer allows."""
    if request.param == "memory":
        yield MemoryStore(page_size=2), unique_prefix()
        return
    server = request.getfixturevalue("etcd_server")
    etcd = EtcdStore(server.url, max_message=2048, page_size=2)
    try:
        yield etcd, unique_prefix()
    finally:
        await etcd.close()


@dataclass
class Timed:
    """A store with a way to let time pass: a fake clock in memory, real seconds on etcd."""

    store: CatalogStore
    prefix: str
    advance: Callable[[float], Awaitable[None]]


@pytest.fixture(params=["memory", "etcd"])
async def timed(request: pytest.FixtureRequest) -> AsyncIterator[Timed]:
    if request.param == "memory":
        clock = FakeClock(0.0)
        memory = MemoryStore(clock)

        async def advance(seconds: float) -> None:
            clock.advance(seconds)
            await memory.expire()

        yield Timed(memory, unique_prefix(), advance)
        return
    etcd = EtcdStore(request.getfixturevalue("etcd_server").url)
    try:
        yield Timed(etcd, unique_prefix(), asyncio.sleep)
    finally:
        await etcd.close()


async def test_create_if_absent_agrees_on_one_winner(store: tuple[CatalogStore, str]) -> None:
    s, p = store
    results = await asyncio.gather(*(s.create(p + "k", f"v{i}".encode()) for i in range(10)))
    winners = [value for created, value in results if created]
    assert len(winners) == 1
    assert {value.value for _, value in results} == {winners[0].value}
    got = await s.get(p + "k")
    assert got is not None and got.value == winners[0].value


async def test_replace_is_compare_and_swap(store: tuple[CatalogStore, str]) -> None:
    s, p = store
    _, first = await s.create(p + "k", b"1")
    second = await s.replace(p + "k", b"2", first.mod_revision)
    assert second.mod_revision > first.mod_revision
    with pytest.raises(Conflict):
        await s.replace(p + "k", b"3", first.mod_revision)
    with pytest.raises(Conflict):
        await s.replace(p + "missing", b"3", first.mod_revision)
    got = await s.get(p + "k")
    assert got is not None and got.value == b"2"


async def test_delete_is_compare_and_swap(store: tuple[CatalogStore, str]) -> None:
    s, p = store
    _, first = await s.create(p + "k", b"1")
    second = await s.replace(p + "k", b"2", first.mod_revision)
    with pytest.raises(Conflict):
        await s.delete(p + "k", first.mod_revision)
    await s.delete(p + "k", second.mod_revision)
    assert await s.get(p + "k") is None
    with pytest.raises(Conflict):
        await s.delete(p + "k", second.mod_revision)


async def test_snapshot_and_range_sorted(store: tuple[CatalogStore, str]) -> None:
    s, p = store
    for name in ["c", "a", "e", "b", "d"]:
        await s.create(f"{p}q/{name}", name.encode())
    await s.create(f"{p}other", b"x")
    snap = await s.snapshot(p + "q/")
    assert [v.value for v in snap.items] == [b"a", b"b", b"c", b"d", b"e"]
    assert snap.revision >= max(v.mod_revision for v in snap.items)
    page = await s.range(p + "q/", "", 2)
    assert [v.value for v in page] == [b"a", b"b"]
    page = await s.range(p + "q/", page[-1].key, 10)
    assert [v.value for v in page] == [b"c", b"d", b"e"]


async def test_pages_read_one_revision_while_writes_go_on(
    store: tuple[CatalogStore, str],
) -> None:
    s, p = store
    for name in "abcde":
        await s.create(f"{p}q/{name}", b"old")
    first = await s.page(p + "q/", "", 2)
    assert [v.key for v in first.items] == [p + "q/a", p + "q/b"] and first.more
    # Changes after the first page are not seen by the pages that follow it.
    c = await s.get(p + "q/c")
    assert c is not None
    await s.replace(p + "q/c", b"new", c.mod_revision)
    d = await s.get(p + "q/d")
    assert d is not None
    await s.delete(p + "q/d", d.mod_revision)
    await s.create(p + "q/bb", b"new")
    rest = await s.page(p + "q/", first.items[-1].key, 10, first.revision)
    assert [(v.key, v.value) for v in rest.items] == [
        (p + "q/c", b"old"),
        (p + "q/d", b"old"),
        (p + "q/e", b"old"),
    ]
    assert not rest.more and rest.revision == first.revision
    now = await s.page(p + "q/", first.items[-1].key, 10)
    assert [(v.key, v.value) for v in now.items] == [
        (p + "q/bb", b"new"),
        (p + "q/c", b"new"),
        (p + "q/e", b"old"),
    ]
    assert now.revision > first.revision


async def test_lookup_answers_with_the_revision_read_at(store: tuple[CatalogStore, str]) -> None:
    s, p = store
    missing = await s.lookup(p + "k")
    assert missing.value is None and missing.revision > 0
    _, created = await s.create(p + "k", b"v")
    found = await s.lookup(p + "k")
    assert found.value == created and found.revision >= created.mod_revision


async def test_prefix_larger_than_one_answer_is_read_in_pages(
    paged: tuple[CatalogStore, str],
) -> None:
    s, p = paged
    for i in range(40):
        await s.create(f"{p}q/{i:03d}", b"x" * 200)
    if isinstance(s, EtcdStore):  # the whole prefix in one answer is over the client's limit
        with pytest.raises(CatalogUnavailable):
            await s.range(p + "q/", "", 40)
    snap = await s.snapshot(p + "q/")
    assert [v.key for v in snap.items] == [f"{p}q/{i:03d}" for i in range(40)]
    sizes = [len(page.items) async for page in scan.pages(s, p + "q/", 3)]
    assert sizes == [3] * 13 + [1]


async def test_pages_of_an_uneven_key_space_miss_nothing(store: tuple[CatalogStore, str]) -> None:
    """Keys of every length, dense and sparse runs: etcd's pages read through narrowing and
    widening windows of the key space, and must still give every key once, in order."""
    s, p = store
    rng = random.Random(7)
    names = {f"p{rng.randrange(40):02d}/{'q' * rng.randrange(1, 4)}{i}" for i in range(400)}
    names |= {"a", "zz", "p05", "p05/", "\u00e9t\u00e9/x"}
    await asyncio.gather(*(s.create(p + name, b"v") for name in names))
    for size in (1, 7, 100):
        found = [v.key async for page in scan.pages(s, p, size) for v in page.items]
        assert found == sorted(p + name for name in names), size


async def test_page_at_a_compacted_revision_is_refused() -> None:
    s = MemoryStore()
    await s.create("/k/a", b"1")
    old = (await s.page("/k/", "", 1)).revision
    await s.create("/k/b", b"2")
    s.compact()
    with pytest.raises(Compacted):
        await s.page("/k/", "", 1, old)
    assert [v.key for v in (await s.page("/k/", "", 5, s.revision)).items] == ["/k/a", "/k/b"]


async def test_watch_from_revision_sees_every_change(store: tuple[CatalogStore, str]) -> None:
    s, p = store
    snap = await s.snapshot(p)
    seen: list[Event] = []

    async def follow() -> None:
        async for event in s.watch(p, snap.revision + 1):
            seen.append(event)
            if len(seen) == 3:
                return

    watcher = asyncio.create_task(follow())
    _, a = await s.create(p + "a", b"1")
    await s.create(f"{p[:-1]}-elsewhere/x", b"not mine")
    await s.replace(p + "a", b"2", a.mod_revision)
    later = await s.get(p + "a")
    assert later is not None
    await s.delete(p + "a", later.mod_revision)
    await asyncio.wait_for(watcher, 5)
    assert [(e.key, e.value) for e in seen] == [(p + "a", b"1"), (p + "a", b"2"), (p + "a", None)]
    assert [e.revision for e in seen] == sorted(e.revision for e in seen)


async def test_leased_key_lives_while_refreshed_and_vanishes_after(timed: Timed) -> None:
    s, p = timed.store, timed.prefix
    snap = await s.snapshot(p)
    lease = await s.grant_lease(2)  # etcd's minimum
    created, _ = await s.create(p + "owner", b"w1", lease=lease)
    assert created
    for _ in range(2):  # longer than the lease in all, refreshed within it
        await timed.advance(1.1)
        await s.refresh_lease(lease)
    assert await s.get(p + "owner") is not None
    for _ in range(40):  # no more refreshes: gone within the ttl (etcd checks twice a second)
        if await s.get(p + "owner") is None:
            break
        await timed.advance(0.25)
    assert await s.get(p + "owner") is None
    with pytest.raises(LeaseExpired):
        await s.refresh_lease(lease)
    with pytest.raises(LeaseExpired):
        await s.create(p + "again", b"w1", lease=lease)
    # The expiry is a delete, seen by a watch like any other.
    events = s.watch(p, snap.revision + 1)
    first = await asyncio.wait_for(anext(events), 5)
    second = await asyncio.wait_for(anext(events), 5)
    assert [(first.key, first.value), (second.key, second.value)] == [
        (p + "owner", b"w1"),
        (p + "owner", None),
    ]
    await events.aclose()  # type: ignore[attr-defined]


async def test_revoke_deletes_the_lease_keys_at_once(store: tuple[CatalogStore, str]) -> None:
    s, p = store
    lease = await s.grant_lease(30)
    other = await s.grant_lease(30)
    await s.create(p + "a", b"1", lease=lease)
    await s.create(p + "b", b"2", lease=lease)
    await s.create(p + "c", b"3", lease=other)
    await s.create(p + "d", b"4")
    # Creating an existing key does not rebind it to another lease.
    created, now = await s.create(p + "a", b"x", lease=other)
    assert not created and now.value == b"1"
    await s.revoke_lease(lease)
    await s.revoke_lease(lease)  # already gone: not an error
    assert [v.key for v in (await s.snapshot(p)).items] == [p + "c", p + "d"]
    await s.revoke_lease(other)
    assert [v.key for v in (await s.snapshot(p)).items] == [p + "d"]

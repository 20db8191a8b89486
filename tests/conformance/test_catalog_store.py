"""One conformance suite for the catalog seam, run on the in-memory store and on real etcd."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import pytest

from catalog.errors import Conflict, LeaseExpired
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

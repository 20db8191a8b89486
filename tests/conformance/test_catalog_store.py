"""One conformance suite for the catalog seam, run on the in-memory store and on real etcd."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from catalog.errors import Conflict
from catalog.etcd import EtcdStore
from catalog.memory import MemoryStore
from catalog.records import Event
from catalog.store import CatalogStore
from tests.conftest import unique_prefix


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

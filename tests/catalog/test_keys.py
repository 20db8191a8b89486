"""Catalog keys: no two tenants share one, and what an older release wrote is moved."""

from __future__ import annotations

import json

import pytest

from catalog.catalog import Catalog
from catalog.keys import Keys
from catalog.memory import MemoryStore
from catalog.records import Pin, Placement

PROJECTS = ["", "_", "%", "%25", "a/b", "a", "a%2Fb", "50%", "ü/%/x", "a/b/c"]


def test_every_project_and_queue_has_its_own_key_and_reads_back() -> None:
    keys = Keys("/t/")
    made = {keys.placement(p, q): (p, q) for p in PROJECTS for q in ("q", "b.q", "_")}
    assert len(made) == len(PROJECTS) * 3
    for key, ident in made.items():
        assert keys.parse_placement(key) == ident
    pins = {keys.pin(p): p for p in PROJECTS}
    assert len(pins) == len(PROJECTS)
    assert all(keys.parse_pin(k) == p for k, p in pins.items())


def test_a_project_is_one_segment_and_no_project_is_not_a_project() -> None:
    keys = Keys("/t/")
    assert keys.placement("a/b", "q") == "/t/placements/a%2Fb/q"
    assert keys.placement("", "q") == "/t/placements/%/q"
    assert keys.placement("_", "q") == "/t/placements/_/q"
    assert keys.placement("tenant-1", "orders") == "/t/placements/tenant-1/orders"  # as before
    assert not keys.project_placements("a").startswith(keys.project_placements("a/b"))
    assert not keys.project_placements("a/b").startswith(keys.project_placements("a"))


async def test_a_placement_is_removed_only_by_its_own_project() -> None:
    catalog = Catalog(MemoryStore(), Keys("/t/"))
    await catalog.place("", "q", "p1")
    await catalog.place("_", "q", "p2")
    await catalog.unplace("_", "q")
    assert await catalog.placement("", "q") == Placement("", "q", "p1")
    assert await catalog.placement("_", "q") is None
    # An older layout's shared key: the record says whose it is, and only that project's
    # request removes it.
    store = MemoryStore()
    legacy = Catalog(store, Keys("/t/"))
    await store.create("/t/placements/_/q", Placement("", "q", "p1").to_json())
    await legacy.unplace("_", "q")
    assert await store.get("/t/placements/_/q") is not None


async def test_names_listed_per_project_with_markers() -> None:
    catalog = Catalog(MemoryStore(), Keys("/t/"))
    for project, queue in [("a", "x"), ("a/b", "q1"), ("a/b", "q2"), ("", "v1"), ("_", "u")]:
        await catalog.place(project, queue, "p1")
    assert await catalog.queue_names("a", None, 10) == ["x"]
    assert await catalog.queue_names("a/b", None, 10) == ["q1", "q2"]
    assert await catalog.queue_names("a/b", "q1", 10) == ["q2"]
    assert await catalog.queue_names("", None, 10) == ["v1"]
    assert await catalog.queue_names("_", None, 10) == ["u"]


def legacy_placement(project: str, queue: str, partition: str = "p1") -> bytes:
    return Placement(project, queue, partition).to_json()


@pytest.fixture
async def older() -> MemoryStore:
    """A catalog as layout 1 wrote it: raw segments, "no project" as `_`."""
    store = MemoryStore()
    for key, value in [
        ("/t/placements/_/v1q", legacy_placement("", "v1q")),
        ("/t/placements/_/mine", legacy_placement("_", "mine")),
        ("/t/placements/50%/q", legacy_placement("50%", "q", "p2")),
        ("/t/placements/a/b/q", legacy_placement("a/b", "q")),
        ("/t/placements/tenant/orders", legacy_placement("tenant", "orders")),
        ("/t/pins/_", Pin("", "p2").to_json()),
        ("/t/pins/x%y", Pin("x%y", "p1").to_json()),
    ]:
        await store.create(key, value)
    return store


async def test_the_upgrade_moves_an_older_layouts_keys_once(older: MemoryStore) -> None:
    catalog = Catalog(older, Keys("/t/"))
    assert await catalog.upgrade_layout() == 5
    assert await catalog.placement("", "v1q") == Placement("", "v1q", "p1")
    assert await catalog.placement("_", "mine") == Placement("_", "mine", "p1")
    assert await catalog.placement("50%", "q") == Placement("50%", "q", "p2")
    assert await catalog.placement("a/b", "q") == Placement("a/b", "q", "p1")
    assert await catalog.placement("tenant", "orders") == Placement("tenant", "orders", "p1")
    assert sorted(p.project for p in await catalog.pins()) == ["", "x%y"]
    keys = [v.key for v in (await older.snapshot("/t/")).items]
    assert "/t/placements/_/v1q" not in keys and "/t/placements/a/b/q" not in keys
    layout = await older.get("/t/layout")
    assert layout is not None and json.loads(layout.value) == {"placements": 2}
    assert await catalog.upgrade_layout() == 0


async def test_no_project_placements_of_an_older_proxy_are_moved_at_each_start(
    older: MemoryStore,
) -> None:
    catalog = Catalog(older, Keys("/t/"))
    await catalog.upgrade_layout()
    # A proxy of the older release, still running in a rolling upgrade, places a v1 queue.
    await older.create("/t/placements/_/late", legacy_placement("", "late"))
    assert await catalog.upgrade_layout() == 1
    assert await catalog.placement("", "late") == Placement("", "late", "p1")


async def test_the_upgrade_keeps_the_higher_epoch_when_both_keys_exist() -> None:
    store = MemoryStore()
    catalog = Catalog(store, Keys("/t/"))
    await store.create("/t/placements/_/q", Placement("", "q", "p2", epoch=3).to_json())
    await store.create("/t/placements/%/q", Placement("", "q", "p1", epoch=2).to_json())
    await store.create("/t/placements/_/r", Placement("", "r", "p2", epoch=1).to_json())
    await store.create("/t/placements/%/r", Placement("", "r", "p1", epoch=2).to_json())
    assert await catalog.upgrade_layout() == 2
    assert await catalog.placement("", "q") == Placement("", "q", "p2", epoch=3)
    assert await catalog.placement("", "r") == Placement("", "r", "p1", epoch=2)
    assert [v.key for v in (await store.snapshot("/t/placements/")).items] == [
        "/t/placements/%/q",
        "/t/placements/%/r",
    ]

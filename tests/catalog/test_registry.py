"""Registry: the limits a new migration must pass, on the in-memory catalog."""

from __future__ import annotations

import pytest

from catalog.catalog import Catalog
from catalog.errors import NotFound, Refused
from catalog.memory import MemoryStore
from catalog.migrations import Phase
from catalog.records import Partition
from catalog.registry import Registry


@pytest.fixture
async def registry() -> Registry:
    catalog = Catalog(MemoryStore())
    for name in ("p1", "p2", "p3"):
        await catalog.add_partition(
            Partition(name, (f"http://{name}",), storage=f"sqlite:///tmp/{name}.db")
        )
    for queue in ("a", "b", "c"):
        await catalog.place("proj", queue, "p1")
    await catalog.place("proj", "d", "p3")
    return Registry(catalog)


async def test_one_incoming_and_one_outgoing_until_the_switch(registry: Registry) -> None:
    first = await registry.create("proj", "a", "p2")
    assert (first.source, first.target, first.phase) == ("p1", "p2", Phase.INIT)
    with pytest.raises(Refused, match="outgoing"):
        await registry.create("proj", "b", "p3")
    with pytest.raises(Refused, match="incoming"):
        await registry.create("proj", "d", "p2")
    with pytest.raises(Refused, match="already moving"):
        await registry.create("proj", "a", "p3")
    # Once switched, the move no longer counts against the partitions' limits.
    stored = await registry.get(first.id)
    m = first
    for phase in (Phase.COPYING, Phase.CATCHING_UP, Phase.FROZEN, Phase.SWITCHED):
        m = m.to(phase, m.updated + 1)
        stored = await registry.save(stored, m)
    second = await registry.create("proj", "b", "p2")
    assert second.source == "p1"
    with pytest.raises(Refused, match="already moving"):
        await registry.create("proj", "a", "p3")  # switched but not DONE: still this queue's


async def test_partition_in_use_until_its_migrations_end(registry: Registry) -> None:
    assert not await registry.partition_in_use("p2")
    m = await registry.create("proj", "a", "p2")
    assert await registry.partition_in_use("p1") and await registry.partition_in_use("p2")
    assert not await registry.partition_in_use("p3")
    stored = await registry.get(m.id)
    await registry.save(stored, m.to(Phase.CANCELLED, m.updated + 1))
    assert not await registry.partition_in_use("p2")


async def test_refusals(registry: Registry) -> None:
    with pytest.raises(NotFound):
        await registry.create("proj", "never-placed", "p2")
    with pytest.raises(NotFound):
        await registry.create("proj", "a", "p9")
    with pytest.raises(Refused, match="already on"):
        await registry.create("proj", "a", "p1")


async def test_cancel_refused_after_the_switch(registry: Registry) -> None:
    m = await registry.create("proj", "a", "p2")
    stored = await registry.get(m.id)
    for phase in (Phase.COPYING, Phase.CATCHING_UP, Phase.FROZEN, Phase.SWITCHED):
        m = m.to(phase, m.updated + 1)
        stored = await registry.save(stored, m)
    with pytest.raises(Refused, match="move it back"):
        await registry.request_cancel(m.id)
    other = await registry.create("proj", "b", "p3")
    assert (await registry.request_cancel(other.id)).cancel_requested is True

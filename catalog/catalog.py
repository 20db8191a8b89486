"""The catalog's rules, written once above the `CatalogStore` seam.

Every write is a compare-and-swap on the key's revision, so a write that timed out and committed
anyway, then is retried, changes nothing twice.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, TypeVar

from catalog import scan
from catalog.errors import Conflict, NotFound, Refused
from catalog.keys import Keys
from catalog.records import Partition, PartitionState, Pin, Placement, Versioned
from catalog.store import CatalogStore

CAS_ATTEMPTS = 16


class Record(Protocol):
    def to_json(self) -> bytes: ...


R = TypeVar("R", bound=Record)


class Catalog:
    def __init__(self, store: CatalogStore, keys: Keys | None = None) -> None:
        self.store = store
        self.keys = keys or Keys()

    # --- partitions ------------------------------------------------------------------------------

    async def partitions(self) -> list[Partition]:
        snapshot = await self.store.snapshot(self.keys.partitions)
        return [Partition.from_json(v.value) for v in snapshot.items]

    async def partition(self, name: str) -> Partition:
        found = await self.store.get(self.keys.partition(name))
        if found is None:
            raise NotFound(f"partition {name} does not exist")
        return Partition.from_json(found.value)

    async def add_partition(self, partition: Partition) -> Partition:
        """Register a partition; adding the same one again is a no-op, a different one refused."""
        created, now = await self.store.create(
            self.keys.partition(partition.name), partition.to_json()
        )
        existing = Partition.from_json(now.value)
        if not created and existing != partition:
            raise Refused(f"partition {partition.name} already exists with other settings")
        return existing

    async def update_partition(
        self,
        name: str,
        *,
        weight: int | None = None,
        state: PartitionState | None = None,
        nodes: tuple[str, ...] | None = None,
        storage: str | None = None,
    ) -> Partition:
        def change(p: Partition) -> Partition:
            return Partition(
                name=p.name,
                nodes=p.nodes if nodes is None else nodes,
                weight=p.weight if weight is None else weight,
                state=p.state if state is None else state,
                storage=p.storage if storage is None else storage,
            )

        return await self._update(
            self.keys.partition(name), Partition.from_json, change, f"partition {name}"
        )

    async def remove_partition(self, name: str) -> None:
        """Remove a partition that owns no queue; refused while it owns any."""
        key = self.keys.partition(name)
        found = await self.store.get(key)
        if found is None:
            return
        owned = await self.count_placements(name, stop_at=1)
        if owned:
            raise Refused(f"partition {name} still owns queues; drain it first")
        await self.store.delete(key, found.mod_revision)

    # --- placements ------------------------------------------------------------------------------

    async def placement(self, project: str, queue: str) -> Placement | None:
        found = await self.store.get(self.keys.placement(project, queue))
        return None if found is None else Placement.from_json(found.value)

    async def place(self, project: str, queue: str, partition: str) -> Placement:
        """Create the queue's placement unless one exists; return whichever won."""
        wanted = Placement(project=project, queue=queue, partition=partition)
        _, now = await self.store.create(self.keys.placement(project, queue), wanted.to_json())
        return Placement.from_json(now.value)

    async def unplace(self, project: str, queue: str) -> None:
        key = self.keys.placement(project, queue)
        for _ in range(CAS_ATTEMPTS):
            found = await self.store.get(key)
            if found is None:
                return
            try:
                await self.store.delete(key, found.mod_revision)
                return
            except Conflict:
                continue
        raise Conflict(key)

    async def queue_names(self, project: str, marker: str | None, limit: int) -> list[str]:
        prefix = self.keys.project_placements(project)
        start = prefix + marker if marker else ""
        found = await self.store.range(prefix, start, limit)
        return [v.key[len(prefix) :] for v in found]

    async def count_placements(self, partition: str, stop_at: int | None = None) -> int:
        """How many queues `partition` owns (a scan a page at a time at one revision: for admin
        commands, not the request path)."""
        count = 0
        async for page in scan.pages(self.store, self.keys.placements, self.store.page_size):
            for item in page.items:
                if Placement.from_json(item.value).partition == partition:
                    count += 1
                    if stop_at is not None and count >= stop_at:
                        return count
        return count

    # --- pins ------------------------------------------------------------------------------------

    async def pins(self) -> list[Pin]:
        snapshot = await self.store.snapshot(self.keys.pins)
        return [Pin.from_json(v.value) for v in snapshot.items]

    async def pin(self, project: str, partition: str) -> Pin:
        key = self.keys.pin(project)
        wanted = Pin(project, partition)
        for _ in range(CAS_ATTEMPTS):
            created, now = await self.store.create(key, wanted.to_json())
            if created or Pin.from_json(now.value) == wanted:
                return wanted
            try:
                await self.store.replace(key, wanted.to_json(), now.mod_revision)
                return wanted
            except Conflict:
                continue
        raise Conflict(key)

    async def unpin(self, project: str) -> None:
        key = self.keys.pin(project)
        found = await self.store.get(key)
        if found is not None:
            await self.store.delete(key, found.mod_revision)

    # --- helpers ---------------------------------------------------------------------------------

    async def _update(
        self, key: str, parse: Callable[[bytes], R], change: Callable[[R], R], what: str
    ) -> R:
        """Read-modify-write with compare-and-swap, retried when another writer got in first."""
        for _ in range(CAS_ATTEMPTS):
            found: Versioned | None = await self.store.get(key)
            if found is None:
                raise NotFound(f"{what} does not exist")
            updated = change(parse(found.value))
            encoded = updated.to_json()
            if encoded == found.value:
                return updated
            try:
                await self.store.replace(key, encoded, found.mod_revision)
                return updated
            except Conflict:
                continue
        raise Conflict(key)

"""The catalog's rules, written once above the `CatalogStore` seam.

Every write is a compare-and-swap on the key's revision, so a write that timed out and committed
anyway, then is retried, changes nothing twice.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Protocol, TypeVar

from catalog import scan
from catalog.errors import Conflict, NotFound, Refused
from catalog.keys import LAYOUT, Keys, escape, unescape
from catalog.records import Partition, PartitionState, Pin, Placement, Versioned
from catalog.store import CatalogStore
from wire.topics import container, is_topic

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
        """Remove the queue's placement: only its own project's (the record says whose it is)."""
        key = self.keys.placement(project, queue)
        for _ in range(CAS_ATTEMPTS):
            found = await self.store.get(key)
            if found is None:
                return
            placed = Placement.from_json(found.value)
            if (placed.project, placed.queue) != (project, queue):
                return  # another tenant's record under this key (an older layout's collision)
            try:
                await self.store.delete(key, found.mod_revision)
                return
            except Conflict:
                continue
        raise Conflict(key)

    async def queue_names(self, project: str, marker: str | None, limit: int) -> list[str]:
        """Up to `limit` of the project's placed queues after `marker`, sorted; never a topic
        (topics' containers sort after every queue: a page may end short before them)."""
        prefix = self.keys.project_placements(project)
        start = prefix + escape(marker) if marker else ""
        found = await self.store.range(prefix, start, limit)
        names = [unescape(v.key[len(prefix) :]) for v in found]
        return [name for name in names if not is_topic(name)]

    async def topic_names(self, project: str, marker: str | None, limit: int) -> list[str]:
        """Up to `limit` of the project's placed topics after the topic `marker`, sorted."""
        prefix = self.keys.project_placements(project) + escape(container(""))
        start = prefix + escape(marker) if marker else ""
        found = await self.store.range(prefix, start, limit)
        return [unescape(v.key[len(prefix) :]) for v in found]

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

    # --- key layout ------------------------------------------------------------------------------

    async def layout_behind(self) -> bool:
        """Whether the catalog may still hold keys of an older layout anywhere."""
        done = await self.store.get(self.keys.layout)
        return done is None or json.loads(done.value).get("placements", 1) < LAYOUT

    async def upgrade_layout(self, *, whole: bool | None = None) -> int:
        """Move every placement and pin an older release wrote under another key than this
        layout's; returns how many moved. Idempotent, safe to run from several proxies at once.

        The whole catalog is read (`whole`; by default while `layout_behind`), once: then
        `keys.layout` records it. The placements of "no project" are read at every call, since
        a proxy of the older release, still running in a rolling upgrade, writes them under the
        old key. Each record names its project and queue, so its right key is known whatever
        key it sits under."""
        if whole is None:
            whole = await self.layout_behind()
        prefix = self.keys.placements if whole else self.keys.legacy_no_project_placements
        moved = 0
        async for page in scan.pages(self.store, prefix, self.store.page_size):
            for item in page.items:
                placed = Placement.from_json(item.value)
                moved += await self._move(item, self.keys.placement(placed.project, placed.queue))
        if whole:
            for item in (await self.store.snapshot(self.keys.pins)).items:
                moved += await self._move(item, self.keys.pin(Pin.from_json(item.value).project))
            record = json.dumps({"placements": LAYOUT}).encode()
            created, now = await self.store.create(self.keys.layout, record)
            if not created and now.value != record:
                await self.store.replace(self.keys.layout, record, now.mod_revision)
        return moved

    async def _move(self, item: Versioned, key: str) -> int:
        """Put `item` at `key`, then delete it where it was; 1 if moved, else 0.

        When `key` already holds another value, the higher placement epoch wins (an older
        release's worker may have switched the queue since, or this release's since the copy)."""
        if item.key == key:
            return 0
        current: Versioned | None = item
        for _ in range(CAS_ATTEMPTS):
            if current is None:
                return 1  # gone meanwhile (unplaced, or moved by another proxy)
            created, now = await self.store.create(key, current.value)
            try:
                if not created and _epoch(current.value) > _epoch(now.value):
                    await self.store.replace(key, current.value, now.mod_revision)
                await self.store.delete(current.key, current.mod_revision)
                return 1
            except Conflict:
                current = await self.store.get(item.key)
        raise Conflict(item.key)

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


def _epoch(raw: bytes) -> int:
    """A placement's epoch; 0 for any other record (pins)."""
    epoch = json.loads(raw).get("epoch", 0)
    return epoch if isinstance(epoch, int) else 0

"""An in-memory `CatalogStore` with etcd's semantics, for unit tests of logic above the seam.

Leases expire by an injectable clock (monotonic seconds). Expiry is applied when the store is next
used, or by `expire()`, so a test that moves a fake clock calls `expire()` to see the deletes.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Callable

from catalog import scan
from catalog.errors import Compacted, Conflict, LeaseExpired
from catalog.records import Event, Lookup, Page, Snapshot, Versioned


class MemoryStore:
    def __init__(
        self, clock: Callable[[], float] = time.monotonic, page_size: int = scan.PAGE_SIZE
    ) -> None:
        self.page_size = page_size
        self._data: dict[str, Versioned] = {}
        # Every key's values since the last compaction, oldest first (None: deleted), so a page
        # can be read at an earlier revision as etcd's MVCC store reads it.
        self._versions: dict[str, list[tuple[int, Versioned | None]]] = {}
        self._history: list[Event] = []
        self._revision = 1
        self._compacted = 0
        self._changed = asyncio.Condition()
        self._clock = clock
        self._lease_ids = itertools.count(0x1000)
        self._leases: dict[int, tuple[int, float]] = {}  # id -> (ttl, expiry)
        self._bound: dict[str, int] = {}  # key -> lease

    @property
    def revision(self) -> int:
        return self._revision

    async def get(self, key: str) -> Versioned | None:
        await self.expire()
        return self._data.get(key)

    async def lookup(self, key: str) -> Lookup:
        await self.expire()
        return Lookup(self._data.get(key), self._revision)

    async def snapshot(self, prefix: str) -> Snapshot:
        await self.expire()
        return await scan.snapshot(self, prefix, self.page_size)

    async def page(self, prefix: str, start_after: str, limit: int, revision: int = 0) -> Page:
        if revision and revision < self._compacted:
            raise Compacted(f"revision {revision} is compacted")
        at = revision or self._revision
        keys = sorted(k for k in self._versions if k.startswith(prefix) and k > start_after)
        items: list[Versioned] = []
        for key in keys:
            value = self._at(key, at)
            if value is None:
                continue
            if len(items) == limit:
                return Page(at, items, more=True)
            items.append(value)
        return Page(at, items, more=False)

    def _at(self, key: str, revision: int) -> Versioned | None:
        """The key's value as it was at `revision`."""
        found = None
        for changed, version in self._versions[key]:
            if changed > revision:
                break
            found = version
        return found

    async def range(self, prefix: str, start_after: str, limit: int) -> list[Versioned]:
        await self.expire()
        keys = sorted(k for k in self._data if k.startswith(prefix) and k > start_after)
        return [self._data[k] for k in keys[:limit]]

    async def create(
        self, key: str, value: bytes, lease: int | None = None
    ) -> tuple[bool, Versioned]:
        await self.expire()
        existing = self._data.get(key)
        if existing is not None:
            return False, existing
        if lease is not None and lease not in self._leases:
            raise LeaseExpired(f"lease {lease:x} not found")
        stored = await self._put(key, value, create=True)
        if lease is not None:
            self._bound[key] = lease
        return True, stored

    async def replace(self, key: str, value: bytes, mod_revision: int) -> Versioned:
        await self.expire()
        existing = self._data.get(key)
        if existing is None or existing.mod_revision != mod_revision:
            raise Conflict(key)
        # As etcd's put without a lease: the key is no longer bound to one.
        self._bound.pop(key, None)
        return await self._put(key, value, create=False)

    async def delete(self, key: str, mod_revision: int) -> None:
        await self.expire()
        existing = self._data.get(key)
        if existing is None or existing.mod_revision != mod_revision:
            raise Conflict(key)
        await self._remove(key)

    async def grant_lease(self, ttl: int) -> int:
        lease = next(self._lease_ids)
        self._leases[lease] = (ttl, self._clock() + ttl)
        return lease

    async def refresh_lease(self, lease_id: int) -> None:
        await self.expire()
        found = self._leases.get(lease_id)
        if found is None:
            raise LeaseExpired(f"lease {lease_id:x} expired")
        self._leases[lease_id] = (found[0], self._clock() + found[0])

    async def revoke_lease(self, lease_id: int) -> None:
        if self._leases.pop(lease_id, None) is not None:
            await self._drop_keys_of({lease_id})

    async def expire(self) -> None:
        """Delete every lease past its expiry, with the keys bound to it."""
        now = self._clock()
        gone = {lease for lease, (_, expiry) in self._leases.items() if expiry <= now}
        for lease in gone:
            del self._leases[lease]
        if gone:
            await self._drop_keys_of(gone)

    async def _drop_keys_of(self, leases: set[int]) -> None:
        for key in [k for k, lease in self._bound.items() if lease in leases]:
            await self._remove(key)

    async def _remove(self, key: str) -> None:
        self._bound.pop(key, None)
        self._revision += 1
        del self._data[key]
        self._versions[key].append((self._revision, None))
        await self._publish(Event(key, None, self._revision))

    async def _put(self, key: str, value: bytes, *, create: bool) -> Versioned:
        self._revision += 1
        created = self._revision if create else self._data[key].create_revision
        stored = Versioned(key, value, self._revision, created)
        self._data[key] = stored
        self._versions.setdefault(key, []).append((self._revision, stored))
        await self._publish(Event(key, value, self._revision))
        return stored

    async def _publish(self, event: Event) -> None:
        self._history.append(event)
        async with self._changed:
            self._changed.notify_all()

    def compact(self) -> None:
        """Forget history up to now, as etcd's compaction does."""
        self._compacted = self._revision
        self._history.clear()
        self._versions = {k: [(v.mod_revision, v)] for k, v in self._data.items()}

    async def watch(self, prefix: str, start_revision: int) -> AsyncIterator[Event]:
        if start_revision <= self._compacted:
            raise Compacted(f"revision {start_revision} is compacted")
        next_revision = start_revision
        while True:
            for event in [e for e in self._history if e.revision >= next_revision]:
                next_revision = event.revision + 1
                if event.key.startswith(prefix):
                    yield event
            async with self._changed:
                if not any(e.revision >= next_revision for e in self._history):
                    await self._changed.wait()

    async def close(self) -> None:
        return None

"""An in-memory `CatalogStore` with etcd's semantics, for unit tests of logic above the seam."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from catalog.errors import Compacted, Conflict
from catalog.records import Event, Snapshot, Versioned


class MemoryStore:
    def __init__(self) -> None:
        self._data: dict[str, Versioned] = {}
        self._history: list[Event] = []
        self._revision = 1
        self._compacted = 0
        self._changed = asyncio.Condition()

    @property
    def revision(self) -> int:
        return self._revision

    async def get(self, key: str) -> Versioned | None:
        return self._data.get(key)

    async def snapshot(self, prefix: str) -> Snapshot:
        items = sorted(
            (v for k, v in self._data.items() if k.startswith(prefix)), key=lambda v: v.key
        )
        return Snapshot(self._revision, items)

    async def range(self, prefix: str, start_after: str, limit: int) -> list[Versioned]:
        keys = sorted(k for k in self._data if k.startswith(prefix) and k > start_after)
        return [self._data[k] for k in keys[:limit]]

    async def create(self, key: str, value: bytes) -> tuple[bool, Versioned]:
        existing = self._data.get(key)
        if existing is not None:
            return False, existing
        return True, await self._put(key, value, create=True)

    async def replace(self, key: str, value: bytes, mod_revision: int) -> Versioned:
        existing = self._data.get(key)
        if existing is None or existing.mod_revision != mod_revision:
            raise Conflict(key)
        return await self._put(key, value, create=False)

    async def delete(self, key: str, mod_revision: int) -> None:
        existing = self._data.get(key)
        if existing is None or existing.mod_revision != mod_revision:
            raise Conflict(key)
        self._revision += 1
        del self._data[key]
        await self._publish(Event(key, None, self._revision))

    async def _put(self, key: str, value: bytes, *, create: bool) -> Versioned:
        self._revision += 1
        created = self._revision if create else self._data[key].create_revision
        stored = Versioned(key, value, self._revision, created)
        self._data[key] = stored
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

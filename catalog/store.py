"""The catalog seam: a thin, compare-and-swap key-value store with a watch.

Implemented by `catalog.etcd.EtcdStore` (the real one) and `catalog.memory.MemoryStore` (for unit
tests); `tests/conformance/test_catalog_store.py` runs the same tests on both. Domain rules
(placements, partitions, pins) live once, above it, in `catalog.catalog`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

from catalog.records import Event, Lookup, Page, Snapshot, Versioned


class CatalogStore(Protocol):
    page_size: int  # keys per page of a whole-prefix read (`snapshot`, `catalog.scan.pages`)

    async def get(self, key: str) -> Versioned | None:
        """The value at `key`, or None. Raises `CatalogUnavailable`."""

    async def lookup(self, key: str) -> Lookup:
        """The value at `key` (or None) with the store revision it was read at: a reader that
        also follows a watch applies an event only when it is newer. Raises `CatalogUnavailable`."""

    async def snapshot(self, prefix: str) -> Snapshot:
        """Every key under `prefix`, sorted by key, and the store revision they were read at.

        Read in pages (`page`) at one revision, so no answer outgrows the client's message
        limit; for small prefixes (partitions, pins, migrations): a large one is read with
        `catalog.scan.pages` a page at a time."""

    async def page(self, prefix: str, start_after: str, limit: int, revision: int = 0) -> Page:
        """Up to `limit` keys under `prefix` sorted by key, strictly after `start_after`, as they
        were at `revision` (0: now), with the revision read at and whether more keys follow.

        Continue from the last key at the first page's revision to read a prefix whole at one
        revision, then watch from that revision + 1. Pages after the first may be served by any
        member (a serializable read). Raises `Compacted` when `revision` is no longer kept,
        `CatalogUnavailable`."""

    async def range(self, prefix: str, start_after: str, limit: int) -> list[Versioned]:
        """Up to `limit` keys under `prefix` sorted by key, strictly after `start_after`."""

    async def create(
        self, key: str, value: bytes, lease: int | None = None
    ) -> tuple[bool, Versioned]:
        """Create-if-absent, atomically. Returns (created, the value now at the key).

        Two callers racing on the same key agree: one sees created=True, the other gets the
        winner's value. With `lease`, a created key is bound to that lease and vanishes (a delete
        event) when the lease expires or is revoked; an existing key keeps its own lease. Raises
        `LeaseExpired` when `lease` is gone, `CatalogUnavailable`.
        """

    async def replace(self, key: str, value: bytes, mod_revision: int) -> Versioned:
        """Write `value` only if the key is still at `mod_revision`; raises `Conflict` otherwise."""

    async def delete(self, key: str, mod_revision: int) -> None:
        """Delete only if still at `mod_revision`; raises `Conflict` otherwise."""

    async def grant_lease(self, ttl: int) -> int:
        """A new lease that expires `ttl` seconds (at least; etcd may raise it to its minimum,
        2 s) after it was granted or last refreshed. Returns its id."""

    async def refresh_lease(self, lease_id: int) -> None:
        """Restart the lease's time to live; raises `LeaseExpired` when it is already gone.

        A lease is alive at least `ttl` seconds after the refresh was *sent*: a holder may act
        until then, measured from before its call."""

    async def revoke_lease(self, lease_id: int) -> None:
        """End the lease now, deleting its keys; a lease already gone is not an error."""

    def watch(self, prefix: str, start_revision: int) -> AsyncIterator[Event]:
        """Every change under `prefix` from `start_revision` on, in revision order.

        Raises `CatalogUnavailable` when the connection is lost (re-create the watch from the
        last revision seen plus one), and `Compacted` when `start_revision` is no longer kept
        (take a new snapshot).
        """

    async def close(self) -> None: ...

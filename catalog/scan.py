"""Reading a whole prefix of the catalog in pages, all at the revision of the first one."""

from __future__ import annotations

from collections.abc import AsyncIterator

from catalog.records import Page, Snapshot
from catalog.store import CatalogStore

PAGE_SIZE = 1000


async def pages(store: CatalogStore, prefix: str, size: int = PAGE_SIZE) -> AsyncIterator[Page]:
    """Every key under `prefix` a page at a time, each page read at the first one's revision
    (so a watch from that revision + 1 misses nothing). Raises what `CatalogStore.page` does."""
    start, revision = "", 0
    while True:
        page = await store.page(prefix, start, size, revision)
        yield page
        if not page.more or not page.items:
            return
        start, revision = page.items[-1].key, page.revision


async def snapshot(store: CatalogStore, prefix: str, size: int = PAGE_SIZE) -> Snapshot:
    """A small prefix whole, read in pages at one revision."""
    items = []
    revision = 0
    async for page in pages(store, prefix, size):
        items.extend(page.items)
        revision = page.revision
    return Snapshot(revision, items)

"""The partitions' storage as the worker opens it: one handle per storage URI, on a clock that
verify can pin.

Exports leave out what has expired by the reading side's clock, so two digests read a moment
apart would differ by every message that expired in between. Verify pins the clock while it reads
both digests; other migrations sharing the handles see time stand still for that long, which
only makes an export keep a message that expired a moment ago (the next catch-up drops it).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from catalog.catalog import Catalog
from catalog.errors import NotFound
from migrate.errors import Unmovable
from node.storage import open_storage
from node.storage.base import Storage


class PinnedClock:
    """A clock that reads `base` except while pinned."""

    def __init__(self, base: Callable[[], float] = time.time) -> None:
        self.base = base
        self._pinned: float | None = None
        self._pins = 0

    def __call__(self) -> float:
        return self.base() if self._pinned is None else self._pinned

    @contextmanager
    def pinned(self) -> Iterator[None]:
        if self._pins == 0:
            self._pinned = self.base()
        self._pins += 1
        try:
            yield
        finally:
            self._pins -= 1
            if self._pins == 0:
                self._pinned = None


class Storages:
    """Open storage handles by partition name, cached by URI, closed together."""

    def __init__(self, catalog: Catalog, clock: PinnedClock) -> None:
        self.catalog = catalog
        self.clock = clock
        self._open: dict[str, Storage] = {}
        self._lock = asyncio.Lock()

    async def of(self, partition: str) -> Storage:
        """The storage of `partition`; raises `Unmovable` when the catalog has no URI for it."""
        try:
            uri = (await self.catalog.partition(partition)).storage
        except NotFound as exc:
            raise Unmovable(f"partition {partition} does not exist") from exc
        if not uri:
            raise Unmovable(f"partition {partition} has no storage URI")
        async with self._lock:  # two migrations asking at once open it once
            if uri not in self._open:
                self._open[uri] = await open_storage(uri, self.clock)
            return self._open[uri]

    async def close(self) -> None:
        async with self._lock:
            handles, self._open = list(self._open.values()), {}
        for storage in handles:
            await storage.close()

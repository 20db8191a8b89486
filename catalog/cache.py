"""`PlacementCache`: the proxy's read path to the catalog, fed by a watch, never read per request.

It loads the catalog's prefix once, then follows a watch from the loaded revision + 1. Partitions
and pins are few and kept whole. Placements are kept in an LRU of bounded size: when the catalog
holds more queues than fit, a cold queue costs one etcd read, after which the watch keeps it
fresh. While etcd is unreachable the cache serves what it last knew and keeps re-creating the
watch from the last revision it applied; if that revision was compacted away, it reloads.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from enum import StrEnum

from prometheus_client import Counter, Gauge

from catalog.errors import CatalogUnavailable, Compacted
from catalog.keys import Keys
from catalog.records import Event, Partition, Pin, Placement, Versioned
from catalog.store import CatalogStore
from ground.logs import get_logger

log = get_logger("catalog.cache")

LOOKUPS = Counter(
    "marconi_placement_cache_lookups_total", "Placement lookups, by outcome.", ["outcome"]
)
WATCH_STATE = Gauge("marconi_placement_cache_watch_live", "1 while the catalog watch is live.")
WATCH_EVENTS = Counter("marconi_placement_cache_events_total", "Catalog changes applied.")
WATCH_RESTARTS = Counter(
    "marconi_placement_cache_watch_restarts_total", "Times the catalog watch was re-created."
)
LAST_EVENT = Gauge(
    "marconi_placement_cache_last_event_timestamp_seconds",
    "When the cache last applied a catalog change (watch lag reference).",
)


class WatchState(StrEnum):
    STARTING = "starting"
    LIVE = "live"
    RECONNECTING = "reconnecting"
    STOPPED = "stopped"


_ABSENT = None  # an LRU entry that records "no placement" (kept fresh by the watch too)


class PlacementCache:
    def __init__(
        self,
        store: CatalogStore,
        keys: Keys | None = None,
        *,
        capacity: int = 1_000_000,
        retry_delay: float = 0.5,
    ) -> None:
        self.store = store
        self.keys = keys or Keys()
        self.capacity = capacity
        self.retry_delay = retry_delay
        self.state = WatchState.STARTING
        self.revision = 0
        self.partitions: dict[str, Partition] = {}
        self.pins: dict[str, Pin] = {}
        self._placements: OrderedDict[tuple[str, str], Placement | None] = OrderedDict()
        self._complete = False  # every placement fits: a miss means "not placed"
        self._task: asyncio.Task[None] | None = None
        self._loaded = asyncio.Event()
        self.changed = asyncio.Event()  # set at every applied change (tests and the bench wait)

    # --- lifecycle -------------------------------------------------------------------------------

    async def start(self, load_within: float = 10.0) -> None:
        """Load, then follow the watch in the background. Waits for the first load."""
        self._task = asyncio.create_task(self._run(), name="placement-cache")
        async with asyncio.timeout(load_within):
            await self._loaded.wait()

    async def stop(self, within: float = 5.0) -> None:
        """Stop the watch; a watch that does not end within `within` seconds is left behind
        (a client library that swallows cancellation must not hold up a shutdown)."""
        self.state = WatchState.STOPPED
        if self._task is not None:
            self._task.cancel()
            done, _ = await asyncio.wait({self._task}, timeout=within)
            if not done:
                log.warning("watch_stop_timed_out", seconds=within)
            elif not self._task.cancelled():
                self._task.exception()  # retrieved: the loop ended on its own

    async def _run(self) -> None:
        need_load = True
        while True:
            try:
                if need_load:
                    await self._load()
                    need_load = False
                self.state = WatchState.LIVE
                WATCH_STATE.set(1)
                async for event in self.store.watch(self.keys.prefix, self.revision + 1):
                    self._apply(event)
            except Compacted:
                log.warning("catalog_watch_compacted", revision=self.revision)
                need_load = True
            except CatalogUnavailable as exc:
                if self.state is not WatchState.RECONNECTING:
                    log.warning("catalog_unreachable", error=str(exc), revision=self.revision)
                self.state = WatchState.RECONNECTING
                WATCH_STATE.set(0)
                await asyncio.sleep(self.retry_delay)
            else:
                await asyncio.sleep(self.retry_delay)  # the watch ended without an error
            WATCH_RESTARTS.inc()

    async def _load(self) -> None:
        snapshot = await self.store.snapshot(self.keys.prefix)
        partitions: dict[str, Partition] = {}
        pins: dict[str, Pin] = {}
        placements: OrderedDict[tuple[str, str], Placement | None] = OrderedDict()
        complete = True
        for item in snapshot.items:
            if item.key.startswith(self.keys.partitions):
                partition = Partition.from_json(item.value)
                partitions[partition.name] = partition
            elif item.key.startswith(self.keys.pins):
                pin = Pin.from_json(item.value)
                pins[pin.project] = pin
            elif item.key.startswith(self.keys.placements):
                if len(placements) < self.capacity:
                    p = Placement.from_json(item.value)
                    placements[(p.project, p.queue)] = p
                else:
                    complete = False
        self.partitions, self.pins, self._placements = partitions, pins, placements
        self._complete = complete
        self.revision = snapshot.revision
        self._loaded.set()
        log.info(
            "catalog_loaded",
            revision=self.revision,
            partitions=len(partitions),
            placements=len(placements),
            complete=complete,
        )

    # --- applying changes ------------------------------------------------------------------------

    def _apply(self, event: Event) -> None:
        key = event.key
        if key.startswith(self.keys.partitions):
            name = key[len(self.keys.partitions) :]
            if event.value is None:
                self.partitions.pop(name, None)
            else:
                self.partitions[name] = Partition.from_json(event.value)
        elif key.startswith(self.keys.pins):
            project = self.keys.parse_pin(key)
            if event.value is None:
                self.pins.pop(project, None)
            else:
                self.pins[project] = Pin.from_json(event.value)
        elif key.startswith(self.keys.placements):
            ident = self.keys.parse_placement(key)
            if self._complete or ident in self._placements:
                value = None if event.value is None else Placement.from_json(event.value)
                self._remember(ident, value)
        self.revision = max(self.revision, event.revision)
        WATCH_EVENTS.inc()
        LAST_EVENT.set(time.time())
        self.changed.set()
        self.changed = asyncio.Event()

    def _remember(self, ident: tuple[str, str], placement: Placement | None) -> None:
        if placement is None and self._complete:
            self._placements.pop(ident, None)
            return
        self._placements[ident] = placement
        self._placements.move_to_end(ident)
        while len(self._placements) > self.capacity:
            self._placements.popitem(last=False)
            self._complete = False

    # --- reading ---------------------------------------------------------------------------------

    def cached(self, project: str, queue: str) -> Placement | bool | None:
        """The cached placement, None if known absent, or False if unknown (a cold queue)."""
        ident = (project, queue)
        if ident in self._placements:
            self._placements.move_to_end(ident)
            return self._placements[ident]
        return None if self._complete else False

    async def placement(self, project: str, queue: str) -> Placement | None:
        """The queue's placement, or None if the queue was never placed."""
        found = self.cached(project, queue)
        if found is not False:
            LOOKUPS.labels("hit").inc()
            return found  # type: ignore[return-value]
        LOOKUPS.labels("miss").inc()
        return await self.refresh(project, queue)

    async def refresh(self, project: str, queue: str) -> Placement | None:
        """Read one placement from etcd now (after a node said the route is stale).

        When etcd is unreachable, answers the last known value instead.
        """
        ident = (project, queue)
        try:
            raw: Versioned | None = await self.store.get(self.keys.placement(project, queue))
        except CatalogUnavailable:
            return self._placements.get(ident)
        placement = None if raw is None else Placement.from_json(raw.value)
        if placement is not None or ident in self._placements or not self._complete:
            self._remember(ident, placement)
        return placement

    def remember(self, placement: Placement) -> None:
        """Record a placement this process just created (the watch will confirm it)."""
        self._remember((placement.project, placement.queue), placement)

    def __len__(self) -> int:
        return len(self._placements)

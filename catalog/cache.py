"""`PlacementCache`: the proxy's read path to the catalog, fed by a watch, never read per request.

A start reads the partitions and pins (few, kept whole) at one revision R and follows a watch from
R + 1: the cache is ready then. Placements are filled behind it, a page at a time at revision R,
while the watch already applies every change; until the fill ends, a queue not yet seen costs one
point read (`lookup`), never a "not placed" from a half-filled view. Point reads and events are
ordered by revision, so neither overwrites a newer value with an older one.

Placements are kept compact (`_code`): one int per queue (interned partition name, state, epoch),
keyed by the catalog key's `project/queue` part: about 170 bytes each with the dict, against 415
for the dataclass records before (BENCHMARKS.md). At most `capacity` are kept, least recently
used first out; a queue whose migration is in flight (frozen, or carrying a migration id) is
never evicted. When the catalog holds more queues than fit, a cold queue costs one etcd read,
after which the watch keeps it fresh. While etcd is unreachable the cache serves what it last
knew and keeps re-creating the watch from the last revision it applied; if that revision was
compacted away, it loads again.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import OrderedDict
from enum import StrEnum
from typing import Any

from prometheus_client import Counter, Gauge

from catalog import scan
from catalog.errors import CatalogUnavailable, Compacted
from catalog.keys import Keys, escape, parse_project, project_segment, unescape
from catalog.records import Event, Partition, Pin, Placement, PlacementState, Versioned
from catalog.store import CatalogStore
from ground.logs import get_logger
from ground.metrics import Tally

log = get_logger("catalog.cache")

# Counted per forwarded request: plain numbers (`Tally`), not prometheus-client's locked counter.
LOOKUPS = Tally("marconi_placement_cache_lookups", "Placement lookups, by outcome.", ["outcome"])
HIT, MISS = ("hit",), ("miss",)
RECENT = 4096  # decoded placements kept for the next lookups of the same queues
WATCH_STATE = Gauge("marconi_placement_cache_watch_live", "1 while the catalog watch is live.")
WATCH_EVENTS = Counter("marconi_placement_cache_events_total", "Catalog changes applied.")
WATCH_RESTARTS = Counter(
    "marconi_placement_cache_watch_restarts_total", "Times the catalog watch was re-created."
)
LAST_EVENT = Gauge(
    "marconi_placement_cache_last_event_timestamp_seconds",
    "When the cache last applied a catalog change (watch lag reference).",
)
FILLED = Gauge(
    "marconi_placement_cache_filled",
    "1 once every placement that fits is loaded (before: misses are read from etcd).",
)


class WatchState(StrEnum):
    STARTING = "starting"
    LIVE = "live"
    RECONNECTING = "reconnecting"
    STOPPED = "stopped"


# A compact placement: partition id in the low 20 bits, then 1 bit frozen, then the epoch. One
# with a migration id is kept as (code, id); None records "no placement" (kept fresh too).
Compact = int | tuple[int, str] | None
_PARTITION_BITS = 20
_FROZEN = 1 << _PARTITION_BITS
_EPOCH_SHIFT = _PARTITION_BITS + 1


class PlacementCache:
    def __init__(
        self,
        store: CatalogStore,
        keys: Keys | None = None,
        *,
        capacity: int = 1_000_000,
        retry_delay: float = 0.5,
        page_size: int | None = None,
    ) -> None:
        self.store = store
        self.keys = keys or Keys()
        self.capacity = capacity
        self.retry_delay = retry_delay
        self.page_size = page_size or store.page_size
        self.state = WatchState.STARTING
        self.revision = 0  # the last revision applied (from the load, then the watch)
        self.partitions: dict[str, Partition] = {}
        self.pins: dict[str, Pin] = {}
        self._names: list[str] = []  # interned partition names, by id
        self._name_ids: dict[str, int] = {}
        self._codes: dict[int, int] = {}
        self._placements: OrderedDict[str, Compact] = OrderedDict()  # "project/queue" -> compact
        # (project, queue) -> its key, compact value and record, for queues looked up lately:
        # valid while that value object is still the one kept (codes are interned, and names
        # only ever appended), so a lookup of a busy queue decodes nothing.
        self._recent: dict[tuple[str, str], tuple[str, Compact, Placement]] = {}
        self._complete = False  # every placement known: a miss means "not placed"
        self._filling = False  # the fill runs: every placement event is kept
        self._tombstones: list[str] = []  # deletes seen while filling (the fill must skip them)
        self._reading: dict[str, asyncio.Future[Placement | None]] = {}  # point reads in flight
        self._seen_while_reading: dict[str, int] = {}  # their keys' newest event revision
        self._ahead: dict[str, int] = {}  # point reads newer than the watch: skip older events
        self._task: asyncio.Task[None] | None = None
        self._fill: asyncio.Task[None] | None = None
        self._loaded = asyncio.Event()  # partitions and pins in place: ready
        self.filled = asyncio.Event()  # every placement that fits is loaded
        self.changed = asyncio.Event()  # set at every applied change (tests and the bench wait)

    # --- lifecycle -------------------------------------------------------------------------------

    async def start(self, load_within: float = 10.0) -> None:
        """Load partitions and pins, then follow the watch in the background (placements fill
        in behind it). Waits for partitions and pins only."""
        self._task = asyncio.create_task(self._run(), name="placement-cache")
        async with asyncio.timeout(load_within):
            await self._loaded.wait()

    async def stop(self, within: float = 5.0) -> None:
        """Stop the watch; a watch that does not end within `within` seconds is left behind
        (a client library that swallows cancellation must not hold up a shutdown)."""
        self.state = WatchState.STOPPED
        self._stop_fill()
        if self._task is not None:
            self._task.cancel()
            done, _ = await asyncio.wait({self._task}, timeout=within)
            if not done:
                log.warning("watch_stop_timed_out", seconds=within)
            elif not self._task.cancelled():
                self._task.exception()  # retrieved: the loop ended on its own

    @property
    def loading(self) -> bool:
        return self._filling

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
        """Partitions and pins at one revision; placements start filling at that revision."""
        self._stop_fill()
        partitions: dict[str, Partition] = {}
        pins: dict[str, Pin] = {}
        revision = 0
        async for page in scan.pages(self.store, self.keys.partitions, self.page_size):
            revision = page.revision
            for item in page.items:
                partition = Partition.from_json(item.value)
                partitions[partition.name] = partition
        start = ""
        while True:  # pins at the partitions' revision
            found = await self.store.page(self.keys.pins, start, self.page_size, revision)
            for item in found.items:
                pin = Pin.from_json(item.value)
                pins[pin.project] = pin
            if not found.more or not found.items:
                break
            start = found.items[-1].key
        self.partitions, self.pins = partitions, pins
        self._placements = OrderedDict()
        self._tombstones = []
        self._ahead.clear()
        self._complete = False
        self._filling = True
        self.filled.clear()
        FILLED.set(0)
        self.revision = revision
        self._fill = asyncio.create_task(self._fill_placements(revision), name="placement-fill")
        self._loaded.set()
        log.info("catalog_loaded", revision=revision, partitions=len(partitions), pins=len(pins))

    def _stop_fill(self) -> None:
        if self._fill is not None and not self._fill.done():
            self._fill.cancel()
        self._filling = False

    async def _fill_placements(self, revision: int) -> None:
        """Every placement, a page at a time at `revision` (or later, if that is compacted away
        meanwhile), into the cache behind the watch, until the capacity is reached."""
        started = time.monotonic()
        prefix, start, count, complete = self.keys.placements, "", 0, True
        while True:
            try:
                page = await self.store.page(prefix, start, self.page_size, revision)
            except Compacted:
                revision = 0  # go on from the same key at the latest revision: see `_add`
                continue
            except CatalogUnavailable as exc:
                log.warning("placement_fill_paused", error=str(exc), after=start)
                await asyncio.sleep(self.retry_delay)
                continue
            revision = page.revision
            for item in page.items:
                if len(self._placements) >= self.capacity:
                    complete = False
                    break
                self._add(item)
                count += 1
            if not complete:
                break
            if not page.more or not page.items:
                break
            start = page.items[-1].key
        for ident in self._tombstones:
            if self._placements.get(ident, 0) is None:
                del self._placements[ident]
        self._tombstones = []
        self._complete = complete and len(self._placements) <= self.capacity
        self._filling = False
        self.filled.set()
        FILLED.set(1)
        log.info(
            "placements_filled",
            read=count,
            cached=len(self._placements),
            complete=self._complete,
            seconds=round(time.monotonic() - started, 3),
        )

    def _add(self, item: Versioned) -> None:
        """One placement read by the fill: kept unless the watch or a point read already gave
        this queue a value (newer: the fill reads at the revision the watch started from), or
        the value is newer than the watch has reached (then its event is still to come)."""
        ident = item.key[len(self.keys.placements) :]
        if ident in self._placements or item.mod_revision > self.revision:
            return
        self._placements[ident] = self._code(json.loads(item.value))

    # --- applying changes ------------------------------------------------------------------------

    def _apply(self, event: Event) -> None:
        key = event.key
        if key.startswith(self.keys.placements):
            self._apply_placement(key[len(self.keys.placements) :], event)
        elif key.startswith(self.keys.partitions):
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
        self.revision = max(self.revision, event.revision)
        WATCH_EVENTS.inc()
        LAST_EVENT.set(time.time())
        self.changed.set()
        self.changed = asyncio.Event()

    def _apply_placement(self, ident: str, event: Event) -> None:
        if ident in self._seen_while_reading:
            self._seen_while_reading[ident] = event.revision
        ahead = self._ahead.get(ident)
        if ahead is not None:
            if event.revision <= ahead:
                return  # a point read already gave this value or a newer one
            del self._ahead[ident]
        if not (
            self._complete
            or self._filling
            or ident in self._placements
            or ident in self._seen_while_reading
        ):
            return  # a queue not kept here
        if event.value is None:
            if self._filling:
                self._tombstones.append(ident)
            self._keep(ident, None)
        else:
            self._keep(ident, self._code(json.loads(event.value)))

    def _keep(self, ident: str, value: Compact) -> None:
        if value is None and self._complete:
            self._placements.pop(ident, None)
            return
        self._placements[ident] = value
        self._placements.move_to_end(ident)
        if len(self._placements) > self.capacity:
            self._evict()

    def _evict(self) -> None:
        """Least recently used out, but never a queue whose migration is in flight."""
        spared = 0
        while len(self._placements) > self.capacity and spared < len(self._placements):
            ident, value = self._placements.popitem(last=False)
            if _moving(value):
                self._placements[ident] = value  # to the back: looked at again last
                spared += 1
                continue
            self._complete = False

    # --- compact records -------------------------------------------------------------------------

    def _code(self, doc: dict[str, Any]) -> Compact:
        name = doc["partition"]
        partition = self._name_ids.get(name)
        if partition is None:
            partition = self._name_ids[name] = len(self._names)
            self._names.append(name)
        code = partition | int(doc.get("epoch", 1)) << _EPOCH_SHIFT
        if doc.get("state", "active") == PlacementState.FROZEN.value:
            code |= _FROZEN
        code = self._codes.setdefault(code, code)  # one int object per distinct code
        migration = doc.get("migration")
        return (code, str(migration)) if migration else code

    def _decode(self, ident: str, value: Compact) -> Placement | None:
        if value is None:
            return None
        code, migration = value if isinstance(value, tuple) else (value, None)
        project, _, queue = ident.partition("/")
        return Placement(
            project=parse_project(project),
            queue=unescape(queue),
            partition=self._names[code & (_FROZEN - 1)],
            epoch=code >> _EPOCH_SHIFT,
            state=PlacementState.FROZEN if code & _FROZEN else PlacementState.ACTIVE,
            migration=migration,
        )

    # --- reading ---------------------------------------------------------------------------------

    def _ident(self, project: str, queue: str) -> str:
        """The placement's key below the placements prefix: what the fill and the watch see."""
        return f"{project_segment(project)}/{escape(queue)}"

    def cached(self, project: str, queue: str) -> Placement | bool | None:
        """The cached placement, None if known absent, or False if unknown (a cold queue, or
        one the fill has not reached yet)."""
        recent = self._recent.get((project, queue))
        if recent is not None:
            ident, value, placement = recent
            if self._placements.get(ident, False) is value:
                if not self._complete:
                    self._placements.move_to_end(ident)
                return placement
        ident = self._ident(project, queue)
        value = self._placements.get(ident, False)
        if value is False:
            return None if self._complete else False
        if not self._complete:
            self._placements.move_to_end(ident)  # the LRU's order matters only when it is full
        found = self._decode(ident, value)
        if found is not None:
            if len(self._recent) >= RECENT:
                self._recent.clear()  # the busy queues come back at once
            self._recent[project, queue] = (ident, value, found)
        return found

    async def placement(self, project: str, queue: str) -> Placement | None:
        """The queue's placement, or None if the queue was never placed."""
        found = self.cached(project, queue)
        if found is not False:
            LOOKUPS.add(HIT)
            return found  # type: ignore[return-value]
        LOOKUPS.add(MISS)
        return await self.refresh(project, queue)

    async def refresh(self, project: str, queue: str) -> Placement | None:
        """Read one placement from etcd now (after a node said the route is stale, or for a
        queue not in the cache). Concurrent reads of one queue share one etcd read.

        When etcd is unreachable, answers the last known value instead; raises
        `CatalogUnavailable` when there is none and the cache does not know every queue.
        """
        ident = self._ident(project, queue)
        reading = self._reading.get(ident)
        if reading is None:
            reading = asyncio.ensure_future(self._read(ident, project, queue))
            self._reading[ident] = reading
            reading.add_done_callback(lambda _: self._reading.pop(ident, None))
        return await asyncio.shield(reading)

    async def _read(self, ident: str, project: str, queue: str) -> Placement | None:
        self._seen_while_reading[ident] = 0
        try:
            found = await self.store.lookup(self.keys.placement(project, queue))
        except CatalogUnavailable:
            value = self._placements.get(ident, False)
            if value is False:
                if self._complete:
                    return None
                raise
            return self._decode(ident, value)
        finally:
            newest_event = self._seen_while_reading.pop(ident)
        if newest_event > found.revision:  # the watch applied a newer change meanwhile
            return self._decode(ident, self._placements.get(ident))
        value = None if found.value is None else self._code(json.loads(found.value.value))
        if value is not None or ident in self._placements or not self._complete:
            self._keep(ident, value)
            if found.revision > self.revision:
                self._behind(ident, found.revision)
        return self._decode(ident, value)

    def _behind(self, ident: str, revision: int) -> None:
        """The watch has not reached `revision` yet: its older events for `ident` are skipped."""
        if len(self._ahead) > 1024:
            self._ahead = {k: r for k, r in self._ahead.items() if r > self.revision}
        self._ahead[ident] = revision

    def remember(self, placement: Placement) -> None:
        """Record a placement this process just created (the watch will confirm it)."""
        ident = self._ident(placement.project, placement.queue)
        self._keep(ident, self._code(json.loads(placement.to_json())))

    def __len__(self) -> int:
        return len(self._placements)


def _moving(value: Compact) -> bool:
    return isinstance(value, tuple) or (isinstance(value, int) and bool(value & _FROZEN))

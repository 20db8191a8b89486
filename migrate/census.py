"""The census: how many queues and messages each partition holds, as gauges for the dashboard.

The worker counts now and then (`census_interval`): queues from the catalog's placements (one
scan), messages from each queue's stats in its partition's storage, read only while the cluster
has at most `census_stats_limit` queues (above that the message gauges are left out rather than
read a million stats every round). Labels are partitions only, never queues.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter as Tally

from prometheus_client import Gauge

from catalog.catalog import Catalog
from catalog.errors import CatalogError
from catalog.records import Placement
from ground.logs import get_logger
from migrate.errors import MigrationError
from migrate.storages import Storages
from node.errors import DoesNotExist, NodeError, StorageError

log = get_logger("migrate.census")
PAGE = 1000

QUEUES = Gauge("marconi_partition_queues", "Queues placed on each partition.", ["partition"])
MESSAGES = Gauge(
    "marconi_partition_messages",
    "Messages (free, claimed and delayed) in each partition's queues.",
    ["partition"],
)


async def placements(catalog: Catalog) -> list[Placement]:
    """Every placement in the catalog, a page at a time."""
    found: list[Placement] = []
    start = ""
    while True:
        page = await catalog.store.range(catalog.keys.placements, start, PAGE)
        found.extend(Placement.from_json(item.value) for item in page)
        if len(page) < PAGE:
            return found
        start = page[-1].key


async def count(catalog: Catalog, storages: Storages, stats_limit: int) -> None:
    """One census: set the gauges of every partition in the catalog."""
    partitions = [p.name for p in await catalog.partitions()]
    placed = await placements(catalog)
    queues = Tally(p.partition for p in placed)
    for name in partitions:
        QUEUES.labels(name).set(queues.get(name, 0))
    if len(placed) > stats_limit:
        MESSAGES.clear()
        return
    messages: Tally[str] = Tally()
    unreadable: set[str] = set()
    for p in placed:
        if p.partition in unreadable:
            continue
        try:
            storage = await storages.of(p.partition)
            stats = await storage.queues.stats(p.project, p.queue)
        except DoesNotExist:
            continue  # deleted since the scan
        except (MigrationError, StorageError):
            unreadable.add(p.partition)  # no storage URI, or the storage is down: no figure
            continue
        messages[p.partition] += stats.total
    for name in partitions:
        if name in unreadable:
            with contextlib.suppress(KeyError):  # never set yet
                MESSAGES.remove(name)
        else:
            MESSAGES.labels(name).set(messages.get(name, 0))


async def run(catalog: Catalog, storages: Storages, interval: float, stats_limit: int) -> None:
    """Count every `interval` seconds until cancelled; a failed census is logged and retried."""
    while True:
        try:
            await count(catalog, storages, stats_limit)
        except (CatalogError, NodeError) as exc:
            log.warning("census_failed", error=f"{type(exc).__name__}: {exc}")
        await asyncio.sleep(interval)

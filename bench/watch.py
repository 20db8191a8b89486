"""Placement watch lag: how long after a switch is written to etcd the proxy routes by it.

Each round switches one queue's placement between partitions p1 and p2 (a compare-and-swap that
raises the epoch, as a migration's switch does), then polls the proxy's `GET /admin/health` every
`interval` until the placement cache's revision reaches the revision of that write. The proxy's
routing reads only that cache, which applies a change before it advances its revision, so this is
the moment the proxy routes by the new placement. (`GET /admin/placements/...` would not do: it
reads the placement from etcd on every call, so it shows the change even when the watch lags.)
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import statistics
import time
from dataclasses import dataclass

import aiohttp

from bench.cluster import PARTITION, PROJECT
from catalog.catalog import Catalog
from catalog.etcd import EtcdStore
from catalog.records import Partition, PartitionState, Placement

QUEUE = "watch-lag"
OTHER = "p2"  # read-only: placements may point at it, the policy places nothing new there
ADMIN = {"X-Roles": "admin", "X-Project-ID": PROJECT}


@dataclass(frozen=True)
class Lag:
    after_ack_ms: list[float]  # from etcd's answer to the write
    after_send_ms: list[float]  # from sending the write (adds etcd's commit time)
    interval_ms: float

    @property
    def rounds(self) -> int:
        return len(self.after_ack_ms)


def percentile(values: list[float], q: float) -> float:
    """Nearest rank: the smallest value with at least q% of the values at or below it."""
    ordered = sorted(values)
    return ordered[max(1, math.ceil(len(ordered) * q / 100)) - 1]


def median(values: list[float]) -> float:
    return statistics.median(values)


async def cache_revision(session: aiohttp.ClientSession, proxy_url: str) -> int:
    async with session.get(f"{proxy_url}/admin/health", headers=ADMIN) as resp:
        resp.raise_for_status()
        document = await resp.json()
    return int(document["catalog"]["revision"])


async def wait_for_revision(
    session: aiohttp.ClientSession, proxy_url: str, revision: int, interval: float
) -> float:
    """Polls until the proxy's cache has applied `revision`; returns when it saw that."""
    async with asyncio.timeout(10):
        while True:  # a poll of another process: there is no event to wait on
            if await cache_revision(session, proxy_url) >= revision:
                return time.perf_counter()
            await asyncio.sleep(interval)


async def switch(catalog: Catalog) -> tuple[int, float, float]:
    """Move the queue's placement to the other partition; its revision, send and ack times."""
    key = catalog.keys.placement(PROJECT, QUEUE)
    found = await catalog.store.get(key)
    if found is None:
        raise RuntimeError(f"{key} vanished")
    current = Placement.from_json(found.value)
    moved = dataclasses.replace(
        current,
        partition=OTHER if current.partition == PARTITION else PARTITION,
        epoch=current.epoch + 1,
    )
    sent = time.perf_counter()
    written = await catalog.store.replace(key, moved.to_json(), found.mod_revision)
    return written.mod_revision, sent, time.perf_counter()


async def prepare(catalog: Catalog) -> None:
    """A second partition over p1's nodes, and the queue's first placement."""
    p1 = await catalog.partition(PARTITION)
    await catalog.add_partition(Partition(OTHER, nodes=p1.nodes, state=PartitionState.READ_ONLY))
    await catalog.place(PROJECT, QUEUE, PARTITION)


async def measure_lag(
    proxy_url: str, catalog_url: str, rounds: int, interval: float = 0.001
) -> Lag:
    store = EtcdStore(catalog_url)
    catalog = Catalog(store)
    after_ack: list[float] = []
    after_send: list[float] = []
    try:
        await prepare(catalog)
        async with aiohttp.ClientSession() as session:
            await asyncio.sleep(0.2)  # the proxy takes in p2 and the placement
            for _ in range(rounds):
                revision, sent, acked = await switch(catalog)
                seen = await wait_for_revision(session, proxy_url, revision, interval)
                after_ack.append((seen - acked) * 1000)
                after_send.append((seen - sent) * 1000)
                await asyncio.sleep(0.02)  # let the proxy go idle between rounds
    finally:
        await store.close()
    return Lag(after_ack, after_send, interval * 1000)


def run(proxy_url: str, catalog_url: str, rounds: int) -> Lag:
    lag = asyncio.run(measure_lag(proxy_url, catalog_url, rounds))
    print(
        f"   placement watch lag over {lag.rounds} switches: median "
        f"{median(lag.after_ack_ms):.2f} ms, p99 {percentile(lag.after_ack_ms, 99):.2f} ms "
        "after etcd's answer",
        flush=True,
    )
    return lag

"""Catalog-scale benchmark: `python -m bench --only catalog` (or `python -m bench.catalog`).

Real processes on 127.0.0.1: an etcd (tests/services.py), two SQLite partitions each served by a
`marconi node`, and a `marconi proxy` started only once the catalog holds `--placements`
placements (1,000,000 by default, over 1,000 projects), written in transactions of
`TXN_OPS` puts (etcd's own limit per transaction, --max-txn-ops, defaults to 128), several at once.
Measures
1. the new proxy's time to ready (/readyz answers 200) and to fully loaded (`placements_filled`),
   from the moment its process is started;
2. its resident memory once loaded, and the placement cache's bytes per placement (tracemalloc,
   in this process, against the records it replaced);
3. a routed request's latency (`GET /v2/queues/{queue}/stats` of a placed queue) during and after
   the load;
4. the watch lag (a placement written to etcd until the proxy's cache has applied it) while
   placements change at `--change-rate` per second;
5. `marconi rebalance --dry-run`'s time, and how much the proxy's resident memory grew meanwhile;
6. etcd's database size for the catalog.
Every process started here is stopped by its id.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aetcd
import aiohttp

from bench.migration import marconi
from bench.watch import percentile, wait_for_revision
from catalog.cache import PlacementCache
from catalog.catalog import Catalog
from catalog.errors import Conflict
from catalog.etcd import EtcdStore
from catalog.keys import LAYOUT, Keys
from catalog.memory import MemoryStore
from catalog.records import Partition, Placement, Versioned
from tests.services import free_port, start_etcd

PROJECTS = 1000
TXN_OPS = 128  # etcd's --max-txn-ops default: a transaction with more puts is refused
WRITERS = 8  # transactions in flight at once
TARGETS = {"ready_s": 10.0, "loaded_s": 60.0, "rss_mb": 500.0, "lag_p99_ms": 100.0}
CLIENT = {"Client-ID": "6d61726b-6f6e-4900-8000-62656e636801"}


def name(i: int) -> tuple[str, str]:
    return f"project-{i % PROJECTS:04d}", f"queue-{i:07d}"


def placement(i: int, partition: str = "p1", epoch: int = 1) -> Placement:
    project, queue = name(i)
    return Placement(project, queue, partition, epoch=epoch)


@dataclass
class Figures:
    placements: int
    write_s: float = 0.0
    db_mb: float = 0.0
    ready_s: float = 0.0
    loaded_s: float = 0.0
    ready_cpu_s: float = 0.0  # the proxy's CPU time (user + system) when ready
    loaded_cpu_s: float = 0.0  # and when fully loaded: what the wall times are made of
    etcd_rss_mb: float = 0.0
    rss_mb: float = 0.0
    bytes_per_placement: float = 0.0
    bytes_per_placement_before: float = 0.0
    during_ms: list[float] = field(default_factory=list)
    after_ms: list[float] = field(default_factory=list)
    lag_ms: list[float] = field(default_factory=list)
    changes_per_s: float = 0.0
    rebalance_s: float = 0.0
    rebalance_rss_growth_mb: float = 0.0
    load_average: str = ""


# --- writing the catalog -------------------------------------------------------------------------


async def write(url: str, count: int) -> float:
    """`count` placements on p1 (a tenth on p2), in transactions of TXN_OPS puts; seconds."""
    host, port = url.rsplit("//", 1)[1].split(":")
    client = aetcd.Client(host=host, port=int(port), timeout=60)
    keys = Keys()
    started = time.monotonic()
    batches = asyncio.Queue[range]()
    for start in range(0, count, TXN_OPS):
        batches.put_nowait(range(start, min(start + TXN_OPS, count)))

    async def writer() -> None:
        tx = client.transactions
        while not batches.empty():
            batch = batches.get_nowait()
            puts = []
            for i in batch:
                p = placement(i, "p2" if i % 10 == 0 else "p1")
                puts.append(tx.put(keys.placement(p.project, p.queue).encode(), p.to_json()))
            await client.transaction(compare=[], success=puts, failure=[])

    try:
        await asyncio.gather(*(writer() for _ in range(WRITERS)))
        # The layout record a catalog of this release carries (its first proxy wrote it): the
        # keys above are in this layout, so no proxy scans them for an older one.
        await client.put(keys.layout.encode(), json.dumps({"placements": LAYOUT}).encode())
        took = time.monotonic() - started
        status = await client.status()
        print(f"== wrote {count} placements in {took:.1f} s; etcd db {status.db_size} bytes")
        return took
    finally:
        await client.close()


async def db_size(url: str) -> int:
    host, port = url.rsplit("//", 1)[1].split(":")
    client = aetcd.Client(host=host, port=int(port))
    try:
        return int((await client.status()).db_size)
    finally:
        await client.close()


# --- memory per placement ------------------------------------------------------------------------


def bytes_per_placement(count: int = 100_000) -> tuple[float, float]:
    """The cache's bytes per placement now, and with the records it used before (a Placement
    dataclass per queue in an OrderedDict keyed by (project, queue))."""
    keys = Keys()
    items = [Versioned(keys.placement(*name(i)), placement(i).to_json(), 1) for i in range(count)]
    cache = PlacementCache(MemoryStore(), capacity=count)
    cache.revision = 1
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for item in items:
        cache._add(item)  # what the fill does with each placement it reads
    now = (tracemalloc.get_traced_memory()[0] - before) / count
    tracemalloc.stop()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    old: OrderedDict[tuple[str, str], Placement] = OrderedDict()
    for item in items:
        p = Placement.from_json(item.value)
        old[(p.project, p.queue)] = p
    then = (tracemalloc.get_traced_memory()[0] - before) / count
    tracemalloc.stop()
    assert len(cache) == len(old) == count
    return now, then


# --- the proxy -----------------------------------------------------------------------------------


def cpu_s(pid: int) -> float:
    """The process's CPU time so far, user and system, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


async def readyz(session: aiohttp.ClientSession, url: str) -> dict[str, object] | None:
    try:
        async with session.get(f"{url}/readyz") as resp:
            if resp.status == 200:
                found: dict[str, object] = await resp.json()
                return found
    except aiohttp.ClientError:
        pass
    return None


async def routed(session: aiohttp.ClientSession, url: str, count: int) -> float:
    """One request for a random placed queue, routed by the proxy; milliseconds."""
    project, queue = name(random.randrange(count))
    started = time.perf_counter()
    headers = {**CLIENT, "X-Project-ID": project}
    async with session.get(f"{url}/v2/queues/{queue}/stats", headers=headers) as resp:
        await resp.read()
        if resp.status != 200:
            raise RuntimeError(f"{queue}: {resp.status}")
    return (time.perf_counter() - started) * 1000


async def start_and_load(
    url: str, pid_of: list[int], started: float, count: int, figures: Figures
) -> None:
    async with aiohttp.ClientSession() as session:
        while (doc := await readyz(session, url)) is None:  # noqa: ASYNC110 - another process
            await asyncio.sleep(0.02)
        figures.ready_s = time.monotonic() - started
        figures.ready_cpu_s = cpu_s(pid_of[0])
        print(f"== ready after {figures.ready_s:.2f} s", flush=True)
        while not doc.get("placements_filled"):
            figures.during_ms.append(await routed(session, url, count))
            await asyncio.sleep(0.05)
            doc = await readyz(session, url) or doc
        figures.loaded_s = time.monotonic() - started
        figures.loaded_cpu_s = cpu_s(pid_of[0])
        print(f"== loaded after {figures.loaded_s:.2f} s: {doc}", flush=True)
        await asyncio.sleep(1.0)
        figures.rss_mb = rss_mb(pid_of[0])
        for _ in range(500):
            figures.after_ms.append(await routed(session, url, count))


async def watch_lag(etcd: str, url: str, count: int, rate: float, seconds: float) -> list[float]:
    """Placements changing at `rate` per second; each tenth of a second one of them is timed
    from etcd's answer until the proxy's cache has applied it."""
    store = EtcdStore(etcd)
    catalog = Catalog(store)
    stop = asyncio.Event()
    lags: list[float] = []
    changed = 0

    async def change(i: int) -> int:
        """A switch of queue `i`'s placement, as a migration writes it; its revision (0 when
        another change of the same queue got in first)."""
        p = placement(i, random.choice(("p1", "p2")), epoch=random.randrange(2, 1000))
        key = catalog.keys.placement(p.project, p.queue)
        found = await store.get(key)
        assert found is not None
        try:
            written = await store.replace(key, p.to_json(), found.mod_revision)
        except Conflict:
            return 0
        return written.mod_revision

    host, port = etcd.rsplit("//", 1)[1].split(":")
    client = aetcd.Client(host=host, port=int(port))

    async def churn() -> None:
        """`rate` placement changes a second: a transaction of puts every 10 ms."""
        nonlocal changed
        tick = 0.01
        per_tick = max(1, round(rate * tick))
        tx = client.transactions
        next_at = time.monotonic()
        while not stop.is_set():
            puts = []
            for i in random.sample(range(count), per_tick):  # distinct: etcd refuses repeats
                p = placement(i, random.choice(("p1", "p2")), epoch=2)
                puts.append(
                    tx.put(catalog.keys.placement(p.project, p.queue).encode(), p.to_json())
                )
            await client.transaction(compare=[], success=puts, failure=[])
            changed += per_tick
            next_at += tick
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))

    async with aiohttp.ClientSession() as session:
        churner = asyncio.create_task(churn())
        began = time.monotonic()
        try:
            while time.monotonic() - began < seconds:
                revision = await change(random.randrange(count))
                if not revision:
                    continue
                acked = time.perf_counter()
                seen = await wait_for_revision(session, url, revision, 0.005)
                lags.append((seen - acked) * 1000)
                await asyncio.sleep(0.1)
        finally:
            stop.set()
            await churner
            await store.close()
            await client.close()
    print(
        f"== {changed / (time.monotonic() - began):.0f} changes/s while timing the lag: "
        f"p50 {percentile(lags, 50):.1f} ms, p99 {percentile(lags, 99):.1f} ms ({len(lags)})",
        flush=True,
    )
    return lags


def rebalance(url: str, pid: int) -> tuple[float, float]:
    """`marconi rebalance --dry-run`'s seconds, and the proxy's resident memory growth (MB)."""
    before = rss_mb(pid)
    started = time.monotonic()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "marconi.cli",
            "rebalance",
            "--dry-run",
            "--json",
            "--timeout",
            "600",
        ],
        env={**os.environ, "MARCONI_URL": url},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    peak = before
    while proc.poll() is None:
        peak = max(peak, rss_mb(pid))
        time.sleep(0.02)
    took = time.monotonic() - started
    out, err = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"rebalance --dry-run: {err.decode()}")
    plan = json.loads(out)
    print(f"== rebalance --dry-run: {took:.2f} s, {len(plan['plan'])} moves, {plan['measured']}")
    return took, peak - before


# --- the run -------------------------------------------------------------------------------------


@contextlib.contextmanager
def nodes(work: Path) -> Iterator[dict[str, tuple[str, str]]]:
    """Two SQLite partitions' nodes: name -> (node URL, storage URI)."""
    with contextlib.ExitStack() as stack:
        found = {}
        for partition in ("p1", "p2"):
            port = free_port()
            uri = f"sqlite:///{work}/{partition}.db"
            args = ["node", "--storage", uri, "--partition", partition, "--port", str(port)]
            stack.enter_context(marconi(args, work / f"node-{partition}.log", port))
            found[partition] = (f"http://127.0.0.1:{port}", uri)
        yield found


async def register(etcd: str, found: dict[str, tuple[str, str]]) -> None:
    store = EtcdStore(etcd)
    try:
        catalog = Catalog(store)
        for partition, (url, uri) in found.items():
            await catalog.add_partition(Partition(partition, nodes=(url,), storage=uri))
    finally:
        await store.close()


def run(work: Path, count: int, change_rate: float, lag_seconds: float) -> Figures:
    work.mkdir(parents=True, exist_ok=True)
    figures = Figures(count, load_average=load_average())
    figures.bytes_per_placement, figures.bytes_per_placement_before = bytes_per_placement()
    print(
        f"== cache: {figures.bytes_per_placement:.0f} bytes per placement "
        f"(before: {figures.bytes_per_placement_before:.0f})",
        flush=True,
    )
    etcd = start_etcd(work / "etcd")
    try:
        with nodes(work) as found:
            asyncio.run(register(etcd.url, found))
            figures.write_s = asyncio.run(write(etcd.url, count))
            figures.db_mb = asyncio.run(db_size(etcd.url)) / 1e6
            figures.etcd_rss_mb = rss_mb(etcd.proc.pid)
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            args = ["proxy", "--catalog", etcd.url, "--port", str(port)]
            started = time.monotonic()
            with marconi(args, work / "proxy.log", None) as proxy:
                asyncio.run(start_and_load(url, [proxy.pid], started, count, figures))
                figures.lag_ms = asyncio.run(
                    watch_lag(etcd.url, url, count, change_rate, lag_seconds)
                )
                figures.changes_per_s = change_rate
                figures.rebalance_s, figures.rebalance_rss_growth_mb = rebalance(url, proxy.pid)
    finally:
        etcd.stop()
    return figures


def load_average() -> str:
    return ", ".join(f"{n:.2f}" for n in os.getloadavg())


def _ms(values: list[float], q: float) -> str:
    return f"{percentile(values, q):.1f}" if values else "-"


def section(f: Figures, command: str) -> str:
    def verdict(value: float, key: str) -> str:
        return "met" if value < TARGETS[key] else "**missed**"

    lag_p99 = percentile(f.lag_ms, 99) if f.lag_ms else float("inf")
    rows = [
        (
            "time to ready (process start to `/readyz` 200)",
            f"{f.ready_s:.2f} s",
            f"< 10 s, {verdict(f.ready_s, 'ready_s')}",
        ),
        (
            "time to fully loaded (`placements_filled`)",
            f"{f.loaded_s:.1f} s",
            f"< 60 s, {verdict(f.loaded_s, 'loaded_s')}",
        ),
        (
            "the proxy's CPU time at ready / at fully loaded",
            f"{f.ready_cpu_s:.1f} / {f.loaded_cpu_s:.1f} s",
            "",
        ),
        (
            "resident memory, loaded",
            f"{f.rss_mb:.0f} MB",
            f"< 500 MB, {verdict(f.rss_mb, 'rss_mb')}",
        ),
        (
            "cache bytes per placement (tracemalloc, 100,000)",
            f"{f.bytes_per_placement:.0f} (before: {f.bytes_per_placement_before:.0f})",
            "",
        ),
        (
            f"routed request during the load, p50 / p99 ({len(f.during_ms)} requests)",
            f"{_ms(f.during_ms, 50)} / {_ms(f.during_ms, 99)} ms",
            "",
        ),
        (
            f"routed request after the load, p50 / p99 ({len(f.after_ms)} requests)",
            f"{_ms(f.after_ms, 50)} / {_ms(f.after_ms, 99)} ms",
            "",
        ),
        (
            f"watch lag at {f.changes_per_s:.0f} changes/s, p50 / p99 ({len(f.lag_ms)} timed)",
            f"{_ms(f.lag_ms, 50)} / {_ms(f.lag_ms, 99)} ms",
            f"p99 < 100 ms, {verdict(lag_p99, 'lag_p99_ms')}",
        ),
        (
            "`marconi rebalance --dry-run`",
            f"{f.rebalance_s:.1f} s, proxy memory +{f.rebalance_rss_growth_mb:.0f} MB",
            "",
        ),
    ]
    table = "\n".join(f"| {a} | {b} | {c} |" for a, b, c in rows)
    return f"""## Catalog scale

`{command}` (load average {f.load_average} when it started: other engineers' tests shared the
2 cores). {f.placements:,} placements over {PROJECTS:,} projects written to a real etcd in
{f.write_s:.0f} s (transactions of {TXN_OPS} puts, etcd's default `--max-txn-ops`, {WRITERS} at
once); etcd's database then held {f.db_mb:.0f} MB, and etcd {f.etcd_rss_mb:.0f} MB resident.
Then one more `marconi proxy` was started. On a machine this loaded, the proxy gets a small
share of a core: its CPU time is what the wall times are made of.

| measure | figure | target |
|---|---|---|
{table}

- A routed request is `GET /v2/queues/{{queue}}/stats` of a random placed queue, one at a time.
  During the load most are queues the cache has not reached yet: one point read in etcd each.
- The watch lag is timed from etcd's answer to a placement's write until the proxy's
  `/admin/health` shows the cache at that revision (polled every 5 ms), once every 0.1 s, while
  other placements change at the rate shown (a transaction of 10 puts every 10 ms).
- Memory per placement counts the cache's dict entry, key and record; the resident figure is
  the whole proxy process (interpreter, aiohttp, gRPC) read from /proc.
- `rebalance --dry-run` above the stats limit (10,000 queues) reads the catalog a page at a
  time and plans from queue counts, holding each partition's first movable queues only.
"""


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.catalog", description=__doc__)
    parser.add_argument("--placements", type=int, default=1_000_000)
    parser.add_argument("--change-rate", type=float, default=1000.0)
    parser.add_argument("--lag-seconds", type=float, default=20.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="marconi-bench-catalog-") as tmp:
        figures = run(Path(tmp), args.placements, args.change_rate, args.lag_seconds)
    print(section(figures, "python -m bench.catalog " + " ".join(sys.argv[1:])))
    return 0


if __name__ == "__main__":
    sys.exit(main())

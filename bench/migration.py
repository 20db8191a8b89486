"""Migration benchmark: `python -m bench.migration`.

Real processes on 127.0.0.1: an etcd (tests/services.py), two SQLite partitions each served by a
`marconi node` process and registered with their storage URI, the proxy, and one migration
worker. Measures
1. messages moved per second: one queue of N messages (100,000 by default) moved p1 -> p2 by a
   worker with default settings while a steady client uses it, messages divided by the time
   from the start of COPYING to SWITCHED (the record's `timings`), and that move's freeze;
2. freeze time: `progress.freeze_ms` over several moves of small queues, back and forth, each
   under a light client load;
3. the latency a steady client (posting to and claiming from the moving queue through the proxy)
   saw before and during those moves.
Prints a markdown section and writes it to bench-results/migration.md. Every process started
here is stopped by its id.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import shlex
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from catalog.catalog import Catalog
from catalog.etcd import EtcdStore
from catalog.records import Partition
from tests.services import free_port, start_etcd, stop, wait_for_port

PROJECT = "bench"
ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench-results" / "migration.md"
THROUGHPUT_TARGET = 10_000.0  # messages per second
FREEZE_P99_TARGET = 250.0  # milliseconds
# The worker's settings for the run (migrate/settings.py): the copy and purge rate limits far
# above anything reached, so they do not cap the measurement, and a short purge grace so a move
# reaches DONE (and the next may start) within the bench's time.
WORKER_ENV = {
    "MARCONI_WORKER_COPY_RATE": "100000000",
    "MARCONI_WORKER_PURGE_RATE": "100000000",
    "MARCONI_WORKER_PURGE_GRACE": "0.5",
    "MARCONI_WORKER_METRICS_PORT": "0",
}
PHASES_TO_SWITCH = ("COPYING", "CATCHING_UP", "FROZEN")


# --- processes ---------------------------------------------------------------------------------


@contextlib.contextmanager
def marconi(
    args: list[str], log: Path, port: int | None, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """`python -m marconi.cli ARGS` until the block ends, stopped by its process id."""
    command = [sys.executable, "-m", "marconi.cli", *args, "--log-level", "warning", "--log-json"]
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}
        )
        try:
            if port is not None:
                wait_for_port(port, proc)
            else:
                time.sleep(0.5)
                if proc.poll() is not None:
                    raise RuntimeError(f"{shlex.join(command)} exited with {proc.returncode}")
            yield proc
        finally:
            stop(proc)


@dataclass
class Cluster:
    etcd: str
    proxy: str
    nodes: dict[str, str]  # partition -> node URL
    storages: dict[str, str]  # partition -> storage URI
    work: Path

    @contextlib.contextmanager
    def worker(self, **settings: str) -> Iterator[subprocess.Popen[bytes]]:
        """One `marconi worker` with WORKER_ENV and `settings` (MARCONI_WORKER_<NAME>)."""
        env = {**WORKER_ENV, **{f"MARCONI_WORKER_{k.upper()}": v for k, v in settings.items()}}
        args = ["worker", "--catalog", self.etcd]
        with marconi(args, self.work / "worker.log", None, env) as proc:
            yield proc
            if proc.poll() is not None:
                raise RuntimeError(f"the worker exited with {proc.returncode}")


@contextlib.contextmanager
def cluster(work: Path) -> Iterator[Cluster]:
    etcd = start_etcd(work / "etcd")
    try:
        with contextlib.ExitStack() as stack:
            nodes, storages = {}, {}
            for name in ("p1", "p2"):
                port = free_port()
                storages[name] = f"sqlite:///{work}/{name}.db"
                args = ["node", "--storage", storages[name], "--partition", name]
                stack.enter_context(
                    marconi([*args, "--port", str(port)], work / f"node-{name}.log", port)
                )
                nodes[name] = f"http://127.0.0.1:{port}"
            asyncio.run(register(etcd.url, nodes, storages))
            port = free_port()
            args = ["proxy", "--catalog", etcd.url, "--port", str(port)]
            stack.enter_context(marconi(args, work / "proxy.log", port))
            yield Cluster(etcd.url, f"http://127.0.0.1:{port}", nodes, storages, work)
    finally:
        etcd.stop()


async def register(etcd: str, nodes: dict[str, str], storages: dict[str, str]) -> None:
    store = EtcdStore(etcd)
    try:
        catalog = Catalog(store)
        for name, url in nodes.items():
            await catalog.add_partition(Partition(name, nodes=(url,), storage=storages[name]))
    finally:
        await store.close()


async def place(etcd: str, queues: dict[str, str]) -> None:
    store = EtcdStore(etcd)
    try:
        catalog = Catalog(store)
        for queue, partition in queues.items():
            await catalog.place(PROJECT, queue, partition)
    finally:
        await store.close()


# --- HTTP --------------------------------------------------------------------------------------

HEADERS = {"Client-ID": str(uuid.uuid4()), "X-Project-ID": PROJECT}
ADMIN = {"X-Roles": "admin"}


async def wait_until_routed(http: aiohttp.ClientSession, proxy: str, queue: str) -> None:
    """The proxy learns placements through an etcd watch: wait until it routes `queue`."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with contextlib.suppress(aiohttp.ClientError):
            async with http.get(f"{proxy}/v2/queues/{queue}/stats", headers=HEADERS) as r:
                if r.status == 200:
                    return
        await asyncio.sleep(0.1)
    raise TimeoutError(f"proxy does not route {queue}")


async def fill(
    http: aiohttp.ClientSession, node: str, queue: str, count: int, batch: int = 100
) -> float:
    """`count` messages posted straight to the queue's node; returns the seconds it took."""
    async with http.put(f"{node}/v2/queues/{queue}", headers=HEADERS) as r:
        assert r.status in (201, 204), await r.text()
    url = f"{node}/v2/queues/{queue}/messages"
    batches = [min(batch, count - i) for i in range(0, count, batch)]
    todo = iter(batches)
    start = time.monotonic()

    async def poster() -> None:
        for n in todo:
            doc = {"messages": [{"ttl": 3600, "body": {"n": i, "pad": "x" * 64}} for i in range(n)]}
            async with http.post(url, json=doc, headers=HEADERS) as r:
                if r.status != 201:
                    raise RuntimeError(f"fill: {r.status} {await r.text()}")

    await asyncio.gather(*(poster() for _ in range(16)))
    return time.monotonic() - start


@dataclass
class Sample:
    at: float  # monotonic time the request started
    op: str  # post, claim, delete
    ms: float
    status: int


@dataclass
class Client:
    """A steady light client on one queue, through the proxy: a producer posting one message
    every `period` seconds, a consumer claiming up to 5 and deleting what it claimed."""

    http: aiohttp.ClientSession
    proxy: str
    queue: str
    period: float = 0.01
    samples: list[Sample] = field(default_factory=list)
    stopping: bool = False

    async def _call(self, op: str, method: str, url: str, **kw: Any) -> Any:
        start = time.monotonic()
        try:
            async with self.http.request(method, url, headers=HEADERS, **kw) as r:
                doc = await r.json() if r.status in (200, 201) else None
                status = r.status
        except aiohttp.ClientError:
            doc, status = None, 0
        self.samples.append(Sample(start, op, (time.monotonic() - start) * 1000, status))
        return doc

    async def produce(self) -> None:
        url = f"{self.proxy}/v2/queues/{self.queue}/messages"
        while not self.stopping:
            await self._call("post", "POST", url, json={"messages": [{"ttl": 3600, "body": 1}]})
            await asyncio.sleep(self.period)

    async def consume(self) -> None:
        url = f"{self.proxy}/v2/queues/{self.queue}/claims?limit=5"
        while not self.stopping:
            doc = await self._call("claim", "POST", url, json={"ttl": 60, "grace": 60})
            for m in (doc or {}).get("messages", []):
                await self._call("delete", "DELETE", f"{self.proxy}{m['href']}")
            await asyncio.sleep(self.period * 2)

    @contextlib.asynccontextmanager
    async def running(self) -> Any:
        tasks = [asyncio.create_task(self.produce()), asyncio.create_task(self.consume())]
        try:
            yield self
        finally:
            self.stopping = True
            await asyncio.gather(*tasks)


@dataclass
class Move:
    doc: dict[str, Any]  # the final migration record
    created: float  # monotonic
    switched: float | None  # monotonic, first poll that saw SWITCHED or later
    done: float


async def move(
    http: aiohttp.ClientSession, proxy: str, queue: str, to: str, within: float = 120
) -> Move:
    body = {"project": PROJECT, "queue": queue, "to": to}
    created = time.monotonic()
    async with http.post(f"{proxy}/admin/migrations", json=body, headers=ADMIN) as r:
        doc = await r.json()
        if r.status != 201:
            raise RuntimeError(f"create migration of {queue}: {r.status} {doc}")
    url = f"{proxy}/admin/migrations/{doc['id']}"
    switched = None
    while time.monotonic() - created < within:
        async with http.get(url, headers=ADMIN) as r:
            doc = await r.json()
        if switched is None and doc["phase"] in ("SWITCHED", "CLEANUP", "DONE"):
            switched = time.monotonic()
        if doc["phase"] in ("DONE", "FAILED", "CANCELLED"):
            return Move(doc, created, switched, time.monotonic())
        await asyncio.sleep(0.02)
    raise TimeoutError(f"migration {doc['id']} still {doc['phase']} after {within}s")


# --- figures -----------------------------------------------------------------------------------


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


def latency_row(name: str, samples: list[Sample]) -> str:
    ms = [s.ms for s in samples]
    errors = sum(not (200 <= s.status < 300) for s in samples)
    return (
        f"| {name} | {len(ms)} | {pct(ms, 50):.1f} | {pct(ms, 99):.1f} | "
        f"{max(ms, default=float('nan')):.1f} | {errors} |"
    )


def machine() -> str:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "?",
    )
    mem = next(
        (
            int(line.split()[1]) / 1024 / 1024
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal")
        ),
        0.0,
    )
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return (
        f"{cpu}, {os.cpu_count()} CPUs, {mem:.0f} GiB RAM; Linux {platform.release()}; "
        f"Python {platform.python_version()}; SQLite {sqlite3.sqlite_version}; "
        f"tree at {commit or '?'} (with uncommitted changes, if any)"
    )


# --- the run -----------------------------------------------------------------------------------


# The bulk move's freeze limit and worker lease (seconds), should the defaults fail: then the
# queue is moved again with these, so that the move can finish and be timed.
BULK_FREEZE_LIMIT = "60"
BULK_LEASE_TTL = "60"


async def run(c: Cluster, messages: int, moves: int, small: int) -> str:
    timeout = aiohttp.ClientTimeout(total=60)
    connector = aiohttp.TCPConnector(limit=64)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as http:
        # 1. Throughput: one big queue p1 -> p2 with the worker's default settings (freeze limit
        # 0.5 s), while the steady client keeps using it; if that fails, again with the limit
        # raised and no client, so that the move can finish and be timed.
        big = "bulk"
        await place(c.etcd, {big: "p1"})
        fill_s = await fill(http, c.nodes["p1"], big, messages)
        log(f"filled {big}: {messages} messages in {fill_s:.1f}s")
        await wait_until_routed(http, c.proxy, big)
        bulk: list[tuple[str, Move]] = []
        steady = Client(http, c.proxy, big)
        with c.worker():
            async with steady.running():
                m = await move(http, c.proxy, big, "p2", within=600)
        bulk.append(("default worker settings, under the steady client", m))
        end = m.switched or m.done
        bulk_during = [s for s in steady.samples if m.created <= s.at <= end]
        log(f"bulk move: {m.doc['phase']} {m.doc['timings']} {m.doc['error']}")
        if m.doc["phase"] != "DONE":
            with c.worker(freeze_limit=BULK_FREEZE_LIMIT, lease_ttl=BULK_LEASE_TTL):
                m = await move(http, c.proxy, big, "p2", within=600)
            raised = f"freeze limit and lease raised to {BULK_FREEZE_LIMIT} s / {BULK_LEASE_TTL} s"
            bulk.append((raised, m))
            log(f"bulk move again: {m.doc['phase']} {m.doc['timings']} {m.doc['error']}")

        # 2 and 3. Small queues moved one at a time, alternately p1 -> p2 and p2 -> p1 (each queue
        # moves once: the proxy's cool-down), each under the steady client, whose latencies are
        # kept for a window before the move and during it.
        names = {f"small-{i:02d}": ("p1" if i % 2 == 0 else "p2") for i in range(moves)}
        await place(c.etcd, names)
        for queue, partition in names.items():
            await fill(http, c.nodes[partition], queue, small)
        for queue in names:
            await wait_until_routed(http, c.proxy, queue)
        results: list[tuple[Move, list[Sample], list[Sample]]] = []
        with c.worker():
            for queue, partition in names.items():
                client = Client(http, c.proxy, queue)
                async with client.running():
                    await asyncio.sleep(1.0)  # "before" window
                    m = await move(http, c.proxy, queue, "p2" if partition == "p1" else "p1")
                before = [s for s in client.samples if s.at < m.created]
                end = m.switched or m.done
                during = [s for s in client.samples if m.created <= s.at <= end]
                results.append((m, before, during))
                log(f"{queue}: {m.doc['phase']} freeze {m.doc['progress']['freeze_ms']:.1f} ms")
    return report(bulk, bulk_during, messages, fill_s, results, small)


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def report(
    bulk: list[tuple[str, Move]],
    bulk_during: list[Sample],
    messages: int,
    fill_s: float,
    results: list[tuple[Move, list[Sample], list[Sample]]],
    small: int,
) -> str:
    label, final = bulk[-1]
    b = final.doc
    to_switch = sum(b["timings"].get(p, 0.0) for p in PHASES_TO_SWITCH)
    rate = messages / to_switch if b["phase"] == "DONE" and to_switch > 0 else float("nan")
    copy_rate = messages / b["timings"]["COPYING"] if b["timings"].get("COPYING") else float("nan")
    ok_moves = [m for m, _, _ in results if m.doc["phase"] == "DONE"]
    failed = [m for m, _, _ in results if m.doc["phase"] != "DONE"]
    freezes = [m.doc["progress"]["freeze_ms"] for m in ok_moves]
    aborted = sum(m.doc["progress"]["freeze_attempts"] for m, _, _ in results)
    before = [s for _, bs, _ in results for s in bs]
    during = [s for _, _, ds in results for s in ds]
    freeze_p99 = pct(freezes, 99)
    first = bulk[0][1].doc
    bulk_ok = first["phase"] == "DONE" and first["progress"]["freeze_attempts"] == 0
    bulk_freeze = f"{first['progress']['freeze_ms']:,.1f} ms" if bulk_ok else first["phase"]
    alone = sys.argv[0].endswith("migration.py")
    prog = "python -m bench.migration" if alone else "python -m bench"
    command = f"{prog} {shlex.join(sys.argv[1:])}"
    settings = ", ".join(f"`{k}={v}`" for k, v in WORKER_ENV.items())
    lines = [
        "## Migration",
        "",
        f"Command: `{command.strip()}` (from the repository root, in `.venv`).",
        "",
        f"Machine: {machine()}.",
        "",
        "Setup, all real processes on 127.0.0.1: one etcd, two SQLite partitions (`p1`, `p2`) "
        "each served by one `marconi node` process and registered with its storage URI, one "
        "`marconi proxy`, and one `marconi worker` at a time with the default batch (500) and "
        f"freeze settings and {settings}: the copy and purge rate limits are set far above "
        "anything reached so they do not cap the figures; the purge grace is short so each move "
        "reaches DONE quickly. The bulk move runs first, under a worker with otherwise default "
        "settings (freeze limit 0.5 s, lease 5 s), while the steady client described below "
        "keeps using the queue; only if it fails, a worker with "
        f"`MARCONI_WORKER_FREEZE_LIMIT={BULK_FREEZE_LIMIT}` and "
        f"`MARCONI_WORKER_LEASE_TTL={BULK_LEASE_TTL}` moves the queue again, without the client. "
        "The small moves run under a worker with the default freeze settings. Migrations are "
        "created "
        "through the proxy's `POST /admin/migrations` and "
        "followed with `GET /admin/migrations/{id}` every 20 ms.",
        "",
        "| Measure | Result | Target | Met |",
        "|---|---|---|---|",
        f"| Messages moved per second, SQLite → SQLite ({messages:,} messages, COPYING start → "
        f"SWITCHED; {label}) | {rate:,.0f} msg/s | ≥ {THROUGHPUT_TARGET:,.0f} msg/s | "
        f"{'yes' if rate >= THROUGHPUT_TARGET else 'no'} |",
        f"| Freeze, median of {len(freezes)} moves ({small} messages each, under client load) "
        f"| {pct(freezes, 50):.1f} ms | — | — |",
        f"| Freeze, p99 (max of {len(freezes)}) | {freeze_p99:.1f} ms | < {FREEZE_P99_TARGET:.0f}"
        f" ms | {'yes' if freeze_p99 < FREEZE_P99_TARGET else 'no'} |",
        f"| Freeze of the bulk move ({messages:,} messages; {bulk[0][0]}) | "
        f"{bulk_freeze} | < 500 ms (the default limit) | {'yes' if bulk_ok else 'no'} |",
        "",
        *[
            f"Bulk move, {what}: final phase {m.doc['phase']}"
            + (f" ({m.doc['error']})" if m.doc["error"] else "")
            + "; seconds per phase (the record's `timings`): "
            + ", ".join(f"{k} {v:.2f}" for k, v in m.doc["timings"].items())
            + f"; `progress.copied` {m.doc['progress']['copied']:,}, freezes aborted "
            f"{m.doc['progress']['freeze_attempts']}, last freeze "
            f"{m.doc['progress']['freeze_ms']:,.1f} ms.\n"
            for what, m in bulk
        ],
        f"Bulk copy alone (COPYING only, last attempt): {copy_rate:,.0f} msg/s. Filling the "
        f"source (straight to its node, 100 messages per POST, 16 at once) took {fill_s:.1f} s "
        "and is not counted.",
        "",
        f"Small moves: {len(ok_moves)} DONE, {len(failed)} not"
        + (
            " ("
            + "; ".join(f"{m.doc['queue']}: {m.doc['phase']} {m.doc['error']}" for m in failed)
            + ")"
            if failed
            else ""
        )
        + f"; {aborted} freezes aborted over their limit and retried. Freezes (ms): "
        + ", ".join(f"{f:.1f}" for f in freezes)
        + ".",
        "",
        "Client latency through the proxy on the moving queue (one producer posting a message "
        "every 10 ms, one consumer claiming up to 5 every 20 ms and deleting what it claimed), "
        "all small moves together: *before* is the 1 s before each migration was created, "
        "*during* is from its creation until the first poll that saw it switched; the first "
        "row is the same client on the bulk queue, from the bulk move's creation to its switch.",
        "",
        "| Window | Requests | p50 ms | p99 ms | max ms | non-2xx |",
        "|---|---|---|---|---|---|",
        latency_row("during the bulk move, all", bulk_during),
        latency_row("before, all", before),
        latency_row("during, all", during),
    ]
    for op in ("post", "claim", "delete"):
        lines.append(latency_row(f"before, {op}", [s for s in before if s.op == op]))
        lines.append(latency_row(f"during, {op}", [s for s in during if s.op == op]))
    lines += [
        "",
        "What the figures mean:",
        "- *Messages moved per second*: messages in the queue divided by the seconds the worker "
        "spent in COPYING, CATCHING_UP and FROZEN (the record's `timings`), i.e. from the start of "
        "the copy to the switch of the placement; the purge afterwards is not counted. The "
        "worker's copy rate limit is lifted, so this is what one worker, batch 500, gets "
        "between two SQLite files on this machine.",
        "- *Freeze*: `progress.freeze_ms` of each move, how long the source refused writes to the "
        "queue (frozen → final catch-up → verify → switch); writes that arrive meanwhile wait "
        "in the proxy. Median and p99 over the small moves (with this few moves, p99 is the "
        "largest).",
        "- *Client latency*: what a client on the moving queue saw; the difference between "
        "*during* and *before* is the latency a move adds (mostly the requests that hit the "
        "freeze and the placement switch).",
        f"- Target met: throughput {'yes' if rate >= THROUGHPUT_TARGET else 'no'} "
        f"({rate:,.0f} vs ≥ {THROUGHPUT_TARGET:,.0f} msg/s); freeze p99 "
        f"{'yes' if freeze_p99 < FREEZE_P99_TARGET else 'no'} ({freeze_p99:.1f} vs < "
        f"{FREEZE_P99_TARGET:.0f} ms).",
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.migration", description=__doc__)
    parser.add_argument("--messages", type=int, default=100_000, help="bulk queue size")
    parser.add_argument("--moves", type=int, default=20, help="small-queue moves")
    parser.add_argument("--small", type=int, default=200, help="messages per small queue")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="marconi-bench-migration-"))
    started = time.monotonic()
    try:
        with cluster(work) as c:
            text = asyncio.run(run(c, args.messages, args.moves, args.small))
    finally:
        if not args.keep:
            import shutil

            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"logs in {work}", file=sys.stderr)
    text += f"Run time: {time.monotonic() - started:.0f} s.\n"
    print(text)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

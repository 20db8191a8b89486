"""Busy-queue move benchmark: `python -m bench --only busy`.

A hot queue is what rebalancing and draining move first. Real processes on 127.0.0.1 (the
migration section's cluster: etcd, two SQLite partitions each served by a `marconi node`, the
proxy, one worker with default freeze settings). The queue holds `claims` live claims whose
messages were all deleted (consumers that claim with ttl 600 and delete what they claim leave
one behind per claim call), and 4 producers and 3 such consumers run at full speed through the
proxy while it moves p1 -> p2. Measured: time from the migration's creation to its switch, the
catch-up's rounds, the freeze's length, and the latency and failures the clients saw.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from bench.migration import (
    HEADERS,
    Cluster,
    Sample,
    latency_row,
    log,
    machine,
    move,
    pct,
    place,
    wait_until_routed,
)

TITLE = "## Busy-queue move"
SWITCH_TARGET = 60.0  # seconds from the migration's creation to its switch
NO_STALL = "none: the lag shrank to the freeze threshold"


async def leave_claims(http: aiohttp.ClientSession, node: str, queue: str, count: int) -> float:
    """`count` live claims on `queue` whose messages are deleted, straight on its node."""
    async with http.put(f"{node}/v2/queues/{queue}", headers=HEADERS) as r:
        assert r.status in (201, 204), await r.text()
    url = f"{node}/v2/queues/{queue}"
    todo = iter(range(count))
    start = time.monotonic()

    async def one() -> None:
        for _ in todo:
            doc = {"messages": [{"ttl": 3600, "body": {"kept": "claim"}}]}
            async with http.post(f"{url}/messages", json=doc, headers=HEADERS) as r:
                assert r.status == 201, await r.text()
            body = {"ttl": 600, "grace": 60}
            async with http.post(f"{url}/claims?limit=1", json=body, headers=HEADERS) as r:
                claimed = await r.json() if r.status == 201 else None
            for m in (claimed or {}).get("messages", []):
                async with http.delete(f"{node}{m['href']}", headers=HEADERS) as r:
                    assert r.status == 204, await r.text()

    await asyncio.gather(*(one() for _ in range(16)))
    return time.monotonic() - start


@dataclass
class FullSpeed:
    """Producers posting one message at a time and consumers claiming (ttl 600) up to 5 and
    deleting them, with no pause, through the proxy."""

    http: aiohttp.ClientSession
    proxy: str
    queue: str
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

    async def consume(self) -> None:
        url = f"{self.proxy}/v2/queues/{self.queue}/claims?limit=5"
        while not self.stopping:
            doc = await self._call("claim", "POST", url, json={"ttl": 600, "grace": 60})
            for m in (doc or {}).get("messages", []):
                await self._call("delete", "DELETE", f"{self.proxy}{m['href']}")
            if doc is None:
                await asyncio.sleep(0.001)  # nothing to claim (204): the producers catch up

    async def run(self, producers: int, consumers: int) -> list[asyncio.Task[None]]:
        return [asyncio.create_task(self.produce()) for _ in range(producers)] + [
            asyncio.create_task(self.consume()) for _ in range(consumers)
        ]


async def run(c: Cluster, claims: int = 10_000, producers: int = 4, consumers: int = 3) -> str:
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(
        timeout=timeout, connector=aiohttp.TCPConnector(limit=64)
    ) as http:
        queue = "busy"
        await place(c.etcd, {queue: "p1"})
        made = await leave_claims(http, c.nodes["p1"], queue, claims)
        log(f"{queue}: {claims} live claims left in {made:.1f}s")
        await wait_until_routed(http, c.proxy, queue)
        load = FullSpeed(http, c.proxy, queue)
        with c.worker():
            tasks = await load.run(producers, consumers)
            await asyncio.sleep(2.0)  # the load at full speed before the move
            try:
                m = await move(http, c.proxy, queue, "p2", within=300)
            finally:
                load.stopping = True
                await asyncio.gather(*tasks)
        before = [s for s in load.samples if s.at < m.created]
        end = m.switched or m.done
        during = [s for s in load.samples if m.created <= s.at <= end]
        log(f"busy move: {m.doc['phase']} {m.doc['progress']} {m.doc['error']}")
    return report(m.doc, (end - m.created), before, during, claims, producers, consumers)


def report(
    doc: dict[str, Any],
    to_switch: float,
    before: list[Sample],
    during: list[Sample],
    claims: int,
    producers: int,
    consumers: int,
) -> str:
    progress = doc["progress"]
    failed = sum(not (200 <= s.status < 300) for s in during)
    limit = 0.5  # the worker's default freeze limit (migrate/settings.py)
    ok = doc["phase"] == "DONE"
    verdict = (
        f"switched in {to_switch:.1f} s (target {SWITCH_TARGET:.0f} s),"
        f" freeze {progress['freeze_ms']:.0f} ms (limit {limit * 1000:.0f} ms),"
        f" {failed} failed client requests"
        if ok
        else f"{doc['phase']}: {doc.get('error')}"
    )
    load = os.getloadavg()
    command = "python -m bench " + shlex.join(sys.argv[1:])
    return "\n".join(
        [
            TITLE,
            "",
            f"Command: `{command.strip()}` (from the repository root, in `.venv`).",
            "",
            f"Machine: {machine()}. Load average when it ended: {load[0]:.1f}, {load[1]:.1f},"
            f" {load[2]:.1f} (2 cores, shared with other engineers' test runs).",
            "",
            f"One queue on `p1` with {claims:,} live claims whose messages were deleted (ttl"
            f" 600), {producers} producers (one message a post) and {consumers} consumers"
            " (claim up to 5, ttl 600, delete each) at full speed through the proxy; moved to"
            " `p2` by one worker with default settings.",
            "",
            f"Result: **{verdict}**.",
            "",
            "| figure | value |",
            "|---|---|",
            f"| phase | {doc['phase']} |",
            f"| creation to switch | {to_switch:.2f} s |",
            f"| catch-up rounds | {progress.get('rounds', 0)} |",
            f"| last round's lag / arrived / rate | {progress.get('lag', 0)} /"
            f" {progress.get('arrived', 0)} / {progress.get('rate', 0):,.0f} records/s |",
            f"| escalation | {progress.get('stalled') or NO_STALL} |",
            f"| freeze | {progress['freeze_ms']:.1f} ms ({progress['freeze_attempts']} aborted) |",
            f"| phase times | {', '.join(f'{k} {v:.2f}s' for k, v in doc['timings'].items())} |",
            "",
            "| client requests | count | p50 ms | p99 ms | max ms | failed |",
            "|---|---|---|---|---|---|",
            latency_row("before the move", before),
            latency_row("creation to switch", during),
            "",
            f"Requests per second during the move: {len(during) / max(to_switch, 1e-9):,.0f}"
            f" (before: p99 {pct([s.ms for s in before], 99):.1f} ms).",
            "",
        ]
    )

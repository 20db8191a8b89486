"""The PostgreSQL driver's work for one API request, in one process: the node's and its server
backend's CPU time per list and per single-message post, with the queue's metadata read in a
round trip of its own (as outside a reading) and answered from the process's copy, confirmed by
the statement that acts (as the API does: `node.storage.reading`).

`python -m bench.pgrequest --depth 100000`: one connection, the queue filled to `depth`, each way
run `rounds` times one after another, three times alternating; the least CPU of the three.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from marconi.postgres import EmbeddedPostgres
from node.models import NewMessage
from node.storage.postgresql import PostgresStorage
from node.storage.reading import reading
from tests.services import free_port

P, Q, CLIENT = "bench", "q", "c"


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (the server backend), from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def measure(uri: str, depth: int, rounds: int) -> dict[str, tuple[float, float]]:
    one = "&" if "?" in uri else "?"
    store = await PostgresStorage.open(f"{uri}{one}pool_size=1")  # one backend: the one measured
    try:
        await store.queues.create(P, Q, None)
        for _ in range(depth // 1000):
            await store.messages.post(
                P, Q, [NewMessage({"n": i}, 3600) for i in range(1000)], CLIENT
            )
        async with store.db.session() as conn:
            await conn.execute("ANALYZE messages")  # this schema's, not the database's
            backend = int(await conn.fetchval("SELECT pg_backend_pid()"))

        async def list_page() -> None:
            await store.queues.get_metadata(P, Q)
            await store.messages.list(
                P,
                Q,
                marker=None,
                limit=10,
                echo=True,
                include_claimed=False,
                include_delayed=True,
                client_id=CLIENT,
            )

        async def post() -> None:
            await store.queues.get_metadata(P, Q)
            await store.messages.post(P, Q, [NewMessage({"n": 1}, 3600)], CLIENT)

        def confirmed(act: Callable[[], Awaitable[None]]) -> Callable[[], Awaitable[None]]:
            async def run() -> None:
                with reading():
                    await act()

            return run

        ways = {
            "list 10: metadata read apart": list_page,
            "list 10: metadata confirmed": confirmed(list_page),
            "post 1: metadata read apart": post,
            "post 1: metadata confirmed": confirmed(post),
        }
        costs: dict[str, list[tuple[float, float]]] = {name: [] for name in ways}
        for act in ways.values():
            for _ in range(50):
                await act()
        for _ in range(3):
            for name, act in ways.items():
                node, server = time.process_time(), cpu_seconds(backend)
                for _ in range(rounds):
                    await act()
                costs[name].append(
                    (
                        (time.process_time() - node) / rounds * 1e6,
                        (cpu_seconds(backend) - server) / rounds * 1e6,
                    )
                )
        return {name: (min(c[0] for c in cs), min(c[1] for c in cs)) for name, cs in costs.items()}
    finally:
        await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.pgrequest", description=__doc__)
    parser.add_argument("--depth", type=int, default=100_000, help="messages in the queue")
    parser.add_argument("--rounds", type=int, default=2000, help="requests per measurement")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="marconi-pgrequest-") as tmp:
        server = EmbeddedPostgres(Path(tmp) / "pg", free_port())
        try:
            server.start()
            found = asyncio.run(measure(server.uri(), args.depth, args.rounds))
        finally:
            server.remove()
    print(f"load average: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    for name, (node, backend) in found.items():
        print(f"{name:30s} node {node:5.0f} us  server {backend:5.0f} us")


if __name__ == "__main__":
    main()

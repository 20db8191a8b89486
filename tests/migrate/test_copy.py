"""Copier over two SQLite partitions: long catch-ups and digests leave the event loop free."""

from __future__ import annotations

import asyncio
from pathlib import Path

from migrate.copy import Copier
from node.models import NewMessage
from node.storage.sqlite import SqliteStorage
from node.storage.transfer import digest


async def test_catch_up_and_digest_let_other_tasks_run(tmp_path: Path) -> None:
    source = await SqliteStorage.open(f"sqlite:///{tmp_path}/source.db")
    target = await SqliteStorage.open(f"sqlite:///{tmp_path}/target.db")
    try:
        await source.queues.create("p", "q", None)
        for start in range(0, 2500, 100):
            await source.messages.post(
                "p", "q", [NewMessage(body=i, ttl=600) for i in range(start, start + 100)], "c"
            )
        copier = Copier("p", "q", source.transfer, target.transfer, batch=100)
        ticks = 0
        running = True

        async def ticker() -> None:  # stands for the worker's lease keeper
            nonlocal ticks
            while running:
                ticks += 1
                await asyncio.sleep(0)

        task = asyncio.create_task(ticker())
        await asyncio.sleep(0)
        before = ticks
        lag = await copier.catch_up()
        during_catch_up = ticks - before
        same = await digest(source.transfer, "p", "q") == await digest(target.transfer, "p", "q")
        during_digests = ticks - before - during_catch_up
        running = False
        await task
        assert lag >= 2500 and same
        # Without a yield between batches, SQLite's calls never suspend and the ticker would
        # not run at all until the whole catch-up (25 batches) or digest (3 pages) was done.
        assert during_catch_up >= 20
        assert during_digests >= 2
    finally:
        await source.close()
        await target.close()

"""A queue moved with notifications still owed: they go with it, are delivered from the target,
and nothing is delivered twice (no deliverer ran during the move) nor lost."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from catalog.migrations import Phase
from node.notify.deliverer import Deliverer
from node.notify.service import senders
from node.notify.settings import NotifySettings
from tests.conftest import FakeClock
from tests.migrate.harness import PROJECT, QUEUE, Q, migration_cluster
from tests.node.notify.receivers import Receiver, eventually
from tests.proxy.conftest import call
from tests.services import Etcd


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = await Receiver().start()
    try:
        yield r
    finally:
        await r.stop()


async def test_owed_notifications_move_with_the_queue(
    etcd_server: Etcd, tmp_path: Path, clock: FakeClock, receiver: Receiver
) -> None:
    uris = {name: f"sqlite:///{tmp_path}/{name}.db" for name in ("p1", "p2")}
    async with migration_cluster(etcd_server.url, uris, clock) as c:
        assert (await call(c.proxy, "PUT", Q))[0] == 201
        source = (await c.placement()).partition
        target = "p2" if source == "p1" else "p1"
        document = {"subscriber": receiver.url(), "ttl": 3600}
        assert (await call(c.proxy, "POST", f"{Q}/subscriptions", json=document))[0] == 201
        for post in range(3):
            messages = [{"body": {"n": post * 10 + i}, "ttl": 3600} for i in range(10)]
            status, _, _ = await call(c.proxy, "POST", f"{Q}/messages", json={"messages": messages})
            assert status == 201
        owed = await c.storage(source).outbox.export_outbox(PROJECT, QUEUE)
        assert len(owed) == 3  # one delivery per post, none sent: no deliverer runs yet

        await c.worker()
        m = await c.move(target)
        done = await c.wait_for(m.id, Phase.DONE, Phase.FAILED, Phase.CANCELLED)
        assert done.phase is Phase.DONE, done.error
        assert await c.storage(source).outbox.depth() == 0
        assert await c.storage(target).outbox.export_outbox(PROJECT, QUEUE) == owed

        settings = NotifySettings(poll_interval=0.02)
        tasks = [
            asyncio.create_task(
                Deliverer(
                    s.outbox,
                    s.queues,
                    senders(settings),
                    settings,
                    clock,
                    subscriptions=s.subscriptions,
                ).run()
            )
            for s in (c.storage("p1"), c.storage("p2"))
        ]
        try:
            await eventually(lambda: len(receiver.hits) >= 30)
            await asyncio.sleep(0.3)  # a duplicate would have arrived by now
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        received = Counter(h.json()["body"]["n"] for h in receiver.hits)
        assert received == Counter(range(30))  # each once
        assert await c.storage(target).outbox.depth() == 0

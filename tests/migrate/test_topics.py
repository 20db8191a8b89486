"""A topic moves between partitions as its container, through the same workflow as a queue: its
metadata, messages (ids, bodies, order, markers) and subscriptions move, and a queue of the same
name stays."""

from __future__ import annotations

from pathlib import Path

from catalog.migrations import Phase
from catalog.registry import Registry
from tests.conftest import FakeClock
from tests.migrate.harness import PROJECT, migration_cluster
from tests.migrate.test_worker import sqlite_uris
from tests.proxy.conftest import call
from tests.services import Etcd
from wire.topics import container

T = "/v2/topics/news"
NEWS = container("news")


async def test_a_topic_moves_with_its_messages(
    etcd_server: Etcd, tmp_path: Path, clock: FakeClock
) -> None:
    async with migration_cluster(etcd_server.url, sqlite_uris(tmp_path), clock) as c:
        assert (await call(c.proxy, "PUT", T, json={"kind": "topic"}))[0] == 201
        before = await c.catalog.placement(PROJECT, NEWS)
        assert before is not None
        source = before.partition
        target = "p2" if source == "p1" else "p1"
        # A queue of the same name on the source: it must not move, nor change.
        await c.catalog.place(PROJECT, "news", source)
        assert (await call(c.proxy, "PUT", "/v2/queues/news", json={"kind": "queue"}))[0] == 201
        body = {"messages": [{"body": "queued", "ttl": 3600}]}
        assert (await call(c.proxy, "POST", "/v2/queues/news/messages", json=body))[0] == 201
        body = {"messages": [{"body": {"n": i}, "ttl": 3600} for i in range(15)]}
        status, posted, _ = await call(c.proxy, "POST", f"{T}/messages", json=body)
        assert status == 201
        ids = [href.rsplit("/", 1)[1] for href in posted["resources"]]
        status, page, _ = await call(c.proxy, "GET", f"{T}/messages?limit=10&echo=true")
        [next_link] = [link["href"] for link in page["links"]]

        hook = {"subscriber": "http://example.test/hook", "ttl": 3600}
        status, subscribed, _ = await call(c.proxy, "POST", f"{T}/subscriptions", json=hook)
        assert status == 201
        await c.worker()
        m = await Registry(c.catalog, clock=c.clock).create(PROJECT, NEWS, target)
        done = await c.wait_for(m.id, Phase.DONE, Phase.FAILED, Phase.CANCELLED)
        assert done.phase is Phase.DONE, done.error

        after = await c.catalog.placement(PROJECT, NEWS)
        assert after is not None and (after.partition, after.epoch) == (target, before.epoch + 1)
        assert not await c.storage(source).queues.exists(PROJECT, NEWS)
        assert (await c.storage(target).queues.stats(PROJECT, NEWS)).total == 15
        # Through the proxy, the topic is as it was; its next link still reads on.
        assert (await call(c.proxy, "GET", T))[1]["kind"] == "topic"
        status, page, _ = await call(c.proxy, "GET", next_link)
        assert status == 200
        assert [m["id"] for m in page["messages"]] == ids[10:]
        status, got, _ = await call(c.proxy, "GET", f"{T}/messages/{ids[0]}")
        assert status == 200 and got["body"] == {"n": 0}
        # Its subscription moved with it.
        status, subs, _ = await call(c.proxy, "GET", f"{T}/subscriptions")
        assert [(x["id"], x["source"]) for x in subs["subscriptions"]] == [
            (subscribed["subscription_id"], "news")
        ]
        assert await c.storage(source).subscriptions.live(PROJECT, NEWS) == []
        # The queue of the same name stayed where it was, untouched.
        assert (await c.catalog.placement(PROJECT, "news")).partition == source  # type: ignore[union-attr]
        assert (await c.storage(source).queues.stats(PROJECT, "news")).total == 1
        assert (await call(c.proxy, "GET", "/v2/queues/news"))[1]["kind"] == "queue"
        assert (await call(c.proxy, "GET", "/v2/topics"))[1]["topics"] == [
            {"name": "news", "href": T}
        ]

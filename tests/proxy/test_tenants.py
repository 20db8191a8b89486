"""Tenants through the proxy: no project reaches another's queues through the catalog's keys,
and a proxy of this release finds the placements an older release wrote."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from catalog.catalog import Catalog
from catalog.errors import CatalogUnavailable
from catalog.keys import Keys
from catalog.memory import MemoryStore
from catalog.records import Placement, Versioned
from proxy.app import create_app, upgrade_layout
from tests.conftest import FakeClock
from tests.proxy.cluster import Cluster, ProxyTestServer, cluster
from tests.proxy.conftest import CLIENT_ID, call

V1_MESSAGE = [{"ttl": 300, "body": {"v1": True}}]


async def v1(client: TestClient, method: str, path: str, json: Any = None) -> tuple[int, Any]:
    """A v1 request without X-Project-ID: the no-project tenant."""
    async with client.request(method, path, json=json, headers={"Client-ID": CLIENT_ID}) as r:
        raw = await r.read()
        return r.status, (await r.json() if raw else None)


async def test_the_project_underscore_cannot_unplace_the_no_project_queue(
    tmp_path: Path, clock: FakeClock
) -> None:
    async with cluster(tmp_path, clock) as c:
        assert (await v1(c.proxy, "PUT", "/v1/queues/Q"))[0] == 201
        assert (await v1(c.proxy, "POST", "/v1/queues/Q/messages", V1_MESSAGE))[0] == 201
        # The project "_" has no queue Q: its delete is a no-op on its own (empty) queue.
        assert (await call(c.proxy, "DELETE", "/v2/queues/Q", project="_"))[0] == 204
        placed = await c.catalog.placement("", "Q")
        assert placed is not None and placed.project == ""
        status, stats = await v1(c.proxy, "GET", "/v1/queues/Q/stats")
        assert (status, stats["messages"]["free"]) == (200, 1)
        # And the other way round: the v1 delete leaves the project "_"'s queue Q alone.
        assert (await call(c.proxy, "PUT", "/v2/queues/Q", project="_"))[0] == 201
        assert (await v1(c.proxy, "DELETE", "/v1/queues/Q"))[0] == 204
        assert await c.catalog.placement("", "Q") is None
        assert await c.catalog.placement("_", "Q") is not None


async def test_a_project_with_a_slash_is_placed_and_listed_as_its_own(
    tmp_path: Path, clock: FakeClock
) -> None:
    async with cluster(tmp_path, clock) as c:
        assert (await call(c.proxy, "PUT", "/v2/queues/Q", project="a/b"))[0] == 201
        assert (await call(c.proxy, "PUT", "/v2/queues/b", project="a"))[0] == 201
        placed = await c.catalog.placement("a/b", "Q")
        assert placed is not None and (placed.project, placed.queue) == ("a/b", "Q")
        _, listed, _ = await call(c.proxy, "GET", "/v2/queues", project="a/b")
        assert [q["name"] for q in listed["queues"]] == ["Q"]
        _, listed, _ = await call(c.proxy, "GET", "/v2/queues", project="a")
        assert [q["name"] for q in listed["queues"]] == ["b"]
        assert (await call(c.proxy, "DELETE", "/v2/queues/Q", project="a/b"))[0] == 204
        assert await c.catalog.placement("a/b", "Q") is None
        assert await c.catalog.placement("a", "b") is not None


async def another_proxy(c: Cluster) -> TestClient:
    client = TestClient(ProxyTestServer(create_app(c.settings, c.make_store()), host="127.0.0.1"))
    await client.start_server()
    return client


async def test_a_new_proxy_finds_the_placements_an_older_release_wrote(
    tmp_path: Path, clock: FakeClock
) -> None:
    async with cluster(tmp_path, clock) as c:
        # An older release placed the v1 queue Q (no project) on p2 under "placements/_/Q",
        # and the queue "orders" of the project "50%" on p2 under its raw name.
        for project, queue in [("", "Q"), ("50%", "orders")]:
            await c.partitions["p2"].deps.storage.queues.create(project, queue, None)
        layout = await c.catalog.store.get(c.catalog.keys.layout)
        assert layout is not None  # written by the cluster's proxy: forget it, as before
        await c.catalog.store.delete(layout.key, layout.mod_revision)
        prefix = c.catalog.keys.placements
        for key, placement in [
            (f"{prefix}_/Q", Placement("", "Q", "p2")),
            (f"{prefix}50%/orders", Placement("50%", "orders", "p2")),
        ]:
            await c.catalog.store.create(key, placement.to_json())
        client = await another_proxy(c)
        try:
            assert (await v1(client, "POST", "/v1/queues/Q/messages", V1_MESSAGE))[0] == 201
            assert (await c.partitions["p2"].deps.storage.queues.stats("", "Q")).total == 1
            # The rest of the catalog is upgraded behind the proxy's readiness: wait for it.
            for _ in range(500):
                if await c.catalog.store.get(c.catalog.keys.layout) is not None:
                    break
                await asyncio.sleep(0.01)
            assert not await c.catalog.layout_behind()
            status, _, _ = await call(
                client,
                "POST",
                "/v2/queues/orders/messages",
                json={"messages": [{"body": 1}]},
                project="50%",
            )
            assert status == 201
            assert (await c.partitions["p2"].deps.storage.queues.stats("50%", "orders")).total == 1
            _, listed, _ = await call(client, "GET", "/v2/queues", project="50%")
            assert [q["name"] for q in listed["queues"]] == ["orders"]
        finally:
            await client.close()
        assert await c.catalog.store.get(f"{prefix}_/Q") is None


class SlowToAnswer(MemoryStore):
    """An etcd that does not answer its first `failures` reads."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    async def get(self, key: str) -> Versioned | None:
        if self.failures:
            self.failures -= 1
            raise CatalogUnavailable("etcd: timed out")
        return await super().get(key)


async def test_the_start_up_upgrade_waits_for_etcd_a_while() -> None:
    store = SlowToAnswer(failures=3)
    await store.create("/t/placements/_/q", Placement("", "q", "p1").to_json())
    assert await upgrade_layout(Catalog(store, Keys("/t/")), wait=5.0, retry=0.01) == 1
    with pytest.raises(CatalogUnavailable):
        await upgrade_layout(Catalog(SlowToAnswer(10**6), Keys("/t/")), wait=0.05, retry=0.01)

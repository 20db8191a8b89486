"""Routing through proxies on one etcd: placement on create, racing proxies, reads, deletes."""

from __future__ import annotations

import asyncio
from pathlib import Path

from prometheus_client import REGISTRY

from catalog.records import PlacementState
from tests.conftest import FakeClock
from tests.proxy.cluster import Cluster, cluster
from tests.proxy.conftest import PROJECT, call
from tests.proxy.test_front import connected, request
from tests.services import Etcd


async def owners(c: Cluster, project: str, queue: str) -> list[str]:
    """The partitions whose storage holds the queue."""
    return [
        name
        for name, part in c.partitions.items()
        if await part.deps.storage.queues.exists(project, queue)
    ]


async def test_two_proxies_racing_agree_on_every_placement(
    tmp_path: Path, clock: FakeClock, etcd_server: Etcd
) -> None:
    async with cluster(tmp_path, clock, etcd_url=etcd_server.url, proxies=2) as c:
        names = [f"race-{i}" for i in range(50)]
        results = await asyncio.gather(
            *(call(proxy, "PUT", f"/v2/queues/{name}") for name in names for proxy in c.proxies)
        )
        assert sorted(status for status, _, _ in results) == [201] * 50 + [204] * 50
        placements = {n: await c.catalog.placement(PROJECT, n) for n in names}
        assert all(p is not None and p.state is PlacementState.ACTIVE for p in placements.values())
        assert {p.partition for p in placements.values() if p} == {"p1", "p2"}
        for name, placement in placements.items():
            assert placement is not None
            assert await owners(c, PROJECT, name) == [placement.partition]
        # Every request for a queue, through either proxy, reaches the queue's partition.
        for i, name in enumerate(names):
            proxy = c.proxies[i % 2]
            status, _, _ = await call(
                proxy, "POST", f"/v2/queues/{name}/messages", json={"messages": [{"body": i}]}
            )
            assert status == 201
        for name, placement in placements.items():
            assert placement is not None
            stats = await c.partitions[placement.partition].deps.storage.queues.stats(PROJECT, name)
            assert stats.total == 1
        status, body, _ = await call(c.proxies[1], "GET", "/v2/queues?limit=20")
        assert [q["name"] for q in body["queues"]] == sorted(names)[:20]


async def test_lazy_post_places_and_reads_do_not(tmp_path: Path, clock: FakeClock) -> None:
    async with cluster(tmp_path, clock) as c:
        router = c.state().router
        for path in ("/v2/queues/lazy/messages", "/v2/queues/lazy/stats", "/v2/queues/lazy"):
            status, _, _ = await call(c.proxy, "GET", path)
            assert status == 200
        assert await c.catalog.placement(PROJECT, "lazy") is None
        assert await c.catalog.queue_names(PROJECT, None, 10) == []
        status, _, _ = await call(
            c.proxy, "POST", "/v1.1/queues/lazy/messages", json={"messages": [{"body": 1}]}
        )
        assert status == 201
        placement = await c.catalog.placement(PROJECT, "lazy")
        assert placement is not None and placement.partition == router.choose(PROJECT, "lazy")
        assert await owners(c, PROJECT, "lazy") == [placement.partition]


async def test_v1_post_does_not_place(tmp_path: Path, clock: FakeClock) -> None:
    async with cluster(tmp_path, clock) as c:
        status, _, _ = await call(
            c.proxy, "POST", "/v1/queues/q/messages", json=[{"body": 1, "ttl": 60}]
        )
        assert status == 404  # v1 makes no queue on post
        assert await c.catalog.placement(PROJECT, "q") is None


async def test_delete_removes_the_placement_before_answering(
    tmp_path: Path, clock: FakeClock, etcd_server: Etcd
) -> None:
    async with cluster(tmp_path, clock, etcd_url=etcd_server.url) as c:
        assert (await call(c.proxy, "PUT", "/v2/queues/gone"))[0] == 201
        assert await c.catalog.placement(PROJECT, "gone") is not None
        assert (await call(c.proxy, "DELETE", "/v2/queues/gone"))[0] == 204
        assert await c.catalog.placement(PROJECT, "gone") is None
        assert await c.state().router.cache.placement(PROJECT, "gone") is None
        assert (await call(c.proxy, "PUT", "/v2/queues/gone"))[0] == 201
        assert await c.catalog.placement(PROJECT, "gone") is not None


async def test_refused_creation_leaves_no_placement(tmp_path: Path, clock: FakeClock) -> None:
    async with cluster(tmp_path, clock) as c:
        status, _, _ = await call(
            c.proxy, "POST", "/v2/queues/q/messages", json={"messages": [{"body": 1, "ttl": 1}]}
        )
        assert status == 400
        status, _, _ = await call(c.proxy, "PUT", "/v2/queues/q", json={"_default_message_ttl": 1})
        assert status == 400
        status, _, _ = await call(c.proxy, "PUT", "/v2/queues/bad@name")
        assert status == 400
        assert await c.catalog.queue_names(PROJECT, None, 10) == []


async def test_existing_queue_without_placement_survives_a_refused_put(
    tmp_path: Path, clock: FakeClock
) -> None:
    """A queue created behind the proxy's back is not unplaced by a refused request."""
    async with cluster(tmp_path, clock) as c:
        owner = c.state().router.choose(PROJECT, "q")
        await c.partitions[owner].deps.storage.queues.create(PROJECT, "q", None)
        status, _, _ = await call(c.proxy, "PUT", "/v2/queues/q", json={"_default_message_ttl": 1})
        assert status == 400
        assert await c.catalog.placement(PROJECT, "q") is not None


async def test_projects_are_separate_and_v1_has_the_empty_project(
    tmp_path: Path, clock: FakeClock
) -> None:
    async with cluster(tmp_path, clock) as c:
        async with c.proxy.put("/v1/queues/shared") as resp:
            assert resp.status == 201
        assert await c.catalog.placement("", "shared") is not None
        assert await c.catalog.placement(PROJECT, "shared") is None
        assert (await call(c.proxy, "PUT", "/v1/queues/shared"))[0] == 201


async def test_requests_naming_no_queue_reach_a_node(tmp_path: Path, clock: FakeClock) -> None:
    async with cluster(tmp_path, clock) as c:
        for path, status in (
            ("/", 300),
            ("/v2", 200),
            ("/v2/ping", 204),
            ("/v1/health", 204),
            ("/nothing", 404),
            ("/v3/queues", 404),
        ):
            assert (await call(c.proxy, "GET", path))[0] == status, path


def cache_hits() -> float:
    return REGISTRY.get_sample_value("marconi_placement_cache_lookups_total", {"outcome": "hit"})


async def test_each_request_counts_one_cache_hit_on_either_server(
    tmp_path: Path, clock: FakeClock
) -> None:
    async with cluster(tmp_path, clock) as c:
        assert (await call(c.proxy, "PUT", "/v2/queues/q"))[0] == 201
        before = cache_hits()
        for _ in range(3):  # the lean path, answered at once
            assert (await call(c.proxy, "GET", "/v2/queues/q/stats"))[0] == 200
        assert cache_hits() - before == 3
        # With no idle connection to a node, the lean path's request goes the whole path: still
        # one hit.
        await c.state().forwarder.upstreams.close()
        assert (await call(c.proxy, "GET", "/v2/queues/q/stats"))[0] == 200
        assert cache_hits() - before == 4
        # On aiohttp's server (which the listing hands the connection to): one hit too.
        async with connected(c) as client:
            assert (await client.call(request("GET", "/v2/queues")))[0] == 200
            assert cache_hits() - before == 4
            assert (await client.call(request("GET", "/v2/queues/q/stats")))[0] == 200
        assert cache_hits() - before == 5

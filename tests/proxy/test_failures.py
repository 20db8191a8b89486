"""Faults: the proxy keeps serving known queues without etcd, and around a killed node."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from catalog.records import Partition
from tests.conftest import FakeClock
from tests.proxy.cluster import ADMIN, cluster
from tests.proxy.conftest import call
from tests.services import node_process, start_etcd

pytestmark = pytest.mark.slow


async def test_cached_queues_are_served_while_etcd_is_down(
    tmp_path: Path, clock: FakeClock
) -> None:
    etcd = start_etcd(tmp_path / "etcd")
    try:
        async with cluster(tmp_path, clock, etcd_url=etcd.url) as c:
            names = [f"q{i}" for i in range(6)]
            for name in names:
                assert (await call(c.proxy, "PUT", f"/v2/queues/{name}"))[0] == 201
            etcd.stop()
            cache = c.state().router.cache
            async with asyncio.timeout(5):
                while cache.state.value == "live":  # noqa: ASYNC110 - no event for the state
                    await asyncio.sleep(0.05)
            for i, name in enumerate(names):
                status, _, _ = await call(
                    c.proxy,
                    "POST",
                    f"/v2/queues/{name}/messages",
                    json={"messages": [{"body": i}]},
                )
                assert status == 201
                status, body, _ = await call(c.proxy, "GET", f"/v2/queues/{name}/stats")
                assert status == 200 and body["messages"]["total"] == 1
            status, body, _ = await call(c.proxy, "GET", "/admin/health", headers=ADMIN)
            assert body["catalog"]["state"] == "reconnecting"
            async with c.proxy.get("/readyz") as resp:  # still serving: still ready
                assert resp.status == 200
                assert (await resp.json())["catalog"]["watch"] == "reconnecting"
            # A new queue needs the catalog: refused with Zaqar's body, not hung.
            status, body, headers = await call(c.proxy, "PUT", "/v2/queues/new")
            assert status == 503 and set(body) == {"title", "description"}
            assert "Retry-After" in headers
    finally:
        etcd.stop()


async def test_requests_keep_succeeding_when_a_node_is_killed(
    tmp_path: Path, clock: FakeClock
) -> None:
    storage = f"sqlite:///{tmp_path}/shared.db"
    with node_process(storage, "p1", tmp_path) as a, node_process(storage, "p1", tmp_path) as b:
        async with cluster(
            tmp_path, clock, partitions=(), health_interval=0.2, health_timeout=2.0
        ) as c:
            await c.catalog.add_partition(Partition("p1", (a.url, b.url)))
            cache = c.state().router.cache
            async with asyncio.timeout(2):
                while "p1" not in cache.partitions:
                    await cache.changed.wait()
            q = "/v2/queues/survivor"
            assert (await call(c.proxy, "PUT", q))[0] == 201
            for i in range(10):
                status, _, _ = await call(
                    c.proxy, "POST", f"{q}/messages", json={"messages": [{"body": i}]}
                )
                assert status == 201
            a.proc.kill()
            a.proc.wait()
            await asyncio.sleep(0.05)  # the proxy's loop notices the closed connections
            for i in range(10, 30):
                status, body, _ = await call(
                    c.proxy, "POST", f"{q}/messages", json={"messages": [{"body": i}]}
                )
                assert status == 201, body
                status, _, _ = await call(c.proxy, "GET", f"{q}/stats")
                assert status == 200
            status, body, _ = await call(c.proxy, "GET", f"{q}/stats")
            assert body["messages"]["total"] == 30
            # The health checks tell the same story soon after (the checks run every 0.2 s).
            async with asyncio.timeout(5):
                while True:
                    status, body, _ = await call(c.proxy, "GET", "/admin/health", headers=ADMIN)
                    nodes = body["partitions"]["p1"]["nodes"]
                    if not nodes[a.url]["healthy"] and nodes[b.url]["healthy"]:
                        break
                    await asyncio.sleep(0.1)
            assert body["partitions"]["p1"]["healthy"] is True

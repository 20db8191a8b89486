"""The proxy's own probes: answered without headers or nodes, ready only while serving."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import FakeClock
from tests.proxy.cluster import cluster


async def test_probes_need_no_header_and_report_what_the_proxy_knows(
    tmp_path: Path, clock: FakeClock
) -> None:
    async with cluster(tmp_path, clock) as c:
        async with c.proxy.get("/healthz") as resp:
            assert resp.status == 204
        await c.state().forwarder.pools.check_all()
        async with c.proxy.get("/readyz") as resp:
            assert resp.status == 200
            body = await resp.json()
        assert body["catalog"]["watch"] == "live"
        assert body["partitions"] == {
            "p1": {"nodes": 1, "healthy": 1},
            "p2": {"nodes": 1, "healthy": 1},
        }
        await c.partitions["p2"].servers[0].close()
        await c.state().forwarder.pools.check_all()
        async with c.proxy.get("/readyz") as resp:
            assert resp.status == 200  # a dead node does not make the proxy unready
            assert (await resp.json())["partitions"]["p2"] == {"nodes": 1, "healthy": 0}


async def test_not_ready_once_shutdown_begins(tmp_path: Path, clock: FakeClock) -> None:
    """(An etcd outage leaves the proxy ready: see tests/proxy/test_failures.py.)"""
    async with cluster(tmp_path, clock) as c:
        await c.state().router.cache.stop()
        async with c.proxy.get("/readyz") as resp:
            assert resp.status == 503
            assert (await resp.json())["catalog"]["watch"] == "stopped"

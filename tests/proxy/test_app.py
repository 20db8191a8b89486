"""The running proxy: catalog changes seen within a second, metrics, settings from the env."""

from __future__ import annotations

import asyncio
import dataclasses
import os
from pathlib import Path

import pytest

from catalog.registry import MigrationLimits
from proxy.settings import PlacementKey, ProxySettings
from tests.conftest import FakeClock
from tests.proxy.cluster import cluster
from tests.proxy.conftest import PROJECT, call
from tests.services import Etcd


async def test_placement_changed_in_etcd_is_seen_within_a_second(
    tmp_path: Path, clock: FakeClock, etcd_server: Etcd
) -> None:
    async with cluster(tmp_path, clock, etcd_url=etcd_server.url) as c:
        assert (await call(c.proxy, "PUT", "/v2/queues/q"))[0] == 201
        placement = await c.catalog.placement(PROJECT, "q")
        assert placement is not None
        target = "p2" if placement.partition == "p1" else "p1"
        await c.partitions[target].deps.storage.queues.create(PROJECT, "q", None)
        key = c.catalog.keys.placement(PROJECT, "q")
        found = await c.catalog.store.get(key)
        assert found is not None
        moved = dataclasses.replace(placement, partition=target, epoch=2)
        started = asyncio.get_running_loop().time()
        await c.catalog.store.replace(key, moved.to_json(), found.mod_revision)
        cache = c.state().router.cache
        async with asyncio.timeout(1.0):
            while cache.cached(PROJECT, "q") != moved:
                await cache.changed.wait()
        assert asyncio.get_running_loop().time() - started < 1.0
        # Requests follow at once, with no etcd read.
        status, _, _ = await call(
            c.proxy, "POST", "/v2/queues/q/messages", json={"messages": [{"body": 1}]}
        )
        assert status == 201
        assert (await c.partitions[target].deps.storage.queues.stats(PROJECT, "q")).total == 1


async def test_metrics(tmp_path: Path, clock: FakeClock) -> None:
    async with cluster(tmp_path, clock) as c:
        await call(c.proxy, "PUT", "/v2/queues/q")
        await call(c.proxy, "GET", "/v2/queues/q/stats")
        async with c.proxy.get("/metrics") as resp:
            text = await resp.text()
        for name in (
            'marconi_http_requests_total{component="proxy",method="GET",'
            'route="/{version}/queues/{queue_name}/stats",status="200"}',
            "marconi_proxy_forwarded_total",
            "marconi_proxy_stale_route_retries_total",
            "marconi_proxy_frozen_waits_total",
            "marconi_placement_cache_lookups_total",
            "marconi_proxy_placements_total",
        ):
            assert name in text, name


def test_settings_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith("MARCONI_")]:
        monkeypatch.delenv(name)
    assert ProxySettings.from_env() == ProxySettings()
    monkeypatch.setenv("MARCONI_CATALOG_URL", "http://10.0.0.1:2379,http://10.0.0.2:2379")
    monkeypatch.setenv("MARCONI_PROXY_PORT", "9000")
    monkeypatch.setenv("MARCONI_PLACEMENT_KEY", "project")
    monkeypatch.setenv("MARCONI_FROZEN_MAX_WAIT", "0.5")
    monkeypatch.setenv("MARCONI_LOG_JSON", "true")
    monkeypatch.setenv("MARCONI_MIGRATION_COOLDOWN", "30")
    s = ProxySettings.from_env()
    assert s.catalog_url.endswith("10.0.0.2:2379") and s.port == 9000
    assert s.placement_key is PlacementKey.PROJECT and s.frozen_max_wait == 0.5
    assert s.log_json is True
    assert s.migration_limits == MigrationLimits(1, 1, 30.0)

"""The chart's probes against the real processes' HTTP apps: every path it probes is served, and
answers as the chart's comments say (a node is ready while its storage answers, a worker while it
holds its lease; liveness needs neither)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientSession
from aiohttp.test_utils import TestClient, TestServer

from catalog.keys import Keys
from catalog.memory import MemoryStore
from migrate.server import _listen
from migrate.settings import WorkerSettings
from migrate.worker import Worker
from node.api.app import create_app as create_node
from node.api.deps import Deps
from node.storage import open_storage
from proxy.app import create_app as create_proxy
from proxy.settings import ProxySettings
from tests.charts.chart import FULLNAME, Manifests, container
from tests.conftest import unique_prefix
from tests.services import free_port


def probe_paths(default: Manifests, name: str) -> dict[str, str]:
    c = container(default.named("Deployment", f"{FULLNAME}-{name}"))
    return {probe: c[probe]["httpGet"]["path"] for probe in ("readinessProbe", "livenessProbe")}


async def served(client: TestClient, path: str) -> int:
    async with client.get(path) as response:
        await response.read()
        return response.status


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[tuple[TestClient, Deps]]:
    storage = await open_storage(f"sqlite:///{tmp_path}/p1.db")
    deps = Deps(storage=storage, partition="p1")
    client = TestClient(TestServer(create_node(deps, gc_interval=3600), host="127.0.0.1"))
    await client.start_server()
    try:
        yield client, deps
    finally:
        await client.close()


async def test_a_node_answers_both_probes_while_its_storage_answers(
    default: Manifests, node: tuple[TestClient, Deps], monkeypatch: pytest.MonkeyPatch
) -> None:
    client, deps = node
    paths = probe_paths(default, "node-p1")
    # Sent as the kubelet sends it: no Client-ID, no project.
    assert await served(client, paths["readinessProbe"]) in (200, 204)
    assert await served(client, paths["livenessProbe"]) == 200

    async def unreachable() -> bool:
        return False

    # Storage down: unready (no traffic from the Service), yet alive (no restart).
    monkeypatch.setattr(deps.storage, "ping", unreachable)
    assert await served(client, paths["readinessProbe"]) == 503
    assert await served(client, paths["livenessProbe"]) == 200


async def test_the_proxy_answers_both_probes_itself(default: Manifests) -> None:
    """With no partition registered yet (as at install, before the registration Job): the proxy
    forwards what it does not serve itself to a node, so a 200 here is its own answer."""
    settings = ProxySettings(key_prefix=unique_prefix(), health_interval=3600)
    client = TestClient(TestServer(create_proxy(settings, MemoryStore()), host="127.0.0.1"))
    await client.start_server()
    try:
        assert await served(client, "/v2/ping") == 503  # forwarded: no node to answer
        paths = probe_paths(default, "proxy")
        assert await served(client, paths["readinessProbe"]) == 200
        assert await served(client, paths["livenessProbe"]) == 204
    finally:
        await client.close()


async def test_the_worker_is_ready_while_it_holds_its_lease(default: Manifests) -> None:
    paths = probe_paths(default, "worker")
    settings = WorkerSettings(key_prefix=unique_prefix(), metrics_port=free_port())
    worker = Worker(MemoryStore(), Keys(settings.key_prefix), settings)
    listener = await _listen(worker, settings)
    assert listener is not None
    url = f"http://{settings.metrics_host}:{settings.metrics_port}"
    try:
        async with ClientSession() as http:

            async def get(path: str) -> tuple[int, Any]:
                async with http.get(url + path) as response:
                    return response.status, await response.read()

            assert (await get(paths["readinessProbe"]))[0] == 503  # no lease yet
            assert (await get(paths["livenessProbe"]))[0] == 200
            await worker.start()
            try:
                assert (await get(paths["readinessProbe"]))[0] == 200
                assert (await get(paths["livenessProbe"]))[0] == 200
            finally:
                await worker.stop()
    finally:
        await listener.cleanup()

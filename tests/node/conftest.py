"""A node over a fresh SQLite (or PostgreSQL) partition, served on a real 127.0.0.1 socket per
test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from multidict import CIMultiDict

from node.api.app import create_app
from node.api.deps import Deps
from node.encryption import MessageCipher
from node.storage import open_storage
from tests.conftest import FakeClock, storage_uri

CLIENT_ID = "3b8a7c52-52f1-4a3b-9e7f-1d2c3b4a5f60"
PROJECT = "test-project"
HEADERS = {"Client-ID": CLIENT_ID, "X-Project-ID": PROJECT}
SIGNED_URL_KEY = "test-signed-url-secret"  # the `api` fixture's nodes and proxy share it


class Api:
    """A thin HTTP client that sends the usual headers unless told otherwise."""

    def __init__(
        self, client: TestClient, clock: FakeClock, deps: Deps, every: tuple[Deps, ...] = ()
    ) -> None:
        self.client = client
        self.clock = clock
        self.deps = deps
        self.every = every or (deps,)  # every partition's, behind a proxy

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        data: bytes | str | None = None,
        headers: dict[str, str] | None = None,
        drop: tuple[str, ...] = (),
    ) -> tuple[int, Any, CIMultiDict[str]]:
        sent = {k: v for k, v in HEADERS.items() if k not in drop}
        if json is not None or data is not None:
            sent["Content-Type"] = "application/json"
        sent.update(headers or {})
        async with self.client.request(method, path, json=json, data=data, headers=sent) as resp:
            raw = await resp.read()
            try:
                import json as _json

                body = _json.loads(raw) if raw else None
            except ValueError:
                body = raw
            return resp.status, body, CIMultiDict(resp.headers)  # names compared as HTTP does


# The message encryption key every test node is given (queues encrypt only when they ask).
CIPHER = MessageCipher("test-message-encryption-key")


@pytest.fixture(
    params=[
        "direct",
        "proxy",
        pytest.param("direct-postgresql", marks=pytest.mark.postgresql),
        pytest.param("proxy-postgresql", marks=pytest.mark.postgresql),
    ]
)
async def api(
    request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock
) -> AsyncIterator[Api]:
    """The node API over HTTP: straight to one node, or through a proxy in front of two
    partitions (real etcd, one in-process node each); `deps` is the first partition's. The
    partitions are SQLite files, or PostgreSQL schemas with `-postgresql`."""
    async with serve_api(request, tmp_path, clock) as served:
        yield served


@asynccontextmanager
async def serve_api(
    request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock
) -> AsyncIterator[Api]:
    """`api` for the fixture parameter `route[-driver]` (driver: sqlite, postgresql, mongodb)."""
    route, _, driver = request.param.partition("-")
    driver = driver or "sqlite"
    if route == "proxy":
        from tests.proxy.cluster import cluster

        etcd_url = request.getfixturevalue("etcd_server").url

        def partition_uri(name: str) -> str:
            (tmp_path / name).mkdir()
            return storage_uri(driver, tmp_path / name, request)

        async with cluster(
            tmp_path,
            clock,
            etcd_url=etcd_url,
            storage_uri=partition_uri,
            signed_url_key=SIGNED_URL_KEY,
            cipher=CIPHER,
        ) as c:
            every = tuple(p.deps for p in c.partitions.values())
            yield Api(c.proxy, clock, c.partitions["p1"].deps, every)
        return
    storage = await open_storage(storage_uri(driver, tmp_path, request), clock)
    deps = Deps(storage=storage, clock=clock, signed_url_key=SIGNED_URL_KEY, cipher=CIPHER)
    server = TestServer(create_app(deps, gc_interval=3600), host="127.0.0.1")
    client = TestClient(server)
    await client.start_server()
    try:
        yield Api(client, clock, deps)
    finally:
        await client.close()


ApiFactory = Callable[..., Awaitable[Api]]

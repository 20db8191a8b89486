"""A whole cluster in one event loop: partitions of in-process nodes, a catalog, and proxies."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from aiohttp.web_runner import BaseRunner

from catalog.catalog import Catalog
from catalog.etcd import EtcdStore
from catalog.keys import Keys
from catalog.memory import MemoryStore
from catalog.records import Partition
from catalog.store import CatalogStore
from node.api.app import create_app as create_node
from node.api.deps import Deps
from node.encryption import MessageCipher
from node.storage import open_storage
from proxy.app import REQUEST_PATH, create_app
from proxy.front import ProxyRunner
from proxy.handler import RequestPath
from proxy.hooks import Hook
from proxy.settings import ProxySettings
from tests.conftest import FakeClock, unique_prefix
from wire.deadlines import Deadlines

ADMIN = {"X-Roles": "admin"}
NodeWrapper = Callable[[web.Application, str], web.Application]


class ProxyTestServer(TestServer):
    """A proxy served as `marconi proxy` serves it: the lean path in front of the app, under
    the settings' read deadlines and connection cap."""

    def __init__(
        self, app: web.Application, *, deadlines: Deadlines | None = None, **kwargs: Any
    ) -> None:
        super().__init__(app, **kwargs)
        self.deadlines = deadlines

    async def _make_runner(self, **kwargs: Any) -> BaseRunner:
        # In-flight requests get what `marconi proxy` gives them at shutdown, not aiohttp's 60 s.
        kwargs.setdefault("shutdown_timeout", ProxySettings().drain_timeout)
        return ProxyRunner(self.app, deadlines=self.deadlines, **kwargs)


@dataclass
class PartitionNodes:
    name: str
    deps: Deps
    servers: list[TestServer] = field(default_factory=list)

    @property
    def urls(self) -> tuple[str, ...]:
        return tuple(str(s.make_url("")).rstrip("/") for s in self.servers)


@dataclass
class Cluster:
    catalog: Catalog
    partitions: dict[str, PartitionNodes]
    proxies: list[TestClient]
    settings: ProxySettings
    make_store: Callable[[], CatalogStore]

    @property
    def proxy(self) -> TestClient:
        return self.proxies[0]

    def state(self, index: int = 0) -> RequestPath:
        app = self.proxies[index].app
        assert app is not None
        return app[REQUEST_PATH]


def store_factory(etcd_url: str | None) -> Callable[[], CatalogStore]:
    """A new store per user on etcd (each proxy closes its own), or one shared in-memory store."""
    if etcd_url is None:
        memory = MemoryStore()
        return lambda: memory
    return lambda: EtcdStore(etcd_url)


@asynccontextmanager
async def cluster(
    tmp_path: Path,
    clock: FakeClock,
    *,
    etcd_url: str | None = None,
    partitions: Sequence[str] = ("p1", "p2"),
    proxies: int = 1,
    wrap_node: NodeWrapper | None = None,
    hooks: Sequence[Hook] = (),
    storage_uri: Callable[[str], str] | None = None,
    cipher: MessageCipher | None = None,
    **settings: Any,
) -> AsyncIterator[Cluster]:
    """Start partitions (one in-process node over its own SQLite file, or the storage
    `storage_uri(partition)` names, on `clock`), register them in the catalog, then start the
    proxies."""
    make_store = store_factory(etcd_url)
    base = ProxySettings(key_prefix=unique_prefix(), health_interval=3600, frozen_max_wait=2.0)
    proxy_settings = dataclasses.replace(base, **settings)
    async with AsyncExitStack() as stack:
        admin_store = make_store()
        stack.push_async_callback(admin_store.close)
        catalog = Catalog(admin_store, Keys(proxy_settings.key_prefix))
        parts: dict[str, PartitionNodes] = {}
        for name in partitions:
            uri = storage_uri(name) if storage_uri else f"sqlite:///{tmp_path}/{name}.db"
            storage = await open_storage(uri, clock)
            deps = Deps(
                storage=storage,
                clock=clock,
                partition=name,
                signed_url_key=proxy_settings.signed_url_key,  # one secret for the cluster
                cipher=cipher,
            )
            part = PartitionNodes(name, deps)
            app = create_node(part.deps, gc_interval=3600)  # closes the storage at cleanup
            if wrap_node is not None:
                app = wrap_node(app, name)
            server = TestServer(app, host="127.0.0.1")
            await server.start_server()
            stack.push_async_callback(server.close)
            part.servers.append(server)
            parts[name] = part
            await catalog.add_partition(Partition(name, part.urls))
        clients = []
        for _ in range(proxies):
            client = TestClient(
                ProxyTestServer(
                    create_app(proxy_settings, make_store(), hooks),
                    host="127.0.0.1",
                    deadlines=proxy_settings.deadlines,
                )
            )
            await client.start_server()
            stack.push_async_callback(client.close)
            clients.append(client)
        yield Cluster(catalog, parts, clients, proxy_settings, make_store)

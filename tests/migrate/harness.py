"""A cluster for migration tests: partitions of in-process nodes over given storage URIs (known to
the catalog, as workers open them), proxies on real etcd, workers, and clients that keep using a
queue while it moves and record everything they were told."""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from catalog.catalog import Catalog
from catalog.etcd import EtcdStore
from catalog.keys import Keys
from catalog.migrations import Migration, Phase
from catalog.records import Partition, Placement
from catalog.registry import Registry
from migrate.machine import NO_HOOKS, Hooks
from migrate.settings import WorkerSettings
from migrate.worker import Worker
from node.api.app import create_app as create_node
from node.api.deps import Deps
from node.storage import open_storage
from proxy.app import create_app
from proxy.settings import ProxySettings
from tests.conftest import FakeClock, unique_prefix
from tests.proxy.cluster import Cluster, PartitionNodes

Client = TestClient[web.Request, web.Application]
PROJECT = "tenant"
QUEUE = "moving"
Q = f"/v2/queues/{QUEUE}"
# Small batches so a few hundred messages take several; a lease as short as etcd allows.
SETTINGS = WorkerSettings(
    lease_ttl=2,
    batch=50,
    copy_rate=100_000.0,
    purge_rate=100_000.0,
    purge_grace=0.0,
    settle=0.05,
    catch_up_pause=0.01,
    retry_pause=0.2,
    metrics_port=0,
)


@dataclass
class MigrationCluster:
    cluster: Cluster
    etcd_url: str
    clock: FakeClock
    uris: dict[str, str]
    stack: AsyncExitStack

    @property
    def catalog(self) -> Catalog:
        return self.cluster.catalog

    @property
    def proxy(self) -> Client:
        return self.cluster.proxy

    def storage(self, partition: str) -> Any:
        return self.cluster.partitions[partition].deps.storage

    async def worker(
        self, hooks: Hooks = NO_HOOKS, name: str | None = None, **settings: Any
    ) -> Worker:
        """A started worker with its own catalog connection; stop it (or let the test end)."""
        store = EtcdStore(self.etcd_url)
        worker = Worker(
            store,
            self.catalog.keys,
            dataclasses.replace(SETTINGS, **settings),
            clock=self.clock,
            hooks=hooks,
            name=name,
        )
        await worker.start()

        async def close() -> None:
            if worker.ownership.lease is not None:
                await worker.stop()
            await store.close()

        self.stack.push_async_callback(close)
        return worker

    async def placement(self) -> Placement:
        found = await self.catalog.placement(PROJECT, QUEUE)
        assert found is not None
        return found

    async def move(self, target: str) -> Migration:
        return await Registry(self.catalog, clock=self.clock).create(PROJECT, QUEUE, target)

    async def wait_for(self, migration_id: str, *phases: Phase, within: float = 30) -> Migration:
        registry = Registry(self.catalog)
        async with asyncio.timeout(within):
            while True:
                m = (await registry.get(migration_id)).migration
                if m.phase in phases:
                    return m
                await asyncio.sleep(0.02)


@asynccontextmanager
async def migration_cluster(
    etcd_url: str, uris: Mapping[str, str], clock: FakeClock
) -> AsyncIterator[MigrationCluster]:
    settings = ProxySettings(
        key_prefix=unique_prefix(), health_interval=3600, frozen_max_wait=3.0, catalog_url=etcd_url
    )
    async with AsyncExitStack() as stack:
        admin = EtcdStore(etcd_url)
        stack.push_async_callback(admin.close)
        catalog = Catalog(admin, Keys(settings.key_prefix))
        parts: dict[str, PartitionNodes] = {}
        for name, uri in uris.items():
            storage = await open_storage(uri, clock)
            part = PartitionNodes(name, Deps(storage=storage, clock=clock, partition=name))
            server = TestServer(create_node(part.deps, gc_interval=3600), host="127.0.0.1")
            await server.start_server()
            stack.push_async_callback(server.close)
            part.servers.append(server)
            parts[name] = part
            await catalog.add_partition(Partition(name, part.urls, storage=uri))
        client = TestClient(TestServer(create_app(settings, EtcdStore(etcd_url)), host="127.0.0.1"))
        await client.start_server()
        stack.push_async_callback(client.close)
        cluster = Cluster(catalog, parts, [client], settings, lambda: EtcdStore(etcd_url))
        yield MigrationCluster(cluster, etcd_url, clock, dict(uris), stack)


# --- clients -------------------------------------------------------------------------------------


@dataclass
class Load:
    """Producers post numbered messages, consumers claim and delete them, through the proxy."""

    proxy: Client
    producers: int = 3
    consumers: int = 3
    pause: float = 0.005  # seconds a producer waits between posts (0: full speed)
    acked: dict[str, tuple[int, int]] = field(default_factory=dict)  # id -> (producer, n)
    consumed: list[tuple[int, str, int, int]] = field(default_factory=list)  # consumer, id, p, n
    errors: list[str] = field(default_factory=list)
    slowest: float = 0.0
    _stop_producing: asyncio.Event = field(default_factory=asyncio.Event)
    _stop_consuming: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._produce(i)) for i in range(self.producers)]
        self._tasks += [asyncio.create_task(self._consume(i)) for i in range(self.consumers)]

    async def finish(self, drain: bool = True) -> None:
        """Stop producing; consume until the queue is empty (or not, without `drain`)."""
        self._stop_producing.set()
        await asyncio.gather(*self._tasks[: self.producers])
        if not drain:
            self._stop_consuming.set()
        await asyncio.gather(*self._tasks[self.producers :])

    async def _call(self, method: str, path: str, client: str, json: Any = None) -> tuple[int, Any]:
        headers = {"Client-ID": client, "X-Project-ID": PROJECT}
        started = time.monotonic()
        async with self.proxy.request(method, path, json=json, headers=headers) as resp:
            body = await resp.json() if resp.status in (200, 201) else await resp.text()
        self.slowest = max(self.slowest, time.monotonic() - started)
        return resp.status, body

    async def _produce(self, producer: int) -> None:
        client = str(uuid.uuid4())
        n = 0
        while not self._stop_producing.is_set():
            message = {"body": {"p": producer, "n": n}, "ttl": 3600}
            status, body = await self._call(
                "POST", f"{Q}/messages", client, {"messages": [message]}
            )
            if status == 201:
                self.acked[body["resources"][0].rsplit("/", 1)[1]] = (producer, n)
            else:
                self.errors.append(f"producer {producer}: POST gave {status}: {body}")
            n += 1
            await asyncio.sleep(self.pause)

    async def _consume(self, consumer: int) -> None:
        client = str(uuid.uuid4())
        idle = 0
        while not self._stop_consuming.is_set():
            path = f"{Q}/claims?limit=5"
            status, body = await self._call("POST", path, client, {"ttl": 300, "grace": 60})
            if status == 204:
                idle += 1
                if self._stop_producing.is_set() and idle > 20:
                    return  # drained
                await asyncio.sleep(0.01)
                continue
            if status != 201:
                self.errors.append(f"consumer {consumer}: claim gave {status}: {body}")
                continue
            idle = 0
            for message in body["messages"]:
                href = message["href"]
                status, text = await self._call("DELETE", href, client)
                if status != 204:
                    self.errors.append(f"consumer {consumer}: DELETE gave {status}: {text}")
                    continue
                message_id = href.split("?")[0].rsplit("/", 1)[1]
                p, n = message["body"]["p"], message["body"]["n"]
                self.consumed.append((consumer, message_id, p, n))


def check_accounting(
    load: Load, remaining: Mapping[str, tuple[int, int]], *, ordered: bool = True
) -> None:
    """Every acknowledged message consumed exactly once or still queued exactly once, nothing
    else consumed, and (`ordered`) each consumer saw each producer's messages in the order
    posted."""
    consumed_ids = [message_id for _, message_id, _, _ in load.consumed]
    assert len(consumed_ids) == len(set(consumed_ids)), "a message was consumed twice"
    assert not set(consumed_ids) & set(remaining), "a consumed message is still queued"
    assert set(consumed_ids) | set(remaining) == set(load.acked), "a message was lost or invented"
    for _, message_id, p, n in load.consumed:
        assert load.acked[message_id] == (p, n)
    seen: dict[tuple[int, int], int] = {}
    for consumer, _, p, n in load.consumed if ordered else ():
        assert n > seen.get((consumer, p), -1), f"consumer {consumer} got producer {p} out of order"
        seen[(consumer, p)] = n


async def remaining(storage: Any) -> dict[str, tuple[int, int]]:
    """The load's messages still in a partition's copy of the queue, by id."""
    found = await storage.transfer.export_messages(PROJECT, QUEUE, after_marker=0, limit=100_000)
    return {m.id: (m.body["p"], m.body["n"]) for m in found if "p" in m.body}

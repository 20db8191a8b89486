"""The nodes of each partition: health-checked in the background, chosen least-outstanding.

A node is healthy once its `GET /v1/health` answered 204 (that route needs no headers), and
unhealthy after a failed check or a refused connection. A request goes to the healthy node with
the fewest requests in flight; when no node is known healthy (at start, or all checks failing)
any node is tried, so a partition is never declared dead on stale news alone.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Collection, Mapping
from urllib.parse import urlsplit

from prometheus_client import Counter, Gauge

from catalog.records import Partition
from ground.logs import get_logger
from proxy.upstream import Lost, NotSent, Upstreams

log = get_logger("proxy.nodes")

NODE_HEALTHY = Gauge(
    "marconi_proxy_node_healthy", "1 while a node passes its health check.", ["partition", "node"]
)
NODE_OUTSTANDING = Gauge(
    "marconi_proxy_node_outstanding", "Requests in flight to a node.", ["partition", "node"]
)
HEALTH_CHECKS = Counter(
    "marconi_proxy_health_checks_total", "Node health checks, by outcome.", ["outcome"]
)
HEALTH_PATH = "/v1/health"


class Node:
    __slots__ = ("healthy", "host_line", "outstanding", "partition", "url")

    def __init__(self, partition: str, url: str) -> None:
        self.partition = partition
        self.url = url.rstrip("/")
        # the Host header of requests sent to it
        self.host_line = f"Host: {urlsplit(self.url).netloc}\r\n".encode()
        self.healthy: bool | None = None  # None: not checked yet
        self.outstanding = 0  # requests in flight, for the least-outstanding choice
        # Read when scraped: nothing to update per request.
        NODE_OUTSTANDING.labels(partition, self.url).set_function(lambda: self.outstanding)

    def mark(self, healthy: bool) -> None:
        if self.healthy is not healthy:
            log.info(
                "node_health_changed", partition=self.partition, node=self.url, healthy=healthy
            )
        self.healthy = healthy
        NODE_HEALTHY.labels(self.partition, self.url).set(1 if healthy else 0)


class NodePool:
    """One partition's nodes."""

    def __init__(self, partition: str, urls: Collection[str] = ()) -> None:
        self.partition = partition
        self.nodes: list[Node] = [Node(partition, url) for url in urls]

    def set_urls(self, urls: Collection[str]) -> None:
        """Follow the catalog's node list, keeping what is known about nodes that stay."""
        known = {n.url: n for n in self.nodes}
        self.nodes = [known.get(u.rstrip("/")) or Node(self.partition, u) for u in urls]

    def choose(self, exclude: Collection[str] = ()) -> Node | None:
        """The healthy node with the fewest requests in flight, else any node not yet tried."""
        if len(self.nodes) == 1 and not exclude:
            return self.nodes[0]  # what the rules below choose too, without building lists
        candidates = [n for n in self.nodes if n.url not in exclude]
        healthy = [n for n in candidates if n.healthy]
        pool = healthy or [n for n in candidates if n.healthy is None] or candidates
        if not pool:
            return None
        return min(pool, key=lambda n: n.outstanding)

    @property
    def healthy(self) -> bool:
        return any(n.healthy for n in self.nodes)


class NodePools:
    """A pool per partition, following the catalog, with one background health loop."""

    def __init__(
        self,
        partitions: Callable[[], Mapping[str, Partition]],
        upstreams: Upstreams,
        *,
        interval: float = 2.0,
        timeout: float = 1.0,
    ) -> None:
        self._partitions = partitions
        self._upstreams = upstreams
        self.interval = interval
        self.timeout = timeout
        self.pools: dict[str, NodePool] = {}
        self._seen: dict[str, tuple[str, ...]] = {}
        self._task: asyncio.Task[None] | None = None

    def pool(self, partition: Partition) -> NodePool:
        pool = self.pools.get(partition.name)
        if pool is None:
            pool = self.pools[partition.name] = NodePool(partition.name, partition.nodes)
            self._seen[partition.name] = partition.nodes
        elif self._seen.get(partition.name) != partition.nodes:
            pool.set_urls(partition.nodes)
            self._seen[partition.name] = partition.nodes
        return pool

    def any_pool(self) -> NodePool | None:
        """A pool with a healthy node if there is one (for requests that name no queue)."""
        pools = [self.pool(p) for p in sorted(self._partitions().values(), key=lambda p: p.name)]
        pools = [p for p in pools if p.nodes]
        return next((p for p in pools if p.healthy), pools[0] if pools else None)

    # --- health ----------------------------------------------------------------------------------

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="node-health")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            await self.check_all()
            await asyncio.sleep(self.interval)

    async def check_all(self) -> None:
        current = self._partitions()
        for name in set(self.pools) - set(current):
            del self.pools[name]
            self._seen.pop(name, None)
        nodes = [n for p in current.values() for n in self.pool(p).nodes]
        await asyncio.gather(*(self._check(n) for n in nodes))

    async def _check(self, node: Node) -> None:
        head = b"GET %s HTTP/1.1\r\n%s\r\n" % (HEALTH_PATH.encode(), node.host_line)
        try:
            async with asyncio.timeout(self.timeout):
                answer = await self._upstreams.exchange(node.url, head, b"", "GET")
            healthy = answer.status == 204
        except (NotSent, Lost, TimeoutError):
            healthy = False
        HEALTH_CHECKS.labels("healthy" if healthy else "unhealthy").inc()
        node.mark(healthy)

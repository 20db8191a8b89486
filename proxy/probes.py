"""The proxy's own probes, for orchestrators and load balancers: they need no header, no token
and no node, so they tell about this process and nothing behind it.

`/healthz` answers while the event loop does. `/readyz` answers 200 once the placement cache
has loaded the catalog and until shutdown begins, with what the proxy knows as its body; an etcd
outage leaves it ready, since cached queues are still served.
"""

from __future__ import annotations

from aiohttp import web

from catalog.cache import PlacementCache, WatchState
from proxy.nodes import NodePools

PROBES = ("/healthz", "/readyz")
SERVING = (WatchState.LIVE, WatchState.RECONNECTING)


class Probes:
    def __init__(self, cache: PlacementCache, pools: NodePools) -> None:
        self.cache = cache
        self.pools = pools

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/healthz", self.live, allow_head=True),
            web.get("/readyz", self.ready, allow_head=True),
        ]

    async def live(self, request: web.Request) -> web.Response:
        return web.Response(status=204)

    async def ready(self, request: web.Request) -> web.Response:
        partitions = {}
        for partition in self.cache.partitions.values():
            nodes = self.pools.pool(partition).nodes
            partitions[partition.name] = {
                "nodes": len(nodes),
                "healthy": sum(1 for n in nodes if n.healthy),
            }
        body = {
            "catalog": {"watch": str(self.cache.state), "revision": self.cache.revision},
            "placements_cached": len(self.cache),
            "placements_filled": self.cache.filled.is_set(),
            "partitions": partitions,
        }
        return web.json_response(body, status=200 if self.cache.state in SERVING else 503)

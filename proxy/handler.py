"""The proxy's request path: find the owning partition, forward, follow fences.

One handler serves every route of every API version. Requests that name no queue (`/`, home
documents, ping, health) go to any healthy node.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from urllib.parse import quote

from aiohttp import web
from multidict import CIMultiDict

from catalog.records import Placement
from marconi.logs import get_logger
from proxy.errors import PartitionUnavailable, QueueFrozen
from proxy.fence import FrozenBuffer
from proxy.forward import Forwarder, Outgoing
from proxy.routing import Router, Target, may_create
from proxy.settings import ProxySettings

log = get_logger("proxy")
MAX_REROUTES = 8  # placements followed for one request (each after a fence)


@dataclass(frozen=True, slots=True)
class Proxy:
    """What the handlers work with; built once per application."""

    settings: ProxySettings
    router: Router
    forwarder: Forwarder
    buffer: FrozenBuffer

    async def any_node(self, request: web.Request) -> web.StreamResponse:
        """A request that names no queue: any healthy node answers it."""
        out = await Outgoing.read(request)
        pool = self.forwarder.pools.any_pool()
        if pool is None:
            raise PartitionUnavailable("No partition is registered in the catalog.")
        async with self.forwarder.exchange_with(pool, out) as upstream:
            return await self.forwarder.relay(request, upstream)

    async def queue(self, request: web.Request) -> web.StreamResponse:
        """A request that names a queue: to the queue's partition, placing it first if new."""
        target = Target.of(request)
        out = await Outgoing.read(request)
        placement = await self.router.placement(target.project, target.queue)
        placed_here = False
        if placement is None and target.creates and may_create(request, target):
            placement = await self.router.place(target.project, target.queue)
            placed_here = True
        response = await self._forward(request, target, out, placement)
        if target.deletes and response.status == 204:
            await self.router.unplace(target.project, target.queue)
        elif placed_here and 400 <= response.status < 500:
            await self._undo_placement(target, placement)
        return response

    async def _forward(
        self, request: web.Request, target: Target, out: Outgoing, placement: Placement | None
    ) -> web.StreamResponse:
        deadline = asyncio.get_running_loop().time() + self.settings.frozen_max_wait
        for _ in range(MAX_REROUTES):
            partition = self.router.partition_for(target.project, target.queue, placement)
            async with self.forwarder.exchange(partition, out) as upstream:
                fence = upstream.fence
                if fence is None:
                    return await self.forwarder.relay(request, upstream)
            log.info(
                "route_fenced",
                queue=target.queue,
                project=target.project,
                partition=partition.name,
                reason=fence,
            )
            placement = await self.buffer.after_fence(
                target.project, target.queue, placement, fence, deadline
            )
        raise QueueFrozen(f"Queue {target.queue} kept moving; please try again in a few seconds.")

    async def _undo_placement(self, target: Target, placement: Placement | None) -> None:
        """The node refused the request that was to create the queue: drop the placement this
        request made, unless the queue exists after all (another request created it)."""
        if placement is None:
            return
        headers = {"X-Project-ID": target.project} if target.project else {}
        probe = Outgoing("HEAD", f"/v1/queues/{quote(target.queue)}", CIMultiDict(headers), b"")
        partition = self.router.partition_for(target.project, target.queue, placement)
        async with self.forwarder.exchange(partition, probe) as upstream:
            exists = upstream.status == 204
        if not exists:
            await self.router.unplace(target.project, target.queue)

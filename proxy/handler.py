"""The proxy's request path: find the owning partition, forward, follow fences.

The same steps serve requests from both servers in front of them: the lean HTTP/1.1 path
(`proxy.front`) and aiohttp's (`queue_route`, `any_node_route`). Requests that name no queue
(`/`, home documents, ping, health) go to any healthy node.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from dataclasses import dataclass
from urllib.parse import quote

from aiohttp import web
from multidict import CIMultiDict

from catalog.records import Partition, Placement
from ground.logs import get_logger
from proxy.errors import PartitionUnavailable, QueueFrozen
from proxy.fence import FrozenBuffer
from proxy.forward import Forwarder, Outgoing, answer_response
from proxy.routing import Router, Target, may_create
from proxy.settings import ProxySettings
from proxy.upstream import Answer
from wire.topics import described, is_topic, topic_name

log = get_logger("proxy")
MAX_REROUTES = 8  # placements followed for one request (each after a fence)
PROBE_CLIENT = "00000000-0000-4000-8000-000000000000"  # the Client-ID of the proxy's own probes


@dataclass(frozen=True, slots=True)
class RequestPath:
    """The request path after the steps every request passes (`proxy.steps`): placing new
    queues, forwarding to the owning partition, following fences; built once per application."""

    settings: ProxySettings
    router: Router
    forwarder: Forwarder
    buffer: FrozenBuffer

    async def any_node(self, out: Outgoing) -> Answer:
        """A request that names no queue: any healthy node answers it."""
        pool = self.forwarder.pools.any_pool()
        if pool is None:
            raise PartitionUnavailable("No partition is registered in the catalog.")
        return await self.forwarder.send_to(pool, out)

    async def queue(self, target: Target, out: Outgoing, exclude: Collection[str] = ()) -> Answer:
        """A request that names a queue: to the queue's partition, placing it first if new.

        `exclude`: nodes not to try first (one just lost the request).
        """
        placement = await self.router.placement(target.project, target.queue)
        placed_here = False
        if placement is None and target.creates and may_create(out.headers, target):
            placement = await self.router.place(target.project, target.queue)
            placed_here = True
        answer = await self.forward(target, out, placement, exclude=exclude)
        if target.deletes and answer.status == 204:
            await self.router.unplace(target.project, target.queue)
        elif placed_here and 400 <= answer.status < 500:
            await self._undo_placement(target, placement)
        return answer

    # --- through aiohttp's server ------------------------------------------------------------

    async def any_node_route(self, request: web.Request) -> web.StreamResponse:
        return answer_response(await self.any_node(await Outgoing.read(request)))

    async def queue_route(self, request: web.Request) -> web.StreamResponse:
        target = Target.of(request)
        return answer_response(await self.queue(target, await Outgoing.read(request)))

    # ------------------------------------------------------------------------------------------

    async def forward(
        self,
        target: Target,
        out: Outgoing,
        placement: Placement | None,
        *,
        fenced: tuple[Partition, Answer] | None = None,
        exclude: Collection[str] = (),
    ) -> Answer:
        """`out` to the partition of `placement`, following the nodes' fences; `fenced`: the
        fenced answer a partition already gave (the lean path's first try)."""
        deadline = None  # for the waits behind fences, from the first fence on
        for _ in range(MAX_REROUTES):
            if fenced is None:
                partition = self.router.partition_for(target.project, target.queue, placement)
                answer = await self.forwarder.send(partition, out, exclude)
                exclude = ()
            else:
                (partition, answer), fenced = fenced, None
            if answer.fence is None:
                return answer
            log.info(
                "route_fenced",
                queue=target.queue,
                project=target.project,
                partition=partition.name,
                reason=answer.fence,
            )
            if deadline is None:
                deadline = asyncio.get_running_loop().time() + self.settings.frozen_max_wait
            placement = await self.buffer.after_fence(
                target.project, target.queue, placement, answer.fence, deadline
            )
        raise QueueFrozen(
            f"{described(target.queue, capital=True)} kept moving; please try again in a few "
            "seconds."
        )

    async def _undo_placement(self, target: Target, placement: Placement | None) -> None:
        """The node refused the request that was to create the queue: drop the placement this
        request made, unless the queue exists after all (another request created it)."""
        if placement is None:
            return
        headers = {"X-Project-ID": target.project} if target.project else {}
        if is_topic(target.queue):  # v2 only: a topic's GET answers 200 when it exists
            headers["Client-ID"] = PROBE_CLIENT
            path, exists = f"/v2/topics/{quote(topic_name(target.queue))}", 200
            probe = Outgoing("GET", path, CIMultiDict(headers), b"")
        else:
            path, exists = f"/v1/queues/{quote(target.queue)}", 204
            probe = Outgoing("HEAD", path, CIMultiDict(headers), b"")
        partition = self.router.partition_for(target.project, target.queue, placement)
        if (await self.forwarder.send(partition, probe)).status != exists:
            await self.router.unplace(target.project, target.queue)

"""Following a node's fence: refresh the placement, and hold requests while a queue is frozen.

A node answers 503 with `X-Marconi-Fence` when it refuses a queue that is frozen for a migration
or has moved away; the write was not applied, so it is safe to send it again. The proxy re-reads
that placement: if it now names another partition or epoch, the request goes there at once.
While the queue is frozen (or the catalog has not caught up yet), the request waits in a bounded
buffer for the placement to change: woken by the cache's watch, and re-reading the placement now
and then in case the watch is down. A fence that lifts itself (`wire.fences`: a freeze whose
worker vanished) releases the requests it holds at once, to the same node again. Past the
buffer's size or wait, the client gets a 503.
"""

from __future__ import annotations

import asyncio

from prometheus_client import Counter, Histogram

from catalog.cache import PlacementCache
from catalog.records import Placement, PlacementState
from proxy.errors import QueueFrozen
from wire.fences import parse_fence

POLL = 0.2  # seconds between re-reads while waiting, should the watch miss the change
LIFT_MARGIN = 0.01  # seconds past a fence's announced lifting before the request goes again

STALE_ROUTES = Counter(
    "marconi_proxy_stale_route_retries_total",
    "Requests sent again after a node fenced them, by the node's reason.",
    ["reason"],
)
FROZEN_WAITS = Counter(
    "marconi_proxy_frozen_waits_total",
    "Requests held for a frozen queue, by outcome.",
    ["outcome"],
)
FROZEN_WAIT_SECONDS = Histogram(
    "marconi_proxy_frozen_wait_seconds",
    "Time requests spent held for a frozen queue.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)


class FrozenBuffer:
    def __init__(self, cache: PlacementCache, size: int, max_wait: float) -> None:
        self.cache = cache
        self.size = size
        self.max_wait = max_wait
        self.waiting = 0

    async def after_fence(
        self, project: str, queue: str, routed: Placement | None, reason: str, deadline: float
    ) -> Placement | None:
        """The placement to try next, once it differs from `routed` and is not frozen.

        `deadline` (loop time) bounds the whole request's waiting. Raises `QueueFrozen`.
        """
        reason, lifts = parse_fence(reason)
        STALE_ROUTES.labels(reason).inc()
        current = await self.cache.refresh(project, queue)
        if _moved_on(current, routed):
            return current
        # Frozen, or the catalog has not caught up with the node: wait for the next change, or
        # for the node's fence to lift itself (a freeze whose worker vanished), then try again.
        lifted = None
        if lifts is not None:
            lifted = asyncio.get_running_loop().time() + max(lifts, LIFT_MARGIN) + LIFT_MARGIN
        return await self._hold(project, queue, current, deadline, lifted)

    async def _hold(
        self,
        project: str,
        queue: str,
        seen: Placement | None,
        deadline: float,
        lifted: float | None = None,
    ) -> Placement | None:
        if self.waiting >= self.size:
            FROZEN_WAITS.labels("overflow").inc()
            raise QueueFrozen(_frozen(queue, "too many requests are waiting for it"))
        loop = asyncio.get_running_loop()
        started = loop.time()
        self.waiting += 1
        until = deadline if lifted is None else min(deadline, lifted)
        try:
            async with asyncio.timeout_at(until):
                while True:
                    changed = self.cache.changed  # replaced at every change: take it first
                    current = await self.cache.refresh(project, queue)
                    if _moved_on(current, seen):
                        FROZEN_WAITS.labels("released").inc()
                        return current
                    try:
                        async with asyncio.timeout(POLL):
                            await changed.wait()
                    except TimeoutError:
                        pass
        except TimeoutError:
            if until < deadline:  # the node's fence has lifted: the same partition again
                FROZEN_WAITS.labels("lifted").inc()
                return seen
            FROZEN_WAITS.labels("timeout").inc()
            raise QueueFrozen(_frozen(queue, "it stayed frozen too long")) from None
        finally:
            self.waiting -= 1
            FROZEN_WAIT_SECONDS.observe(loop.time() - started)


def _moved_on(current: Placement | None, before: Placement | None) -> bool:
    """Worth another try: the placement changed since `before`, and is not frozen."""
    if current is not None and current.state is PlacementState.FROZEN:
        return False
    return current != before


def _frozen(queue: str, why: str) -> str:
    return (
        f"Queue {queue} is being moved and could not take the request ({why}). "
        "Please try again in a few seconds."
    )

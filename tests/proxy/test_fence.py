"""Fencing: a node refuses a frozen or moved queue; the proxy holds, re-routes, or gives up."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web

from catalog.catalog import Catalog
from catalog.records import Placement, PlacementState
from node.api.errors import error_response
from tests.conftest import FakeClock
from tests.proxy.cluster import Cluster, cluster
from tests.proxy.conftest import PROJECT, call

Q = "/v2/queues/moving"


def fencing(catalog_of: Callable[[], Catalog]) -> Callable[[web.Application, str], web.Application]:
    """Wrap a node so that it refuses a queue whose placement is frozen or names another
    partition, as a node under a migration does (503, Retry-After, X-Marconi-Fence)."""

    def wrap(app: web.Application, partition: str) -> web.Application:
        @web.middleware
        async def fence(
            request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
        ) -> web.StreamResponse:
            queue = request.match_info.get("queue_name")
            if queue is not None:
                placement = await catalog_of().placement(
                    request.headers.get("X-Project-ID", ""), queue
                )
                reason = None
                if placement is not None and placement.state is PlacementState.FROZEN:
                    reason = "frozen"
                elif placement is not None and placement.partition != partition:
                    reason = "moved"
                if reason:
                    return error_response(
                        503,
                        "Service temporarily unavailable",
                        f"Queue {queue} is {reason}",
                        {"Retry-After": "1", "X-Marconi-Fence": reason},
                    )
            return await handler(request)

        app.middlewares.insert(0, fence)
        return app

    return wrap


async def rewrite(c: Cluster, queue: str, **changes: object) -> Placement:
    """Compare-and-swap the placement, as a migration's switch does."""
    key = c.catalog.keys.placement(PROJECT, queue)
    found = await c.catalog.store.get(key)
    assert found is not None
    updated = dataclasses.replace(Placement.from_json(found.value), **changes)  # type: ignore[arg-type]
    await c.catalog.store.replace(key, updated.to_json(), found.mod_revision)
    return updated


def fenced_cluster(tmp_path: Path, clock: FakeClock, **settings: object):  # type: ignore[no-untyped-def]
    holder: list[Catalog] = []
    ctx = cluster(tmp_path, clock, wrap_node=fencing(lambda: holder[0]), **settings)
    return holder, ctx


async def test_held_request_succeeds_on_the_new_partition(tmp_path: Path, clock: FakeClock) -> None:
    holder, ctx = fenced_cluster(tmp_path, clock)
    async with ctx as c:
        holder.append(c.catalog)
        assert (await call(c.proxy, "PUT", Q))[0] == 201
        source = (await c.catalog.placement(PROJECT, "moving")).partition  # type: ignore[union-attr]
        target = "p2" if source == "p1" else "p1"
        await rewrite(c, "moving", state=PlacementState.FROZEN)

        post = asyncio.create_task(
            call(c.proxy, "POST", f"{Q}/messages", json={"messages": [{"body": "held"}]})
        )
        await asyncio.sleep(0.3)
        assert not post.done()  # held while frozen
        assert c.state().buffer.waiting == 1
        # The switch: the copy exists on the target, the placement names it at epoch + 1.
        await c.partitions[target].deps.storage.queues.create(PROJECT, "moving", None)
        await rewrite(c, "moving", partition=target, epoch=2, state=PlacementState.ACTIVE)
        status, body, _ = await asyncio.wait_for(post, 2)
        assert status == 201, body
        assert (await c.partitions[target].deps.storage.queues.stats(PROJECT, "moving")).total == 1
        assert (await c.partitions[source].deps.storage.queues.stats(PROJECT, "moving")).total == 0


async def test_stale_route_is_refreshed_and_retried(tmp_path: Path, clock: FakeClock) -> None:
    """The cache still names the old partition (its watch is behind): the node says "moved"."""
    holder, ctx = fenced_cluster(tmp_path, clock)
    async with ctx as c:
        holder.append(c.catalog)
        assert (await call(c.proxy, "PUT", Q))[0] == 201
        placement = await c.catalog.placement(PROJECT, "moving")
        assert placement is not None
        target = "p2" if placement.partition == "p1" else "p1"
        await c.partitions[target].deps.storage.queues.create(PROJECT, "moving", None)
        cache = c.state().router.cache
        await cache.stop()  # no watch: only a refresh can tell the proxy
        await rewrite(c, "moving", partition=target, epoch=2)
        assert (await cache.placement(PROJECT, "moving")) == placement  # stale
        status, _, _ = await call(
            c.proxy, "POST", f"{Q}/messages", json={"messages": [{"body": 1}]}
        )
        assert status == 201
        assert (await c.partitions[target].deps.storage.queues.stats(PROJECT, "moving")).total == 1


async def test_frozen_too_long_gives_503(tmp_path: Path, clock: FakeClock) -> None:
    holder, ctx = fenced_cluster(tmp_path, clock, frozen_max_wait=0.3)
    async with ctx as c:
        holder.append(c.catalog)
        assert (await call(c.proxy, "PUT", Q))[0] == 201
        await rewrite(c, "moving", state=PlacementState.FROZEN)
        started = asyncio.get_running_loop().time()
        status, body, headers = await call(
            c.proxy, "POST", f"{Q}/messages", json={"messages": [{"body": 1}]}
        )
        assert 0.25 < asyncio.get_running_loop().time() - started < 2
        assert status == 503 and set(body) == {"title", "description"}
        assert body["title"] == "Service temporarily unavailable"
        assert headers["Retry-After"] == "1"
        assert c.state().buffer.waiting == 0


async def test_buffer_overflow_gives_503_at_once(tmp_path: Path, clock: FakeClock) -> None:
    holder, ctx = fenced_cluster(tmp_path, clock, frozen_buffer=2, frozen_max_wait=1.0)
    async with ctx as c:
        holder.append(c.catalog)
        assert (await call(c.proxy, "PUT", Q))[0] == 201
        await rewrite(c, "moving", state=PlacementState.FROZEN)
        held = [asyncio.create_task(call(c.proxy, "GET", f"{Q}/stats")) for _ in range(2)]
        await asyncio.sleep(0.2)
        assert c.state().buffer.waiting == 2
        started = asyncio.get_running_loop().time()
        status, body, headers = await call(c.proxy, "GET", f"{Q}/stats")
        assert asyncio.get_running_loop().time() - started < 0.5
        assert status == 503 and set(body) == {"title", "description"}
        assert "Retry-After" in headers
        await rewrite(c, "moving", state=PlacementState.ACTIVE)  # unfrozen: the held go through
        assert [r[0] for r in await asyncio.gather(*held)] == [200, 200]


async def test_unfrozen_in_place_releases_a_request_routed_before_the_freeze(
    tmp_path: Path, clock: FakeClock
) -> None:
    """A cancelled migration unfreezes the queue where it was, at the same epoch."""
    holder, ctx = fenced_cluster(tmp_path, clock)
    async with ctx as c:
        holder.append(c.catalog)
        assert (await call(c.proxy, "PUT", Q))[0] == 201
        await c.state().router.cache.stop()  # the proxy never hears of the freeze by watch
        await rewrite(c, "moving", state=PlacementState.FROZEN)
        post = asyncio.create_task(
            call(c.proxy, "POST", f"{Q}/messages", json={"messages": [{"body": 1}]})
        )
        await asyncio.sleep(0.3)
        assert not post.done()
        await rewrite(c, "moving", state=PlacementState.ACTIVE)
        status, _, _ = await asyncio.wait_for(post, 2)
        assert status == 201

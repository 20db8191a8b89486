"""The proxy's aiohttp application: routes for every API version, the admin API, metrics, and
the lifecycle of the catalog, the placement cache, the node pools and their connections.

Served by `proxy.front.ProxyRunner`, queue routes take the lean path (`app[LEAN]`) first; the
same steps run there as in this app's middlewares, and the same hooks.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence

from aiohttp import web

from catalog.cache import PlacementCache
from catalog.catalog import Catalog
from catalog.errors import CatalogError, CatalogUnavailable, Conflict
from catalog.etcd import EtcdStore
from catalog.keys import Keys
from catalog.registry import Registry
from catalog.store import CatalogStore
from ground.logs import get_logger
from ground.metrics import Recorder, metrics_handler
from proxy.admin import Admin, admin_role
from proxy.admin_migrations import MigrationAdmin
from proxy.auth import authentication
from proxy.fence import FrozenBuffer
from proxy.forward import Forwarder
from proxy.front import LEAN
from proxy.handler import RequestPath
from proxy.hooks import Hook
from proxy.limits import ProjectLimits, limits_hook
from proxy.listing import CatalogListing
from proxy.load import LoadReader
from proxy.nodes import NodePools
from proxy.piles import NODE_PATH, PileReader, not_for_clients
from proxy.pipeline import LeanPath
from proxy.policy import PlacementPolicy
from proxy.probes import Probes
from proxy.routing import QUEUE, QUEUE_ROUTES, TOPIC, TOPIC_ROUTES, VERSION, Router
from proxy.settings import ProxySettings
from proxy.steps import Steps
from proxy.upstream import Upstreams
from wire import openapi
from wire.answers import zaqar_header_names
from wire.deadlines import oversized_middleware
from wire.limits import MAX_BODY

log = get_logger("proxy")
REQUEST_PATH = web.AppKey("request_path", RequestPath)


def create_app(
    settings: ProxySettings, store: CatalogStore | None = None, extra_hooks: Sequence[Hook] = ()
) -> web.Application:
    """The whole proxy over the catalog at `settings.catalog_url` (or over `store`, in tests).

    Hooks run on every client request before it is routed (`proxy.hooks`): authentication's,
    the per-project limits', then `extra_hooks`, in that order. Call from within a running event
    loop (the node connections belong to it).
    """
    store = store if store is not None else EtcdStore(settings.catalog_url)
    keys = Keys(settings.key_prefix)
    catalog = Catalog(store, keys)
    cache = PlacementCache(store, keys, capacity=settings.cache_capacity)
    upstreams = Upstreams(
        connect_timeout=settings.connect_timeout, read_timeout=settings.upstream_timeout
    )
    pools = NodePools(
        lambda: cache.partitions,
        upstreams,
        interval=settings.health_interval,
        timeout=settings.health_timeout,
    )
    forwarder = Forwarder(upstreams, pools)
    router = Router(catalog, cache, PlacementPolicy(settings.placement_key))
    path = RequestPath(
        settings,
        router,
        forwarder,
        FrozenBuffer(cache, settings.frozen_buffer, settings.frozen_max_wait),
    )
    listing = CatalogListing(router, forwarder)
    piles = PileReader(forwarder)
    admin = Admin(catalog, cache, router, pools, piles)
    registry = Registry(catalog, settings.migration_limits)
    reader = LoadReader(catalog, forwarder, stats_limit=settings.rebalance_stats_limit)
    migrations = MigrationAdmin(catalog, registry, reader, piles)
    auth = authentication(settings)

    # Before routing, in order: who the request comes from (the project and roles), then the
    # project's limits, then any hooks the caller adds.
    hooks = [*auth.hooks, *extra_hooks]
    if settings.limits.enabled:
        hooks.insert(len(auth.hooks), limits_hook(ProjectLimits(settings.limits)))
    # The same steps, in the same order, on both servers: aiohttp's runs them as middlewares,
    # the lean path (proxy.pipeline) calls them.
    steps = Steps(hooks, Recorder("proxy"), auth.reads_body)
    # A declared body over MAX_BODY is refused at once and its connection closed (the lean
    # path hands such a request here).
    app = web.Application(
        middlewares=[*steps.middlewares(), oversized_middleware(MAX_BODY), admin_role],
        client_max_size=MAX_BODY,
    )
    app[REQUEST_PATH] = path
    app[LEAN] = LeanPath(path, steps)
    # Header names as Zaqar's server writes them; the lean path writes its own that way.
    app.on_response_prepare.append(zaqar_header_names)
    app.router.add_get("/metrics", metrics_handler, allow_head=False)
    app.router.add_get(openapi.PATH, openapi.handle, allow_head=False)
    app.router.add_routes(Probes(cache, pools).routes())
    app.router.add_routes(admin.routes())
    app.router.add_routes(migrations.routes())
    app.router.add_get(VERSION + "/queues", listing.handle, allow_head=False)
    app.router.add_get("/{version:v2}/{kind:topics}", listing.handle, allow_head=False)
    for suffix in QUEUE_ROUTES:
        app.router.add_route("*", QUEUE + suffix, path.queue_route)
    for suffix in TOPIC_ROUTES:
        app.router.add_route("*", TOPIC + suffix, path.queue_route)
    app.router.add_route("*", NODE_PATH, not_for_clients)
    app.router.add_route("*", "/{tail:.*}", path.any_node_route)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        # An older release's keys: those of "no project" (the only ones an older proxy still
        # writes, and few) before any lookup; the rest of the catalog, where only the rare
        # names with '%' or '/' change key, behind the readiness, a page at a time.
        moved = await upgrade_layout(catalog, whole=False)
        if moved:
            log.info("catalog_keys_upgraded", moved=moved)
        behind = await catalog.layout_behind()
        whole = asyncio.create_task(upgrade_whole_layout(catalog)) if behind else None
        await cache.start()
        await pools.start()
        log.info(
            "proxy_ready",
            catalog=settings.catalog_url,
            partitions=len(cache.partitions),
            revision=cache.revision,
        )
        yield
        # Shutdown, in order. aiohttp has already stopped accepting and drained in-flight
        # requests (up to the runner's shutdown timeout); now the health loop stops, the node
        # connections close, the cache stops its watch, and the store closes.
        if whole is not None:
            whole.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await whole
        await pools.stop()
        await upstreams.close()
        await cache.stop()
        await store.close()
        log.info("proxy_stopped")

    app.cleanup_ctx.append(lifecycle)
    app.cleanup_ctx.append(auth.lifecycle)
    return app


async def upgrade_whole_layout(catalog: Catalog, retry: float = 5.0) -> None:
    """The whole catalog's keys moved to this layout, in the background: retried until done."""
    while True:
        try:
            moved = await catalog.upgrade_layout(whole=True)
        except (CatalogError, Conflict) as exc:
            log.warning("catalog_upgrade_retry", error=str(exc))
            await asyncio.sleep(retry)
            continue
        log.info("catalog_layout_upgraded", moved=moved)
        return


async def upgrade_layout(
    catalog: Catalog, *, whole: bool | None = None, wait: float = 10.0, retry: float = 0.5
) -> int:
    """`catalog.upgrade_layout(whole=...)`, retried while etcd does not answer, for `wait`
    seconds (as the cache waits for its first load); however long the scan itself takes."""
    deadline = asyncio.get_running_loop().time() + wait
    while True:
        try:
            return await catalog.upgrade_layout(whole=whole)
        except CatalogUnavailable:
            if asyncio.get_running_loop().time() >= deadline:
                raise
            await asyncio.sleep(retry)

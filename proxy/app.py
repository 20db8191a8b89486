"""The proxy's aiohttp application: routes for every API version, the admin API, metrics, and
the lifecycle of the catalog, the placement cache, the node pools and the client session."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from catalog.cache import PlacementCache
from catalog.catalog import Catalog
from catalog.etcd import EtcdStore
from catalog.keys import Keys
from catalog.registry import Registry
from catalog.store import CatalogStore
from marconi.logs import get_logger
from marconi.metrics import metrics_handler, request_metrics
from node.api.app import MAX_BODY
from node.api.requestid import request_id_middleware
from proxy.admin import Admin, admin_role
from proxy.admin_migrations import MigrationAdmin
from proxy.errors import error_middleware
from proxy.fence import FrozenBuffer
from proxy.forward import Forwarder, session
from proxy.handler import Proxy
from proxy.listing import QueueListing
from proxy.load import LoadReader
from proxy.nodes import NodePools
from proxy.policy import PlacementPolicy
from proxy.routing import QUEUE, QUEUE_ROUTES, VERSION, Router
from proxy.settings import ProxySettings

log = get_logger("proxy")
PROXY = web.AppKey("proxy", Proxy)


def create_app(settings: ProxySettings, store: CatalogStore | None = None) -> web.Application:
    """The whole proxy over the catalog at `settings.catalog_url` (or over `store`, in tests).

    Call from within a running event loop (the client session belongs to it).
    """
    store = store if store is not None else EtcdStore(settings.catalog_url)
    keys = Keys(settings.key_prefix)
    catalog = Catalog(store, keys)
    cache = PlacementCache(store, keys, capacity=settings.cache_capacity)
    client = session(settings.connect_timeout, settings.upstream_timeout)
    pools = NodePools(
        lambda: cache.partitions,
        client,
        interval=settings.health_interval,
        timeout=settings.health_timeout,
    )
    forwarder = Forwarder(client, pools)
    router = Router(catalog, cache, PlacementPolicy(settings.placement_key))
    proxy = Proxy(
        settings,
        router,
        forwarder,
        FrozenBuffer(cache, settings.frozen_buffer, settings.frozen_max_wait),
    )
    listing = QueueListing(router, forwarder)
    admin = Admin(catalog, cache, router, pools)
    registry = Registry(catalog, settings.migration_limits)
    migrations = MigrationAdmin(catalog, registry, LoadReader(catalog, forwarder))

    app = web.Application(
        middlewares=[request_id_middleware, request_metrics("proxy"), error_middleware, admin_role],
        client_max_size=MAX_BODY,
    )
    app[PROXY] = proxy
    app.router.add_get("/metrics", metrics_handler, allow_head=False)
    app.router.add_routes(admin.routes())
    app.router.add_routes(migrations.routes())
    app.router.add_get(VERSION + "/queues", listing.handle, allow_head=False)
    for suffix in QUEUE_ROUTES:
        app.router.add_route("*", QUEUE + suffix, proxy.queue)
    app.router.add_route("*", "/{tail:.*}", proxy.any_node)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
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
        # requests (up to the runner's shutdown timeout); now the health loop stops, the client
        # session closes its node connections, the cache stops its watch, and the store closes.
        await pools.stop()
        await client.close()
        await cache.stop()
        await store.close()
        log.info("proxy_stopped")

    app.cleanup_ctx.append(lifecycle)
    return app

"""The node's aiohttp application: versions, middlewares, and the partition's lifecycle."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

from aiohttp import web
from prometheus_client import Gauge

from ground.logs import get_logger
from ground.metrics import metrics_handler, request_metrics
from ground.requestid import request_id_middleware
from node.api import v2
from node.api.deps import Deps
from node.api.errors import error_middleware
from node.api.homedoc import VERSIONS
from node.api.piles import Piles
from node.notify.service import delivery_lifecycle
from node.notify.settings import NotifySettings
from wire.answers import dumps, zaqar_header_names
from wire.checks import with_checks
from wire.deadlines import oversized_middleware
from wire.limits import MAX_BODY

log = get_logger("node")
DEPS = web.AppKey("deps", Deps)
# The partition a node serves, as a label to join its other series on (`* on(instance)
# group_left(partition) marconi_node_info`): the request metrics stay shared with the proxy.
INFO = Gauge("marconi_node_info", "1, labelled with the partition this node serves.", ["partition"])


async def versions(request: web.Request) -> web.Response:
    return web.Response(status=300, body=dumps(VERSIONS), content_type="application/json")


def mount(
    app: web.Application,
    prefix: str,
    routes: list[web.RouteDef],
    *,
    ids_required: bool,
    signed_url_key: str | None = None,
) -> None:
    """Add one API version's route table under `prefix`, each behind the version's checks."""
    for route in routes:
        assert isinstance(route, web.RouteDef)
        hooked = with_checks(
            route.handler, ids_required=ids_required, signed_url_key=signed_url_key
        )
        web.RouteDef(route.method, prefix + route.path, hooked, route.kwargs).register(app.router)


def create_app(
    deps: Deps, *, gc_interval: float = 30.0, notify: NotifySettings | None = None
) -> web.Application:
    """The whole node: `/`, `/metrics`, `/piles` (`node.api.piles`), and each API version under
    its prefix; with `notify`, the deliverer of the partition's notifications."""
    from node.api import v1, v1_1

    app = web.Application(
        middlewares=[
            request_id_middleware,
            request_metrics("node"),
            oversized_middleware(MAX_BODY),  # declared over it: 400 at once, and close
            error_middleware,
        ],
        client_max_size=MAX_BODY,  # far above the API's limits, which answer in Zaqar's words
    )
    app[DEPS] = deps
    INFO.labels(deps.partition).set(1)
    app.router.add_get("/", versions, allow_head=False)
    app.router.add_get("/metrics", metrics_handler, allow_head=False)
    app.router.add_get("/piles", Piles(deps.storage).get, allow_head=False)
    key = deps.signed_url_key
    mount(app, "/v2", v2.routes(deps), ids_required=True, signed_url_key=key)
    mount(app, "/v1.1", v1_1.routes(deps), ids_required=True, signed_url_key=key)
    mount(app, "/v1", v1.routes(deps), ids_required=False, signed_url_key=key)
    app.on_response_prepare.append(zaqar_header_names)
    app.cleanup_ctx.append(_storage_lifecycle(deps, gc_interval))
    if notify is not None:
        app.cleanup_ctx.append(delivery_lifecycle(deps.storage, notify, deps.clock, deps.cipher))
    return app


def _storage_lifecycle(
    deps: Deps, gc_interval: float
) -> Callable[[web.Application], AsyncIterator[None]]:
    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        collector = asyncio.create_task(_collect_garbage(deps, gc_interval))
        yield
        # Shutdown, in order: aiohttp has stopped accepting and drained in-flight requests;
        # stop the collector, then close the storage so its last writes are flushed.
        collector.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await collector
        await deps.storage.close()

    return lifecycle


async def _collect_garbage(deps: Deps, interval: float) -> None:
    """Remove expired messages and claims now and then; queries already hide them."""
    while True:
        await asyncio.sleep(interval)
        try:
            removed = await deps.storage.collect_garbage()
        except Exception:
            log.exception("garbage_collection_failed")
            continue
        if removed:
            log.debug("garbage_collected", removed=removed)

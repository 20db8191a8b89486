"""Prometheus metrics shared by every process, and the aiohttp pieces that expose them."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest

REQUESTS = Counter(
    "marconi_http_requests_total",
    "HTTP requests answered, by route and status.",
    ["component", "method", "route", "status"],
)
LATENCY = Histogram(
    "marconi_http_request_seconds",
    "Time to answer an HTTP request, by route.",
    ["component", "method", "route"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def route_label(request: web.Request) -> str:
    """The route's template (`/v2/queues/{queue_name}`), so label cardinality stays bounded."""
    info = request.match_info.route.resource
    return info.canonical if info is not None else "unmatched"


def request_metrics(
    component: str,
) -> Middleware:
    """A middleware recording count and latency of every request."""

    # prometheus-client's labels() costs a few microseconds; each label set is looked up once.
    counters: dict[tuple[str, str, str], Counter] = {}
    timers: dict[tuple[str, str], Histogram] = {}

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            route = route_label(request)
            key = (request.method, route, str(status))
            counter = counters.get(key)
            if counter is None:
                counter = counters[key] = REQUESTS.labels(component, *key)
            counter.inc()
            timer = timers.get(key[:2])
            if timer is None:
                timer = timers[key[:2]] = LATENCY.labels(component, *key[:2])
            timer.observe(time.perf_counter() - started)

    return middleware


async def metrics_handler(request: web.Request) -> web.Response:
    return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})

"""Prometheus metrics shared by every process, and the aiohttp pieces that expose them."""

from __future__ import annotations

import bisect
import time
from collections.abc import Iterator

from aiohttp import web
from aiohttp.typedefs import Middleware
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from ground.types import Handler

BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Tally(Collector):
    """A counter family kept as plain numbers and read when scraped: for counts taken on a hot
    path, where prometheus-client's locked `inc()` costs microseconds. Update it from the event
    loop's thread only (`add`)."""

    def __init__(self, name: str, documentation: str, labels: list[str]) -> None:
        self.name = name
        self.documentation = documentation
        self.labels = labels
        self.counts: dict[tuple[str, ...], int] = {}
        REGISTRY.register(self)

    def add(self, labels: tuple[str, ...]) -> None:
        counts = self.counts
        counts[labels] = counts.get(labels, 0) + 1

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(self.name, self.documentation, labels=self.labels)
        for labels, count in list(self.counts.items()):
            family.add_metric(list(labels), count)
        yield family


class _Requests(Collector):
    """`marconi_http_requests_total` (by component, method, route and status) and
    `marconi_http_request_seconds` (by component, method and route): plain numbers updated
    without locks, read when scraped.

    Every request is answered on its process's event loop, so one thread records; a scrape
    from another thread reads copies and at worst sees a request counted but not yet timed.
    """

    def __init__(self) -> None:
        # per (component, method, route): the count of each status; and a count per bucket
        # (the last one past every bound), then the sum of the times
        self.routes: dict[tuple[str, str, str], tuple[dict[int, int], list[float]]] = {}

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "marconi_http_requests",
            "HTTP requests answered, by route and status.",
            labels=["component", "method", "route", "status"],
        )
        routes = list(self.routes.items())
        for labels, (statuses, _) in routes:
            for status, count in list(statuses.items()):
                requests.add_metric([*labels, str(status)], count)
        yield requests
        seconds = HistogramMetricFamily(
            "marconi_http_request_seconds",
            "Time to answer an HTTP request, by route.",
            labels=["component", "method", "route"],
        )
        for labels, (_, timing) in routes:
            cumulative, buckets = 0.0, []
            for bound, n in zip((*map(str, BUCKETS), "+Inf"), timing[:-1], strict=True):
                cumulative += n
                buckets.append((bound, cumulative))
            seconds.add_metric(list(labels), buckets, timing[-1])
        yield seconds


_REQUESTS = _Requests()
REGISTRY.register(_REQUESTS)


def route_label(request: web.Request) -> str:
    """The route's template (`/v2/queues/{queue_name}`), so label cardinality stays bounded."""
    info = request.match_info.route.resource
    return info.canonical if info is not None else "unmatched"


class Recorder:
    """Records each answered request of one component: a count, and its time."""

    def __init__(self, component: str) -> None:
        self.component = component
        self._routes: dict[tuple[str, str], tuple[dict[int, int], list[float]]] = {}

    def record(self, method: str, route: str, status: int, seconds: float) -> None:
        found = self._routes.get((method, route))
        if found is None:
            labels = (self.component, method, route)
            found = _REQUESTS.routes.setdefault(labels, ({}, [0.0] * (len(BUCKETS) + 2)))
            self._routes[method, route] = found
        statuses, timing = found
        statuses[status] = statuses.get(status, 0) + 1
        timing[bisect.bisect_left(BUCKETS, seconds)] += 1  # the first bound >= seconds
        timing[-1] += seconds


def request_metrics(component: str, recorder: Recorder | None = None) -> Middleware:
    """A middleware recording count and latency of every request."""
    recorder = recorder or Recorder(component)

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
            seconds = time.perf_counter() - started
            recorder.record(request.method, route_label(request), status, seconds)

    return middleware


async def metrics_handler(request: web.Request) -> web.Response:
    return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})

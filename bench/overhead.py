"""What the proxy costs: the same workload against one partition's nodes, direct and through it.

Both targets run side by side (each with its own SQLite file and its own node processes, the
proxy's registered in a real etcd), and every scenario runs against one then the other, so a
change in the machine's background load falls on both alike.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

from bench import watch
from bench.cluster import Target, direct, proxied, storage
from bench.scenarios import (
    CONSUME_10,
    LIST_10,
    POST_1,
    Load,
    Measurement,
    Scenario,
    measure,
    warm_up,
)
from tests.services import etcd


@dataclass(frozen=True)
class Pair:
    """One scenario, measured direct and through the proxy."""

    direct: Measurement
    proxy: Measurement

    @property
    def ratio(self) -> float:
        """Throughput through the proxy as a fraction of direct."""
        return self.proxy.result.requests_per_s / max(self.direct.result.requests_per_s, 1e-9)

    @property
    def cpu_ratio(self) -> float | None:
        """The ratio the CPU time per request predicts when every process shares the cores:
        direct's (wrk + nodes) over the proxy's (wrk + nodes + proxy)."""
        direct, proxy = self.direct.cpu_us_per_request(), self.proxy.cpu_us_per_request()
        return None if not direct or not proxy else direct / proxy

    @property
    def added_p50_ms(self) -> float:
        return self.proxy.result.p50_ms - self.direct.result.p50_ms


@dataclass(frozen=True)
class Comparison:
    """Every scenario, direct and through the proxy, over one number of node processes."""

    nodes: int
    throughput: list[Pair]
    latency: list[Pair]

    @property
    def measurements(self) -> list[Measurement]:
        return [m for p in self.throughput + self.latency for m in (p.direct, p.proxy)]


@dataclass(frozen=True)
class Overhead:
    comparisons: list[Comparison]
    lag: watch.Lag


def pair(targets: tuple[Target, Target], scenario: Scenario, load: Load) -> Pair:
    """Direct first, then through the proxy, back to back."""
    return Pair(*(measure(target, scenario, load) for target in targets))


def compare(base: Path, node_count: int, load: Load, latency_seconds: int) -> Comparison:
    """Fresh SQLite partitions of `node_count` node processes: one direct, one behind a proxy."""
    with contextlib.ExitStack() as stack:
        catalog = stack.enter_context(etcd(base / "etcd"))
        direct_uri = stack.enter_context(storage("sqlite", base / "direct"))
        proxy_uri = stack.enter_context(storage("sqlite", base / "proxy"))
        targets = (
            stack.enter_context(direct(direct_uri, node_count, base / "direct")),
            stack.enter_context(proxied(proxy_uri, node_count, base / "proxy", catalog.url)),
        )
        print(
            f"== {node_count} node process(es): direct at {targets[0].url}, "
            f"proxy at {targets[1].url}",
            flush=True,
        )
        for target in targets:
            warm_up(target)
        quiet = Load(latency_seconds, connections=1, threads=1)
        # Consuming last: it empties the queue the other scenarios read.
        throughput = [pair(targets, s, load) for s in (POST_1, LIST_10)]
        latency = [pair(targets, s, quiet) for s in (POST_1, LIST_10)]
        throughput.append(pair(targets, CONSUME_10, load))
    return Comparison(node_count, throughput, latency)


def lag(base: Path, rounds: int) -> watch.Lag:
    """Placement switches timed on a proxy over one node process (the nodes take no part)."""
    with (
        etcd(base / "etcd") as catalog,
        storage("sqlite", base / "nodes") as uri,
        proxied(uri, 1, base / "nodes", catalog.url) as target,
    ):
        print(f"== placement watch lag, proxy at {target.url}", flush=True)
        return watch.run(target.url, catalog.url, rounds)


def measure_overhead(
    base: Path, node_counts: list[int], load: Load, latency_seconds: int, lag_rounds: int
) -> Overhead:
    comparisons = [compare(base / f"{n}-nodes", n, load, latency_seconds) for n in node_counts]
    return Overhead(comparisons, lag(base / "lag", lag_rounds))

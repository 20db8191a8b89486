"""Node pools: health checks, least-outstanding choice, and the fallback when none is healthy."""

from __future__ import annotations

from pathlib import Path

from catalog.records import Partition
from proxy.nodes import NodePool, NodePools
from proxy.upstream import Upstreams
from tests.conftest import FakeClock
from tests.proxy.cluster import cluster
from tests.services import free_port


def test_least_outstanding_among_healthy() -> None:
    pool = NodePool("p", ["http://a", "http://b", "http://c"])
    a, b, c = pool.nodes
    a.mark(True)
    b.mark(True)
    c.mark(False)
    a.outstanding = 1
    assert pool.choose() is b
    b.outstanding = 2
    assert pool.choose() is a
    a.outstanding = b.outstanding = 0
    assert pool.choose(exclude={"http://a"}) is b
    assert pool.choose(exclude={"http://a", "http://b"}) is c  # the last resort
    assert pool.choose(exclude={"http://a", "http://b", "http://c"}) is None


def test_unchecked_nodes_are_tried_before_failed_ones() -> None:
    pool = NodePool("p", ["http://a", "http://b"])
    pool.nodes[0].mark(False)
    assert pool.choose() is pool.nodes[1]
    assert not pool.healthy


def test_node_list_follows_the_catalog_keeping_what_is_known() -> None:
    pool = NodePool("p", ["http://a", "http://b"])
    pool.nodes[0].mark(True)
    pool.set_urls(["http://a/", "http://c"])
    assert [n.url for n in pool.nodes] == ["http://a", "http://c"]
    assert pool.nodes[0].healthy is True and pool.nodes[1].healthy is None


async def test_health_checks_mark_nodes(tmp_path: Path, clock: FakeClock) -> None:
    async with cluster(tmp_path, clock, partitions=("p1",)) as c:
        live = c.partitions["p1"].urls[0]
        dead = f"http://127.0.0.1:{free_port()}"
        partitions = {"p1": Partition("p1", (live, dead))}
        upstreams = Upstreams(connect_timeout=0.5, read_timeout=0.5)
        try:
            pools = NodePools(lambda: partitions, upstreams, interval=0.05, timeout=0.5)
            await pools.check_all()
            nodes = pools.pools["p1"].nodes
            assert [(n.url, n.healthy) for n in nodes] == [(live, True), (dead, False)]
            partitions.clear()
            await pools.check_all()
            assert pools.pools == {}
        finally:
            await upstreams.close()

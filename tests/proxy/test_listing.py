"""Queue listings from the catalog, shaped as the node shapes them; details per partition."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import FakeClock
from tests.node.test_api_v2 import RESERVED
from tests.proxy.cluster import Cluster, cluster
from tests.proxy.conftest import HEADERS, PROJECT, call
from tests.proxy.test_forward import recording

NAMES = [f"q{i:02d}" for i in range(12)]


@pytest.mark.parametrize("version", ["v1", "v1.1", "v2"])
async def test_detailed_pages_fetch_once_per_partition(
    tmp_path: Path, clock: FakeClock, version: str
) -> None:
    seen: list[dict[str, str]] = []
    async with cluster(tmp_path, clock, wrap_node=recording(seen)) as c:
        for name in NAMES:
            assert (await call(c.proxy, "PUT", f"/v1/queues/{name}"))[0] == 201
            await call(c.proxy, "PUT", f"/v1/queues/{name}/metadata", json={"n": name})
        owner = {n: await partition_of(c, n) for n in NAMES}
        assert set(owner.values()) == {"p1", "p2"}
        seen.clear()
        status, body, _ = await call(
            c.proxy, "GET", f"/{version}/queues?detailed=true&limit=5&marker=q03"
        )
        assert status == 200
        # v2 shows the reserved attributes each queue leaves unset, as Zaqar 23 does.
        reserved = RESERVED if version == "v2" else {}
        assert body["queues"] == [
            {"name": n, "href": f"/{version}/queues/{n}", "metadata": {"n": n, **reserved}}
            for n in NAMES[4:9]
        ]
        assert body["links"] == [
            {"rel": "next", "href": f"/{version}/queues?marker=q08&limit=5&detailed=true"}
        ]
        # One request per partition owning queues on the page, for exactly its share.
        assert len(seen) == len(Counter(owner[n] for n in NAMES[4:9]))


async def test_pages_follow_the_catalog(tmp_path: Path, clock: FakeClock) -> None:
    async with cluster(tmp_path, clock) as c:
        assert (await call(c.proxy, "GET", "/v1/queues"))[0] == 204
        assert (await call(c.proxy, "GET", "/v2/queues"))[1] == {"queues": [], "links": []}
        for name in NAMES:
            await call(c.proxy, "PUT", f"/v2/queues/{name}")
        seen: list[str] = []
        path = "/v2/queues?limit=5"
        while True:
            status, body, _ = await call(c.proxy, "GET", path)
            if not body["queues"]:
                break
            seen.extend(q["name"] for q in body["queues"])
            assert all(set(q) == {"name", "href"} for q in body["queues"])
            path = body["links"][0]["href"]
        assert seen == NAMES
        status, body, _ = await call(c.proxy, "GET", "/v2/queues")
        assert len(body["queues"]) == 10  # the default page
        status, body, _ = await call(c.proxy, "GET", "/v2/queues", project="other")
        assert body["queues"] == []


@pytest.mark.parametrize(
    ("query", "title"),
    [
        ("limit=0", "Invalid API request"),
        ("limit=21", "Invalid API request"),
        ("limit=x", "Invalid parameter"),
        ("detailed=maybe", "Invalid parameter"),
    ],
)
async def test_validation_matches_the_node(
    tmp_path: Path, clock: FakeClock, query: str, title: str
) -> None:
    async with cluster(tmp_path, clock) as c:
        proxied = await call(c.proxy, "GET", f"/v2/queues?{query}")
        node = c.partitions["p1"].servers[0]
        async with c.proxy.session.get(
            node.make_url(f"/v2/queues?{query}"), headers=HEADERS
        ) as resp:
            direct = (resp.status, await resp.json())
        assert (proxied[0], proxied[1]) == direct
        assert proxied[1]["title"] == title


async def partition_of(c: Cluster, queue: str) -> str:
    placement = await c.catalog.placement(PROJECT, queue)
    assert placement is not None
    return placement.partition

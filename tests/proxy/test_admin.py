"""The admin API over the in-memory catalog: partitions, placements, pins, health, the role."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import FakeClock
from tests.proxy.cluster import ADMIN, Cluster, cluster
from tests.proxy.conftest import PROJECT, call

NODES = ["http://127.0.0.1:1"]


async def admin(c: Cluster, method: str, path: str, json: Any = None) -> tuple[int, Any]:
    status, body, _ = await call(c.proxy, method, path, json=json, headers=ADMIN)
    return status, body


@pytest.fixture
async def c(tmp_path: Path, clock: FakeClock):  # type: ignore[no-untyped-def]
    async with cluster(tmp_path, clock) as made:
        yield made


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/admin/partitions"),
        ("DELETE", "/admin/partitions/p1"),
        ("GET", "/admin/health"),
        ("GET", "/admin/pins/x"),
        ("GET", "/admin/placements/_/q"),
    ],
)
async def test_admin_role_required(c: Cluster, method: str, path: str) -> None:
    for headers in ({}, {"X-Roles": "member, reader"}):
        status, body, _ = await call(c.proxy, method, path, headers=headers)
        assert (status, body) == (
            403,
            {
                "title": "Not authorized",
                "description": "You are not authorized to complete this action.",
            },
        )
    status, _, _ = await call(c.proxy, "GET", path, headers={"X-Roles": "member,admin"})
    assert status != 403


async def test_partition_lifecycle(c: Cluster) -> None:
    status, body = await admin(c, "GET", "/admin/partitions")
    assert status == 200 and [p["name"] for p in body["partitions"]] == ["p1", "p2"]
    doc = {"nodes": NODES, "weight": 2, "state": "active", "storage": "sqlite:///tmp/p3.db"}
    assert await admin(c, "PUT", "/admin/partitions/p3", doc) == (201, {"name": "p3", **doc})
    assert await admin(c, "PUT", "/admin/partitions/p3", doc) == (200, {"name": "p3", **doc})
    status, body = await admin(c, "PUT", "/admin/partitions/p3", {**doc, "weight": 5})
    assert status == 409 and set(body) == {"title", "description"}
    status, body = await admin(c, "PATCH", "/admin/partitions/p3", {"state": "draining"})
    assert status == 200 and body["state"] == "draining" and body["weight"] == 2
    status, body = await admin(
        c, "PATCH", "/admin/partitions/p3", {"weight": 0, "nodes": NODES * 2}
    )
    assert status == 200 and (body["weight"], body["nodes"]) == (0, NODES * 2)
    status, body = await admin(c, "PATCH", "/admin/partitions/p3", {"storage": "ftp://x"})
    assert status == 400 and set(body) == {"title", "description"}
    assert (await admin(c, "PATCH", "/admin/partitions/nope", {"weight": 1}))[0] == 404
    # Its node never answers: what its piles of dead letters hold is unknown (`test_piles`).
    status, body = await admin(c, "DELETE", "/admin/partitions/p3")
    assert status == 409 and "no node of it answered" in body["description"]
    assert (await admin(c, "DELETE", "/admin/partitions/p3?force=true"))[0] == 204
    assert (await admin(c, "DELETE", "/admin/partitions/p3"))[0] == 404


async def test_partition_that_owns_queues_is_not_removed(c: Cluster) -> None:
    assert (await call(c.proxy, "PUT", "/v2/queues/q"))[0] == 201
    status, body = await admin(c, "GET", f"/admin/placements/{PROJECT}/q")
    owner = body["partition"]
    status, body = await admin(c, "DELETE", f"/admin/partitions/{owner}")
    assert status == 409 and set(body) == {"title", "description"}


@pytest.mark.parametrize(
    ("method", "body"),
    [
        ("PUT", {"nodes": [], "weight": 1}),
        ("PUT", {"nodes": ["ftp://x"]}),
        ("PUT", {"nodes": NODES, "weight": -1}),
        ("PUT", {"nodes": NODES, "weight": "1"}),
        ("PUT", {"nodes": NODES, "state": "sleeping"}),
        ("PUT", ["not", "an", "object"]),
        ("PATCH", {}),
        ("PATCH", {"colour": "red"}),
        ("PATCH", {"state": "gone"}),
    ],
)
async def test_bad_bodies(c: Cluster, method: str, body: Any) -> None:
    status, answer = await admin(c, method, "/admin/partitions/p1", body)
    assert status == 400 and set(answer) == {"title", "description"}


async def test_unparsable_body_and_bad_name(c: Cluster) -> None:
    async with c.proxy.put("/admin/partitions/p9", data=b"{oops", headers=ADMIN) as resp:
        assert resp.status == 400
    status, _ = await admin(c, "PUT", "/admin/partitions/bad@name", {"nodes": NODES})
    assert status == 400


async def test_placements(c: Cluster) -> None:
    status, body = await admin(c, "GET", f"/admin/placements/{PROJECT}/q")
    assert status == 200 and body["placed"] is False and body["partition"] in ("p1", "p2")
    chosen = body["partition"]
    await call(c.proxy, "PUT", "/v2/queues/q")
    status, body = await admin(c, "GET", f"/admin/placements/{PROJECT}/q")
    assert body == {
        "project": PROJECT,
        "queue": "q",
        "placed": True,
        "partition": chosen,
        "epoch": 1,
        "state": "active",
    }
    async with c.proxy.put("/v1/queues/anon") as resp:  # project ""
        assert resp.status == 201
    status, body = await admin(c, "GET", "/admin/placements/_/anon")
    assert body["placed"] is True and body["project"] == ""


async def test_pins(c: Cluster) -> None:
    assert (await admin(c, "GET", "/admin/pins/vip"))[0] == 404
    assert await admin(c, "PUT", "/admin/pins/vip", {"partition": "p2"}) == (
        200,
        {"project": "vip", "partition": "p2"},
    )
    assert (await admin(c, "PUT", "/admin/pins/vip", {"partition": "nope"}))[0] == 400
    assert (await admin(c, "PUT", "/admin/pins/vip", {}))[0] == 400
    assert (await admin(c, "GET", "/admin/pins/vip"))[1]["partition"] == "p2"
    assert (await admin(c, "GET", "/admin/pins"))[1] == {
        "pins": [{"project": "vip", "partition": "p2"}]
    }
    cache = c.state().router.cache
    while "vip" not in cache.pins:
        await cache.changed.wait()
    for i in range(10):
        await call(c.proxy, "PUT", f"/v2/queues/q{i}", project="vip")
        assert (await c.catalog.placement("vip", f"q{i}")).partition == "p2"  # type: ignore[union-attr]
    assert (await admin(c, "DELETE", "/admin/pins/vip"))[0] == 204
    assert (await admin(c, "GET", "/admin/pins/vip"))[0] == 404


async def test_health(c: Cluster) -> None:
    await c.state().forwarder.pools.check_all()
    status, body = await admin(c, "GET", "/admin/health")
    assert status == 200
    assert body["catalog"]["state"] == "live" and body["catalog"]["revision"] > 0
    assert set(body["partitions"]) == {"p1", "p2"}
    for name, part in c.partitions.items():
        health = body["partitions"][name]
        assert health["healthy"] is True
        assert health["nodes"] == {url: {"healthy": True, "outstanding": 0} for url in part.urls}
        assert health["dead_letters"] == {"waiting": 0, "more": False}


@pytest.mark.parametrize(
    "nodes",
    [
        ["ftp://127.0.0.1:1"],
        ["http://user:secret@127.0.0.1:1"],
        ["http://127.0.0.1:1/admin?x=1"],
        ["http://127.0.0.1:99999"],
        ["http://bad host:1"],
        ["http://127.0.0.1:1", "http://"],
        ["http://127.0.0.1:1#f"],
    ],
)
async def test_node_addresses_are_checked_before_they_are_stored(
    c: Cluster, nodes: list[str]
) -> None:
    status, body = await admin(c, "PUT", "/admin/partitions/p3", {"nodes": nodes})
    assert status == 400 and body["description"].startswith('"nodes": ')
    status, body = await admin(c, "PATCH", "/admin/partitions/p1", {"nodes": nodes})
    assert status == 400
    assert (await c.catalog.partition("p1")).nodes == c.partitions["p1"].urls
    assert [p.name for p in await c.catalog.partitions()] == ["p1", "p2"]


@pytest.mark.parametrize(
    "storage",
    ["file:///etc/passwd", "sqlite://host/x.db", "sqlite:///", "mongodb:///db", "mongodb://a b/"],
)
async def test_storage_uris_are_checked_before_they_are_stored(c: Cluster, storage: str) -> None:
    doc = {"nodes": NODES, "storage": storage}
    status, body = await admin(c, "PUT", "/admin/partitions/p3", doc)
    assert status == 400 and body["description"].startswith('"storage": ')
    status, _ = await admin(c, "PATCH", "/admin/partitions/p1", {"storage": storage})
    assert status == 400 and (await c.catalog.partition("p1")).storage == ""


async def test_well_formed_addresses_are_stored(c: Cluster) -> None:
    nodes = ["http://node-0.p3.svc.cluster.local:8889", "https://[::1]:8443/", "http://10.0.0.7"]
    storage = "mongodb://user:pw@m0:27017,m1:27017/marconi?replicaSet=rs0"
    status, body = await admin(c, "PUT", "/admin/partitions/p3", {"nodes": nodes})
    assert status == 201 and body["nodes"] == nodes
    status, body = await admin(c, "PATCH", "/admin/partitions/p3", {"storage": storage})
    assert status == 200 and body["storage"] == storage

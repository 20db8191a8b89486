"""Topics through the proxy: placed under their own keys (a topic's container), routed, listed
from the catalog and unplaced like queues, never mixed with a queue of the same name."""

from __future__ import annotations

from pathlib import Path

from proxy.routing import QueueRoute, match_queue_route
from tests.conftest import FakeClock
from tests.proxy.cluster import ADMIN, cluster
from tests.proxy.conftest import PROJECT, call
from tests.proxy.test_routing import owners
from tests.services import Etcd
from wire.topics import container

NEWS = container("news")


def test_topic_paths_match_topic_routes() -> None:
    assert match_queue_route("/v2/topics/news") == QueueRoute("v2", NEWS, "")
    assert match_queue_route("/v2/topics/news/messages") == QueueRoute("v2", NEWS, "/messages")
    route = match_queue_route("/v2/topics/news/messages/abc")
    assert route == QueueRoute("v2", NEWS, "/messages/{message_id}")
    assert route.template == "/{version}/topics/{topic_name}/messages/{message_id}"
    route = match_queue_route("/v2/topics/news/claims/abc")
    assert route == QueueRoute("v2", NEWS, "/{rest:.+}")  # no claims on topics
    assert route.template == "/{version}/topics/{topic_name}/{rest}"
    assert match_queue_route("/v1.1/topics/news") is None  # topics are v2 only
    assert match_queue_route("/v2/queues/news") == QueueRoute("v2", "news", "")


async def test_a_topic_and_a_queue_of_one_name_are_placed_apart(
    tmp_path: Path, clock: FakeClock
) -> None:
    async with cluster(tmp_path, clock) as c:
        # Each where the test says, so that mixing them up would show.
        await c.catalog.place(PROJECT, "news", "p1")
        await c.catalog.place(PROJECT, NEWS, "p2")
        assert (await call(c.proxy, "PUT", "/v2/queues/news", json={"kind": "queue"}))[0] == 201
        assert (await call(c.proxy, "PUT", "/v2/topics/news", json={"kind": "topic"}))[0] == 201
        status, _, _ = await call(
            c.proxy, "POST", "/v2/topics/news/messages", json={"messages": [{"body": "t"}]}
        )
        assert status == 201
        assert await owners(c, PROJECT, "news") == ["p1"]
        assert await owners(c, PROJECT, NEWS) == ["p2"]
        assert (await c.partitions["p2"].deps.storage.queues.stats(PROJECT, NEWS)).total == 1
        assert (await call(c.proxy, "GET", "/v2/topics/news"))[1]["kind"] == "topic"
        assert (await call(c.proxy, "GET", "/v2/queues/news"))[1]["kind"] == "queue"
        assert await c.catalog.queue_names(PROJECT, None, 10) == ["news"]
        assert await c.catalog.topic_names(PROJECT, None, 10) == ["news"]

        assert (await call(c.proxy, "DELETE", "/v2/topics/news"))[0] == 204
        assert await c.catalog.placement(PROJECT, NEWS) is None
        assert await c.catalog.placement(PROJECT, "news") is not None


async def test_creation_places_and_reads_do_not(tmp_path: Path, clock: FakeClock) -> None:
    async with cluster(tmp_path, clock) as c:
        router = c.state().router
        for path in ("/v2/topics/lazy/messages", "/v2/topics/lazy/stats"):
            assert (await call(c.proxy, "GET", path))[0] == 200
        assert (await call(c.proxy, "GET", "/v2/topics/lazy"))[0] == 404
        assert await c.catalog.placement(PROJECT, container("lazy")) is None
        status, _, _ = await call(
            c.proxy, "POST", "/v2/topics/lazy/messages", json={"messages": [{"body": 1}]}
        )
        assert status == 201
        placement = await c.catalog.placement(PROJECT, container("lazy"))
        assert placement is not None
        assert placement.partition == router.choose(PROJECT, container("lazy"))
        assert await owners(c, PROJECT, container("lazy")) == [placement.partition]

        body = {"subscriber": "http://example.test/hook"}
        status, _, _ = await call(c.proxy, "POST", "/v2/topics/subbed/subscriptions", json=body)
        assert status == 201
        assert await c.catalog.placement(PROJECT, container("subbed")) is not None


async def test_refused_creation_leaves_no_placement(tmp_path: Path, clock: FakeClock) -> None:
    async with cluster(tmp_path, clock) as c:
        status, _, _ = await call(
            c.proxy, "POST", "/v2/topics/t/messages", json={"messages": [{"body": 1, "ttl": 1}]}
        )
        assert status == 400
        status, _, _ = await call(c.proxy, "PUT", "/v2/topics/t", json={"_default_message_ttl": 1})
        assert status == 400
        assert (await call(c.proxy, "PUT", "/v2/topics/bad@name"))[0] == 400
        assert await c.catalog.topic_names(PROJECT, None, 10) == []

        # A topic that exists without a placement (made behind the proxy) keeps the one a
        # refused request made for it.
        owner = c.state().router.choose(PROJECT, container("t"))
        await c.partitions[owner].deps.storage.queues.create(PROJECT, container("t"), None)
        status, _, _ = await call(c.proxy, "PUT", "/v2/topics/t", json={"_default_message_ttl": 1})
        assert status == 400
        assert await c.catalog.placement(PROJECT, container("t")) is not None


async def test_listings_from_the_catalog(tmp_path: Path, clock: FakeClock) -> None:
    names = [f"t{i:02d}" for i in range(8)]
    async with cluster(tmp_path, clock) as c:
        for name in names:
            assert (await call(c.proxy, "PUT", f"/v2/topics/{name}", json={"n": name}))[0] == 201
        partitions = {(await c.catalog.placement(PROJECT, container(n))).partition for n in names}  # type: ignore[union-attr]
        assert partitions == {"p1", "p2"}
        await call(c.proxy, "PUT", "/v2/queues/q")

        status, body, _ = await call(c.proxy, "GET", "/v2/topics?detailed=true&limit=3&marker=t01")
        assert status == 200
        assert [t["name"] for t in body["topics"]] == ["t02", "t03", "t04"]
        assert body["topics"][0]["href"] == "/v2/topics/t02"
        assert all(t["metadata"]["n"] == t["name"] for t in body["topics"])
        assert body["links"] == [
            {"rel": "next", "href": "/v2/topics?marker=t04&limit=3&detailed=true"}
        ]
        seen, path = [], "/v2/topics?limit=5"
        while True:
            body = (await call(c.proxy, "GET", path))[1]
            if not body["topics"]:
                break
            seen += [t["name"] for t in body["topics"]]
            path = body["links"][0]["href"]
        assert seen == names
        body = (await call(c.proxy, "GET", "/v2/queues?limit=20"))[1]
        assert [q["name"] for q in body["queues"]] == ["q"]


async def test_the_admin_api_moves_a_topic_by_name(
    tmp_path: Path, clock: FakeClock, etcd_server: Etcd
) -> None:
    async with cluster(tmp_path, clock, etcd_url=etcd_server.url) as c:
        for name in c.partitions:
            await c.catalog.update_partition(name, storage=f"sqlite:///{tmp_path}/{name}.db")
        await c.catalog.place(PROJECT, NEWS, "p1")
        assert (await call(c.proxy, "PUT", "/v2/topics/news"))[0] == 201
        body = {"project": PROJECT, "topic": "news", "to": "p2"}
        status, made, _ = await call(c.proxy, "POST", "/admin/migrations", json=body, headers=ADMIN)
        assert status == 201, made
        assert (made["project"], made["queue"], made["target"]) == (PROJECT, NEWS, "p2")
        body = {"project": PROJECT, "topic": "~news", "to": "p2"}
        status, _, _ = await call(c.proxy, "POST", "/admin/migrations", json=body, headers=ADMIN)
        assert status == 400


async def test_loads_count_a_topics_messages(
    tmp_path: Path, clock: FakeClock, etcd_server: Etcd
) -> None:
    async with cluster(tmp_path, clock, etcd_url=etcd_server.url) as c:
        await c.catalog.place(PROJECT, NEWS, "p1")
        await c.catalog.place(PROJECT, "news", "p1")
        body = {"messages": [{"body": i} for i in range(4)]}
        assert (await call(c.proxy, "POST", "/v2/topics/news/messages", json=body))[0] == 201
        body = {"messages": [{"body": "q"}]}
        assert (await call(c.proxy, "POST", "/v2/queues/news/messages", json=body))[0] == 201
        status, answer, _ = await call(c.proxy, "GET", "/admin/loads", headers=ADMIN)
        assert status == 200, answer
        assert (answer["queues"], answer["messages"]) == (2, 5)
        loads = {p["partition"]: p for p in answer["partitions"]}
        assert (loads["p1"]["queues"], loads["p1"]["messages"]) == (2, 5)

"""`/v2/topics` over real HTTP, on every storage driver, straight to a node and through the proxy:
every route, its statuses and error bodies, and that topics and queues never see each other."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from node.api.app import create_app
from node.api.deps import Deps
from node.storage import open_storage
from tests.conftest import FakeClock, storage_uri
from tests.node.conftest import Api
from tests.node.test_api_v2 import assert_error

T = "/v2/topics/news"
PATCH = {"Content-Type": "application/openstack-messaging-v2.0-json-patch"}
RESERVED = {
    "_max_messages_post_size": 262144,
    "_default_message_ttl": 3600,
    "_default_message_delay": 0,
}


@pytest.fixture(
    params=[
        "direct",
        "proxy",
        pytest.param("direct-postgresql", marks=pytest.mark.postgresql),
        pytest.param("proxy-postgresql", marks=pytest.mark.postgresql),
        pytest.param("direct-mongodb", marks=pytest.mark.mongodb),
        pytest.param("proxy-mongodb", marks=pytest.mark.mongodb),
    ]
)
async def api(
    request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock
) -> AsyncIterator[Api]:
    """As `tests.node.conftest.api`, with MongoDB (FerretDB) too."""
    route, _, driver = request.param.partition("-")
    driver = driver or "sqlite"
    if route == "proxy":
        from tests.proxy.cluster import cluster

        etcd_url = request.getfixturevalue("etcd_server").url

        def partition_uri(name: str) -> str:
            (tmp_path / name).mkdir()
            return storage_uri(driver, tmp_path / name, request)

        async with cluster(tmp_path, clock, etcd_url=etcd_url, storage_uri=partition_uri) as c:
            yield Api(c.proxy, clock, c.partitions["p1"].deps)
        return
    storage = await open_storage(storage_uri(driver, tmp_path, request), clock)
    deps = Deps(storage=storage, clock=clock)
    client = TestClient(TestServer(create_app(deps, gc_interval=3600), host="127.0.0.1"))
    await client.start_server()
    try:
        yield Api(client, clock, deps)
    finally:
        await client.close()


async def post(api: Api, *bodies: Any, topic: str = T, ttl: int = 300) -> list[str]:
    status, body, headers = await api.request(
        "POST", f"{topic}/messages", json={"messages": [{"body": b, "ttl": ttl} for b in bodies]}
    )
    assert status == 201, body
    assert all(href.startswith(f"{topic}/messages/") for href in body["resources"])
    ids = [href.rsplit("/", 1)[1] for href in body["resources"]]
    assert headers["Location"] == f"{topic}/messages?ids={','.join(ids)}"
    return ids


async def test_create_get_patch_delete(api: Api) -> None:
    status, body, _ = await api.request("GET", T)
    assert_error(status, body, 404, "Not found")
    assert body["description"] == "Topic news does not exist for project test-project"

    status, _, headers = await api.request("PUT", T, json={"color": "red"})
    assert status == 201
    assert headers["Location"] == T
    assert (await api.request("PUT", T, json={"color": "blue"}))[0] == 204

    status, body, _ = await api.request("GET", T)
    assert status == 200
    assert body == {"color": "blue", **RESERVED}

    changes = [
        {"op": "add", "path": "/metadata/size", "value": 3},
        {"op": "replace", "path": "/metadata/_default_message_ttl", "value": 120},
        {"op": "remove", "path": "/metadata/color"},
    ]
    status, body, _ = await api.request(
        "PATCH", T, data=__import__("json").dumps(changes), headers=PATCH
    )
    assert status == 200, body
    assert body == {**RESERVED, "size": 3, "_default_message_ttl": 120}
    status, body, _ = await api.request(
        "PATCH",
        T,
        data='[{"op": "replace", "path": "/metadata/nothing", "value": 1}]',
        headers=PATCH,
    )
    assert_error(status, body, 409)

    assert (await api.request("DELETE", T))[0] == 204
    assert (await api.request("GET", T))[0] == 404
    assert (await api.request("DELETE", T))[0] == 204  # a missing topic: no error


async def test_patch_of_a_missing_topic_is_404(api: Api) -> None:
    status, body, _ = await api.request(
        "PATCH", T, data='[{"op": "add", "path": "/metadata/a", "value": 1}]', headers=PATCH
    )
    assert_error(status, body, 404)
    assert "Topic news" in body["description"]


async def test_names_are_validated(api: Api) -> None:
    for path in ("/v2/topics/bad%20name", "/v2/topics/" + "x" * 65, "/v2/topics/~news"):
        status, body, _ = await api.request("PUT", path)
        assert_error(status, body, 400, "Invalid topic identification")
        status, body, _ = await api.request("POST", path + "/messages", json={"messages": []})
        assert_error(status, body, 400, "Invalid topic identification")
    status, body, _ = await api.request("PUT", T, drop=("X-Project-ID",))
    assert_error(status, body, 400, "Project-Id Missing")


async def test_bad_metadata_is_refused(api: Api) -> None:
    status, body, _ = await api.request("PUT", T, json={"_default_message_ttl": 10})
    assert_error(status, body, 400)
    status, body, _ = await api.request("PUT", T, data="[1, 2]")
    assert_error(status, body, 400)
    assert (await api.request("GET", T))[0] == 404


async def test_topics_and_queues_of_one_name_are_distinct(api: Api) -> None:
    assert (await api.request("PUT", "/v2/queues/news", json={"kind": "queue"}))[0] == 201
    assert (await api.request("PUT", T, json={"kind": "topic"}))[0] == 201
    await post(api, {"to": "topic"})
    status, body, _ = await api.request(
        "POST", "/v2/queues/news/messages", json={"messages": [{"body": "q", "ttl": 300}]}
    )
    assert status == 201

    assert (await api.request("GET", T))[1]["kind"] == "topic"
    assert (await api.request("GET", "/v2/queues/news"))[1]["kind"] == "queue"
    status, body, _ = await api.request("GET", "/v2/queues?detailed=true")
    assert [q["name"] for q in body["queues"]] == ["news"]
    assert body["queues"][0]["metadata"]["kind"] == "queue"
    status, body, _ = await api.request("GET", "/v2/topics?detailed=true")
    assert [t["name"] for t in body["topics"]] == ["news"]
    assert body["topics"][0]["metadata"] == {"kind": "topic", **RESERVED}

    headers = {"Client-ID": "8d4e2f10-0a1b-4c5d-8e9f-a1b2c3d4e5f6"}
    status, body, _ = await api.request("GET", f"{T}/messages", headers=headers)
    assert [m["body"] for m in body["messages"]] == [{"to": "topic"}]
    status, body, _ = await api.request("GET", "/v2/queues/news/messages", headers=headers)
    assert [m["body"] for m in body["messages"]] == ["q"]

    assert (await api.request("DELETE", T))[0] == 204
    assert (await api.request("GET", "/v2/queues/news/stats"))[1]["messages"]["total"] == 1
    status, body, _ = await api.request("GET", "/v2/queues")
    assert [q["name"] for q in body["queues"]] == ["news"]
    assert (await api.request("GET", "/v2/topics"))[1] == {"topics": [], "links": []}


async def test_listing_pages(api: Api) -> None:
    names = ["a", "b-1", "c.2", "d_3", "e"]
    for name in names:
        assert (await api.request("PUT", f"/v2/topics/{name}"))[0] == 201
    assert (await api.request("PUT", "/v2/queues/zzz"))[0] == 201
    status, body, _ = await api.request("GET", "/v2/topics?limit=2")
    assert status == 200
    assert body["topics"] == [
        {"name": "a", "href": "/v2/topics/a"},
        {"name": "b-1", "href": "/v2/topics/b-1"},
    ]
    seen = [t["name"] for t in body["topics"]]
    while body["links"]:
        href = body["links"][0]["href"]
        assert href.startswith("/v2/topics?")
        status, body, _ = await api.request("GET", href)
        assert status == 200
        seen += [t["name"] for t in body["topics"]]
    assert seen == names
    status, body, _ = await api.request("GET", "/v2/topics?limit=21")
    assert_error(status, body, 400)
    status, body, _ = await api.request("GET", "/v2/topics", drop=("X-Project-ID",))
    assert_error(status, body, 400)
    other = {"X-Project-ID": "someone-else"}
    assert (await api.request("GET", "/v2/topics", headers=other))[1]["topics"] == []


async def test_messages(api: Api) -> None:
    ids = await post(api, {"n": 1}, {"n": 2}, {"n": 3})  # the first post creates the topic
    assert (await api.request("GET", T))[0] == 200

    status, body, _ = await api.request("GET", f"{T}/messages?echo=true&limit=2")
    assert status == 200
    assert [m["body"] for m in body["messages"]] == [{"n": 1}, {"n": 2}]
    assert body["messages"][0]["href"] == f"{T}/messages/{ids[0]}"
    status, body, _ = await api.request("GET", body["links"][0]["href"])
    assert [m["id"] for m in body["messages"]] == [ids[2]]

    status, body, _ = await api.request("GET", f"{T}/messages/{ids[1]}")
    assert status == 200
    assert body["body"] == {"n": 2}
    assert body["href"] == f"{T}/messages/{ids[1]}"
    status, body, _ = await api.request("GET", f"{T}/messages?ids={ids[0]},{ids[2]}")
    assert [m["id"] for m in body["messages"]] == [ids[0], ids[2]]

    assert (await api.request("DELETE", f"{T}/messages/{ids[1]}"))[0] == 204
    status, body, _ = await api.request("GET", f"{T}/messages/{ids[1]}")
    assert_error(status, body, 404)
    assert "topic news" in body["description"]
    assert (await api.request("DELETE", f"{T}/messages?ids={ids[0]}"))[0] == 204
    status, body, _ = await api.request("DELETE", f"{T}/messages?pop=5")
    assert status == 200
    assert [m["id"] for m in body["messages"]] == [ids[2]]


async def test_message_validation(api: Api) -> None:
    status, body, _ = await api.request("POST", f"{T}/messages", json={"messages": []})
    assert_error(status, body, 400)
    status, body, _ = await api.request(
        "POST", f"{T}/messages", json={"messages": [{"body": 1, "ttl": 10}]}
    )
    assert_error(status, body, 400)
    assert (await api.request("GET", T))[0] == 404  # a refused post creates nothing
    status, body, _ = await api.request("GET", f"{T}/messages?limit=0")
    assert_error(status, body, 400)
    status, body, _ = await api.request("DELETE", f"{T}/messages")
    assert_error(status, body, 400)


async def test_stats(api: Api) -> None:
    status, body, _ = await api.request("GET", f"{T}/stats")
    assert status == 200
    assert body == {"messages": {"claimed": 0, "free": 0, "total": 0}}
    ids = await post(api, "a", "b")
    status, body, _ = await api.request("GET", f"{T}/stats")
    messages = body["messages"]
    assert (messages["free"], messages["claimed"], messages["total"]) == (2, 0, 2)
    assert messages["oldest"]["href"] == f"{T}/messages/{ids[0]}"
    assert messages["newest"]["href"] == f"{T}/messages/{ids[1]}"


async def test_purge(api: Api) -> None:
    assert (await api.request("POST", f"{T}/purge"))[0] == 204  # a missing topic: nothing to do
    await post(api, "a", "b")
    status, body, _ = await api.request("POST", f"{T}/purge", json={"resource_types": ["claims"]})
    assert_error(status, body, 400)
    status, body, _ = await api.request("POST", f"{T}/purge", json={"resource_types": ["messages"]})
    assert status == 204
    assert (await api.request("GET", f"{T}/stats"))[1]["messages"]["total"] == 0
    assert (await api.request("GET", T))[0] == 200  # the topic stays


async def test_no_claims_on_topics(api: Api) -> None:
    await post(api, "a")
    status, _, _ = await api.request("POST", f"{T}/claims", json={"ttl": 60, "grace": 60})
    assert status in (404, 405)


# --- subscriptions on topics (the queue's store, keyed by the topic's container) ------------


async def test_subscriptions(api: Api) -> None:
    subs = f"{T}/subscriptions"
    hook = "http://example.test/hook"
    status, body, headers = await api.request("POST", subs, json={"subscriber": hook, "ttl": 600})
    assert status == 201, body
    assert headers["Location"] == subs
    sid = body["subscription_id"]
    assert (await api.request("GET", T))[0] == 200  # subscribing created the topic
    status, body, _ = await api.request("GET", f"{subs}/{sid}")
    assert status == 200
    assert (body["source"], body["subscriber"], body["ttl"]) == ("news", hook, 600)

    # A queue of the same name has subscriptions of its own.
    q_subs = "/v2/queues/news/subscriptions"
    assert (await api.request("GET", q_subs))[1]["subscriptions"] == []
    assert (await api.request("GET", f"{q_subs}/{sid}"))[0] == 404
    status, body, _ = await api.request("POST", q_subs, json={"subscriber": hook})
    assert status == 201 and body["subscription_id"] != sid
    assert [q["name"] for q in (await api.request("GET", "/v2/queues"))[1]["queues"]] == ["news"]

    status, body, _ = await api.request("GET", subs)
    assert [s["id"] for s in body["subscriptions"]] == [sid]
    assert body["subscriptions"][0]["source"] == "news"
    status, _, _ = await api.request("PATCH", f"{subs}/{sid}", json={"ttl": 900})
    assert status == 204
    status, _, _ = await api.request("PUT", f"{subs}/{sid}/confirm", json={"confirmed": True})
    assert status == 204
    body = (await api.request("GET", f"{subs}/{sid}"))[1]
    assert (body["ttl"], body["confirmed"]) == (900, True)
    status, body, _ = await api.request("POST", subs, json={"subscriber": hook})
    assert_error(status, body, 409)
    status, body, _ = await api.request("POST", subs, json={"subscriber": "ftp://x"})
    assert_error(status, body, 400)

    purge = {"resource_types": ["subscriptions"]}
    assert (await api.request("POST", f"{T}/purge", json=purge))[0] == 204
    assert (await api.request("GET", subs))[1]["subscriptions"] == []
    assert len((await api.request("GET", q_subs))[1]["subscriptions"]) == 1

    sid = (await api.request("POST", subs, json={"subscriber": hook}))[1]["subscription_id"]
    assert (await api.request("DELETE", f"{subs}/{sid}"))[0] == 204
    assert (await api.request("GET", f"{subs}/{sid}"))[0] == 404

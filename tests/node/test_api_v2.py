"""API v2 over real HTTP: every endpoint's happy path and every validation rule."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.node.conftest import Api

Q = "/v2/queues/orders"
OTHER_CLIENT = "8d4e2f10-0a1b-4c5d-8e9f-a1b2c3d4e5f6"


async def post(api: Api, *bodies: Any, ttl: int = 300, queue: str = Q) -> list[str]:
    status, body, _ = await api.request(
        "POST", f"{queue}/messages", json={"messages": [{"body": b, "ttl": ttl} for b in bodies]}
    )
    assert status == 201, body
    return [href.rsplit("/", 1)[1] for href in body["resources"]]


async def stored_total(api: Api, queue: str = Q) -> int:
    status, body, _ = await api.request("GET", f"{queue}/stats")
    assert status == 200
    total: int = body["messages"]["total"]
    return total


# What Zaqar 23 answers for each reserved attribute a queue leaves unset.
RESERVED = {
    "_max_messages_post_size": 262144,
    "_default_message_ttl": 3600,
    "_default_message_delay": 0,
    "_dead_letter_queue": None,
    "_dead_letter_queue_messages_ttl": None,
    "_max_claim_count": None,
    "_enable_encrypt_messages": False,
}


def assert_error(status: int, body: Any, expected: int, title: str | None = None) -> None:
    assert status == expected, body
    assert set(body) == {"title", "description"}, body
    assert body["description"]
    if title is not None:
        assert body["title"] == title


# --- service endpoints ---------------------------------------------------------------------------


async def test_versions_document(api: Api) -> None:
    status, body, _ = await api.request("GET", "/", drop=("Client-ID", "X-Project-ID"))
    assert status == 300
    assert [v["id"] for v in body["versions"]] == ["1", "1.1", "2"]


async def test_home_document(api: Api) -> None:
    status, body, headers = await api.request("GET", "/v2/")
    assert status == 200
    assert "rel/queues" in body["resources"]
    assert body["resources"]["rel/queue"]["href-template"] == "/v2/queues/{queue_name}"


async def test_ping_and_health(api: Api) -> None:
    assert (await api.request("GET", "/v2/ping"))[0] == 204
    assert (await api.request("HEAD", "/v2/ping"))[0] == 204
    status, body, _ = await api.request("GET", "/v2/health")
    assert status == 200 and body["storage_reachable"] is True
    assert (await api.request("HEAD", "/v2/health"))[0] == 204


async def test_request_id_echoed(api: Api) -> None:
    _, _, headers = await api.request(
        "GET", "/v2/ping", headers={"X-Openstack-Request-ID": "req-x"}
    )
    assert headers["X-Openstack-Request-ID"] == "req-x"
    _, _, headers = await api.request("GET", "/v2/ping")
    assert headers["X-Openstack-Request-ID"].startswith("req-")


async def test_unknown_route_and_method(api: Api) -> None:
    status, body, _ = await api.request("GET", "/v2/nothing-here")
    assert_error(status, body, 404)
    status, body, headers = await api.request("POST", Q)
    assert_error(status, body, 405)
    assert "PUT" in headers["Allow"]


# --- queues --------------------------------------------------------------------------------------


async def test_queue_lifecycle(api: Api) -> None:
    status, _, headers = await api.request("PUT", Q, json={"color": "blue"})
    assert status == 201 and headers["Location"] == Q
    assert (await api.request("PUT", Q))[0] == 204
    status, body, _ = await api.request("GET", Q)
    assert status == 200
    assert body["color"] == "blue"
    assert body["_default_message_ttl"] == 3600
    assert body["_max_messages_post_size"] == 262144
    assert (await api.request("DELETE", Q))[0] == 204
    assert (await api.request("DELETE", Q))[0] == 204
    status, body, _ = await api.request("GET", Q)
    assert status == 200 and "color" not in body  # lazy queues: a missing queue reads as empty
    _, listed, _ = await api.request("GET", "/v2/queues")
    assert listed["queues"] == []


async def test_queue_list_paging_and_detail(api: Api) -> None:
    for name in ["c", "a", "b"]:
        await api.request("PUT", f"/v2/queues/{name}", json={"n": name})
    status, body, _ = await api.request("GET", "/v2/queues?limit=2&detailed=true")
    assert status == 200
    assert [(q["name"], q["metadata"], q["href"]) for q in body["queues"]] == [
        ("a", {"n": "a", **RESERVED}, "/v2/queues/a"),
        ("b", {"n": "b", **RESERVED}, "/v2/queues/b"),
    ]
    [link] = body["links"]
    assert link["rel"] == "next"
    status, body, _ = await api.request("GET", link["href"])
    assert [q["name"] for q in body["queues"]] == ["c"]
    status, body, _ = await api.request("GET", body["links"][0]["href"])
    assert body == {"queues": [], "links": []}


async def test_queue_patch(api: Api) -> None:
    await api.request("PUT", Q, json={"a": 1, "b": 2})
    patch = "application/openstack-messaging-v2.0-json-patch"
    ops = [
        {"op": "add", "path": "/metadata/c", "value": 3},
        {"op": "replace", "path": "/metadata/a", "value": 10},
        {"op": "remove", "path": "/metadata/b"},
    ]
    status, body, _ = await api.request(
        "PATCH", Q, data=json.dumps(ops), headers={"Content-Type": patch}
    )
    assert status == 200
    assert body["a"] == 10 and body["c"] == 3 and "b" not in body
    status, body, _ = await api.request("GET", Q)
    assert body["a"] == 10 and "b" not in body
    status, body, _ = await api.request(
        "PATCH",
        Q,
        data=json.dumps([{"op": "replace", "path": "/metadata/zz", "value": 1}]),
        headers={"Content-Type": patch},
    )
    assert_error(status, body, 409)
    status, body, _ = await api.request("PATCH", Q, json=ops)
    assert_error(status, body, 415)
    status, body, _ = await api.request(
        "PATCH",
        Q,
        data=json.dumps([{"op": "move", "path": "/metadata/a"}]),
        headers={"Content-Type": patch},
    )
    assert_error(status, body, 400, "Invalid request body")  # Zaqar's HTTPBadRequestBody
    status, body, _ = await api.request(
        "PATCH", "/v2/queues/missing", data=json.dumps(ops[:1]), headers={"Content-Type": patch}
    )
    assert_error(status, body, 404)


async def test_queue_stats(api: Api) -> None:
    status, body, _ = await api.request("GET", f"{Q}/stats")
    assert status == 200 and body == {"messages": {"claimed": 0, "free": 0, "total": 0}}
    ids = await post(api, 1, 2, 3)
    await api.request("POST", f"{Q}/claims?limit=1", json={"ttl": 60, "grace": 60})
    status, body, _ = await api.request("GET", f"{Q}/stats")
    stats = body["messages"]
    assert (stats["claimed"], stats["free"], stats["total"]) == (1, 2, 3)
    assert stats["oldest"]["href"] == f"{Q}/messages/{ids[0]}"
    assert stats["newest"]["href"] == f"{Q}/messages/{ids[2]}"


async def test_queue_purge(api: Api) -> None:
    await api.request("PUT", Q, json={"keep": True})
    await post(api, 1, 2)
    assert (await api.request("POST", f"{Q}/purge", json={"resource_types": ["messages"]}))[
        0
    ] == 204
    assert await stored_total(api) == 0
    assert (await api.request("GET", Q))[1]["keep"] is True
    status, body, _ = await api.request("POST", f"{Q}/purge", json={"resource_types": ["bogus"]})
    assert_error(status, body, 400)
    status, body, _ = await api.request("POST", "/v2/queues/missing/purge", json={})
    assert_error(status, body, 400)


async def test_tenant_isolation(api: Api) -> None:
    await post(api, "secret")
    other = {"X-Project-ID": "someone-else"}
    status, body, _ = await api.request("GET", f"{Q}/messages?echo=true", headers=other)
    assert status == 200 and body["messages"] == []
    status, body, _ = await api.request("GET", "/v2/queues", headers=other)
    assert body["queues"] == []
    await api.request("DELETE", Q, headers=other)
    assert await stored_total(api) == 1


# --- messages ------------------------------------------------------------------------------------


async def test_post_list_get_delete(api: Api) -> None:
    status, body, headers = await api.request(
        "POST",
        f"{Q}/messages",
        json={"messages": [{"body": {"event": "a"}, "ttl": 120}, {"body": [1, 2]}]},
    )
    assert status == 201
    ids = [h.rsplit("/", 1)[1] for h in body["resources"]]
    assert headers["Location"] == f"{Q}/messages?ids={','.join(ids)}"
    status, body, _ = await api.request("GET", f"{Q}/messages?echo=true")
    assert status == 200
    assert [(m["id"], m["body"], m["ttl"]) for m in body["messages"]] == [
        (ids[0], {"event": "a"}, 120),
        (ids[1], [1, 2], 3600),
    ]
    status, body, _ = await api.request("GET", f"{Q}/messages/{ids[0]}")
    assert status == 200 and body["body"] == {"event": "a"} and body["href"].endswith(ids[0])
    status, body, _ = await api.request("GET", f"{Q}/messages?ids={ids[1]},{ids[0]}")
    assert sorted(m["id"] for m in body["messages"]) == sorted(ids)
    assert (await api.request("DELETE", f"{Q}/messages/{ids[0]}"))[0] == 204
    status, body, _ = await api.request("GET", f"{Q}/messages/{ids[0]}")
    assert_error(status, body, 404, "Not found")


async def test_list_echo_and_paging(api: Api) -> None:
    await post(api, *range(5))
    status, body, _ = await api.request("GET", f"{Q}/messages")
    assert body == {"messages": [], "links": []}  # own messages hidden without echo
    status, body, _ = await api.request(
        "GET", f"{Q}/messages?limit=2", headers={"Client-ID": OTHER_CLIENT}
    )
    assert [m["body"] for m in body["messages"]] == [0, 1]
    seen = [m["body"] for m in body["messages"]]
    while body["links"]:
        status, body, _ = await api.request(
            "GET", body["links"][0]["href"], headers={"Client-ID": OTHER_CLIENT}
        )
        seen.extend(m["body"] for m in body["messages"])
    assert seen == [0, 1, 2, 3, 4]


async def test_unreadable_marker_lists_nothing(api: Api) -> None:
    await post(api, 1)
    status, body, _ = await api.request("GET", f"{Q}/messages?echo=true&marker=abc")
    assert status == 200 and body == {"messages": [], "links": []}


async def test_list_include_claimed(api: Api) -> None:
    await post(api, 1, 2)
    status, body, _ = await api.request("POST", f"{Q}/claims?limit=1")
    claim_id = body["messages"][0]["href"].split("claim_id=")[1]
    status, body, _ = await api.request("GET", f"{Q}/messages?echo=true")
    assert [m["body"] for m in body["messages"]] == [2]
    status, body, _ = await api.request("GET", f"{Q}/messages?echo=true&include_claimed=true")
    assert [m["body"] for m in body["messages"]] == [1, 2]
    assert body["messages"][0]["href"].endswith(f"?claim_id={claim_id}")


async def test_post_uses_queue_default_ttl_and_delay(api: Api) -> None:
    await api.request("PUT", Q, json={"_default_message_ttl": 90, "_default_message_delay": 30})
    status, body, _ = await api.request("POST", f"{Q}/messages", json={"messages": [{"body": 1}]})
    assert status == 201
    status, body, _ = await api.request("GET", f"{Q}/messages?echo=true")
    assert body["messages"] == []  # delayed by the queue's default
    status, body, _ = await api.request("GET", f"{Q}/messages?echo=true&include_delayed=true")
    assert body["messages"][0]["ttl"] == 90
    api.clock.advance(31)
    status, body, _ = await api.request("GET", f"{Q}/messages?echo=true")
    assert [m["body"] for m in body["messages"]] == [1]


async def test_bulk_delete_and_pop(api: Api) -> None:
    ids = await post(api, 1, 2, 3, 4, 5)
    assert (await api.request("DELETE", f"{Q}/messages?ids={ids[0]},{ids[1]}"))[0] == 204
    status, body, _ = await api.request("DELETE", f"{Q}/messages?pop=2")
    assert status == 200
    assert [m["body"] for m in body["messages"]] == [3, 4]
    assert await stored_total(api) == 1


async def test_messages_expire(api: Api) -> None:
    await post(api, "soon", ttl=60)
    await post(api, "later", ttl=600)
    api.clock.advance(61)
    status, body, _ = await api.request("GET", f"{Q}/messages?echo=true")
    assert [m["body"] for m in body["messages"]] == ["later"]


# --- claims --------------------------------------------------------------------------------------


async def test_claim_lifecycle(api: Api) -> None:
    ids = await post(api, "a", "b", "c")
    status, body, headers = await api.request(
        "POST", f"{Q}/claims?limit=2", json={"ttl": 120, "grace": 60}
    )
    assert status == 201
    claim_href = headers["Location"]
    claim_id = claim_href.rsplit("/", 1)[1]
    assert [m["id"] for m in body["messages"]] == ids[:2]
    assert all(m["href"].endswith(f"?claim_id={claim_id}") for m in body["messages"])
    api.clock.advance(5)
    status, body, _ = await api.request("GET", claim_href)
    assert status == 200
    assert (body["ttl"], body["age"], body["href"]) == (120, 5, claim_href)
    assert len(body["messages"]) == 2
    assert (await api.request("PATCH", claim_href, json={"ttl": 300, "grace": 60}))[0] == 204
    assert (await api.request("GET", claim_href))[1]["ttl"] == 300
    status, body, _ = await api.request("DELETE", f"{Q}/messages/{ids[0]}")
    assert_error(status, body, 403)
    assert (await api.request("DELETE", f"{Q}/messages/{ids[0]}?claim_id={claim_id}"))[0] == 204
    assert (await api.request("DELETE", claim_href))[0] == 204
    status, body, _ = await api.request("GET", claim_href)
    assert_error(status, body, 404)
    status, body, _ = await api.request("GET", f"{Q}/messages?echo=true")
    assert [m["body"] for m in body["messages"]] == ["b", "c"]


async def test_claim_nothing_to_claim(api: Api) -> None:
    status, body, _ = await api.request("POST", f"{Q}/claims")
    assert status == 204 and body is None


async def test_claim_expires_and_frees_messages(api: Api) -> None:
    await post(api, "x")
    status, _, headers = await api.request("POST", f"{Q}/claims", json={"ttl": 60, "grace": 60})
    assert status == 201
    api.clock.advance(61)
    assert (await api.request("GET", headers["Location"]))[0] == 404
    status, body, _ = await api.request("POST", f"{Q}/claims")
    assert status == 201 and [m["body"] for m in body["messages"]] == ["x"]


async def test_delete_with_wrong_claim(api: Api) -> None:
    ids = await post(api, "a", "b")
    _, _, headers = await api.request("POST", f"{Q}/claims?limit=1")
    claim_id = headers["Location"].rsplit("/", 1)[1]
    status, body, _ = await api.request("DELETE", f"{Q}/messages/{ids[1]}?claim_id={claim_id}")
    assert_error(status, body, 400, "Unable to delete")
    status, body, _ = await api.request("DELETE", f"{Q}/messages/{ids[1]}?claim_id=nonsense")
    assert_error(status, body, 400, "Unable to delete")
    assert await stored_total(api) == 2


# --- validation: every rule, with nothing stored --------------------------------------------------

BIG = "x" * (256 * 1024)


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "title"),
    [
        (
            "POST",
            "/v2/queues/bad name/messages",
            {"json": {"messages": [{"body": 1}]}},
            400,
            "Invalid queue identification",
        ),
        (
            "POST",
            "/v2/queues/" + "q" * 65 + "/messages",
            {"json": {"messages": [{"body": 1}]}},
            400,
            "Invalid queue identification",
        ),
        (
            "POST",
            "/v2/queues/ünï/messages",
            {"json": {"messages": [{"body": 1}]}},
            400,
            "Invalid queue identification",
        ),
        (
            "POST",
            f"{Q}/messages",
            {"json": {"messages": [{"body": BIG}]}},
            400,
            "Invalid API request",
        ),
        (
            "POST",
            f"{Q}/messages",
            {"json": {"messages": [{"body": 1, "ttl": 59}]}},
            400,
            "Invalid API request",
        ),
        (
            "POST",
            f"{Q}/messages",
            {"json": {"messages": [{"body": 1, "ttl": 1209601}]}},
            400,
            "Invalid API request",
        ),
        (
            "POST",
            f"{Q}/messages",
            {"json": {"messages": [{"body": 1, "ttl": "60"}]}},
            400,
            "Invalid request body",
        ),
        (
            "POST",
            f"{Q}/messages",
            {"json": {"messages": [{"body": 1, "delay": 901}]}},
            400,
            "Invalid API request",
        ),
        (
            "POST",
            f"{Q}/messages",
            {"json": {"messages": [{"ttl": 60}]}},
            400,
            "Invalid request body",
        ),
        ("POST", f"{Q}/messages", {"json": {"messages": []}}, 400, "Invalid API request"),
        ("POST", f"{Q}/messages", {"json": {"messages": {"body": 1}}}, 400, "Invalid request body"),
        ("POST", f"{Q}/messages", {"json": {"nothing": []}}, 400, "Invalid API request"),
        ("POST", f"{Q}/messages", {"json": [{"body": 1}]}, 400, "Invalid API request"),
        (
            "POST",
            f"{Q}/messages",
            {"data": b'{"messages": [{"body": 1'},
            400,
            "Invalid request body",
        ),
        (
            "POST",
            f"{Q}/messages",
            {"data": b'{"messages": [{"body": 1, "ttl": 1e999999}]}'},
            400,
            "Invalid request body",
        ),
        (
            "POST",
            f"{Q}/messages",
            {
                "data": b'{"messages": [{"body": 1}]}',
                "headers": {"Content-Type": "application/x-www-form-urlencoded"},
            },
            400,
            "Invalid Content-Type",
        ),
        (
            "POST",
            f"{Q}/messages",
            {"json": {"messages": [{"body": 1}]}, "drop": ("Client-ID",)},
            400,
            "Missing header value",
        ),
        (
            "POST",
            f"{Q}/messages",
            {"json": {"messages": [{"body": 1}]}, "headers": {"Client-ID": "not-a-uuid"}},
            400,
            "Wrong UUID value",
        ),
        (
            "POST",
            f"{Q}/messages",
            {"json": {"messages": [{"body": 1}]}, "drop": ("X-Project-ID",)},
            400,
            "Project-Id Missing",
        ),
        (
            "POST",
            f"{Q}/messages",
            {"json": {"messages": [{"body": 1}]}, "headers": {"X-Project-ID": ""}},
            400,
            "Empty project header not allowed",
        ),
        (
            "POST",
            f"{Q}/messages",
            {"json": {"messages": [{"body": 1}]}, "headers": {"X-Project-ID": "p" * 257}},
            400,
            "Invalid queue identification",
        ),
        (
            "POST",
            f"{Q}/messages",
            {"json": {"messages": [{"body": 1}]}, "headers": {"Accept": "text/html"}},
            406,
            None,
        ),
        ("GET", f"{Q}/messages?limit=0", {}, 400, "Invalid API request"),
        ("GET", f"{Q}/messages?limit=21", {}, 400, "Invalid API request"),
        ("GET", f"{Q}/messages?limit=ten", {}, 400, "Invalid parameter"),
        ("GET", f"{Q}/messages?echo=maybe", {}, 400, "Invalid parameter"),
        ("GET", "/v2/queues?limit=21", {}, 400, "Invalid API request"),
        ("GET", "/v2/queues?limit=0", {}, 400, "Invalid API request"),
        ("GET", f"{Q}/messages?ids=" + ",".join(["a" * 24] * 21), {}, 400, "Invalid API request"),
        ("GET", f"{Q}/messages/{'a' * 24}", {}, 404, "Not found"),
        ("GET", f"{Q}/messages?ids={'a' * 24}", {}, 404, "Not found"),
        ("DELETE", f"{Q}/messages", {}, 400, "Invalid API request"),
        ("DELETE", f"{Q}/messages?pop=21", {}, 400, "Invalid API request"),
        ("DELETE", f"{Q}/messages?pop=0", {}, 400, "Invalid API request"),
        ("DELETE", f"{Q}/messages?pop=1&ids={'a' * 24}", {}, 400, "Invalid API request"),
        ("POST", f"{Q}/claims", {"json": {"ttl": 59}}, 400, "Invalid API request"),
        ("POST", f"{Q}/claims", {"json": {"ttl": 43201}}, 400, "Invalid API request"),
        ("POST", f"{Q}/claims", {"json": {"ttl": 60, "grace": 59}}, 400, "Invalid API request"),
        ("POST", f"{Q}/claims", {"json": {"ttl": 60, "grace": 43201}}, 400, "Invalid API request"),
        ("POST", f"{Q}/claims", {"json": {"ttl": "60"}}, 400, "Invalid request body"),
        ("POST", f"{Q}/claims", {"json": [60]}, 400, "Invalid request body"),
        ("POST", f"{Q}/claims?limit=21", {}, 400, "Invalid API request"),
        ("POST", f"{Q}/claims?limit=0", {}, 400, "Invalid API request"),
        ("POST", f"{Q}/claims", {"data": b"{oops"}, 400, "Invalid request body"),
        ("GET", f"{Q}/claims/{'a' * 24}", {}, 404, "Not found"),
        ("GET", f"{Q}/claims/not-an-id", {}, 404, "Not found"),
        ("PATCH", f"{Q}/claims/{'a' * 24}", {"json": {"ttl": 60}}, 404, "Not found"),
        ("PATCH", f"{Q}/claims/{'a' * 24}", {"json": {"ttl": 30}}, 400, "Invalid API request"),
        ("PATCH", f"{Q}/claims/{'a' * 24}", {}, 400, "Invalid request body"),
        ("PUT", Q, {"json": ["not", "an", "object"]}, 400, "Invalid request body"),
        ("PUT", Q, {"json": {"big": "x" * (64 * 1024)}}, 400, "Invalid API request"),
        ("PUT", Q, {"json": {"_default_message_ttl": 10}}, 400, "Invalid API request"),
        ("PUT", Q, {"json": {"_default_message_ttl": "60"}}, 400, "Invalid API request"),
        ("PUT", Q, {"json": {"_max_messages_post_size": 262145}}, 400, "Invalid API request"),
        ("PUT", Q, {"data": b"{nope"}, 400, "Invalid request body"),
    ],
)
async def test_validation(
    api: Api, method: str, path: str, kwargs: dict[str, Any], status: int, title: str | None
) -> None:
    await api.request("PUT", "/v2/queues/witness")
    got, body, _ = await api.request(method, path, **kwargs)
    assert_error(got, body, status, title)
    # Nothing stored: no messages anywhere, and only the witness queue exists.
    _, listed, _ = await api.request("GET", "/v2/queues")
    assert [q["name"] for q in listed["queues"]] == ["witness"]
    assert await stored_total(api) == 0


async def test_claim_validation_leaves_messages_free(api: Api) -> None:
    await post(api, 1)
    status, body, _ = await api.request("POST", f"{Q}/claims", json={"ttl": 10})
    assert_error(status, body, 400)
    status, body, _ = await api.request("GET", f"{Q}/stats")
    assert body["messages"]["free"] == 1


async def test_queue_max_post_size_from_metadata(api: Api) -> None:
    await api.request("PUT", Q, json={"_max_messages_post_size": 100})
    status, body, _ = await api.request(
        "POST", f"{Q}/messages", json={"messages": [{"body": "x" * 200}]}
    )
    assert_error(status, body, 400, "Invalid API request")
    assert "100" in body["description"]
    assert await stored_total(api) == 0


async def test_client_id_header_required_everywhere(api: Api) -> None:
    status, body, _ = await api.request("GET", "/v2/queues", drop=("Client-ID",))
    assert_error(status, body, 400, "Missing header value")

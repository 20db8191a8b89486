"""API v1.1 over real HTTP: every endpoint's happy path and every validation rule of v1.1."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.node.conftest import Api

V = "/v1.1"
Q = f"{V}/queues/orders"
OTHER_CLIENT = "8d4e2f10-0a1b-4c5d-8e9f-a1b2c3d4e5f6"
UNKNOWN_ID = "5f1e2d3c4b5a697887766554"
URLENCODED = {"Content-Type": "application/x-www-form-urlencoded"}

BAD_CONTENT_TYPE = (
    "Endpoint does not accept `application/x-www-form-urlencoded` content; currently supported "
    "media type is `application/json`; specify proper client-side media type with the "
    '"Content-Type" header.'
)
BAD_QUEUE = "The format of the submitted queue name or project id is not valid."
TTL_BOUNDS = (
    "The TTL for a message may not exceed 1209600 seconds, and must be at least 60 seconds long."
)
CLAIM_TTL_BOUNDS = (
    "The TTL for a claim may not exceed 43200 seconds, and must be at least 60 seconds long."
)
CLAIM_GRACE_BOUNDS = (
    "The grace for a claim may not exceed 43200 seconds, and must be at least 60 seconds long."
)


def assert_error(
    response: tuple[int, Any, dict[str, str]],
    status: int,
    title: str,
    description: str | None = None,
) -> None:
    got, body, _ = response
    assert got == status, body
    assert isinstance(body, dict) and set(body) == {"title", "description"}, body
    assert body["title"] == title
    if description is not None:
        assert body["description"] == description
    else:
        assert body["description"]


async def post(api: Api, *bodies: Any, ttl: int = 300, queue: str = Q) -> list[str]:
    status, body, _ = await api.request(
        "POST", f"{queue}/messages", json={"messages": [{"body": b, "ttl": ttl} for b in bodies]}
    )
    assert status == 201, body
    return [href.rsplit("/", 1)[1] for href in body["resources"]]


async def queue_names(api: Api) -> list[str]:
    status, body, _ = await api.request("GET", f"{V}/queues")
    assert status == 200, body
    return [q["name"] for q in body["queues"]]


async def stored_total(api: Api, queue: str = Q) -> int:
    status, body, _ = await api.request("GET", f"{queue}/stats")
    assert status == 200, body
    total: int = body["messages"]["total"]
    return total


async def listed_bodies(api: Api, queue: str = Q, query: str = "echo=true") -> list[Any]:
    status, body, _ = await api.request("GET", f"{queue}/messages?{query}")
    assert status == 200, body
    return [m["body"] for m in body["messages"]]


async def claim(api: Api, query: str = "", **document: Any) -> tuple[str, list[dict[str, Any]]]:
    status, body, headers = await api.request(
        "POST", f"{Q}/claims{query}", json=document or {"ttl": 100, "grace": 60}
    )
    assert status == 201, body
    return headers["Location"].rsplit("/", 1)[1], body["messages"]


# --- service endpoints ---------------------------------------------------------------------------


async def test_home_document(api: Api) -> None:
    for path in (V, f"{V}/"):
        status, body, headers = await api.request("GET", path)
        assert status == 200
        assert headers["Content-Type"].startswith("application/json-home")
        resources = body["resources"]
        assert resources["rel/queue"]["href-template"] == f"{V}/queues/{{queue_name}}"
        assert resources["rel/queue"]["hints"]["allow"] == ["PUT", "DELETE"]
        assert resources["rel/ping"]["href"] == f"{V}/ping"
        assert "rel/queue_purge" not in resources and "rel/post_claim" in resources


async def test_ping_and_health(api: Api) -> None:
    assert (await api.request("GET", f"{V}/ping"))[0] == 204
    assert (await api.request("HEAD", f"{V}/ping"))[0] == 204
    status, body, _ = await api.request("GET", f"{V}/health")
    assert status == 200 and body["storage_reachable"] is True
    assert (await api.request("HEAD", f"{V}/health"))[0] == 204


@pytest.mark.parametrize(
    ("method", "path", "status", "title"),
    [
        ("PATCH", Q, 405, "Method not allowed"),  # queue PATCH came with v2
        ("POST", f"{Q}/purge", 404, "Not found"),  # so did purge
        ("GET", f"{V}/nothing", 404, "Not found"),
    ],
)
async def test_what_v1_1_does_not_have(
    api: Api, method: str, path: str, status: int, title: str
) -> None:
    await post(api, "kept")
    assert_error(await api.request(method, path, json={"a": 1}), status, title)
    assert await stored_total(api) == 1


# --- headers, for every kind of route -------------------------------------------------------------


HEADER_CASES = [
    pytest.param(
        {"drop": ("Client-ID",)},
        400,
        "Missing header value",
        "The Client-ID header is required.",
        id="missing-client-id",
    ),
    pytest.param(
        {"headers": {"Client-ID": "not-a-uuid"}},
        400,
        "Wrong UUID value",
        "Malformed hexadecimal UUID.",
        id="bad-client-id",
    ),
    pytest.param(
        {"drop": ("X-Project-ID",)},
        400,
        "Project-Id Missing",
        "The header X-PROJECT-ID was missing",
        id="missing-project",
    ),
    pytest.param(
        {"headers": {"X-Project-ID": ""}},
        400,
        "Empty project header not allowed",
        "X-PROJECT-ID cannot be an empty string. Specify the right header X-PROJECT-ID and retry.",
        id="empty-project",
    ),
    pytest.param(
        {"headers": {"Accept": "text/plain"}},
        406,
        "Media type not acceptable",
        None,
        id="not-json-accept",
    ),
]
WRITES = [
    ("PUT", Q, {"k": "v"}),
    ("POST", f"{Q}/messages", {"messages": [{"body": 1, "ttl": 60}]}),
]


@pytest.mark.parametrize(("method", "path", "document"), WRITES)
@pytest.mark.parametrize(("options", "status", "title", "description"), HEADER_CASES)
async def test_headers_checked_before_any_write(
    api: Api,
    method: str,
    path: str,
    document: Any,
    options: dict[str, Any],
    status: int,
    title: str,
    description: str | None,
) -> None:
    response = await api.request(method, path, json=document, **options)
    assert_error(response, status, title, description)
    assert await queue_names(api) == []


@pytest.mark.parametrize(("options", "status", "title", "description"), HEADER_CASES)
async def test_headers_checked_on_reads(
    api: Api, options: dict[str, Any], status: int, title: str, description: str | None
) -> None:
    await post(api, "x")
    for path in (f"{V}/queues", f"{Q}/messages?echo=true", f"{Q}/stats"):
        assert_error(await api.request("GET", path, **options), status, title, description)


@pytest.mark.parametrize(
    "name", ["bad@name", "n" * 65, "caf%C3%A9"], ids=["symbol", "too-long", "non-ascii"]
)
@pytest.mark.parametrize(
    ("method", "suffix", "document"),
    [
        ("PUT", "", None),
        ("POST", "/messages", {"messages": [{"body": 1}]}),
        ("POST", "/claims", None),
        ("GET", "/stats", None),
    ],
)
async def test_bad_queue_name(api: Api, name: str, method: str, suffix: str, document: Any) -> None:
    response = await api.request(method, f"{V}/queues/{name}{suffix}", json=document)
    assert_error(response, 400, "Invalid queue identification", BAD_QUEUE)
    assert await queue_names(api) == []


async def test_project_id_too_long(api: Api) -> None:
    response = await api.request("PUT", Q, headers={"X-Project-ID": "p" * 257})
    assert_error(response, 400, "Invalid queue identification", BAD_QUEUE)
    assert await queue_names(api) == []


# --- queues --------------------------------------------------------------------------------------


async def test_queue_lifecycle(api: Api) -> None:
    status, _, headers = await api.request("PUT", Q, json={"color": "blue"})
    assert status == 201 and headers["Location"] == Q
    assert (await api.request("PUT", Q))[0] == 204
    status, body, _ = await api.request("GET", Q)
    assert status == 200 and body == {"color": "blue"}  # no reserved defaults in v1.1
    status, _, _ = await api.request("PUT", Q, json={"color": "red"})
    assert status == 204
    assert (await api.request("GET", Q))[1] == {"color": "red"}
    assert (await api.request("DELETE", Q))[0] == 204
    assert await queue_names(api) == []
    # Queues are lazy: Zaqar's storage answers a missing queue's metadata as empty.
    status, body, _ = await api.request("GET", Q)
    assert (status, body) == (200, {})
    assert await queue_names(api) == []
    assert (await api.request("DELETE", Q))[0] == 204


async def test_queue_put_takes_reserved_attributes_unchecked(api: Api) -> None:
    # v2 refuses these values; v1.1 has no reserved-attribute checks.
    metadata = {"_default_message_ttl": 5, "_max_messages_post_size": "big"}
    assert (await api.request("PUT", Q, json=metadata))[0] == 201
    assert (await api.request("GET", Q))[1] == metadata


async def test_queues_are_scoped_by_project(api: Api) -> None:
    assert (await api.request("PUT", Q, json={"mine": True}))[0] == 201
    other = {"X-Project-ID": "other"}
    status, body, _ = await api.request("GET", f"{V}/queues", headers=other)
    assert status == 200 and body["queues"] == []
    assert (await api.request("GET", Q, headers=other))[1] == {}
    assert (await api.request("DELETE", Q, headers=other))[0] == 204
    assert (await api.request("GET", Q))[1] == {"mine": True}


async def test_queue_listing(api: Api) -> None:
    status, body, _ = await api.request("GET", f"{V}/queues")
    assert status == 200 and body == {"queues": [], "links": []}
    for name in ("q1", "q2", "q3"):
        await api.request("PUT", f"{V}/queues/{name}", json={"n": name})
    status, body, _ = await api.request("GET", f"{V}/queues?limit=2")
    assert [q["name"] for q in body["queues"]] == ["q1", "q2"]
    assert body["queues"][0] == {"name": "q1", "href": f"{V}/queues/q1"}
    next_href = body["links"][0]["href"]
    assert next_href == f"{V}/queues?limit=2&marker=q2"
    status, body, _ = await api.request("GET", next_href)
    assert status == 200 and [q["name"] for q in body["queues"]] == ["q3"]
    status, body, _ = await api.request("GET", f"{V}/queues?detailed=true&marker=q1")
    assert [q["metadata"] for q in body["queues"]] == [{"n": "q2"}, {"n": "q3"}]
    status, body, _ = await api.request("GET", f"{V}/queues?marker=zzz")
    assert status == 200 and body == {"queues": [], "links": []}


@pytest.mark.parametrize(
    ("query", "title", "description"),
    [
        ("limit=0", "Invalid API request", "Limit must be at least 1 and no greater than 20."),
        ("limit=21", "Invalid API request", "Limit must be at least 1 and no greater than 20."),
        (
            "limit=many",
            "Invalid parameter",
            'The "limit" parameter is invalid. The value must be an integer.',
        ),
        (
            "detailed=maybe",
            "Invalid parameter",
            'The "detailed" parameter is invalid. The value of the parameter must be "true" or '
            '"false".',
        ),
    ],
)
async def test_queue_listing_validation(api: Api, query: str, title: str, description: str) -> None:
    await api.request("PUT", Q)
    assert_error(await api.request("GET", f"{V}/queues?{query}"), 400, title, description)


@pytest.mark.parametrize(
    ("options", "title", "description"),
    [
        pytest.param(
            {"data": "{"},
            "Invalid request body",
            "Request body could not be parsed.",
            id="malformed",
        ),
        pytest.param(
            {"data": "[]"}, "Invalid request body", "Document type not supported.", id="array"
        ),
        pytest.param(
            {"data": '"text"'}, "Invalid request body", "Document type not supported.", id="string"
        ),
        pytest.param(
            {"data": '{"n": 99999999999999999999}'},
            "Invalid request body",
            "JSON contains integer that is too large.",
            id="int-overflow",
        ),
        pytest.param(
            {"json": {"pad": "x" * 65536}},
            "Invalid API request",
            "Queue metadata is too large. Max size: 65536",
            id="too-large",
        ),
        pytest.param(
            {"data": "a=b", "headers": URLENCODED},
            "Invalid Content-Type",
            BAD_CONTENT_TYPE,
            id="urlencoded",
        ),
    ],
)
async def test_queue_put_validation(
    api: Api, options: dict[str, Any], title: str, description: str
) -> None:
    assert_error(await api.request("PUT", Q, **options), 400, title, description)
    assert await queue_names(api) == []


# --- stats ---------------------------------------------------------------------------------------


async def test_stats(api: Api) -> None:
    empty = {"messages": {"claimed": 0, "free": 0, "total": 0}}
    assert (await api.request("GET", f"{Q}/stats"))[1] == empty  # missing queue: no 404 in v1.1
    await api.request("PUT", Q)
    assert (await api.request("GET", f"{Q}/stats"))[1] == empty
    first, *_, last = await post(api, "a", "b", "c")
    await claim(api, "?limit=1")
    api.clock.advance(10)
    status, body, _ = await api.request("GET", f"{Q}/stats")
    assert status == 200
    stats = body["messages"]
    assert (stats["claimed"], stats["free"], stats["total"]) == (1, 2, 3)
    assert stats["oldest"]["href"] == f"{Q}/messages/{first}"
    assert stats["newest"]["href"] == f"{Q}/messages/{last}"
    assert stats["oldest"]["age"] == 10 and stats["newest"]["created"].endswith("Z")


# --- posting messages ----------------------------------------------------------------------------


async def test_post_creates_the_queue_lazily(api: Api) -> None:
    status, body, headers = await api.request(
        "POST", f"{Q}/messages", json={"messages": [{"body": {"k": 1}, "ttl": 120}, {"body": 2}]}
    )
    assert status == 201
    assert set(body) == {"resources"}  # no `partial` since v1.1
    ids = [href.rsplit("/", 1)[1] for href in body["resources"]]
    assert body["resources"] == [f"{Q}/messages/{i}" for i in ids]
    assert headers["Location"] == f"{Q}/messages?ids={','.join(ids)}"
    assert await queue_names(api) == ["orders"]
    status, message, _ = await api.request("GET", f"{Q}/messages/{ids[1]}")
    assert status == 200
    assert message == {
        "id": ids[1],
        "href": f"{Q}/messages/{ids[1]}",
        "ttl": 3600,
        "age": 0,
        "body": 2,
    }


async def test_post_has_no_delay_and_ignores_queue_defaults(api: Api) -> None:
    await api.request("PUT", Q, json={"_default_message_ttl": 120, "_max_messages_post_size": 100})
    big = "x" * 200  # over the queue's own limit, which v1.1 does not read
    status, body, _ = await api.request(
        "POST", f"{Q}/messages", json={"messages": [{"body": big, "delay": 300}]}
    )
    assert status == 201, body
    status, body, _ = await api.request("GET", f"{Q}/messages?echo=true")
    assert [(m["body"], m["ttl"]) for m in body["messages"]] == [(big, 3600)]


BIG = {"messages": [{"body": "x" * (256 * 1024), "ttl": 60}]}


@pytest.mark.parametrize(
    ("options", "title", "description"),
    [
        pytest.param(
            {"json": BIG},
            "Invalid API request",
            "Message collection size is too large. Max size 262144",
            id="too-large",
        ),
        pytest.param(
            {"data": "{"},
            "Invalid request body",
            "Request body could not be parsed.",
            id="malformed",
        ),
        pytest.param(
            {"data": ""}, "Invalid request body", "Request body can not be empty", id="empty"
        ),
        pytest.param(
            {"json": [{"body": 1, "ttl": 60}]},
            "Invalid API request",
            "No messages were found in the request body.",
            id="v1-array",
        ),
        pytest.param(
            {"json": {"message": []}},
            "Invalid API request",
            "No messages were found in the request body.",
            id="no-messages-key",
        ),
        pytest.param(
            {"json": {"messages": {"body": 1}}},
            "Invalid request body",
            "Document type not supported.",
            id="messages-not-a-list",
        ),
        pytest.param(
            {"json": {"messages": []}},
            "Invalid API request",
            "No messages to enqueu.",
            id="no-messages",
        ),
        pytest.param(
            {"json": {"messages": [1]}},
            "Invalid request body",
            "Document type not supported.",
            id="message-not-an-object",
        ),
        pytest.param(
            {"json": {"messages": [{"ttl": 60}]}},
            "Invalid request body",
            'Missing "body" field.',
            id="no-body",
        ),
        pytest.param(
            {"json": {"messages": [{"body": 1, "ttl": "60"}]}},
            "Invalid request body",
            'The value of the "ttl" field must be a int.',
            id="ttl-not-int",
        ),
        pytest.param(
            {"json": {"messages": [{"body": 1, "ttl": 59}]}},
            "Invalid API request",
            TTL_BOUNDS,
            id="ttl-too-short",
        ),
        pytest.param(
            {"json": {"messages": [{"body": 1, "ttl": 1_209_601}]}},
            "Invalid API request",
            TTL_BOUNDS,
            id="ttl-too-long",
        ),
        pytest.param(
            {"json": {"messages": [{"body": 1, "ttl": 60}, {"body": 2, "ttl": 0}]}},
            "Invalid API request",
            TTL_BOUNDS,
            id="one-bad-ttl-refuses-all",
        ),
        pytest.param(
            {"data": "messages=1", "headers": URLENCODED},
            "Invalid Content-Type",
            BAD_CONTENT_TYPE,
            id="urlencoded",
        ),
    ],
)
async def test_post_validation(
    api: Api, options: dict[str, Any], title: str, description: str
) -> None:
    assert_error(await api.request("POST", f"{Q}/messages", **options), 400, title, description)
    assert await queue_names(api) == []  # not even created lazily
    assert await stored_total(api) == 0


async def test_post_at_the_size_limit_is_accepted(api: Api) -> None:
    document = {"messages": [{"body": "", "ttl": 60}]}
    raw = json.dumps(document)
    document["messages"][0]["body"] = "x" * (256 * 1024 - len(raw))
    data = json.dumps(document)
    assert len(data) == 256 * 1024
    assert (await api.request("POST", f"{Q}/messages", data=data))[0] == 201


# --- listing and reading messages ----------------------------------------------------------------


async def test_listing_pages_and_echo(api: Api) -> None:
    ids = await post(api, *range(5))
    status, body, _ = await api.request("GET", f"{Q}/messages", headers={"Client-ID": OTHER_CLIENT})
    assert status == 200 and [m["body"] for m in body["messages"]] == [0, 1, 2, 3, 4]
    assert body["messages"][0] == {
        "id": ids[0],
        "href": f"{Q}/messages/{ids[0]}",
        "ttl": 300,
        "age": 0,
        "body": 0,
    }
    # Without echo a client does not see its own messages.
    assert (await api.request("GET", f"{Q}/messages"))[1] == {"messages": [], "links": []}
    status, body, _ = await api.request("GET", f"{Q}/messages?echo=true&limit=2")
    assert [m["body"] for m in body["messages"]] == [0, 1]
    seen = []
    href = f"{Q}/messages?echo=true&limit=2"
    while True:
        status, body, _ = await api.request("GET", href)
        assert status == 200
        if not body["messages"]:
            assert body["links"] == []
            break
        seen += [m["body"] for m in body["messages"]]
        href = body["links"][0]["href"]
    assert seen == [0, 1, 2, 3, 4]


async def test_listing_claimed_and_unknown_things(api: Api) -> None:
    await post(api, "a", "b")
    claim_id, _ = await claim(api, "?limit=1")
    assert await listed_bodies(api) == ["b"]
    status, body, _ = await api.request("GET", f"{Q}/messages?echo=true&include_claimed=true")
    assert [m["body"] for m in body["messages"]] == ["a", "b"]
    assert body["messages"][0]["href"].endswith(f"?claim_id={claim_id}")
    # include_delayed is a v2 parameter: v1.1 ignores it, even a malformed one.
    assert await listed_bodies(api, query="echo=true&include_delayed=bogus") == ["b"]
    # A marker storage cannot read lists nothing; so does a missing queue.
    assert await listed_bodies(api, query="echo=true&marker=sfhlsfdjh2048") == []
    assert await listed_bodies(api, f"{V}/queues/nowhere") == []
    assert await queue_names(api) == ["orders"]  # reading did not create a queue


@pytest.mark.parametrize(
    ("query", "title", "description"),
    [
        (
            "limit=0",
            "Invalid API request",
            "Limit must be at least 1 and may not be greater than 20.",
        ),
        (
            "limit=21",
            "Invalid API request",
            "Limit must be at least 1 and may not be greater than 20.",
        ),
        (
            "limit=21&marker=junk",
            "Invalid API request",
            "Limit must be at least 1 and may not be greater than 20.",
        ),
        (
            "limit=x",
            "Invalid parameter",
            'The "limit" parameter is invalid. The value must be an integer.',
        ),
        (
            "echo=maybe",
            "Invalid parameter",
            'The "echo" parameter is invalid. The value of the parameter must be "true" or '
            '"false".',
        ),
        (
            "include_claimed=2",
            "Invalid parameter",
            'The "include_claimed" parameter is invalid. The value of the parameter must be '
            '"true" or "false".',
        ),
        (
            "ids=" + ",".join([UNKNOWN_ID] * 21),
            "Invalid API request",
            "Limit must be at least 1 and may not be greater than 20.",
        ),
    ],
)
async def test_listing_validation(api: Api, query: str, title: str, description: str) -> None:
    await post(api, "a")
    assert_error(await api.request("GET", f"{Q}/messages?{query}"), 400, title, description)


async def test_get_one_and_many(api: Api) -> None:
    a, b = await post(api, "a", "b")
    status, body, _ = await api.request("GET", f"{Q}/messages?ids={a},{UNKNOWN_ID},{b}")
    assert status == 200
    assert [(m["id"], m["body"]) for m in body["messages"]] == [(a, "a"), (b, "b")]
    assert_error(await api.request("GET", f"{Q}/messages?ids={UNKNOWN_ID}"), 404, "Not found")
    for missing in (UNKNOWN_ID, "not-an-id"):
        assert_error(await api.request("GET", f"{Q}/messages/{missing}"), 404, "Not found")
    assert_error(
        await api.request("GET", f"{Q}/messages/{a}", headers={"X-Project-ID": "other"}),
        404,
        "Not found",
    )


async def test_messages_expire(api: Api) -> None:
    (a,) = await post(api, "short", ttl=60)
    api.clock.advance(61)
    assert_error(await api.request("GET", f"{Q}/messages/{a}"), 404, "Not found")
    assert await listed_bodies(api) == []


# --- deleting messages ---------------------------------------------------------------------------


async def test_delete_one_and_many(api: Api) -> None:
    a, b, c, d = await post(api, "a", "b", "c", "d")
    assert (await api.request("DELETE", f"{Q}/messages/{a}"))[0] == 204
    assert (await api.request("DELETE", f"{Q}/messages/{a}"))[0] == 204  # already gone: fine
    assert (await api.request("DELETE", f"{Q}/messages?ids={b},{UNKNOWN_ID},{c}"))[0] == 204
    assert await listed_bodies(api) == ["d"]


async def test_pop(api: Api) -> None:
    ids = await post(api, "a", "b", "c")
    api.clock.advance(5)
    status, body, _ = await api.request("DELETE", f"{Q}/messages?pop=2")
    assert status == 200
    assert body == {
        "messages": [
            {"id": ids[0], "ttl": 300, "age": 5, "body": "a"},
            {"id": ids[1], "ttl": 300, "age": 5, "body": "b"},
        ]
    }
    assert await listed_bodies(api) == ["c"]
    status, body, _ = await api.request("DELETE", f"{V}/queues/empty/messages?pop=1")
    assert status == 200 and body == {"messages": []}


@pytest.mark.parametrize(
    ("query", "description"),
    [
        (
            "",
            'The request should have either "ids" or "pop" parameter in the request, to be able '
            "to delete.",
        ),
        (
            f"ids={UNKNOWN_ID}&pop=1",
            "pop and id params cannot be present together in the delete request.",
        ),
        ("pop=0", "Pop value must be at least 1 and may not be greater than 20."),
        ("pop=21", "Pop value must be at least 1 and may not be greater than 20."),
        (
            "ids=" + ",".join([UNKNOWN_ID] * 21),
            "ids parameter should have at least 1 and not greater than 20 values.",
        ),
    ],
)
async def test_delete_validation(api: Api, query: str, description: str) -> None:
    await post(api, "kept")
    response = await api.request("DELETE", f"{Q}/messages?{query}")
    assert_error(response, 400, "Invalid API request", description)
    assert await stored_total(api) == 1


async def test_delete_of_a_claimed_message(api: Api) -> None:
    (a,) = await post(api, "a")
    claim_id, _ = await claim(api)
    assert_error(
        await api.request("DELETE", f"{Q}/messages/{a}"),
        403,
        "Unable to delete",
        "This message is claimed; it cannot be deleted without a valid claim ID.",
    )
    assert_error(
        await api.request("DELETE", f"{Q}/messages/{a}?claim_id=bogus"),
        400,
        "Unable to delete",
        "The specified claim does not exist or has expired.",
    )
    assert await stored_total(api) == 1
    assert (await api.request("DELETE", f"{Q}/messages/{a}?claim_id={claim_id}"))[0] == 204
    assert await stored_total(api) == 0


async def test_delete_naming_a_claim_of_a_free_message(api: Api) -> None:
    (a,) = await post(api, "a")
    assert_error(
        await api.request("DELETE", f"{Q}/messages/{a}?claim_id={UNKNOWN_ID}"),
        400,
        "Unable to delete",
        "A claim was specified, but the message is not currently claimed.",
    )
    assert await stored_total(api) == 1


# --- claims --------------------------------------------------------------------------------------


async def test_claim_lifecycle(api: Api) -> None:
    ids = await post(api, "a", "b", "c")
    status, body, headers = await api.request(
        "POST", f"{Q}/claims?limit=2", json={"ttl": 120, "grace": 60}
    )
    assert status == 201
    claim_id = headers["Location"].rsplit("/", 1)[1]
    assert headers["Location"] == f"{Q}/claims/{claim_id}"
    assert [(m["id"], m["body"]) for m in body["messages"]] == [(ids[0], "a"), (ids[1], "b")]
    assert body["messages"][0]["href"] == f"{Q}/messages/{ids[0]}?claim_id={claim_id}"
    api.clock.advance(30)
    status, body, _ = await api.request("GET", f"{Q}/claims/{claim_id}")
    assert status == 200
    assert (body["ttl"], body["age"], body["href"]) == (120, 30, f"{Q}/claims/{claim_id}")
    assert [m["body"] for m in body["messages"]] == ["a", "b"]
    assert (await api.request("PATCH", f"{Q}/claims/{claim_id}", json={"ttl": 300}))[0] == 204
    status, body, _ = await api.request("GET", f"{Q}/claims/{claim_id}")
    assert body["ttl"] == 300
    # Held messages live until the claim ends plus its grace (grace defaults to 60 in v1.1).
    assert [m["ttl"] for m in body["messages"]] == [360, 360]
    assert await listed_bodies(api) == ["c"]
    assert (await api.request("DELETE", f"{Q}/claims/{claim_id}"))[0] == 204
    assert await listed_bodies(api) == ["a", "b", "c"]
    assert_error(await api.request("GET", f"{Q}/claims/{claim_id}"), 404, "Not found")
    assert (await api.request("DELETE", f"{Q}/claims/{claim_id}"))[0] == 204


async def test_claim_defaults_and_nothing_to_claim(api: Api) -> None:
    assert (await api.request("POST", f"{V}/queues/nowhere/claims"))[0] == 204
    await post(api, "a")
    status, _, headers = await api.request("POST", f"{Q}/claims")  # no body: defaults
    assert status == 201
    status, body, _ = await api.request("GET", headers["Location"])
    assert body["ttl"] == 300
    assert (await api.request("POST", f"{Q}/claims", json={"ttl": 60, "grace": 60}))[0] == 204


async def test_claim_expires(api: Api) -> None:
    await post(api, "a")
    claim_id, _ = await claim(api, ttl=60, grace=60)
    api.clock.advance(61)
    assert_error(await api.request("GET", f"{Q}/claims/{claim_id}"), 404, "Not found")
    assert_error(
        await api.request("PATCH", f"{Q}/claims/{claim_id}", json={"ttl": 60}), 404, "Not found"
    )
    assert await listed_bodies(api) == ["a"]


@pytest.mark.parametrize(
    ("query", "options", "title", "description"),
    [
        pytest.param(
            "", {"json": {"ttl": 59}}, "Invalid API request", CLAIM_TTL_BOUNDS, id="ttl-too-short"
        ),
        pytest.param(
            "",
            {"json": {"ttl": 43_201}},
            "Invalid API request",
            CLAIM_TTL_BOUNDS,
            id="ttl-too-long",
        ),
        pytest.param(
            "",
            {"json": {"ttl": 60, "grace": 59}},
            "Invalid API request",
            CLAIM_GRACE_BOUNDS,
            id="grace-too-short",
        ),
        pytest.param(
            "",
            {"json": {"ttl": 60, "grace": 43_201}},
            "Invalid API request",
            CLAIM_GRACE_BOUNDS,
            id="grace-too-long",
        ),
        pytest.param(
            "?limit=0",
            {},
            "Invalid API request",
            "Limit must be at least 1 and may not be greater than 20.",
            id="limit-0",
        ),
        pytest.param(
            "?limit=21",
            {},
            "Invalid API request",
            "Limit must be at least 1 and may not be greater than 20.",
            id="limit-21",
        ),
        pytest.param(
            "?limit=some",
            {},
            "Invalid parameter",
            'The "limit" parameter is invalid. The value must be an integer.',
            id="limit-not-int",
        ),
        pytest.param(
            "",
            {"data": "{"},
            "Invalid request body",
            "Request body could not be parsed.",
            id="malformed",
        ),
        pytest.param(
            "", {"json": [60]}, "Invalid request body", "Document type not supported.", id="array"
        ),
        pytest.param(
            "",
            {"json": {"ttl": "60"}},
            "Invalid request body",
            'The value of the "ttl" field must be a int.',
            id="ttl-not-int",
        ),
        pytest.param(
            "",
            {"data": "ttl=60", "headers": URLENCODED},
            "Invalid Content-Type",
            BAD_CONTENT_TYPE,
            id="urlencoded",
        ),
    ],
)
async def test_claim_validation(
    api: Api, query: str, options: dict[str, Any], title: str, description: str
) -> None:
    await post(api, "a")
    response = await api.request("POST", f"{Q}/claims{query}", **options)
    assert_error(response, 400, title, description)
    assert await listed_bodies(api) == ["a"]  # nothing was claimed


@pytest.mark.parametrize(
    ("options", "title", "description"),
    [
        pytest.param({"json": {"ttl": 59}}, "Invalid API request", CLAIM_TTL_BOUNDS, id="short"),
        pytest.param({"json": {"ttl": 43_201}}, "Invalid API request", CLAIM_TTL_BOUNDS, id="long"),
        pytest.param(
            {"data": "{"},
            "Invalid request body",
            "Request body could not be parsed.",
            id="malformed",
        ),
        pytest.param({}, "Invalid request body", "Request body can not be empty", id="no-body"),
        pytest.param(
            {"json": ["ttl"]}, "Invalid request body", "Document type not supported.", id="array"
        ),
    ],
)
async def test_claim_update_validation(
    api: Api, options: dict[str, Any], title: str, description: str
) -> None:
    await post(api, "a")
    claim_id, _ = await claim(api, ttl=100, grace=60)
    response = await api.request("PATCH", f"{Q}/claims/{claim_id}", **options)
    assert_error(response, 400, title, description)
    assert (await api.request("GET", f"{Q}/claims/{claim_id}"))[1]["ttl"] == 100


async def test_claim_update_of_unknown_claim(api: Api) -> None:
    await post(api, "a")
    response = await api.request("PATCH", f"{Q}/claims/{UNKNOWN_ID}", json={"ttl": 60})
    assert_error(response, 404, "Not found")
    assert await listed_bodies(api) == ["a"]

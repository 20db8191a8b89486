"""API v1 (Marconi v1.0) over real HTTP: every endpoint's happy path and every validation rule."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.node.conftest import Api

V = "/v1"
Q = f"{V}/queues/orders"
OTHER_CLIENT = "8d4e2f10-0a1b-4c5d-8e9f-a1b2c3d4e5f6"
UNKNOWN_ID = "5f1e2d3c4b5a697887766554"
URLENCODED = {"Content-Type": "application/x-www-form-urlencoded"}
NO_HEADERS = ("Client-ID", "X-Project-ID")

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
PAGE_LIMIT = "Limit must be at least 1 and may not be greater than 20."
RESERVED = (
    'Reserved queue attributes in metadata (which names start with "_") can not be set in API v1.'
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


async def create(api: Api, queue: str = Q) -> None:
    assert (await api.request("PUT", queue))[0] == 201


async def post(api: Api, *bodies: Any, ttl: int = 300, queue: str = Q) -> list[str]:
    status, body, _ = await api.request(
        "POST", f"{queue}/messages", json=[{"body": b, "ttl": ttl} for b in bodies]
    )
    assert status == 201, body
    return [href.rsplit("/", 1)[1] for href in body["resources"]]


async def queue_names(api: Api) -> list[str]:
    status, body, _ = await api.request("GET", f"{V}/queues")
    if status == 204:
        return []
    assert status == 200, body
    return [q["name"] for q in body["queues"]]


async def stored_total(api: Api, queue: str = Q) -> int:
    status, body, _ = await api.request("GET", f"{queue}/stats")
    assert status == 200, body
    total: int = body["messages"]["total"]
    return total


async def listed_bodies(api: Api, queue: str = Q, query: str = "echo=true") -> list[Any]:
    status, body, _ = await api.request("GET", f"{queue}/messages?{query}")
    if status == 204:
        assert body is None
        return []
    assert status == 200, body
    return [m["body"] for m in body["messages"]]


async def claim(api: Api, query: str = "", **document: Any) -> tuple[str, list[dict[str, Any]]]:
    status, body, headers = await api.request(
        "POST", f"{Q}/claims{query}", json=document or {"ttl": 100, "grace": 60}
    )
    assert status == 201, body
    return headers["Location"].rsplit("/", 1)[1], body


# --- service endpoints ---------------------------------------------------------------------------


async def test_home_document(api: Api) -> None:
    for path in (V, f"{V}/"):
        status, body, headers = await api.request("GET", path, drop=NO_HEADERS)
        assert status == 200
        assert headers["Content-Type"].startswith("application/json-home")
        resources = body["resources"]
        assert set(resources) == {
            "rel/queues",
            "rel/queue",
            "rel/queue-metadata",
            "rel/queue-stats",
            "rel/messages",
            "rel/post-messages",
            "rel/claim",
        }
        assert resources["rel/queue"]["hints"]["allow"] == ["GET", "HEAD", "PUT", "DELETE"]
        assert resources["rel/queue-metadata"]["href-template"] == (
            f"{V}/queues/{{queue_name}}/metadata"
        )


async def test_health(api: Api) -> None:
    for method in ("GET", "HEAD"):
        status, body, _ = await api.request(method, f"{V}/health", drop=NO_HEADERS)
        assert (status, body) == (204, None)
    assert_error(await api.request("GET", f"{V}/ping"), 404, "Not found")  # ping came in v1.1


# --- headers -------------------------------------------------------------------------------------


async def test_ids_are_optional_for_queues_and_claims(api: Api) -> None:
    assert (await api.request("PUT", Q, drop=NO_HEADERS))[0] == 201
    assert (await api.request("HEAD", Q, drop=NO_HEADERS))[0] == 204
    # Without X-Project-ID the queue lives in the project "": another project does not see it.
    assert (await api.request("HEAD", Q))[0] == 404
    status, body, _ = await api.request("GET", f"{V}/queues", drop=NO_HEADERS)
    assert status == 200 and [q["name"] for q in body["queues"]] == ["orders"]
    status, _, _ = await api.request(
        "POST", f"{Q}/messages", json=[{"body": 1, "ttl": 60}], drop=("X-Project-ID",)
    )
    assert status == 201
    status, body, headers = await api.request(
        "POST", f"{Q}/claims", json={"ttl": 60, "grace": 60}, drop=NO_HEADERS
    )
    assert status == 201 and [m["body"] for m in body] == [1]
    status, body, _ = await api.request("GET", headers["Location"], drop=NO_HEADERS)
    assert status == 200 and body["ttl"] == 60


@pytest.mark.parametrize(
    ("options", "title", "description"),
    [
        pytest.param(
            {"drop": ("Client-ID",)},
            "Missing header value",
            "The Client-ID header is required.",
            id="missing-client-id",
        ),
        pytest.param(
            {"headers": {"Client-ID": "0xdeadbeef"}},
            "Wrong UUID value",
            "Malformed hexadecimal UUID.",
            id="bad-client-id",
        ),
        pytest.param(
            {"headers": {"Client-ID": ""}},
            "Wrong UUID value",
            "Malformed hexadecimal UUID.",
            id="empty-client-id",
        ),
        pytest.param(
            {"headers": {"X-Project-ID": ""}},
            "Empty project header not allowed",
            "X-PROJECT-ID cannot be an empty string. Specify the right header "
            "X-PROJECT-ID and retry.",
            id="empty-project",
        ),
    ],
)
async def test_client_id_is_required_to_post_and_list(
    api: Api, options: dict[str, Any], title: str, description: str
) -> None:
    await create(api)
    response = await api.request("POST", f"{Q}/messages", json=[{"body": 1, "ttl": 60}], **options)
    assert_error(response, 400, title, description)
    assert await stored_total(api) == 0
    await post(api, "kept")
    response = await api.request("GET", f"{Q}/messages?echo=true", **options)
    assert_error(response, 400, title, description)


async def test_empty_project_is_refused_everywhere(api: Api) -> None:
    for method in ("PUT", "GET", "HEAD", "DELETE"):
        status, body, _ = await api.request(method, Q, headers={"X-Project-ID": ""})
        assert status == 400
        if method != "HEAD":
            assert body["title"] == "Empty project header not allowed"
    assert await queue_names(api) == []


async def test_not_acceptable(api: Api) -> None:
    response = await api.request("PUT", Q, headers={"Accept": "text/plain"})
    assert_error(response, 406, "Media type not acceptable")
    assert await queue_names(api) == []


@pytest.mark.parametrize(
    "name", ["bad@name", "n" * 65, "caf%C3%A9"], ids=["symbol", "too-long", "non-ascii"]
)
@pytest.mark.parametrize(
    ("method", "suffix", "document"),
    [
        ("PUT", "", None),
        ("GET", "", None),
        ("PUT", "/metadata", {"k": 1}),
        ("POST", "/messages", [{"body": 1, "ttl": 60}]),
        ("POST", "/claims", {"ttl": 60, "grace": 60}),
        ("GET", "/stats", None),
    ],
)
async def test_bad_queue_name(api: Api, name: str, method: str, suffix: str, document: Any) -> None:
    response = await api.request(method, f"{V}/queues/{name}{suffix}", json=document)
    assert_error(response, 400, "Invalid queue identification", BAD_QUEUE)
    assert await queue_names(api) == []


# --- queues --------------------------------------------------------------------------------------


async def test_queue_lifecycle(api: Api) -> None:
    for method in ("GET", "HEAD"):
        status, body, _ = await api.request(method, Q)
        assert (status, body) == (404, None)  # a bare 404: v1 answers whether it exists
    status, _, headers = await api.request("PUT", Q, json={"ignored": True})
    assert status == 201 and headers["Location"] == Q
    assert (await api.request("PUT", Q))[0] == 204
    for method in ("GET", "HEAD"):
        status, body, headers = await api.request(method, Q)
        assert (status, body, headers["Content-Location"]) == (204, None, Q)
    assert (await api.request("GET", f"{Q}/metadata"))[1] == {}  # a PUT body sets nothing
    assert (await api.request("DELETE", Q))[0] == 204
    assert (await api.request("HEAD", Q))[0] == 404
    assert (await api.request("DELETE", Q))[0] == 204


async def test_queue_listing(api: Api) -> None:
    status, body, _ = await api.request("GET", f"{V}/queues")
    assert (status, body) == (204, None)
    for name in ("q1", "q2", "q3"):
        await create(api, f"{V}/queues/{name}")
        await api.request("PUT", f"{V}/queues/{name}/metadata", json={"n": name})
    status, body, _ = await api.request("GET", f"{V}/queues?limit=2")
    assert status == 200
    assert body["queues"] == [
        {"name": "q1", "href": f"{V}/queues/q1"},
        {"name": "q2", "href": f"{V}/queues/q2"},
    ]
    assert body["links"] == [{"rel": "next", "href": f"{V}/queues?limit=2&marker=q2"}]
    status, body, _ = await api.request("GET", body["links"][0]["href"])
    assert [q["name"] for q in body["queues"]] == ["q3"]
    status, body, _ = await api.request("GET", body["links"][0]["href"])
    assert (status, body) == (204, None)  # the tail
    status, body, _ = await api.request("GET", f"{V}/queues?detailed=true&limit=1")
    assert body["queues"] == [{"name": "q1", "href": f"{V}/queues/q1", "metadata": {"n": "q1"}}]


@pytest.mark.parametrize(
    ("query", "title", "description"),
    [
        ("limit=0", "Invalid API request", "Limit must be at least 1 and no greater than 20."),
        ("limit=21", "Invalid API request", "Limit must be at least 1 and no greater than 20."),
        (
            "limit=x",
            "Invalid parameter",
            'The "limit" parameter is invalid. The value must be an integer.',
        ),
        (
            "detailed=2",
            "Invalid parameter",
            'The "detailed" parameter is invalid. The value of the parameter must be "true" or '
            '"false".',
        ),
    ],
)
async def test_queue_listing_validation(api: Api, query: str, title: str, description: str) -> None:
    await create(api)
    assert_error(await api.request("GET", f"{V}/queues?{query}"), 400, title, description)


# --- metadata ------------------------------------------------------------------------------------


async def test_metadata(api: Api) -> None:
    assert_error(await api.request("GET", f"{Q}/metadata"), 404, "Not found")
    response = await api.request("PUT", f"{Q}/metadata", json={"a": 1})
    assert_error(response, 404, "Not found")
    assert await queue_names(api) == []  # setting metadata does not create the queue
    await create(api)
    status, body, headers = await api.request("PUT", f"{Q}/metadata", json={"a": 1, "b": [2]})
    assert (status, body, headers["Location"]) == (204, None, f"{Q}/metadata")
    status, body, _ = await api.request("GET", f"{Q}/metadata")
    assert (status, body) == (200, {"a": 1, "b": [2]})
    assert (await api.request("PUT", f"{Q}/metadata", json={"c": 3}))[0] == 204
    assert (await api.request("GET", f"{Q}/metadata"))[1] == {"c": 3}  # replaced, not merged


async def test_metadata_shows_what_newer_versions_stored(api: Api) -> None:
    await api.request("PUT", "/v1.1/queues/orders", json={"_default_message_ttl": 120, "x": 1})
    status, body, _ = await api.request("GET", f"{Q}/metadata")
    assert (status, body) == (200, {"_default_message_ttl": 120, "x": 1})


@pytest.mark.parametrize(
    ("options", "title", "description"),
    [
        pytest.param(
            {"json": {"_default_message_ttl": 60}}, "Invalid API request", RESERVED, id="reserved"
        ),
        pytest.param(
            {"json": {"ok": 1, "_x": 1}}, "Invalid API request", RESERVED, id="any-underscore-key"
        ),
        pytest.param({}, "Invalid request body", "Request body can not be empty", id="no-body"),
        pytest.param(
            {"data": ""}, "Invalid request body", "Request body can not be empty", id="empty"
        ),
        pytest.param(
            {"data": "{"},
            "Invalid request body",
            "Request body could not be parsed.",
            id="malformed",
        ),
        pytest.param(
            {"data": "  "}, "Invalid request body", "Request body could not be parsed.", id="blank"
        ),
        pytest.param(
            {"json": []}, "Invalid request body", "Document type not supported.", id="array"
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
async def test_metadata_validation(
    api: Api, options: dict[str, Any], title: str, description: str
) -> None:
    await create(api)
    await api.request("PUT", f"{Q}/metadata", json={"before": True})
    assert_error(await api.request("PUT", f"{Q}/metadata", **options), 400, title, description)
    assert (await api.request("GET", f"{Q}/metadata"))[1] == {"before": True}


# --- stats ---------------------------------------------------------------------------------------


async def test_stats(api: Api) -> None:
    assert_error(await api.request("GET", f"{Q}/stats"), 404, "Not found")  # unlike v1.1
    await create(api)
    status, body, _ = await api.request("GET", f"{Q}/stats")
    assert (status, body) == (200, {"messages": {"claimed": 0, "free": 0, "total": 0}})
    first, *_, last = await post(api, "a", "b", "c")
    await claim(api, "?limit=1")
    api.clock.advance(7)
    stats = (await api.request("GET", f"{Q}/stats"))[1]["messages"]
    assert (stats["claimed"], stats["free"], stats["total"]) == (1, 2, 3)
    assert stats["oldest"]["href"] == f"{Q}/messages/{first}"
    assert stats["newest"]["href"] == f"{Q}/messages/{last}"
    assert stats["newest"]["age"] == 7


# --- posting messages ----------------------------------------------------------------------------


async def test_post(api: Api) -> None:
    await create(api)
    status, body, headers = await api.request(
        "POST", f"{Q}/messages", json=[{"body": {"k": 1}, "ttl": 120}, {"body": [2], "ttl": 60}]
    )
    assert status == 201
    ids = [href.rsplit("/", 1)[1] for href in body["resources"]]
    assert body == {"partial": False, "resources": [f"{Q}/messages/{i}" for i in ids]}
    assert headers["Location"] == f"{Q}/messages?ids={','.join(ids)}"
    status, message, _ = await api.request("GET", f"{Q}/messages/{ids[0]}")
    assert (status, message) == (
        200,
        {"href": f"{Q}/messages/{ids[0]}", "ttl": 120, "age": 0, "body": {"k": 1}},
    )


async def test_post_to_a_missing_queue(api: Api) -> None:
    response = await api.request("POST", f"{Q}/messages", json=[{"body": 1, "ttl": 60}])
    assert_error(response, 404, "Not found")
    assert await queue_names(api) == []  # v1 never creates a queue lazily


BIG = [{"body": "x" * (256 * 1024), "ttl": 60}]


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
            {"data": "["},
            "Invalid request body",
            "Request body could not be parsed.",
            id="malformed",
        ),
        pytest.param(
            {"data": ""}, "Invalid request body", "Request body can not be empty", id="empty"
        ),
        pytest.param(
            {"data": '[{"ttl": 99999999999999999999, "body": 1}]'},
            "Invalid request body",
            "JSON contains integer that is too large.",
            id="int-overflow",
        ),
        pytest.param(
            {"json": {"messages": [{"body": 1, "ttl": 60}]}},
            "Invalid request body",
            "Document type not supported.",
            id="v1_1-object",
        ),
        pytest.param(
            {"json": []}, "Invalid API request", "No messages to enqueu.", id="no-messages"
        ),
        pytest.param(
            {"json": ["text"]},
            "Invalid request body",
            "Document type not supported.",
            id="message-not-an-object",
        ),
        pytest.param(
            {"json": [{"body": 1}]}, "Invalid request body", 'Missing "ttl" field.', id="no-ttl"
        ),
        pytest.param(
            {"json": [{"ttl": 60}, {"body": 1}]},
            "Invalid request body",
            'Missing "body" field.',
            id="first-bad-message-wins",
        ),
        pytest.param(
            {"json": [{"ttl": 60, "body": 1}, {"body": 1}]},
            "Invalid request body",
            'Missing "ttl" field.',
            id="second-has-no-ttl",
        ),
        pytest.param(
            {"json": [{"ttl": 6.5, "body": 1}]},
            "Invalid request body",
            'The value of the "ttl" field must be a int.',
            id="ttl-not-int",
        ),
        pytest.param(
            {"json": [{"ttl": 59, "body": 1}]},
            "Invalid API request",
            TTL_BOUNDS,
            id="ttl-too-short",
        ),
        pytest.param(
            {"json": [{"ttl": 1_209_601, "body": 1}]},
            "Invalid API request",
            TTL_BOUNDS,
            id="ttl-too-long",
        ),
        pytest.param(
            {"data": "ttl=60", "headers": URLENCODED},
            "Invalid Content-Type",
            BAD_CONTENT_TYPE,
            id="urlencoded",
        ),
    ],
)
async def test_post_validation(
    api: Api, options: dict[str, Any], title: str, description: str
) -> None:
    await create(api)
    assert_error(await api.request("POST", f"{Q}/messages", **options), 400, title, description)
    assert await stored_total(api) == 0


async def test_post_at_the_size_limit_is_accepted(api: Api) -> None:
    await create(api)
    document = [{"body": "", "ttl": 60}]
    document[0]["body"] = "x" * (256 * 1024 - len(json.dumps(document)))
    data = json.dumps(document)
    assert len(data) == 256 * 1024
    assert (await api.request("POST", f"{Q}/messages", data=data))[0] == 201


# --- listing and reading messages ----------------------------------------------------------------


async def test_listing(api: Api) -> None:
    await create(api)
    assert (await api.request("GET", f"{Q}/messages"))[:2] == (204, None)
    ids = await post(api, *range(5))
    # Without echo a client does not see its own messages: an empty page is 204 in v1.
    assert (await api.request("GET", f"{Q}/messages"))[:2] == (204, None)
    status, body, _ = await api.request(
        "GET", f"{Q}/messages?limit=2", headers={"Client-ID": OTHER_CLIENT}
    )
    assert status == 200
    assert body["messages"] == [
        {"href": f"{Q}/messages/{ids[0]}", "ttl": 300, "age": 0, "body": 0},
        {"href": f"{Q}/messages/{ids[1]}", "ttl": 300, "age": 0, "body": 1},
    ]
    seen = []
    href = f"{Q}/messages?echo=true&limit=2"
    while True:
        status, body, _ = await api.request("GET", href)
        if status == 204:
            break
        assert status == 200
        seen += [m["body"] for m in body["messages"]]
        href = body["links"][0]["href"]
    assert seen == [0, 1, 2, 3, 4]


async def test_listing_claimed_and_unknown_things(api: Api) -> None:
    await create(api)
    a, _ = await post(api, "a", "b")
    await claim(api, "?limit=1")
    assert await listed_bodies(api) == ["b"]
    status, body, _ = await api.request("GET", f"{Q}/messages?echo=true&include_claimed=true")
    hrefs = [m["href"] for m in body["messages"]]
    assert hrefs[0] == f"{Q}/messages/{a}"  # a claimed message's href names no claim in v1
    assert await listed_bodies(api, query="echo=true&marker=sfhlsfdjh2048") == []
    assert (await api.request("GET", f"{V}/queues/nowhere/messages"))[:2] == (204, None)
    assert await queue_names(api) == ["orders"]


@pytest.mark.parametrize(
    ("query", "title", "description"),
    [
        ("limit=0", "Invalid API request", PAGE_LIMIT),
        ("limit=21", "Invalid API request", PAGE_LIMIT),
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
        ("ids=" + ",".join([UNKNOWN_ID] * 21), "Invalid API request", PAGE_LIMIT),
    ],
)
async def test_listing_validation(api: Api, query: str, title: str, description: str) -> None:
    await create(api)
    await post(api, "a")
    assert_error(await api.request("GET", f"{Q}/messages?{query}"), 400, title, description)


async def test_get_one_and_many(api: Api) -> None:
    await create(api)
    a, b = await post(api, "a", "b")
    claim_id, _ = await claim(api, "?limit=1")
    # Reading by id needs no Client-ID, and answers a bare array.
    status, body, _ = await api.request(
        "GET", f"{Q}/messages?ids={a},{UNKNOWN_ID},{b}", drop=("Client-ID",)
    )
    assert status == 200
    assert body == [
        {"href": f"{Q}/messages/{a}", "ttl": 300, "age": 0, "body": "a"},
        {"href": f"{Q}/messages/{b}", "ttl": 300, "age": 0, "body": "b"},
    ]
    assert (await api.request("GET", f"{Q}/messages?ids={UNKNOWN_ID}"))[:2] == (204, None)
    status, body, _ = await api.request("GET", f"{Q}/messages/{a}", drop=("Client-ID",))
    assert status == 200 and body["href"] == f"{Q}/messages/{a}" and claim_id not in body["href"]
    for missing in (UNKNOWN_ID, "not-an-id"):
        assert_error(await api.request("GET", f"{Q}/messages/{missing}"), 404, "Not found")


# --- deleting messages ---------------------------------------------------------------------------


async def test_delete_one_and_many(api: Api) -> None:
    await create(api)
    a, b, c, d = await post(api, "a", "b", "c", "d")
    assert (await api.request("DELETE", f"{Q}/messages/{a}", drop=("Client-ID",)))[0] == 204
    assert (await api.request("DELETE", f"{Q}/messages/{a}"))[0] == 204
    assert (await api.request("DELETE", f"{Q}/messages?ids={b},{UNKNOWN_ID},{c}"))[0] == 204
    assert await listed_bodies(api) == ["d"]
    await api.request("DELETE", Q)
    assert (await api.request("DELETE", f"{Q}/messages?ids={d}"))[0] == 204  # queue gone: fine


@pytest.mark.parametrize(
    ("query", "title", "description"),
    [
        ("", "Missing parameter", 'The "ids" parameter is required.'),
        ("ids=", "Missing parameter", 'The "ids" parameter is required.'),
        ("pop=1", "Missing parameter", 'The "ids" parameter is required.'),  # no pop in v1
        ("ids=" + ",".join([UNKNOWN_ID] * 21), "Invalid API request", PAGE_LIMIT),
    ],
)
async def test_delete_validation(api: Api, query: str, title: str, description: str) -> None:
    await create(api)
    await post(api, "kept")
    assert_error(await api.request("DELETE", f"{Q}/messages?{query}"), 400, title, description)
    assert await stored_total(api) == 1


async def test_delete_of_a_claimed_message(api: Api) -> None:
    await create(api)
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


# --- claims --------------------------------------------------------------------------------------


async def test_claim_lifecycle(api: Api) -> None:
    await create(api)
    ids = await post(api, "a", "b", "c")
    status, body, headers = await api.request(
        "POST", f"{Q}/claims?limit=2", json={"ttl": 120, "grace": 60}
    )
    assert status == 201
    claim_id = headers["Location"].rsplit("/", 1)[1]
    assert headers["Location"] == f"{Q}/claims/{claim_id}"
    assert body == [  # a bare array of messages without ids
        {"href": f"{Q}/messages/{ids[0]}?claim_id={claim_id}", "ttl": 300, "age": 0, "body": "a"},
        {"href": f"{Q}/messages/{ids[1]}?claim_id={claim_id}", "ttl": 300, "age": 0, "body": "b"},
    ]
    api.clock.advance(30)
    status, body, _ = await api.request("GET", f"{Q}/claims/{claim_id}")
    assert status == 200
    assert (body["ttl"], body["age"], body["href"]) == (120, 30, f"{Q}/claims/{claim_id}")
    assert [m["href"] for m in body["messages"]] == [
        f"{Q}/messages/{i}?claim_id={claim_id}" for i in ids[:2]
    ]
    assert (await api.request("PATCH", f"{Q}/claims/{claim_id}", json={"ttl": 300}))[0] == 204
    status, body, _ = await api.request("GET", f"{Q}/claims/{claim_id}")
    assert body["ttl"] == 300
    # Held messages live until the claim ends plus its grace (grace defaults to 0 in v1).
    assert [m["ttl"] for m in body["messages"]] == [300, 300]
    assert await listed_bodies(api) == ["c"]
    assert (await api.request("DELETE", f"{Q}/claims/{claim_id}"))[0] == 204
    assert await listed_bodies(api) == ["a", "b", "c"]
    assert_error(await api.request("GET", f"{Q}/claims/{claim_id}"), 404, "Not found")
    assert_error(
        await api.request("PATCH", f"{Q}/claims/{claim_id}", json={"ttl": 60}), 404, "Not found"
    )
    assert (await api.request("DELETE", f"{Q}/claims/{claim_id}"))[0] == 204


async def test_nothing_to_claim(api: Api) -> None:
    document = {"ttl": 60, "grace": 60}
    status, body, _ = await api.request("POST", f"{V}/queues/nowhere/claims", json=document)
    assert (status, body) == (204, None)
    await create(api)
    assert (await api.request("POST", f"{Q}/claims", json=document))[:2] == (204, None)
    assert await queue_names(api) == ["orders"]


async def test_claim_expires(api: Api) -> None:
    await create(api)
    await post(api, "a")
    claim_id, _ = await claim(api, ttl=60, grace=60)
    api.clock.advance(61)
    assert_error(await api.request("GET", f"{Q}/claims/{claim_id}"), 404, "Not found")
    assert await listed_bodies(api) == ["a"]


@pytest.mark.parametrize(
    ("query", "options", "title", "description"),
    [
        pytest.param("", {}, "Invalid request body", "Request body can not be empty", id="no-body"),
        pytest.param("", {"json": {}}, "Invalid request body", 'Missing "ttl" field.', id="no-ttl"),
        pytest.param(
            "",
            {"json": {"ttl": 60}},
            "Invalid request body",
            'Missing "grace" field.',
            id="no-grace",
        ),
        pytest.param(
            "",
            {"json": {"ttl": "60", "grace": 60}},
            "Invalid request body",
            'The value of the "ttl" field must be a int.',
            id="ttl-not-int",
        ),
        pytest.param(
            "",
            {"json": {"ttl": 60, "grace": None}},
            "Invalid request body",
            'The value of the "grace" field must be a int.',
            id="grace-not-int",
        ),
        pytest.param(
            "",
            {"json": "fail"},
            "Invalid request body",
            "Document type not supported.",
            id="string",
        ),
        pytest.param(
            "", {"json": []}, "Invalid request body", "Document type not supported.", id="array"
        ),
        pytest.param(
            "",
            {"data": "."},
            "Invalid request body",
            "Request body could not be parsed.",
            id="malformed",
        ),
        pytest.param(
            "",
            {"json": {"ttl": 59, "grace": 60}},
            "Invalid API request",
            CLAIM_TTL_BOUNDS,
            id="ttl-too-short",
        ),
        pytest.param(
            "",
            {"json": {"ttl": 43_201, "grace": 60}},
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
            {"json": {"ttl": 60, "grace": 60}},
            "Invalid API request",
            PAGE_LIMIT,
            id="limit-0",
        ),
        pytest.param(
            "?limit=21",
            {"json": {"ttl": 60, "grace": 60}},
            "Invalid API request",
            PAGE_LIMIT,
            id="limit-21",
        ),
        pytest.param(
            "?limit=x",
            {"json": {"ttl": 60, "grace": 60}},
            "Invalid parameter",
            'The "limit" parameter is invalid. The value must be an integer.',
            id="limit-not-int",
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
    await create(api)
    await post(api, "a")
    response = await api.request("POST", f"{Q}/claims{query}", **options)
    assert_error(response, 400, title, description)
    assert await listed_bodies(api) == ["a"]  # nothing was claimed


@pytest.mark.parametrize(
    ("options", "title", "description"),
    [
        pytest.param({}, "Invalid request body", "Request body can not be empty", id="no-body"),
        pytest.param({"json": {}}, "Invalid request body", 'Missing "ttl" field.', id="no-ttl"),
        pytest.param(
            {"json": {"grace": 60}}, "Invalid request body", 'Missing "ttl" field.', id="grace-only"
        ),
        pytest.param(
            {"json": ["ttl"]}, "Invalid request body", "Document type not supported.", id="array"
        ),
        pytest.param(
            {"data": "{"},
            "Invalid request body",
            "Request body could not be parsed.",
            id="malformed",
        ),
        pytest.param({"json": {"ttl": 59}}, "Invalid API request", CLAIM_TTL_BOUNDS, id="short"),
        pytest.param({"json": {"ttl": 43_201}}, "Invalid API request", CLAIM_TTL_BOUNDS, id="long"),
    ],
)
async def test_claim_update_validation(
    api: Api, options: dict[str, Any], title: str, description: str
) -> None:
    await create(api)
    await post(api, "a")
    claim_id, _ = await claim(api, ttl=100, grace=60)
    response = await api.request("PATCH", f"{Q}/claims/{claim_id}", **options)
    assert_error(response, 400, title, description)
    assert (await api.request("GET", f"{Q}/claims/{claim_id}"))[1]["ttl"] == 100

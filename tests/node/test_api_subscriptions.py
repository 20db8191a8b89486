"""API v2 subscriptions over real HTTP (straight to a node and through the proxy, on SQLite and
PostgreSQL): Zaqar 23's routes, statuses, bodies, headers and validation."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

from tests.node.conftest import Api
from tests.node.test_api_v2 import assert_error

Q = "/v2/queues/orders"
SUBS = f"{Q}/subscriptions"


async def subscribe(api: Api, subscriber: str = "http://example.test/hook", **fields: Any) -> str:
    status, body, headers = await api.request(
        "POST", SUBS, json={"subscriber": subscriber, **fields}
    )
    assert status == 201, body
    assert headers["Location"] == SUBS
    assert set(body) == {"subscription_id"}
    sid: str = body["subscription_id"]
    return sid


async def test_create_get_list_delete(api: Api) -> None:
    sid = await subscribe(api, ttl=600, options={"a": 1})
    status, body, _ = await api.request("GET", f"{SUBS}/{sid}")
    assert status == 200
    assert body == {
        "id": sid,
        "source": "orders",
        "subscriber": "http://example.test/hook",
        "ttl": 600,
        "age": 0,
        "options": {"a": 1},
        "confirmed": False,
    }
    api.clock.advance(30)
    status, body, _ = await api.request("GET", SUBS)
    assert status == 200
    assert [s["id"] for s in body["subscriptions"]] == [sid]
    assert body["subscriptions"][0]["age"] == 30
    assert body["links"][0]["rel"] == "next"
    status, _, _ = await api.request("DELETE", f"{SUBS}/{sid}")
    assert status == 204
    status, body, _ = await api.request("GET", f"{SUBS}/{sid}")
    assert_error(status, body, 404, "Not found")
    assert body["description"] == f"Subscription {sid} does not exist"
    assert (await api.request("DELETE", f"{SUBS}/{sid}"))[0] == 204  # deleting again is fine
    status, body, _ = await api.request("GET", SUBS)
    assert body == {"subscriptions": [], "links": []}


async def test_subscribing_creates_the_queue_with_default_ttl(api: Api) -> None:
    assert (await api.request("GET", "/v2/queues"))[1]["queues"] == []
    sid = await subscribe(api, "mailto:ops@example.test")
    status, body, _ = await api.request("GET", "/v2/queues")
    assert [q["name"] for q in body["queues"]] == ["orders"]
    body = (await api.request("GET", f"{SUBS}/{sid}"))[1]
    assert body["ttl"] == 3600 and body["options"] == {}


async def test_duplicate_subscriber(api: Api) -> None:
    sid = await subscribe(api)
    # Not confirmed yet: Zaqar answers the repeat as a new subscription, with the same id.
    assert await subscribe(api) == sid
    status, _, headers = await api.request("PUT", f"{SUBS}/{sid}/confirm", json={"confirmed": True})
    assert status == 204 and headers["Location"] == f"{SUBS}/{sid}/confirm"
    status, body, headers = await api.request(
        "POST", SUBS, json={"subscriber": "http://example.test/hook"}
    )
    assert_error(status, body, 409, "Resource conflict")
    assert "unique by project + queue + subscriber" in body["description"]
    assert headers["Location"] == SUBS
    # The same subscriber on another queue, or in another project, is another subscription.
    other = "/v2/queues/other/subscriptions"
    status, _, _ = await api.request("POST", other, json={"subscriber": "http://example.test/hook"})
    assert status == 201
    status, _, _ = await api.request(
        "POST",
        SUBS,
        json={"subscriber": "http://example.test/hook"},
        headers={"X-Project-ID": "another-project"},
    )
    assert status == 201
    assert len((await api.request("GET", SUBS))[1]["subscriptions"]) == 1


async def test_confirm_and_unconfirm(api: Api) -> None:
    sid = await subscribe(api)
    for confirmed in (True, False, True):
        status, _, _ = await api.request(
            "PUT", f"{SUBS}/{sid}/confirm", json={"confirmed": confirmed}
        )
        assert status == 204
        assert (await api.request("GET", f"{SUBS}/{sid}"))[1]["confirmed"] is confirmed
    status, body, _ = await api.request(
        "PUT", f"{SUBS}/{'0' * 24}/confirm", json={"confirmed": True}
    )
    assert_error(status, body, 404, "Not found")
    for bad in ({}, {"confirmed": "yes"}, {"confirmed": 1}):
        status, body, _ = await api.request("PUT", f"{SUBS}/{sid}/confirm", json=bad)
        assert_error(status, body, 400, "Invalid API request")
        assert body["description"] == "The 'confirmed' should be boolean."


async def test_patch(api: Api) -> None:
    sid = await subscribe(api, ttl=600, options={"a": 1})
    api.clock.advance(500)
    status, _, headers = await api.request("PATCH", f"{SUBS}/{sid}", json={"ttl": 300})
    assert status == 204 and headers["Location"] == f"{SUBS}/{sid}"
    status, _, _ = await api.request(
        "PATCH",
        f"{SUBS}/{sid}",
        json={"subscriber": "https://example.test/other", "options": {"b": 2}},
    )
    assert status == 204
    body = (await api.request("GET", f"{SUBS}/{sid}"))[1]
    assert (body["ttl"], body["subscriber"], body["options"]) == (
        300,
        "https://example.test/other",
        {"b": 2},
    )
    # The new ttl runs from the update: alive 299 s after it, gone at 300.
    api.clock.advance(299)
    assert (await api.request("GET", f"{SUBS}/{sid}"))[0] == 200
    api.clock.advance(1)
    assert (await api.request("GET", f"{SUBS}/{sid}"))[0] == 404


async def test_patch_errors(api: Api) -> None:
    sid = await subscribe(api)
    await subscribe(api, "http://example.test/taken")
    status, body, _ = await api.request(
        "PATCH", f"{SUBS}/{sid}", json={"subscriber": "http://example.test/taken"}
    )
    assert_error(status, body, 409, "Resource conflict")
    status, body, _ = await api.request("PATCH", f"{SUBS}/{'f' * 24}", json={"ttl": 300})
    assert_error(status, body, 404, "Not found")
    status, body, _ = await api.request("PATCH", f"{SUBS}/{sid}")
    assert_error(status, body, 400, "Invalid API request")
    assert body["description"] == "No subscription to create."
    status, body, _ = await api.request("PATCH", f"{SUBS}/{sid}", json={"ttl": "invalid"})
    assert_error(status, body, 400)
    assert body["description"] == "TTL must be an integer."
    status, body, _ = await api.request("PATCH", f"{SUBS}/{sid}", json={"other": 1})
    assert_error(status, body, 400, "Unable to update subscription")
    assert body["description"] == f"Subscription {sid} could not be updated."


async def test_ttl_expiry(api: Api) -> None:
    short = await subscribe(api, "http://example.test/short", ttl=60)
    long = await subscribe(api, "http://example.test/long", ttl=120)
    api.clock.advance(60)
    status, body, _ = await api.request("GET", f"{SUBS}/{short}")
    assert_error(status, body, 404)
    listed = (await api.request("GET", SUBS))[1]["subscriptions"]
    assert [s["id"] for s in listed] == [long]
    status, body, _ = await api.request("PUT", f"{SUBS}/{short}/confirm", json={"confirmed": True})
    assert_error(status, body, 404)
    # An expired subscription no longer holds its subscriber: subscribing again is new.
    assert await subscribe(api, "http://example.test/short") != short


async def test_list_paging(api: Api) -> None:
    ids = [await subscribe(api, f"http://example.test/{i}") for i in range(15)]
    status, body, _ = await api.request("GET", SUBS)
    assert status == 200
    assert [s["id"] for s in body["subscriptions"]] == sorted(ids)[:10]  # default page: 10
    seen: list[str] = []
    path = f"{SUBS}?limit=4"
    while True:
        status, body, _ = await api.request("GET", path)
        assert status == 200
        if not body["subscriptions"]:
            assert body["links"] == []
            break
        seen += [s["id"] for s in body["subscriptions"]]
        (link,) = body["links"]
        assert link["rel"] == "next"
        href = urlsplit(link["href"])
        assert href.path == SUBS
        assert dict(parse_qsl(href.query)) == {"limit": "4", "marker": seen[-1]}
        path = link["href"]
    assert seen == sorted(ids)
    status, body, _ = await api.request("GET", f"{SUBS}?marker={sorted(ids)[9]}")
    assert [s["id"] for s in body["subscriptions"]] == sorted(ids)[10:]
    assert body["links"][0]["href"] == f"{SUBS}?marker={sorted(ids)[-1]}"


@pytest.mark.parametrize(
    ("body", "description"),
    [
        (None, "Missing parameter subscriber in body."),
        ({"ttl": 600}, "Missing parameter subscriber in body."),
        ([1], "Subscriptions must be a dict."),
        ({"subscriber": "fake"}, "must be supported in the list"),
        ({"subscriber": "email://fake"}, "must be supported in the list"),
        ({"subscriber": 7}, "must be supported in the list"),
        ({"subscriber": "http://x.test", "options": 1}, "Options must be a dict."),
        ({"subscriber": "http://x.test", "ttl": "invalid"}, "TTL must be an integer."),
        ({"subscriber": "http://x.test", "ttl": 12.5}, "TTL must be an integer."),
        ({"subscriber": "http://x.test", "ttl": 59}, "must be at least 60 seconds long."),
        (
            {"subscriber": "http://x.test", "ttl": 10**12},
            "plus current time must be less than 9999-12-31",
        ),
        (
            {"subscriber": "http://x.test", "options": {"_retry_policy": 1}},
            "retry_policy must be a dict.",
        ),
        (
            {"subscriber": "http://x.test", "options": {"_retry_policy": {"minimum_delay": "5"}}},
            "Retry policy: minimum_delay must be a integer.",
        ),
        (
            {
                "subscriber": "http://x.test",
                "options": {"_retry_policy": {"retry_backoff_function": "exponential"}},
            },
            "retry_backoff_function only supports linear now.",
        ),
        (
            {
                "subscriber": "http://x.test",
                "options": {"_retry_policy": {"ignore_subscription_override": "yes"}},
            },
            "ignore_subscription_override must be a boolean.",
        ),
    ],
)
async def test_create_validation(api: Api, body: Any, description: str) -> None:
    status, answer, _ = await api.request("POST", SUBS, json=body)
    assert_error(status, answer, 400, "Invalid API request")
    assert description in answer["description"]
    assert (await api.request("GET", SUBS))[1]["subscriptions"] == []


async def test_create_accepts_every_default_scheme_and_retry_policy(api: Api) -> None:
    policy = {
        "retries_with_no_delay": 3,
        "minimum_delay_retries": 3,
        "minimum_delay": 5,
        "maximum_delay": 30,
        "maximum_delay_retries": 3,
        "retry_backoff_function": "linear",
        "ignore_subscription_override": True,
    }
    for subscriber in (
        "http://x.test/a",
        "https://x.test/a",
        "mailto:a@x.test",
        "trust+http://x.test/a",
        "trust+https://x.test/a",
    ):
        # A trust+ subscriber brings its trust (the proxy makes one under --auth keystone).
        trust = {"trust_id": "t1"} if subscriber.startswith("trust+") else {}
        sid = await subscribe(api, subscriber, options={"_retry_policy": policy, **trust})
        body = (await api.request("GET", f"{SUBS}/{sid}"))[1]
        assert body["subscriber"] == subscriber
        assert body["options"] == {"_retry_policy": policy, **trust}


async def test_a_trust_subscriber_without_a_trust_is_refused(api: Api) -> None:
    for options in ({}, {"trust_id": ""}, {"trust_id": 7}):
        document = {"subscriber": "trust+http://x.test/a", "options": options}
        status, body, _ = await api.request("POST", SUBS, json=document)
        assert_error(status, body, 400, "Invalid API request")
        assert "Keystone trust" in body["description"]


async def test_create_unparsable_body(api: Api) -> None:
    status, body, _ = await api.request("POST", SUBS, data=b'{"subscriber": "http://x", "o')
    assert_error(status, body, 400, "Invalid request body")


async def test_list_validation(api: Api) -> None:
    for limit in ("0", "21", "-1"):
        status, body, _ = await api.request("GET", f"{SUBS}?limit={limit}")
        assert_error(status, body, 400, "Invalid API request")
        assert body["description"] == "Limit must be at least 1 and may not be greater than 20."
    status, body, _ = await api.request("GET", f"{SUBS}?limit=x")
    assert_error(status, body, 400)


async def test_headers_required(api: Api) -> None:
    status, body, _ = await api.request("GET", SUBS, drop=("Client-ID",))
    assert_error(status, body, 400)


async def test_queue_delete_and_purge_remove_subscriptions(api: Api) -> None:
    await subscribe(api, "http://example.test/a")
    status, _, _ = await api.request("POST", f"{Q}/purge", json={"resource_types": ["messages"]})
    assert status == 204
    assert len((await api.request("GET", SUBS))[1]["subscriptions"]) == 1
    status, _, _ = await api.request(
        "POST", f"{Q}/purge", json={"resource_types": ["subscriptions"]}
    )
    assert status == 204
    assert (await api.request("GET", SUBS))[1]["subscriptions"] == []
    sid = await subscribe(api, "http://example.test/b")
    assert (await api.request("DELETE", Q))[0] == 204
    assert (await api.request("GET", f"{SUBS}/{sid}"))[0] == 404
    assert (await api.request("GET", SUBS))[1]["subscriptions"] == []


async def test_v1_1_has_no_subscriptions(api: Api) -> None:
    status, body, _ = await api.request(
        "POST", "/v1.1/queues/orders/subscriptions", json={"subscriber": "http://x.test"}
    )
    assert_error(status, body, 404)

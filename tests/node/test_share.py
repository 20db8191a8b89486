"""Pre-signed URLs over real HTTP, straight to a node and through a proxy (`--auth noauth`, so
the node's own check decides): the share route's answers and refusals as Zaqar 23 gives them,
and requests that bring a signature let in for exactly what it signed."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from node.api.app import create_app
from node.api.deps import Deps
from node.storage import open_storage
from tests.conftest import FakeClock
from tests.node.conftest import CLIENT_ID, PROJECT, SIGNED_URL_KEY, Api
from tests.node.test_api_v2 import assert_error
from wire import signed_urls

Q = "/v2/queues/shared"


def signed_headers(made: dict[str, Any], project: str | None = None) -> dict[str, str]:
    """The headers python-zaqarclient's signed-url backend sends, and its X-Project-Id."""
    return {
        "Client-ID": CLIENT_ID,
        "X-Project-ID": made["project"] if project is None else project,
        "URL-Signature": made["signature"],
        "URL-Expires": made["expires"],
        "URL-Methods": ",".join(made["methods"]),
        "URL-Paths": ",".join(made["paths"]),
    }


async def share(api: Api, document: Any, queue: str = Q) -> dict[str, Any]:
    status, body, headers = await api.request("POST", f"{queue}/share", json=document)
    assert status == 200, body
    assert headers["Content-Type"].startswith("application/json")
    return dict(body)


async def test_a_share_signs_the_queues_messages_for_a_day_by_default(api: Api) -> None:
    before = signed_urls.utcnow()
    made = await share(api, {})
    after = signed_urls.utcnow()
    assert list(made) == ["paths", "methods", "project", "expires", "signature"]
    assert made["paths"] == [f"{Q}/messages"] and made["methods"] == ["GET"]
    assert made["project"] == PROJECT
    expires = datetime.strptime(made["expires"], signed_urls.DATE_FORMAT)
    day = timedelta(days=1)
    assert before + day - timedelta(seconds=1) <= expires <= after + day
    again = signed_urls.sign(SIGNED_URL_KEY, made["paths"], PROJECT, made["expires"], ["GET"])
    assert made["signature"] == again["signature"]


async def test_a_share_signs_what_it_is_asked_to(api: Api) -> None:
    expires = (signed_urls.utcnow() + timedelta(hours=1)).replace(microsecond=0)
    document = {
        "paths": ["messages", "claims", "subscriptions"],
        "methods": ["POST", "GET", "DELETE"],
        "expires": expires.isoformat() + "Z",
    }
    made = await share(api, document)
    assert made["paths"] == [f"{Q}/{p}" for p in ("claims", "messages", "subscriptions")]
    assert made["methods"] == ["DELETE", "GET", "POST"]
    assert made["expires"] == expires.strftime(signed_urls.DATE_FORMAT)


async def test_a_share_refuses_what_zaqar_refuses(api: Api) -> None:
    past = (signed_urls.utcnow() - timedelta(minutes=1)).isoformat()
    refused: list[tuple[Any, str]] = [
        ({"paths": ["messages"], "project": "x"}, "Unknown keys: {'project'}"),
        ({"paths": ["queues"]}, "Invalid paths: {'queues'}"),
        ({"methods": "GET"}, "`methods` should be a list"),
        (
            {"expires": 3600},
            "`expires` should be date format, for example "
            "2016-01-01T00:00:00, not integer value: 3600",
        ),
        ({"expires": "soon"}, "Unable to parse date string 'soon'"),
        ({"expires": past}, "`expires` is lower than the current time"),
    ]
    for document, description in refused:
        status, body, _ = await api.request("POST", f"{Q}/share", json=document)
        assert_error(status, body, 400, "Invalid API request")
        assert body["description"] == description, document
    status, body, _ = await api.request("POST", f"{Q}/share")
    assert_error(status, body, 400, "Invalid request body")
    status, body, _ = await api.request("POST", f"{Q}/share", data="[1")
    assert_error(status, body, 400, "Invalid request body")
    status, body, _ = await api.request("POST", "/v2/queues/bad%20name/share", json={})
    assert_error(status, body, 400)
    status, body, _ = await api.request("GET", f"{Q}/share")
    assert_error(status, body, 405)


async def test_a_signature_lets_in_exactly_what_it_signed(api: Api) -> None:
    made = await share(api, {"paths": ["messages", "claims"], "methods": ["GET", "POST"]})
    guest = signed_headers(made)
    messages = {"messages": [{"body": {"n": n}, "ttl": 300} for n in range(3)]}
    # No other credential than the signature: posted, listed, read one, claimed.
    status, body, _ = await api.request(
        "POST", f"{Q}/messages", json=messages, headers=guest, drop=("X-Project-ID",)
    )
    assert status == 201, body
    one = body["resources"][0]
    status, body, _ = await api.request(
        "GET", f"{Q}/messages?echo=true", headers=guest, drop=("X-Project-ID",)
    )
    assert status == 200 and [m["body"]["n"] for m in body["messages"]] == [0, 1, 2]
    status, body, _ = await api.request("GET", one, headers=guest, drop=("X-Project-ID",))
    assert status == 200 and body["body"] == {"n": 0}
    status, body, _ = await api.request(
        "POST", f"{Q}/claims", json={"ttl": 60, "grace": 60}, headers=guest
    )
    assert status == 201 and len(body["messages"]) == 3
    # Stored under the signed project: its owner sees them.
    status, body, _ = await api.request("GET", f"{Q}/stats")
    assert status == 200 and body["messages"]["total"] == 3
    # Nothing beyond it: 404 for another method, path, queue, version or project.
    for method, path in [
        ("DELETE", f"{Q}/messages?ids={one.rsplit('/', 1)[1]}"),
        ("DELETE", one),
        ("GET", f"{Q}/stats"),
        ("GET", Q),
        ("PUT", Q),
        ("POST", f"{Q}/share"),
        ("POST", f"{Q}/purge"),
        ("GET", "/v2/queues/other/messages"),
        ("GET", "/v2/queues/sharedx/messages"),
        ("GET", "/v1.1/queues/shared/messages"),
        ("GET", "/v2/queues"),
    ]:
        status, body, _ = await api.request(method, path, headers=guest, json=None)
        assert_error(status, body, 404)
    status, body, _ = await api.request(
        "GET", f"{Q}/messages", headers=signed_headers(made, project="other-project")
    )
    assert_error(status, body, 404)


async def test_tampered_expired_and_unsigned_extras_are_refused(api: Api) -> None:
    made = await share(api, {"methods": ["GET"]})
    path = f"{Q}/messages"
    status, _, _ = await api.request("GET", path, headers=signed_headers(made))
    assert status in (200, 204)
    tampered = [
        {"URL-Signature": "0" * 64},
        {"URL-Methods": "GET,POST"},
        {"URL-Paths": f"{path},{Q}/claims"},
        {"URL-Expires": "2099-01-01T00:00:00"},
        {"URL-Expires": "garbage"},
        {"X-Project-ID": ""},
    ]
    for change in tampered:
        status, body, _ = await api.request("GET", path, headers={**signed_headers(made), **change})
        assert_error(status, body, 404)
    # A signature that was valid until a minute ago (signed as of two minutes ago).
    then = signed_urls.utcnow() - timedelta(minutes=2)
    expired = signed_urls.sign(
        SIGNED_URL_KEY, [path], PROJECT, (then + timedelta(minutes=1)).isoformat(), now=then
    )
    status, body, _ = await api.request("GET", path, headers=signed_headers(expired))
    assert_error(status, body, 404)
    # Signed with another secret.
    forged = signed_urls.sign("not-the-secret", [path], PROJECT)
    status, body, _ = await api.request("GET", path, headers=signed_headers(forged))
    assert_error(status, body, 404)


async def test_without_a_secret_there_are_no_signed_urls(tmp_path: Path, clock: FakeClock) -> None:
    storage = await open_storage(f"sqlite:///{tmp_path}/plain.db", clock)
    client = TestClient(
        TestServer(create_app(Deps(storage=storage, clock=clock)), host="127.0.0.1")
    )
    await client.start_server()
    try:
        api = Api(client, clock, Deps(storage=storage, clock=clock))
        status, body, _ = await api.request("POST", f"{Q}/share", json={})
        assert_error(status, body, 400, "Invalid API request")
        assert body["description"] == "The `key` can't be None"
        made = signed_urls.sign(SIGNED_URL_KEY, [f"{Q}/messages"], PROJECT)
        status, body, _ = await api.request("GET", f"{Q}/messages", headers=signed_headers(made))
        assert_error(status, body, 404)
        status, _, _ = await api.request("GET", f"{Q}/messages")  # unsigned: as ever
        assert status in (200, 204)
    finally:
        await client.close()


async def test_the_home_document_names_the_share_route(api: Api) -> None:
    status, body, _ = await api.request("GET", "/v2/")
    assert status == 200
    share_rel = body["resources"]["rel/queue_share"]
    assert share_rel["href-template"] == "/v2/queues/{queue_name}/share"
    assert share_rel["hints"]["allow"] == ["POST"]
    status, body, _ = await api.request("GET", "/v1.1/")
    assert status == 200 and "rel/queue_share" not in body["resources"]

"""Input that can never succeed answers 400 with Zaqar's body, straight to a node and through
the proxy; 503 stays "retry later". And nothing is committed by a request whose answer fails."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from aiohttp.test_utils import TestClient, TestServer

from node.api.app import create_app
from node.api.deps import Deps
from node.models import NewMessage
from node.storage import Storage, open_storage
from tests.conftest import FakeClock
from tests.node.conftest import CLIENT_ID, PROJECT, Api
from tests.node.test_api_v2 import Q, assert_error, post

DEPTH = 32  # ApiLimits().max_json_depth


def nested(depth: int) -> Any:
    """A JSON value whose arrays nest `depth` deep."""
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


async def raw_request(api: Api, head: bytes, body: bytes = b"") -> tuple[int, Any]:
    """Bytes on the wire as they are (aiohttp's client would encode a header as UTF-8)."""
    server = api.client.server
    reader, writer = await asyncio.open_connection(server.host, server.port)
    try:
        writer.write(head + b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body)
        await writer.drain()
        answer = await reader.read()
    finally:
        writer.close()
    status_line, _, rest = answer.partition(b"\r\n")
    _, _, payload = rest.partition(b"\r\n\r\n")
    return int(status_line.split()[1]), json.loads(payload) if payload else None


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("PUT", "/v2/queues/orders"),
        ("GET", "/v2/queues/orders/stats"),
        ("GET", "/v2/queues"),
        ("GET", "/v2/queues/orders/messages"),
        ("POST", "/v2/queues/orders/claims"),
        ("GET", "/v2/health"),
    ],
)
async def test_a_project_id_that_is_not_utf8_is_refused(api: Api, method: str, path: str) -> None:
    head = b"%s %s HTTP/1.1\r\nHost: x\r\nClient-ID: %s\r\nX-Project-ID: caf\xe9\r\n" % (
        method.encode(),
        path.encode(),
        CLIENT_ID.encode(),
    )
    status, body = await raw_request(api, head)
    assert_error(status, body, 400)


async def test_bodies_nested_deeper_than_the_limit_are_refused(api: Api) -> None:
    status, body, _ = await api.request(
        "POST", f"{Q}/messages", json={"messages": [{"body": nested(DEPTH - 3), "ttl": 300}]}
    )
    assert status == 201, body  # at the limit: the document around it is three levels more
    for depth in (DEPTH + 1, 973, 100_000):
        document = b'{"messages": [{"ttl": 300, "body": %s1%s}]}' % (b"[" * depth, b"]" * depth)
        status, body, _ = await api.request("POST", f"{Q}/messages", data=document)
        assert_error(status, body, 400, "Invalid request body")
        assert str(DEPTH) in body["description"]
    status, body, _ = await api.request("PUT", "/v2/queues/deep", json={"m": nested(DEPTH)})
    assert_error(status, body, 400)
    # Brackets inside strings are text, not nesting.
    await post(api, "[" * 5000)
    # The queue still lists and claims.
    assert (await api.request("GET", f"{Q}/messages?echo=true"))[0] == 200
    assert (await api.request("POST", f"{Q}/claims", json={"ttl": 60, "grace": 60}))[0] == 201
    status, listed, _ = await api.request("GET", "/v2/queues?detailed=true")
    assert status == 200 and {q["name"] for q in listed["queues"]} == {"orders"}


@pytest.mark.parametrize("types", [[["messages"]], [{}], [1], "messages", [None], {"messages": 1}])
async def test_purge_types_that_are_not_names_are_refused(api: Api, types: Any) -> None:
    await api.request("PUT", Q)
    status, body, _ = await api.request("POST", f"{Q}/purge", json={"resource_types": types})
    assert_error(status, body, 400)


async def test_a_marker_past_every_counter_is_refused(api: Api) -> None:
    await post(api, 1)
    status, body, _ = await api.request("GET", f"{Q}/messages?marker=99999999999999999999999")
    assert_error(status, body, 400)
    status, _, _ = await api.request("GET", f"{Q}/messages?marker={2**63 - 1}")
    assert status in (200, 204)


@pytest.mark.parametrize("grace", [-1, -(2**62), 2**63 - 1, 43_201])
async def test_claim_updates_with_a_grace_out_of_range_are_refused(api: Api, grace: int) -> None:
    await post(api, 1)
    status, body, headers = await api.request("POST", f"{Q}/claims", json={"ttl": 60})
    assert status == 201, body
    claim = headers["Location"]
    status, body, _ = await api.request("PATCH", claim, json={"ttl": 120, "grace": grace})
    assert_error(status, body, 400)
    assert (await api.request("PATCH", claim, json={"ttl": 120, "grace": 0}))[0] == 204


@pytest.fixture
async def node(tmp_path: Path, clock: FakeClock) -> AsyncIterator[Api]:
    """One node over SQLite, without the proxy: the test stores data in its storage itself."""
    storage = await open_storage(f"sqlite:///{tmp_path}/node.db", clock)
    deps = Deps(storage=storage, clock=clock)
    client = TestClient(TestServer(create_app(deps, gc_interval=3600), host="127.0.0.1"))
    await client.start_server()
    try:
        yield Api(client, clock, deps)
    finally:
        await client.close()


async def store_poison(storage: Storage) -> None:
    """The deepest message the storage takes: too deep to answer in any document around it
    (as a body stored before the nesting limit, or by another path, may be)."""
    await storage.queues.create(PROJECT, "orders", None)
    for depth in range(1000, 0, -5):
        try:
            await storage.messages.post(PROJECT, "orders", [NewMessage(nested(depth), 300)], "x")
            return
        except RecursionError:
            continue


async def test_a_claim_whose_answer_cannot_be_encoded_is_released(node: Api) -> None:
    storage = node.deps.storage
    await store_poison(storage)
    with structlog.testing.capture_logs() as logged:  # not rendered: the locals are huge
        status, body, _ = await node.request("POST", f"{Q}/claims", json={"ttl": 60, "grace": 60})
    assert status == 503 and set(body) == {"title", "description"}
    assert [e["event"] for e in logged] == ["unexpected_error"]
    stats = await storage.queues.stats(PROJECT, "orders")
    assert (stats.free, stats.claimed) == (1, 0)  # the failed claim was released

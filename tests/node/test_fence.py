"""The node's answer for a fenced queue: 503 with `Retry-After` and `X-Marconi-Fence`, in
Zaqar's error body, and nothing stored."""

from __future__ import annotations

from typing import Any

import pytest

from node.models import Fence
from tests.node.conftest import PROJECT, Api

QUEUE = "orders"
Q = f"/v2/queues/{QUEUE}"


@pytest.fixture(autouse=True)
def node_only(request: pytest.FixtureRequest) -> None:
    """Runs before `api` is built, so a skipped case starts no cluster."""
    callspec = getattr(request.node, "callspec", None)
    if callspec is not None and callspec.params.get("api", "direct") != "direct":
        pytest.skip(
            "the node's own answer to a fenced queue: a proxy holds and retries such requests "
            "(tests/proxy/test_fence.py), and `api.deps` is one partition of two"
        )


def assert_fenced(status: int, body: Any, headers: dict[str, str], reason: str) -> None:
    assert status == 503, body
    assert headers["X-Marconi-Fence"] == reason
    assert int(headers["Retry-After"]) >= 1
    assert set(body) == {"title", "description"}
    assert body["title"] and body["description"]


async def test_a_frozen_queue_refuses_posts_and_still_reads(api: Api) -> None:
    status, body, _ = await api.request(
        "POST", f"{Q}/messages", json={"messages": [{"body": "kept", "ttl": 300}]}
    )
    assert status == 201, body
    transfer = api.deps.storage.transfer
    await transfer.freeze(PROJECT, QUEUE, Fence.FROZEN)
    before = await transfer.digest(PROJECT, QUEUE)

    status, body, headers = await api.request(
        "POST", f"{Q}/messages", json={"messages": [{"body": "refused", "ttl": 300}]}
    )
    assert_fenced(status, body, headers, "frozen")
    status, body, headers = await api.request("PUT", Q, json={"m": 1})
    assert_fenced(status, body, headers, "frozen")
    assert await transfer.digest(PROJECT, QUEUE) == before  # nothing was stored

    status, body, _ = await api.request("GET", f"{Q}/messages?echo=true")
    assert status == 200
    assert [m["body"] for m in body["messages"]] == ["kept"]
    status, body, _ = await api.request("GET", f"{Q}/stats")
    assert (status, body["messages"]["total"]) == (200, 1)

    await transfer.unfreeze(PROJECT, QUEUE)
    status, _, _ = await api.request(
        "POST", f"{Q}/messages", json={"messages": [{"body": "now", "ttl": 300}]}
    )
    assert status == 201


async def test_a_moved_queue_refuses_reads_too(api: Api) -> None:
    status, _, _ = await api.request("PUT", Q)
    assert status == 201
    await api.deps.storage.transfer.freeze(PROJECT, QUEUE, Fence.MOVED)
    for path in (f"{Q}/messages?echo=true", f"{Q}/stats", Q):
        status, body, headers = await api.request("GET", path)
        assert_fenced(status, body, headers, "moved")


async def test_a_tombstone_refuses_lazy_creation_in_every_version(api: Api) -> None:
    transfer = api.deps.storage.transfer
    await transfer.freeze(PROJECT, QUEUE, Fence.FROZEN)
    for path in (f"{Q}/messages", f"/v1.1/queues/{QUEUE}/messages"):
        status, body, headers = await api.request(
            "POST", path, json={"messages": [{"body": 1, "ttl": 300}]}
        )
        assert_fenced(status, body, headers, "frozen")
    status, body, headers = await api.request("PUT", f"/v1/queues/{QUEUE}")
    assert_fenced(status, body, headers, "frozen")
    assert await transfer.export_queue(PROJECT, QUEUE) is None

"""Header names on the wire as Zaqar's server writes them: falcon's in lower case (`location`,
`content-type`, ...), wsgiref's own Date and Server capitalized. Read from a raw socket, where
nothing folds the case, on every API version's answers and on the node's own refusals."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer

from node.api.app import create_app
from node.api.deps import Deps
from node.storage import open_storage
from tests.conftest import FakeClock
from tests.node.conftest import CLIENT_ID, PROJECT

IDS = f"Client-ID: {CLIENT_ID}\r\nX-Project-ID: {PROJECT}\r\n"


@pytest.fixture
async def node(tmp_path: Path, clock: FakeClock) -> AsyncIterator[TestServer]:
    storage = await open_storage(f"sqlite:///{tmp_path}/names.db", clock)
    server = TestServer(create_app(Deps(storage=storage, clock=clock), gc_interval=3600))
    await server.start_server()
    try:
        yield server
    finally:
        await server.close()


async def raw_names(server: TestServer, method: str, path: str, body: bytes = b"") -> list[str]:
    """The header names of one answer, exactly as they came."""
    reader, writer = await asyncio.open_connection(server.host, server.port)
    try:
        head = f"{method} {path} HTTP/1.1\r\nHost: node\r\n{IDS}Content-Length: {len(body)}\r\n"
        writer.write(head.encode() + b"\r\n" + body)
        await writer.drain()
        answer = (await reader.readuntil(b"\r\n\r\n")).decode()
    finally:
        writer.close()
    return [line.split(":", 1)[0] for line in answer.split("\r\n")[1:] if line]


def zaqars(names: list[str]) -> bool:
    return all(n.islower() or n in ("Date", "Server") for n in names)


@pytest.mark.parametrize("version", ["v1", "v1.1", "v2"])
async def test_every_version_answers_in_zaqars_case(node: TestServer, version: str) -> None:
    q = f"/{version}/queues/orders"
    names = await raw_names(node, "PUT", q)
    assert "location" in names and zaqars(names), names
    post = b'[{"body": 1, "ttl": 60}]' if version == "v1" else b'{"messages": [{"body": 1}]}'
    names = await raw_names(node, "POST", q + "/messages", post)
    assert {"location", "content-type", "content-length", "x-openstack-request-id"} <= set(names)
    assert {"Date", "Server"} <= set(names) and zaqars(names), names
    for method, path in [("GET", q + "/stats"), ("GET", q + "/claims/nope"), ("PATCH", q + "/x")]:
        names = await raw_names(node, method, path)
        assert "content-type" in names and zaqars(names), (method, path, names)
    names = await raw_names(node, "DELETE", "/v2/queues")  # 405: `allow` as falcon names it
    assert "allow" in names and zaqars(names), names

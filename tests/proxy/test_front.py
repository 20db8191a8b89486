"""The proxy's server: queue routes on the lean path, every other request (and every later one
on its connection) handed to aiohttp, over raw client connections."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from proxy.front import FrontServer
from tests.conftest import FakeClock
from tests.proxy.cluster import Cluster, cluster
from tests.proxy.conftest import CLIENT_ID, PROJECT

HEADERS = f"Client-ID: {CLIENT_ID}\r\nX-Project-ID: {PROJECT}\r\n"


def request(method: str, path: str, body: bytes = b"", extra: str = "") -> bytes:
    length = f"Content-Length: {len(body)}\r\n" if body or method in ("POST", "PUT") else ""
    head = f"{method} {path} HTTP/1.1\r\nHost: proxy\r\n{HEADERS}{extra}{length}\r\n"
    return head.encode() + body


class Client:
    """One raw keep-alive connection to the proxy."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def send(self, raw: bytes) -> None:
        self.writer.write(raw)
        await self.writer.drain()

    async def answer(self) -> tuple[int, dict[str, str], Any]:
        head = (await self.reader.readuntil(b"\r\n\r\n")).decode()
        lines = head.split("\r\n")
        headers = dict(line.split(": ", 1) for line in lines[1:] if line)
        body = await self.reader.readexactly(int(headers.get("content-length", "0")))
        return int(lines[0].split(" ")[1]), headers, json.loads(body) if body else None

    async def call(self, raw: bytes) -> tuple[int, dict[str, str], Any]:
        await self.send(raw)
        return await self.answer()


@asynccontextmanager
async def connected(c: Cluster) -> AsyncIterator[Client]:
    server = c.proxy.server
    reader, writer = await asyncio.open_connection(server.host, server.port)
    try:
        yield Client(reader, writer)
    finally:
        writer.close()


def front(c: Cluster) -> FrontServer:
    runner = c.proxy.server.runner
    assert runner is not None and isinstance(runner.server, FrontServer)
    return runner.server


async def test_queue_routes_stay_on_the_lean_path(tmp_path: Path, clock: FakeClock) -> None:
    async with cluster(tmp_path, clock) as c, connected(c) as client:
        status, headers, _ = await client.call(request("PUT", "/v2/queues/q", b"{}"))
        assert status == 201 and headers["x-openstack-request-id"].startswith("req-")
        post = request("POST", "/v2/queues/q/messages", b'{"messages": [{"body": 1}]}')
        status, _, body = await client.call(post)
        assert status == 201 and len(body["resources"]) == 1
        status, _, body = await client.call(request("GET", "/v2/queues/q/messages?echo=true"))
        assert status == 200 and [m["body"] for m in body["messages"]] == [1]
        assert len(front(c).fronts) == 1  # still the lean path's connection


async def test_pipelined_requests_are_answered_in_order(tmp_path: Path, clock: FakeClock) -> None:
    async with cluster(tmp_path, clock) as c, connected(c) as client:
        posts = [
            request(
                "POST", "/v2/queues/q/messages", json.dumps({"messages": [{"body": n}]}).encode()
            )
            for n in range(3)
        ]
        await client.send(b"".join(posts) + request("GET", "/v2/queues/q/stats"))
        for _ in range(3):
            assert (await client.answer())[0] == 201
        status, _, stats = await client.answer()
        assert status == 200 and stats["messages"]["total"] == 3


async def test_a_body_in_pieces_is_waited_for(tmp_path: Path, clock: FakeClock) -> None:
    async with cluster(tmp_path, clock) as c, connected(c) as client:
        raw = request("POST", "/v2/queues/q/messages", b'{"messages": [{"body": "late"}]}')
        for piece in (raw[:20], raw[20:-10], raw[-10:]):
            await client.send(piece)
            await asyncio.sleep(0.02)
        assert (await client.answer())[0] == 201


async def test_other_requests_hand_the_connection_to_aiohttp(
    tmp_path: Path, clock: FakeClock
) -> None:
    async with cluster(tmp_path, clock) as c, connected(c) as client:
        assert (await client.call(request("PUT", "/v2/queues/q", b"{}")))[0] == 201
        assert len(front(c).fronts) == 1
        status, _, body = await client.call(request("GET", "/v2/queues"))  # listing: the app's
        assert status == 200 and [q["name"] for q in body["queues"]] == ["q"]
        assert len(front(c).fronts) == 0
        status, headers, _ = await client.call(request("GET", "/v2/queues/q/stats"))
        assert status == 200 and headers["x-openstack-request-id"].startswith("req-")


async def test_unusual_requests_are_answered_by_aiohttp(tmp_path: Path, clock: FakeClock) -> None:
    async with cluster(tmp_path, clock) as c, connected(c) as client:
        body = b'{"messages": [{"body": "chunked"}]}'
        head = "POST /v2/queues/q/messages HTTP/1.1\r\nHost: proxy\r\n"
        head += f"{HEADERS}Transfer-Encoding: chunked\r\n\r\n"
        chunked = head.encode() + b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
        assert (await client.call(chunked))[0] == 201
        assert len(front(c).fronts) == 0
        status, _, body = await client.call(request("GET", "/v2/queues/q/messages?echo=true"))
        assert status == 200 and body["messages"][0]["body"] == "chunked"


async def test_errors_keep_zaqar_bodies_and_request_ids(tmp_path: Path, clock: FakeClock) -> None:
    async with cluster(tmp_path, clock, partitions=("p1",)) as c, connected(c) as client:
        await c.catalog.update_partition("p1", nodes=("http://127.0.0.1:9",))
        cache = c.state().router.cache
        async with asyncio.timeout(2):
            while cache.partitions["p1"].nodes != ("http://127.0.0.1:9",):
                await cache.changed.wait()
        given = "req-given-one"
        raw = request("GET", "/v2/queues/q/stats", extra=f"X-Openstack-Request-ID: {given}\r\n")
        status, headers, body = await client.call(raw)
        assert status == 503 and set(body) == {"title", "description"}
        assert headers["x-openstack-request-id"] == given and "retry-after" in headers
        assert len(front(c).fronts) == 1  # answered on the lean path


async def test_closing_the_server_closes_idle_connections(tmp_path: Path, clock: FakeClock) -> None:
    async with cluster(tmp_path, clock) as c, connected(c) as client:
        assert (await client.call(request("PUT", "/v2/queues/q", b"{}")))[0] == 201
        await c.proxy.server.close()
        async with asyncio.timeout(2):
            assert await client.reader.read() == b""


def slowed(delay: float) -> Callable[[web.Application, str], web.Application]:
    """Nodes whose message listings take `delay` seconds."""

    def wrap(app: web.Application, partition: str) -> web.Application:
        @web.middleware
        async def slow(
            request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
        ) -> web.StreamResponse:
            if request.method == "GET" and request.path.endswith("/messages"):
                await asyncio.sleep(delay)
            return await handler(request)

        app.middlewares.insert(0, slow)
        return app

    return wrap


async def test_closing_the_server_answers_requests_in_flight_first(
    tmp_path: Path, clock: FakeClock
) -> None:
    async with cluster(tmp_path, clock, wrap_node=slowed(0.3)) as c, connected(c) as client:
        assert (await client.call(request("PUT", "/v2/queues/q", b"{}")))[0] == 201
        await client.send(request("GET", "/v2/queues/q/messages"))
        await asyncio.sleep(0.1)  # the request is at the node
        closing = asyncio.create_task(c.proxy.server.close())
        status, _, _ = await client.answer()
        assert status in (200, 204)
        await closing
        assert await client.reader.read() == b""


def stats_with(*lines: bytes) -> bytes:
    """A queue route's request (the lean path's kind) with extra header lines."""
    head = request("GET", "/v2/queues/q/stats").decode()[:-2].encode()
    return head + b"".join(line + b"\r\n" for line in lines) + b"\r\n"


# Heads aiohttp's parser refuses: the lean path hands each over, and aiohttp answers it.
MALFORMED = {
    "control character in a value": stats_with(b"X-A: a\x01b"),
    "DEL in a value": stats_with(b"X-A: a\x7fb"),
    "control character in the target": request("GET", "/v2/queues/q/stats\x1b"),
    "invalid header name": stats_with(b"X@A: b"),
    "line without a colon": stats_with(b"X-A b"),
    "line over 8190 bytes": stats_with(b"X-A: " + b"x" * 8191),
    "too many headers": stats_with(*(b"X-%d: v" % n for n in range(130))),
    "a second Host": stats_with(b"Host: other"),
}


@pytest.mark.parametrize("raw", MALFORMED.values(), ids=MALFORMED.keys())
async def test_malformed_heads_get_aiohttps_400_and_the_connection_closes(
    tmp_path: Path, clock: FakeClock, raw: bytes
) -> None:
    async with cluster(tmp_path, clock) as c, connected(c) as client:
        assert (await client.call(request("PUT", "/v2/queues/q", b"{}")))[0] == 201
        assert len(front(c).fronts) == 1  # a lean connection, until the malformed head
        await client.send(raw)
        async with asyncio.timeout(5):
            answer = await client.reader.read()  # to the end: the proxy closed the connection
        assert answer.split(b" ", 2)[1] == b"400", answer[:200]
        assert b"Bad Request" in answer.split(b"\r\n", 1)[0]
        assert len(front(c).fronts) == 0


async def test_heads_past_the_lean_limits_but_within_aiohttps_are_answered_by_aiohttp(
    tmp_path: Path, clock: FakeClock
) -> None:
    async with cluster(tmp_path, clock) as c, connected(c) as client:
        assert (await client.call(request("PUT", "/v2/queues/q", b"{}")))[0] == 201
        raw = stats_with(*(b"X-%d: v" % n for n in range(101)))  # aiohttp takes up to 128
        status, headers, _ = await client.call(raw)
        assert status == 200 and headers["x-openstack-request-id"].startswith("req-")
        assert len(front(c).fronts) == 0  # handed over, and kept alive by aiohttp
        assert (await client.call(request("GET", "/v2/queues/q/stats")))[0] == 200


def zaqar_cased(headers: dict[str, str]) -> bool:
    """Every name as Zaqar's server writes it: lower case but its own Date and Server."""
    return all(name.islower() or name in ("Date", "Server") for name in headers)


async def test_header_names_are_zaqars_on_both_paths(tmp_path: Path, clock: FakeClock) -> None:
    async with cluster(tmp_path, clock) as c, connected(c) as client:
        # The lean path: the node's answers relayed as bytes, and the proxy's own errors.
        status, headers, _ = await client.call(request("PUT", "/v2/queues/q", b"{}"))
        assert status == 201 and headers["location"] == "/v2/queues/q"
        post = request("POST", "/v2/queues/q/messages", b'{"messages": [{"body": 1}]}')
        status, headers, _ = await client.call(post)
        assert status == 201 and headers["location"].startswith("/v2/queues/q/messages?ids=")
        assert {"content-type", "content-length", "x-openstack-request-id"} <= set(headers)
        assert zaqar_cased(headers), headers
        status, headers, _ = await client.call(request("GET", "/v2/queues/q/claims/nope"))
        assert status == 404 and zaqar_cased(headers), headers
        assert len(front(c).fronts) == 1
        # aiohttp's path: the proxy's own listing, then what the node answers through it.
        status, headers, _ = await client.call(request("GET", "/v2/queues"))
        assert status == 200 and "content-type" in headers and zaqar_cased(headers), headers
        assert len(front(c).fronts) == 0
        status, headers, _ = await client.call(request("PUT", "/v2/queues/q2", b"{}"))
        assert status == 201 and headers["location"] == "/v2/queues/q2"
        assert zaqar_cased(headers) and {"Date", "Server"} <= set(headers), headers
        status, headers, _ = await client.call(request("PATCH", "/v2/queues"))
        assert status == 405 and "allow" in headers and zaqar_cased(headers), headers

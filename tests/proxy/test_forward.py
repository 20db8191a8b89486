"""Forwarding: bytes and headers as sent, request ids, retries on another node, streaming."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from aiohttp import web

from tests.conftest import FakeClock
from tests.proxy.cluster import Cluster, cluster
from tests.proxy.conftest import HEADERS, PROJECT, call
from tests.services import free_port

Q = "/v2/queues/q"


async def set_nodes(c: Cluster, partition: str, urls: tuple[str, ...]) -> None:
    """Change a partition's nodes in the catalog and wait until the proxy sees it."""
    await c.catalog.update_partition(partition, nodes=urls)
    cache = c.state().router.cache
    async with asyncio.timeout(2):
        while cache.partitions[partition].nodes != urls:
            await cache.changed.wait()


@asynccontextmanager
async def dropping_node() -> AsyncIterator[tuple[str, list[bytes]]]:
    """A node that passes health checks but drops every other request after reading it."""
    seen: list[bytes] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        if head.startswith(b"GET /v1/health "):
            writer.write(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
        else:
            seen.append(head)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", seen
    finally:
        server.close()
        await server.wait_closed()


def recording(seen: list[dict[str, str]]) -> Callable[[web.Application, str], web.Application]:
    def wrap(app: web.Application, partition: str) -> web.Application:
        @web.middleware
        async def record(
            request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
        ) -> web.StreamResponse:
            seen.append(dict(request.headers))
            return await handler(request)

        app.middlewares.insert(0, record)
        return app

    return wrap


async def test_headers_and_request_id_reach_the_node(tmp_path: Path, clock: FakeClock) -> None:
    seen: list[dict[str, str]] = []
    async with cluster(tmp_path, clock, wrap_node=recording(seen)) as c:
        status, _, headers = await call(
            c.proxy,
            "PUT",
            Q,
            headers={
                "X-Openstack-Request-ID": "req-given",
                "X-Custom": "kept",
                "Proxy-Authorization": "secret",
            },
        )
        assert status == 201 and headers["X-Openstack-Request-ID"] == "req-given"
        assert seen[-1]["X-Openstack-Request-ID"] == "req-given"
        assert seen[-1]["X-Custom"] == "kept" and "Proxy-Authorization" not in seen[-1]
        status, _, headers = await call(c.proxy, "GET", f"{Q}/stats")
        rid = headers["X-Openstack-Request-ID"]
        assert rid.startswith("req-") and seen[-1]["X-Openstack-Request-ID"] == rid


async def test_refused_connection_is_retried_on_another_node(
    tmp_path: Path, clock: FakeClock
) -> None:
    async with cluster(tmp_path, clock, partitions=("p1",)) as c:
        dead = f"http://127.0.0.1:{free_port()}"
        await set_nodes(c, "p1", (dead, *c.partitions["p1"].urls))
        pool = c.state().forwarder.pools.pool(c.state().router.partition("p1"))
        pool.nodes[0].healthy = True  # as if it died after its last health check
        status, body, _ = await call(
            c.proxy, "POST", f"{Q}/messages", json={"messages": [{"body": 1}]}
        )
        assert status == 201, body
        assert pool.nodes[0].healthy is False


async def test_post_is_not_replayed_once_sent_but_reads_are(
    tmp_path: Path, clock: FakeClock
) -> None:
    async with cluster(tmp_path, clock, partitions=("p1",)) as c, dropping_node() as (url, seen):
        await set_nodes(c, "p1", (url, *c.partitions["p1"].urls))
        await c.state().forwarder.pools.check_all()
        status, body, _ = await call(
            c.proxy, "POST", f"{Q}/messages", json={"messages": [{"body": 1}]}
        )
        assert status == 503 and set(body) == {"title", "description"}
        assert len(seen) == 1 and seen[0].startswith(b"POST ")
        assert (await c.partitions["p1"].deps.storage.queues.exists(PROJECT, "q")) is False
        status, _, _ = await call(c.proxy, "GET", f"{Q}/stats")
        assert status == 200  # dropped, then answered by the other node
        assert [h.split(b" ")[0] for h in seen[1:]] == [b"GET"] * (len(seen) - 1)


async def test_unreachable_partition_answers_503(tmp_path: Path, clock: FakeClock) -> None:
    async with cluster(tmp_path, clock, partitions=("p1",)) as c:
        await set_nodes(c, "p1", (f"http://127.0.0.1:{free_port()}",))
        status, body, headers = await call(c.proxy, "GET", f"{Q}/stats")
        assert status == 503 and set(body) == {"title", "description"}
        assert "Retry-After" in headers
        status, body, _ = await call(c.proxy, "GET", "/v2/health")
        assert status == 503 and set(body) == {"title", "description"}


async def test_large_answers_come_through_intact(tmp_path: Path, clock: FakeClock) -> None:
    async with cluster(tmp_path, clock) as c:
        bodies = [chr(ord("a") + i) * 200_000 for i in range(3)]
        for b in bodies:
            status, _, _ = await call(
                c.proxy, "POST", f"{Q}/messages", json={"messages": [{"body": b}]}
            )
            assert status == 201
        status, body, _ = await call(c.proxy, "GET", f"{Q}/messages?echo=true&limit=3")
        assert status == 200 and [m["body"] for m in body["messages"]] == bodies


async def test_body_over_the_limit_is_refused_like_the_node(
    tmp_path: Path, clock: FakeClock
) -> None:
    async with cluster(tmp_path, clock) as c:
        big = json.dumps({"messages": [{"body": "x" * (5 * 1024 * 1024)}]}).encode()
        async with c.proxy.post(
            f"{Q}/messages",
            data=io.BytesIO(big),
            headers={**HEADERS, "Content-Type": "application/json"},
        ) as resp:
            assert resp.status == 400
            assert (await resp.json())["title"] == "Invalid API request"

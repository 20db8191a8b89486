"""The lean path's own pieces: the usual path's hand-over to the whole path when a kept
connection loses a request."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from tests.conftest import FakeClock
from tests.proxy.cluster import cluster
from tests.proxy.conftest import PROJECT, call
from tests.proxy.test_forward import Q, set_nodes


@asynccontextmanager
async def dropping_second_request() -> AsyncIterator[tuple[str, list[bytes]]]:
    """A node that answers health checks and the first request, keeping its connections
    alive, then reads the next request and drops its connection without answering."""
    seen: list[bytes] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = re.search(rb"(?i)content-length: *(\d+)", head)
                await reader.readexactly(int(length.group(1)) if length else 0)
                if head.startswith(b"GET /v1/health "):
                    writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
                    continue
                seen.append(head)
                if len(seen) > 1:
                    return  # read, never answered
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}", seen
    finally:
        server.close()
        await server.wait_closed()


async def test_a_read_lost_on_a_kept_connection_goes_to_another_node(
    tmp_path: Path, clock: FakeClock
) -> None:
    async with (
        cluster(tmp_path, clock, partitions=("p1",)) as c,
        dropping_second_request() as (url, seen),
    ):
        await set_nodes(c, "p1", (url, *c.partitions["p1"].urls))
        await c.state().forwarder.pools.check_all()
        assert (await call(c.proxy, "GET", f"{Q}/stats"))[0] == 200  # kept alive after
        status, body, _ = await call(c.proxy, "GET", f"{Q}/stats")
        assert status == 200 and body["messages"]["total"] == 0  # the real node's answer
        assert len(seen) == 2


async def test_a_post_lost_on_a_kept_connection_is_not_sent_again(
    tmp_path: Path, clock: FakeClock
) -> None:
    async with (
        cluster(tmp_path, clock, partitions=("p1",)) as c,
        dropping_second_request() as (url, seen),
    ):
        await set_nodes(c, "p1", (url, *c.partitions["p1"].urls))
        await c.state().forwarder.pools.check_all()
        assert (await call(c.proxy, "GET", f"{Q}/stats"))[0] == 200
        message = {"messages": [{"body": 1}]}
        status, body, _ = await call(c.proxy, "POST", f"{Q}/messages", json=message)
        assert status == 503 and "may or may not" in body["description"]
        assert len(seen) == 2 and seen[1].startswith(b"POST ")
        assert (await c.partitions["p1"].deps.storage.queues.exists(PROJECT, "q")) is False


async def test_the_usual_head_goes_to_the_node_as_the_client_sent_it(
    tmp_path: Path, clock: FakeClock
) -> None:
    async with (
        cluster(tmp_path, clock, partitions=("p1",)) as c,
        dropping_second_request() as (url, seen),
    ):
        await set_nodes(c, "p1", (url,))
        await c.state().forwarder.pools.check_all()
        server = c.proxy.server
        reader, writer = await asyncio.open_connection(server.host, server.port)
        try:
            lines = b"x-Project-ID: %s\r\nX-odd-CASE:  kept as is \r\n" % PROJECT.encode()
            writer.write(b"GET %s/stats HTTP/1.1\r\nHost: proxy\r\n%s\r\n" % (Q.encode(), lines))
            assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200 ")
        finally:
            writer.close()
        # Its request line and lines as they came, Host aside; a request id and the node's Host
        # added after them.
        sent, rest = seen[0].split(b"X-Openstack-Request-ID: req-", 1)
        assert sent == b"GET %s/stats HTTP/1.1\r\n%s" % (Q.encode(), lines)
        assert re.fullmatch(rb"[0-9a-f-]{36}\r\nHost: 127\.0\.0\.1:\d+\r\n\r\n", rest), rest

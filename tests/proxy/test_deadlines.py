"""Issue 13 item 3 through the proxy: read deadlines, the connection cap, and a declared body
over the limit, on the lean path and on connections handed to aiohttp (short deadlines here;
the defaults are 10 s for a head, 1 KiB/s for a body after 5 s, 10,000 connections)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from proxy.settings import ProxySettings
from tests.conftest import FakeClock
from tests.proxy.cluster import Cluster, cluster
from tests.proxy.conftest import CLIENT_ID, PROJECT
from wire.deadlines import Deadlines

SHORT: dict[str, Any] = {"head_timeout": 0.5, "body_grace": 0.5, "body_min_rate": 1024.0}
IDS = f"Client-ID: {CLIENT_ID}\r\nX-Project-ID: {PROJECT}\r\n".encode()
POST = b"POST /v2/queues/q/messages HTTP/1.1\r\nHost: proxy\r\n" + IDS


Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


@asynccontextmanager
async def connection(c: Cluster) -> AsyncIterator[Connection]:
    server = c.proxy.server
    reader, writer = await asyncio.open_connection(server.host, server.port)
    try:
        yield reader, writer
    finally:
        writer.close()


async def drip(writer: asyncio.StreamWriter, piece: bytes, every: float, times: int) -> None:
    """Send `piece` every `every` seconds, until the connection is closed."""
    for _ in range(times):
        await asyncio.sleep(every)
        if writer.is_closing():
            return
        try:
            writer.write(piece)
            await writer.drain()
        except ConnectionError:
            return


async def closed_within(reader: asyncio.StreamReader, seconds: float) -> bytes:
    """What the server sent until it closed the connection; fails if it stays open."""
    return await asyncio.wait_for(reader.read(), seconds)


def answer(raw: bytes) -> tuple[int, dict[str, str], Any]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = {k.lower(): v for k, v in (line.split(": ", 1) for line in lines[1:])}
    return int(lines[0].split(" ")[1]), headers, json.loads(body)


async def test_a_head_that_never_ends_is_closed_at_its_deadline(
    tmp_path: Path, clock: FakeClock
) -> None:
    async with cluster(tmp_path, clock, **SHORT) as c, connection(c) as (reader, writer):
        writer.write(POST)  # a header line every 0.1 s, the blank line never
        sender = asyncio.create_task(drip(writer, b"X-Slow: 1\r\n", 0.1, 100))
        assert await closed_within(reader, 4) == b""
        sender.cancel()


async def test_a_body_slower_than_the_minimum_rate_is_closed(
    tmp_path: Path, clock: FakeClock
) -> None:
    async with cluster(tmp_path, clock, **SHORT) as c, connection(c) as (reader, writer):
        writer.write(POST + b"Content-Length: 200000\r\n\r\n")  # within the limit, 500 B/s
        sender = asyncio.create_task(drip(writer, b" " * 50, 0.1, 1000))
        assert await closed_within(reader, 4) == b""
        sender.cancel()


async def test_a_slow_chunked_body_handed_to_aiohttp_is_closed(
    tmp_path: Path, clock: FakeClock
) -> None:
    async with cluster(tmp_path, clock, **SHORT) as c, connection(c) as (reader, writer):
        writer.write(POST + b"Transfer-Encoding: chunked\r\n\r\n")
        sender = asyncio.create_task(drip(writer, b"32\r\n" + b" " * 50 + b"\r\n", 0.1, 1000))
        assert await closed_within(reader, 4) == b""
        sender.cancel()


async def test_a_slow_head_after_a_handover_is_closed(tmp_path: Path, clock: FakeClock) -> None:
    async with cluster(tmp_path, clock, **SHORT) as c, connection(c) as (reader, writer):
        writer.write(b"GET / HTTP/1.1\r\nHost: proxy\r\n\r\n")  # aiohttp takes the connection
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 300")
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        await reader.readexactly(length)
        writer.write(b"GET / HTTP/1.1\r\n")
        sender = asyncio.create_task(drip(writer, b"X-Slow: 1\r\n", 0.1, 100))
        assert await closed_within(reader, 4) == b""
        sender.cancel()


async def test_requests_within_the_deadlines_are_answered(tmp_path: Path, clock: FakeClock) -> None:
    async with cluster(tmp_path, clock, **SHORT) as c, connection(c) as (reader, writer):
        body = b'{"messages": [{"body": 1, "ttl": 300}]}'
        writer.write(POST + b"Content-Length: %d\r\n\r\n" % len(body))
        await asyncio.sleep(0.3)  # the body a little later: within the grace
        writer.write(body)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 4)
        assert head.startswith(b"HTTP/1.1 201")
        await asyncio.sleep(1.0)  # idle between requests is not a slow head
        writer.write(b"GET /v2/queues/q/stats HTTP/1.1\r\nHost: proxy\r\n" + IDS + b"\r\n")
        await reader.readexactly(int(head.lower().split(b"content-length: ")[1].split(b"\r")[0]))
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 4)
        assert head.startswith(b"HTTP/1.1 200")


async def test_a_declared_length_over_the_limit_is_refused_at_once(
    tmp_path: Path, clock: FakeClock
) -> None:
    async with cluster(tmp_path, clock) as c:
        for path in (b"/v2/queues/q/messages", b"/admin/partitions"):
            async with connection(c) as (reader, writer):
                writer.write(
                    b"POST %s HTTP/1.1\r\nHost: proxy\r\n%sX-Roles: admin\r\n"
                    b"Content-Length: 10737418240\r\n\r\n" % (path, IDS) + b"x" * 1024
                )
                status, headers, body = answer(await closed_within(reader, 3))
                assert status == 400, path
                assert headers["connection"] == "close"
                assert body == {
                    "title": "Invalid API request",
                    "description": "The request body is too large.",
                }


async def test_connections_beyond_the_cap_are_answered_503(
    tmp_path: Path, clock: FakeClock
) -> None:
    async with (
        cluster(tmp_path, clock, max_connections=2) as c,
        connection(c) as (_, first),
        connection(c) as (reader, _),
    ):
        await asyncio.sleep(0.1)  # both accepted
        async with connection(c) as (third, _):
            status, headers, body = answer(await closed_within(third, 3))
        assert status == 503 and headers["retry-after"] == "1"
        assert set(body) == {"title", "description"}
        first.close()
        await asyncio.sleep(0.2)  # the server sees it go
        async with connection(c) as (fourth, writer):
            writer.write(b"GET /v2/queues/q/stats HTTP/1.1\r\nHost: proxy\r\n" + IDS + b"\r\n")
            head = await asyncio.wait_for(fourth.readuntil(b"\r\n\r\n"), 3)
            assert head.startswith(b"HTTP/1.1 200")  # served


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MARCONI_HEAD_TIMEOUT", "3")
    monkeypatch.setenv("MARCONI_BODY_MIN_RATE", "2048")
    monkeypatch.setenv("MARCONI_BODY_GRACE", "2")
    monkeypatch.setenv("MARCONI_MAX_CONNECTIONS", "50")
    assert ProxySettings.from_env().deadlines == Deadlines(3.0, 2048.0, 2.0, 50)
    assert ProxySettings().deadlines == Deadlines(10.0, 1024.0, 5.0, 10_000)


def test_settings_that_cannot_work_are_refused() -> None:
    for bad in ({"head_timeout": 0}, {"body_grace": -1}, {"max_connections": 0}):
        with pytest.raises(ValueError, match=r"head_timeout|max_connections"):
            ProxySettings(**bad).check()
    ProxySettings().check()

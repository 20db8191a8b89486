"""Issue 13 item 3 on a node: read deadlines, the connection cap, a declared body over the
limit, and chunked bodies counted against the post limit (short deadlines here; the defaults
are 10 s for a head, 1 KiB/s for a body after 5 s, 10,000 connections per process)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import pytest

from node.settings import NodeSettings
from tests.node.conftest import CLIENT_ID, PROJECT
from tests.services import node_process
from wire.deadlines import Deadlines

SHORT = {
    "MARCONI_HEAD_TIMEOUT": "0.5",
    "MARCONI_BODY_GRACE": "0.5",
    "MARCONI_BODY_MIN_RATE": "1024",
}
IDS = f"Client-ID: {CLIENT_ID}\r\nX-Project-ID: {PROJECT}\r\n".encode()
POST = b"POST /v2/queues/q/messages HTTP/1.1\r\nHost: node\r\n" + IDS
STATS = b"GET /v2/queues/q/stats HTTP/1.1\r\nHost: node\r\n" + IDS + b"\r\n"
Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]
Address = tuple[str, int]


@contextmanager
def node(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **env: str) -> Iterator[Address]:
    """A real `marconi node` process, its settings from the environment as deployed."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with node_process(f"sqlite:///{tmp_path}/p1.db", "p1", tmp_path) as process:
        yield "127.0.0.1", int(process.url.rsplit(":", 1)[1])


@asynccontextmanager
async def connection(server: Address) -> AsyncIterator[Connection]:
    reader, writer = await asyncio.open_connection(*server)
    try:
        yield reader, writer
    finally:
        writer.close()


async def drip(writer: asyncio.StreamWriter, piece: bytes, every: float, times: int) -> None:
    for _ in range(times):
        await asyncio.sleep(every)
        if writer.is_closing():
            return
        try:
            writer.write(piece)
            await writer.drain()
        except ConnectionError:
            return


def answer(raw: bytes) -> tuple[int, dict[str, str], Any]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = {k.lower(): v for k, v in (line.split(": ", 1) for line in lines[1:])}
    return int(lines[0].split(" ")[1]), headers, json.loads(body)


async def test_a_head_that_never_ends_is_closed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with node(tmp_path, monkeypatch, **SHORT) as server:
        async with connection(server) as (reader, writer):
            writer.write(POST)
            sender = asyncio.create_task(drip(writer, b"X-Slow: 1\r\n", 0.1, 100))
            assert await asyncio.wait_for(reader.read(), 4) == b""
            sender.cancel()


async def test_a_slow_body_is_closed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with node(tmp_path, monkeypatch, **SHORT) as server:
        async with connection(server) as (reader, writer):
            writer.write(POST + b"Content-Length: 200000\r\n\r\n")  # within the limit, 500 B/s
            sender = asyncio.create_task(drip(writer, b" " * 50, 0.1, 1000))
            assert await asyncio.wait_for(reader.read(), 4) == b""
            sender.cancel()


async def test_a_declared_length_over_the_limit_is_refused_and_closed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with node(tmp_path, monkeypatch) as server:
        async with connection(server) as (reader, w):
            w.write(POST + b"Content-Length: 10737418240\r\n\r\n" + b"x" * 1024)
            status, headers, body = answer(await asyncio.wait_for(reader.read(), 3))
            assert status == 400 and headers["connection"] == "close"
            assert body == {
                "title": "Invalid API request",
                "description": "The request body is too large.",
            }


def chunked(body: bytes, size: int = 16 * 1024) -> bytes:
    pieces = [body[i : i + size] for i in range(0, len(body), size)]
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"


async def test_chunked_posts_count_against_the_post_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    limit = NodeSettings().limits.max_messages_post_size
    with node(tmp_path, monkeypatch) as server:
        big = json.dumps({"messages": [{"body": "x" * 1024 * 1024, "ttl": 300}]}).encode()
        small = json.dumps({"messages": [{"body": "x" * 1000, "ttl": 300}]}).encode()
        for body, expected in ((big, 400), (small, 201)):
            async with connection(server) as (reader, writer):
                writer.write(
                    POST
                    + b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                    + chunked(body)
                )
                status, _, answered = answer(await asyncio.wait_for(reader.read(), 5))
            assert status == expected, answered
            if expected == 400:
                assert set(answered) == {"title", "description"}
                assert str(limit) in answered["description"]


async def test_connections_beyond_the_cap_are_answered_503(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with node(tmp_path, monkeypatch, MARCONI_MAX_CONNECTIONS="1") as server:
        await asyncio.sleep(0.5)  # the probe that saw the port open has gone
        async with connection(server) as (served, first):
            first.write(STATS)
            head = await asyncio.wait_for(served.readuntil(b"\r\n\r\n"), 3)
            assert head.startswith(b"HTTP/1.1 200")
            async with connection(server) as (second, _):
                status, headers, body = answer(await asyncio.wait_for(second.read(), 3))
            assert status == 503 and headers["retry-after"] == "1"
            assert set(body) == {"title", "description"}
            first.close()
            await asyncio.sleep(0.2)
            async with connection(server) as (third, writer):
                writer.write(STATS)
                head = await asyncio.wait_for(third.readuntil(b"\r\n\r\n"), 3)
                assert not head.startswith(b"HTTP/1.1 503")


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MARCONI_HEAD_TIMEOUT", "3")
    monkeypatch.setenv("MARCONI_BODY_MIN_RATE", "2048")
    monkeypatch.setenv("MARCONI_BODY_GRACE", "2")
    monkeypatch.setenv("MARCONI_MAX_CONNECTIONS", "50")
    assert NodeSettings.from_env().deadlines == Deadlines(3.0, 2048.0, 2.0, 50)
    assert NodeSettings().deadlines == Deadlines(10.0, 1024.0, 5.0, 10_000)

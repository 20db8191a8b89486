"""The client to the nodes: pooled keep-alive connections, answers read whole, failures told
apart (never sent, or lost after sending), against real sockets."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest

from proxy.upstream import Lost, NotSent, Upstreams
from tests.services import free_port

GET = b"GET /v2/queues/q HTTP/1.1\r\nHost: n\r\n\r\n"
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"
Serve = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def node(serve: Serve) -> AsyncIterator[tuple[str, list[int]]]:
    """A scripted node; yields its URL and the number of each connection's requests."""
    connections: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(0)
        try:
            await serve(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client went away: what some tests are about
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", connections
    finally:
        server.close()
        await server.wait_closed()


def answering(*answers: bytes) -> Serve:
    """Reads a head, writes the next answer, for as long as there are answers."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for answer in answers:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(answer)
            await writer.drain()
        await reader.read()  # until the client closes

    return serve


@pytest.fixture
async def upstreams() -> AsyncIterator[Upstreams]:
    made = Upstreams(connect_timeout=1.0, read_timeout=0.3)
    yield made
    await made.close()


async def test_one_connection_carries_request_after_request(upstreams: Upstreams) -> None:
    async with node(answering(OK, OK, OK)) as (url, connections):
        for _ in range(3):
            answer = await upstreams.exchange(url, GET, b"", "GET")
            assert (answer.status, answer.body, answer.head) == (200, b"{}", OK[:-2])
        assert len(connections) == 1


async def test_an_answer_in_pieces_is_read_whole(upstreams: Upstreams) -> None:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"POST ")
        assert await reader.readexactly(4) == b"body"
        for piece in (b"HTTP/1.1 201 Created\r\nContent-", b"Length: 6\r\n\r\nab", b"cdef"):
            writer.write(piece)
            await writer.drain()
            await asyncio.sleep(0.01)
        await reader.read()

    async with node(serve) as (url, _):
        post = b"POST /q HTTP/1.1\r\nContent-Length: 4\r\n\r\n"
        answer = await upstreams.exchange(url, post, b"body", "POST")
        assert (answer.status, answer.body) == (201, b"abcdef")


async def test_connection_close_opens_a_new_connection_next_time(upstreams: Upstreams) -> None:
    closing = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    async with node(answering(closing, OK)) as (url, connections):
        await upstreams.exchange(url, GET, b"", "GET")
        await upstreams.exchange(url, GET, b"", "GET")
        assert len(connections) == 2


async def test_a_head_answer_has_no_body_and_keeps_its_connection(upstreams: Upstreams) -> None:
    head_answer = b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n"
    async with node(answering(head_answer, OK)) as (url, connections):
        answer = await upstreams.exchange(url, b"HEAD /q HTTP/1.1\r\n\r\n", b"", "HEAD")
        assert (answer.status, answer.body) == (200, b"")
        assert (await upstreams.exchange(url, GET, b"", "GET")).body == b"{}"
        assert len(connections) == 1


async def test_a_refused_connection_was_never_sent(upstreams: Upstreams) -> None:
    with pytest.raises(NotSent):
        await upstreams.exchange(f"http://127.0.0.1:{free_port()}", GET, b"", "GET")


async def test_a_request_read_but_never_answered_is_lost(upstreams: Upstreams) -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")

    async with node(hang_up) as (url, _):
        with pytest.raises(Lost):
            await upstreams.exchange(url, GET, b"", "GET")


async def test_a_node_that_does_not_answer_in_time_is_lost(upstreams: Upstreams) -> None:
    async def stall(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()

    async with node(stall) as (url, _):
        started = asyncio.get_running_loop().time()
        with pytest.raises(Lost, match="in time"):
            await upstreams.exchange(url, GET, b"", "GET")
        assert 0.3 <= asyncio.get_running_loop().time() - started < 2.0


async def test_a_chunked_answer_is_lost_not_misread(upstreams: Upstreams) -> None:
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n"
    async with node(answering(chunked)) as (url, _):
        with pytest.raises(Lost, match="unusual"):
            await upstreams.exchange(url, GET, b"", "GET")


async def test_an_idle_connection_the_node_closed_is_not_reused(upstreams: Upstreams) -> None:
    async def once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(OK)
        await writer.drain()  # then closes

    async with node(once) as (url, connections):
        await upstreams.exchange(url, GET, b"", "GET")
        await asyncio.sleep(0.05)  # its end of stream arrives while idle
        assert (await upstreams.exchange(url, GET, b"", "GET")).status == 200
        assert len(connections) == 2


async def test_a_cancelled_exchange_drops_its_connection(upstreams: Upstreams) -> None:
    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        await asyncio.sleep(0.1)
        writer.write(OK)
        await reader.readuntil(b"\r\n\r\n")
        writer.write(OK)
        await reader.read()

    async with node(slow) as (url, connections):
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.02):
                await upstreams.exchange(url, GET, b"", "GET")
        # The late answer must not be taken for the next request's.
        assert (await upstreams.exchange(url, GET, b"", "GET")).status == 200
        assert len(connections) == 2

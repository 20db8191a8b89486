"""The webhook's HTTP/1.1 client (node/notify/http.py) against raw servers that answer in each
of the ways HTTP allows."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from node.notify.http import CONNECTIONS_PER_ORIGIN, HttpClient, HttpError

Answer = Callable[[bytes], bytes]


class RawServer:
    """Reads one request head and body at a time and writes back what `answer` makes of it;
    closes the connection after each answer when `close_after`."""

    def __init__(self, answer: Answer, close_after: bool = False) -> None:
        self.answer = answer
        self.close_after = close_after
        self.requests: list[bytes] = []
        self.connections = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length")
                )
                request = head + await reader.readexactly(length)
                self.requests.append(request)
                writer.write(self.answer(request))
                await writer.drain()
                if self.close_after:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()


Serve = Callable[[RawServer], Awaitable[str]]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    servers: list[asyncio.Server] = []

    async def start(raw: RawServer) -> str:
        server = await asyncio.start_server(raw.handle, "127.0.0.1", 0)
        servers.append(server)
        return f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"

    yield start
    for server in servers:
        server.close()


async def test_length_chunked_and_to_the_end_answers(serve: Serve) -> None:
    client = HttpClient()
    plain = RawServer(lambda _: b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok")
    chunked = RawServer(
        lambda _: (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3\r\nabc\r\n2;x=y\r\nde\r\n0\r\nTrailer: t\r\n\r\n"
        )
    )
    to_end = RawServer(lambda _: b"HTTP/1.1 502 Bad Gateway\r\n\r\nbody", close_after=True)
    for raw, status in ((plain, 201), (chunked, 200), (to_end, 502)):
        url = await serve(raw)
        assert await client.post(f"{url}/hook?x=1", b'{"a": 1}', {"X-A": "b"}) == status
        assert await client.post(f"{url}/hook?x=1", b"{}", {}) == status
    # Keep-alive: one connection for both requests, but where the server closes each.
    assert (plain.connections, chunked.connections, to_end.connections) == (1, 1, 2)
    head = plain.requests[0].split(b"\r\n")
    assert head[0] == b"POST /hook?x=1 HTTP/1.1"
    assert b"X-A: b" in head and b"Content-Length: 8" in head
    await client.close()


async def test_an_idle_connection_closed_by_the_server_is_replaced(
    serve: Serve,
) -> None:
    raw = RawServer(lambda _: b"HTTP/1.1 204 No Content\r\n\r\n", close_after=True)
    url = await serve(raw)
    client = HttpClient()
    # The server closes after answering without saying so: the next request finds it closed.
    assert await client.post(url, b"1", {}) == 204
    await asyncio.sleep(0.05)
    assert await client.post(url, b"2", {}) == 204
    assert [r.rsplit(b"\r\n", 1)[-1] for r in raw.requests] == [b"1", b"2"]
    await client.close()


async def test_credentials_in_the_url_and_no_header_injection(
    serve: Serve,
) -> None:
    raw = RawServer(lambda _: b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    url = await serve(raw)
    client = HttpClient()
    authed = url.replace("http://", "http://user:p%40ss@")
    assert await client.post(authed, b"x", {"Evil": "a\r\nInjected: yes", "Host": "other"}) == 200
    head = raw.requests[0]
    assert b"Authorization: Basic dXNlcjpwQHNz" in head  # user:p@ss
    assert b"Injected" not in head and b"Host: other" not in head
    await client.close()


async def test_unreachable_and_not_http(serve: Serve) -> None:
    client = HttpClient()
    with pytest.raises(HttpError):
        await client.post("http://127.0.0.1:1/", b"x", {})
    with pytest.raises(HttpError):
        await client.post("ftp://127.0.0.1/", b"x", {})


async def test_concurrent_requests_are_pipelined_and_each_gets_its_own_answer(
    serve: Serve,
) -> None:
    # Each answer's status is the request's body: a mix-up between pipelined answers shows.
    raw = RawServer(
        lambda request: (
            b"HTTP/1.1 " + request.rsplit(b"\r\n", 1)[-1] + b" X\r\nContent-Length: 3\r\n\r\nabc"
        )
    )
    url = await serve(raw)
    client = HttpClient()
    statuses = [200 + n for n in range(100)]
    answers = await asyncio.gather(*(client.post(url, str(s).encode(), {}) for s in statuses))
    assert answers == statuses
    assert 1 <= raw.connections <= CONNECTIONS_PER_ORIGIN
    await client.close()


async def test_an_interim_answer_is_skipped(serve: Serve) -> None:
    raw = RawServer(
        lambda _: b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n"
    )
    url = await serve(raw)
    client = HttpClient()
    assert [await client.post(url, b"x", {}) for _ in range(2)] == [202, 202]
    await client.close()


async def test_a_silent_server_fails_the_request_and_the_next_gets_a_new_connection(
    serve: Serve,
) -> None:
    answered = iter([b"", b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"])
    raw = RawServer(lambda _: next(answered))  # says nothing to the first request
    url = await serve(raw)
    client = HttpClient(timeout=0.5)
    with pytest.raises(HttpError, match="no answer"):
        await client.post(url, b"1", {})
    assert await client.post(url, b"2", {}) == 200
    assert raw.connections == 2
    await client.close()

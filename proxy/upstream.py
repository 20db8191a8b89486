"""A lean HTTP/1.1 client to the nodes: keep-alive connections pooled per node.

One request at a time per connection, written in one go (head and body in one system call); the
answer's head is parsed with minimal work and its body read by `Content-Length`. A connection
goes back to its node's pool only after a complete, keep-alive answer with nothing after it;
anything unusual closes it. No limit on connections per node: each one carries one request of a
client connection, so there are never more in use than clients connected. Read timeouts are
enforced by one periodic sweep rather than a timer per request.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from typing import NamedTuple, cast
from urllib.parse import urlsplit

from proxy.http1 import ResponseHead, Unusual, parse_response

KEEPALIVE = 30.0  # seconds an idle connection is reused (aiohttp nodes keep them 75 s)


class NotSent(Exception):
    """No connection to the node could be opened: the request never left the proxy."""


class Lost(Exception):
    """The exchange failed after the request was written: the node may have applied it."""


class Answer(NamedTuple):
    """A node's whole answer: its head as relayed (hop-by-hop headers dropped) and its body."""

    status: int
    head: bytes
    body: bytes
    fence: str | None  # the node's fencing reason on a 503 ("frozen", "moved")
    request_id: bool  # whether the head carries X-Openstack-Request-ID


Then = Callable[[Answer | None, Exception | None], None]
"""Told of an exchange's end: the answer, or the `Lost` error."""


class _Connection(asyncio.Protocol):
    def __init__(self, node: _NodeConnections) -> None:
        self.node = node
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.then: Then | None = None  # set while an exchange is under way
        self.method = ""
        self.head: ResponseHead | None = None
        self.end = 0  # where the answer being read ends in the buffer
        self.deadline = 0.0  # loop time by which the answer must be in
        self.idle_since = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        self.node.every.add(self)

    def send(self, head: bytes, body: bytes, method: str, then: Then) -> None:
        """Write one request; `then` is called once, from the answer's last bytes (the
        connection is back in its pool by then) or from the failure."""
        assert self.transport is not None and self.then is None
        node = self.node
        self.then = then
        self.method = method
        self.deadline = node.loop.time() + node.owner.read_timeout
        node.owner.sending.add(self)
        if body:
            self.transport.writelines((head, body))
        else:
            self.transport.write(head)

    def data_received(self, data: bytes) -> None:
        then = self.then
        if then is None:
            self._fail(Lost("the node spoke out of turn"))  # never reused
            return
        buffer = self.buffer
        if buffer:  # the rest of an answer
            buffer += data
            if self.head is not None and len(buffer) < self.end:
                return
            data = bytes(buffer)
            buffer.clear()
        try:
            head = self.head
            if head is None:
                head = parse_response(data)
                if head is None:
                    buffer += data
                    return
                self.head = head
                self.end = head.size + head.body_length(self.method)
        except Unusual as exc:
            self._fail(Lost(f"unusual answer from the node: {exc}"))
            return
        end = self.end
        if len(data) < end:
            buffer += data
            return
        self.head = None
        self.then = None
        self.node.owner.sending.discard(self)
        # Reused only after a whole keep-alive answer with nothing after it.
        self.node.release(self, head.keep_alive and len(data) == end)
        then(
            Answer(head.status, head.head, data[head.size : end], head.fence, head.request_id), None
        )

    def connection_lost(self, exc: Exception | None) -> None:
        self.node.forget(self)
        self._fail(Lost(f"the node closed the connection ({exc or 'end of stream'})"))

    def _fail(self, exc: Exception) -> None:
        then = self.then
        self.then = None
        self.node.owner.sending.discard(self)
        self.close()
        if then is not None:
            then(None, exc)

    def time_out(self) -> None:
        self._fail(Lost("the node did not answer in time"))

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.abort()


def _settle(future: asyncio.Future[Answer], answer: Answer | None, exc: Exception | None) -> None:
    if future.done():
        return  # cancelled
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(cast(Answer, answer))


class _NodeConnections:
    """One node's connections; idle ones are reused most recent first, so few stay warm."""

    def __init__(self, owner: Upstreams, url: str) -> None:
        parts = urlsplit(url)
        self.owner = owner
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.ssl = parts.scheme == "https"
        self.loop = asyncio.get_running_loop()
        self.idle: list[_Connection] = []
        self.every: set[_Connection] = set()

    def reuse(self) -> _Connection | None:
        """An idle connection, if a fresh one is left."""
        if self.idle:
            conn = self.idle.pop()
            if self.loop.time() - conn.idle_since < KEEPALIVE:
                return conn
            # The most recent is stale, so are all the others.
            for stale in [conn, *self.idle]:
                stale.close()
            self.idle.clear()
        return None

    async def connect(self) -> _Connection:
        try:
            async with asyncio.timeout(self.owner.connect_timeout):
                _, conn = await self.loop.create_connection(
                    lambda: _Connection(self), self.host, self.port, ssl=self.ssl or None
                )
        except (OSError, TimeoutError) as exc:
            raise NotSent(f"{self.host}:{self.port}: {exc or 'connect timed out'}") from None
        return conn

    def release(self, conn: _Connection, reusable: bool) -> None:
        if reusable:
            conn.idle_since = self.loop.time()
            self.idle.append(conn)
        else:
            conn.close()

    def forget(self, conn: _Connection) -> None:
        self.every.discard(conn)
        if conn in self.idle:
            self.idle.remove(conn)


class Upstreams:
    """Every node's connection pool. Create and use within one running event loop."""

    def __init__(self, *, connect_timeout: float, read_timeout: float) -> None:
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.sending: set[_Connection] = set()  # waiting for an answer
        self._nodes: dict[str, _NodeConnections] = {}
        self._sweeper: asyncio.TimerHandle | None = None

    def idle(self, url: str) -> _Connection | None:
        """An idle connection to the node at `url`, if there is one (for `_Connection.send`)."""
        node = self._nodes.get(url)
        return None if node is None else node.reuse()

    async def exchange(self, url: str, head: bytes, body: bytes, method: str) -> Answer:
        """Send one request (`head` from `Outgoing.head`) to the node at `url`.

        Raises `NotSent` when no connection could be opened, `Lost` when the exchange failed
        after the request was written.
        """
        node = self._nodes.get(url)
        if node is None:
            node = self._nodes[url] = _NodeConnections(self, url)
            if self._sweeper is None:
                self._sweep()
        conn = node.reuse() or await node.connect()
        answered: asyncio.Future[Answer] = node.loop.create_future()
        conn.send(head, body, method, functools.partial(_settle, answered))
        try:
            return await answered
        except asyncio.CancelledError:
            if conn.then is not None:
                conn.close()  # cancelled mid-exchange: its state is unknown
            raise

    def _sweep(self) -> None:
        """Fail the exchanges past their deadline; runs a few times per read timeout."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        for conn in [c for c in self.sending if c.deadline <= now]:
            conn.time_out()
        self._sweeper = loop.call_later(min(1.0, self.read_timeout / 4), self._sweep)

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for node in self._nodes.values():
            for conn in list(node.every):
                conn.close()
        self._nodes.clear()
        await asyncio.sleep(0)  # let the transports finish closing

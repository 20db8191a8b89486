"""Read deadlines and a connection cap, for the node's and the proxy's HTTP servers.

A client may not hold a connection (and the memory behind it) by sending slowly: each server
closes a connection whose request head is not complete within `head_timeout` seconds of its
first byte, and one whose body, `body_grace` seconds after its head, has come slower on average
than `body_min_rate` bytes per second. One timer per server checks every connection (`Sweep`),
nothing is allocated per request. Beyond `max_connections` open connections per process, a new
connection is answered 503 (with `Retry-After`) and closed. A request that declares a body
larger than the server reads at all is refused at once, in Zaqar's words, and its connection
closed (`oversized_middleware`), rather than read.

aiohttp's connections take these through `GuardedServer` (its handler, `GuardedHandler`, notes
when a head begins and when its body is read); the proxy's lean connections keep their own
state and take part in the same sweep (`proxy.front`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from ground.types import Handler
from wire.errors import UNAVAILABLE_TITLE, error_body, error_response
from wire.limits import MAX_BODY


@dataclass(frozen=True, slots=True)
class Deadlines:
    head_timeout: float = 10.0  # seconds from a head's first byte to its end
    body_min_rate: float = 1024.0  # bytes per second a body must average, after the grace
    body_grace: float = 5.0  # seconds after the head before the body's rate counts
    max_connections: int = 10_000  # open connections per process; beyond, 503 and close
    max_body: int = MAX_BODY  # a declared Content-Length above this is refused at once

    @property
    def interval(self) -> float:
        """Seconds between two sweeps: a deadline is enforced at most this late."""
        return max(0.05, min(1.0, self.head_timeout / 4, self.body_grace / 4))

    def body_too_slow(self, now: float, since: float, received: int) -> bool:
        elapsed = now - since
        return elapsed > self.body_grace and received < self.body_min_rate * elapsed


def _answer(status: bytes, body: bytes, extra: bytes) -> bytes:
    """A whole answer that closes its connection."""
    # Header names in lower case, as Zaqar's server writes them.
    head = b"HTTP/1.1 %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
    return head % (status, len(body)) + extra + b"connection: close\r\n\r\n" + body


BUSY = _answer(
    b"503 Service Unavailable",
    error_body(UNAVAILABLE_TITLE, "Too many connections; try again later."),
    b"retry-after: 1\r\n",
)
# Zaqar's 400 for a declared body over the limit (as wire.errors.aiohttp_answer words a 413).
TOO_LARGE = _answer(
    b"400 Bad Request", error_body("Invalid API request", "The request body is too large."), b""
)


class Refused(asyncio.Protocol):
    """A connection beyond the cap: answered 503 at once, then closed."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        writer = cast(asyncio.WriteTransport, transport)  # uvloop's are not subclasses
        writer.write(BUSY)
        writer.close()


def oversized_middleware(limit: int) -> Any:
    """Refuse a declared Content-Length above `limit` before any of the body is read, and close
    the connection (its body is never read)."""

    @web.middleware
    async def oversized(request: web.Request, handler: Handler) -> web.StreamResponse:
        length = request.content_length
        if length is not None and length > limit:
            response = error_response(400, "Invalid API request", "The request body is too large.")
            response.force_close()
            if isinstance(request.protocol, GuardedHandler):
                request.protocol.skip_lingering()  # close once answered, the body unread
            return response
        return await handler(request)

    return oversized


class GuardedHandler(RequestHandler):
    """aiohttp's connection, noting when a head began (`head_since`) and which body is being
    read (`body`, since `body_since`), for the sweep."""

    head_since: float | None = None
    body: Any = None  # the StreamReader of the request whose body is arriving
    body_since = 0.0

    def data_received(self, data: bytes) -> None:
        body = self.body
        if body is not None and body.is_eof():
            body = self.body = None
        count = self._request_count
        if body is None and self.head_since is None:
            self.head_since = self._loop.time()
        super().data_received(data)
        if self._request_count != count:  # a head was read: its body, if any, follows
            self.head_since = None
            payload = self._messages[-1][1] if self._messages else None
            if payload is not None and not payload.is_eof():
                self.body = payload
                self.body_since = self._loop.time()

    def skip_lingering(self) -> None:
        """Close the connection once this request is answered, without reading the rest of its
        body first (aiohttp reads and drops it for up to `lingering_time`, 10 s)."""
        self._lingering_time = 0.0

    def check(self, deadlines: Deadlines, now: float) -> bool:
        """Whether the connection keeps its deadlines; if not, it is closed."""
        body = self.body
        if body is not None:
            if body.is_eof():
                self.body = None
            elif deadlines.body_too_slow(now, self.body_since, body.total_bytes):
                self._expire()
                return False
        elif self.head_since is not None and now - self.head_since > deadlines.head_timeout:
            self._expire()
            return False
        return True

    def _expire(self) -> None:
        transport = self.transport
        if transport is not None:
            transport.abort()  # connection_lost cancels the request's handler, if it runs


class GuardedServer(web.Server):
    """aiohttp's server with the deadlines and the cap (`deadlines`), one sweep timer for all."""

    def __init__(self, handler: Any, *, deadlines: Deadlines, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self.deadlines = deadlines
        self._deadline_timer: asyncio.TimerHandle | None = None

    def __call__(self) -> Any:
        self.start_sweeps()
        if self.open_connections() >= self.deadlines.max_connections:
            return Refused()
        return self.aiohttp_handler()

    def aiohttp_handler(self) -> RequestHandler:
        return GuardedHandler(self, loop=self._loop, **self._kwargs)

    def open_connections(self) -> int:
        return len(self._connections)

    def start_sweeps(self) -> None:
        if self._deadline_timer is None:
            loop = asyncio.get_running_loop()
            self._deadline_timer = loop.call_later(self.deadlines.interval, self._deadline_sweep)

    def _deadline_sweep(self) -> None:
        loop = asyncio.get_running_loop()
        self.sweep(loop.time())
        self._deadline_timer = loop.call_later(self.deadlines.interval, self._deadline_sweep)

    def sweep(self, now: float) -> None:
        for connection in list(self._connections):
            if isinstance(connection, GuardedHandler):
                connection.check(self.deadlines, now)

    def stop_sweeps(self) -> None:
        if self._deadline_timer is not None:
            self._deadline_timer.cancel()

    async def shutdown(self, timeout: float | None = None) -> None:  # noqa: ASYNC109 (aiohttp's)
        self.stop_sweeps()
        await super().shutdown(timeout)


def guarded_runner(deadlines: Deadlines) -> Callable[..., web.AppRunner]:
    """An `AppRunner` class whose server is a `GuardedServer` with `deadlines`."""

    class GuardedRunner(web.AppRunner):
        async def _make_server(self) -> web.Server:
            server = await super()._make_server()  # starts the application
            return GuardedServer(
                server.request_handler,
                request_factory=server.request_factory,
                deadlines=deadlines,
                **self._kwargs,
            )

    return GuardedRunner

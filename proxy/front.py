"""The proxy's HTTP server: a lean HTTP/1.1 path for queue routes in front of aiohttp's server.

Every client connection starts on the lean path: requests are parsed with minimal work (no
aiohttp request objects, router or middleware chain) and answered by `LeanPath`, one at a time,
in order. The first request the lean path does not take hands the connection, with the bytes
read so far, to aiohttp's request handler for the rest of its life: the admin API, metrics, the
queue listing, paths that name no queue, and anything unusual (chunked bodies, `Expect`,
HTTP/1.0, `Connection: close`, escapes in the path, oversized heads or bodies). So aiohttp keeps
answering every rarity its own well-tested way, and the app's middlewares serve those requests.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, cast

from aiohttp import web

from ground.logs import get_logger
from proxy.http1 import RequestHead, Unusual, parse_request
from proxy.pipeline import LeanPath
from proxy.routing import QueueRoute
from wire.deadlines import Deadlines, GuardedServer, Refused

log = get_logger("proxy")
LEAN = web.AppKey("lean", LeanPath)
UNUSUAL = RequestHead("", "", b"", False, None, None, 0, 0)
PIPELINED = 256 * 1024  # bytes read ahead of the request being answered before reading pauses
IDLE_GRACE = 1.0  # seconds idle keep-alive connections stay open once the stop began


class Front(asyncio.Protocol):
    """One client connection on the lean path."""

    def __init__(self, server: FrontServer) -> None:
        self.server = server
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.pending: tuple[RequestHead, QueueRoute] | None = None  # head read, body awaited
        self.needed = 0  # bytes the pending request takes
        self.busy = False  # a request is being answered
        self.closing = False  # close once the request being answered is answered
        self.paused = False
        self.last_active = self.loop.time()
        self.head_since: float | None = None  # a head's first byte came then; it is incomplete
        self.body_since = 0.0  # the pending request's head was read then

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        self.server.fronts.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.fronts.discard(self)
        self.transport = None  # a request being answered still completes; its answer is dropped
        self.server.check_drained()

    def eof_received(self) -> bool:
        if not self.busy:
            return False  # close
        self.closing = True
        return True  # keep the transport to send the answer

    def data_received(self, data: bytes) -> None:
        if not self.busy and not self.buffer:
            self._take(data)  # the usual: a whole request in one read, nothing before it
            return
        self.buffer += data
        self.last_active = self.loop.time()  # a slow body is not an idle connection
        if self.busy:
            if len(self.buffer) > PIPELINED and not self.paused and self.transport is not None:
                self.paused = True
                self.transport.pause_reading()
        elif self.pending is None or len(self.buffer) >= self.needed:
            self._next()

    def _next(self) -> None:
        """Take the next request from the bytes read ahead."""
        data = bytes(self.buffer)
        self.buffer.clear()
        self._take(data)

    def _take(self, data: bytes) -> None:
        """Start answering the request at the start of `data`, or keep `data` until it is whole."""
        if self.pending is None:
            try:
                head = parse_request(data)
            except Unusual:
                head = UNUSUAL
            if head is UNUSUAL:  # (handed over outside the except: aiohttp's errors are its own)
                self._hand_over(data)
                return
            if head is None:
                if self.head_since is None:
                    self.head_since = self.loop.time()
                self.buffer += data
                return
            if self.head_since is not None:
                self.head_since = None
            route = self.server.lean.route(head)
            if route is None:
                self._hand_over(data)
                return
        else:
            head, route = self.pending
        end = head.size + head.length
        if len(data) < end:
            if self.pending is None:
                self.body_since = self.loop.time()
            self.pending = (head, route)
            self.needed = end
            self.buffer += data
            return
        self.pending = None
        if len(data) > end:
            self.buffer += data[end:]  # pipelined
        self.busy = True
        try:
            self.server.lean.start(head, route, data[head.size : end], self._reply)
        except Exception:  # a bug: this connection ends, the others go on
            log.exception("lean_path_failed")
            self.abort()

    def _reply(self, parts: list[bytes]) -> None:
        """The answer to the request being answered: send it, then take the next one."""
        self.busy = False
        transport = self.transport
        if self.closing:  # end of stream, or shutting down
            if transport is not None and not transport.is_closing():
                transport.writelines(parts)
                transport.close()
            self.server.check_drained()
            return
        if transport is None or transport.is_closing():
            return  # the client went away
        transport.writelines(parts)
        self.last_active = self.loop.time()
        if self.paused:
            self.paused = False
            transport.resume_reading()
        if self.buffer:
            self._next()

    def _hand_over(self, data: bytes) -> None:
        """aiohttp's request handler takes the connection, from the request in `data` on."""
        transport = self.transport
        assert transport is not None and not self.busy
        self.server.fronts.discard(self)
        self.transport = None
        handler = self.server.aiohttp_handler()
        transport.set_protocol(handler)
        handler.connection_made(transport)
        if self.paused:
            transport.resume_reading()
        handler.data_received(data)

    def check(self, deadlines: Deadlines, now: float) -> None:
        """Close the connection if its head or body comes too slowly (the server's sweep)."""
        if self.busy:
            return
        pending = self.pending
        if pending is not None:
            if deadlines.body_too_slow(now, self.body_since, len(self.buffer) - pending[0].size):
                self.abort()
        elif self.head_since is not None and now - self.head_since > deadlines.head_timeout:
            self.abort()

    @property
    def in_flight(self) -> bool:
        """A request is being answered, or its head is read and its body is arriving."""
        return self.busy or self.pending is not None

    def finish(self) -> None:
        """Close once the request in flight, or the next one if idle, is answered (the server
        closes those still idle after IDLE_GRACE)."""
        self.closing = True

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


class FrontServer(GuardedServer):
    """aiohttp's server for the proxy's application, whose connections start on the lean path.

    It stays aiohttp's server (connections handed over, shutdown) and aiohttp's runners and
    sites use it as they are: they take the server as the protocol factory. Its read deadlines
    and connection cap (`wire.deadlines`) hold on both paths.
    """

    def __init__(self, handler: Any, *, lean: LeanPath, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self.lean = lean
        self.fronts: set[Front] = set()
        self.keepalive_timeout: float = kwargs.get("keepalive_timeout", 75.0)
        self._sweeper: asyncio.TimerHandle | None = None
        self._drained: asyncio.Event | None = None  # while shutting down

    def __call__(self) -> asyncio.Protocol:  # type: ignore[override]  # any protocol will do
        if self._sweeper is None:
            self._sweep_later()
        self.start_sweeps()
        if self.open_connections() >= self.deadlines.max_connections:
            return Refused()
        return Front(self)

    def open_connections(self) -> int:
        return len(self.fronts) + super().open_connections()

    def sweep(self, now: float) -> None:
        super().sweep(now)
        for front in list(self.fronts):
            front.check(self.deadlines, now)

    def _sweep_later(self) -> None:
        loop = asyncio.get_running_loop()
        self._sweeper = loop.call_later(self.keepalive_timeout / 4, self._sweep)

    def _sweep(self) -> None:
        """Close connections idle for longer than the keep-alive timeout, as aiohttp does."""
        now = asyncio.get_running_loop().time()
        for front in list(self.fronts):
            if not front.busy and now - front.last_active > self.keepalive_timeout:
                front.abort()
        self._sweep_later()

    def pre_shutdown(self) -> None:
        super().pre_shutdown()
        for front in list(self.fronts):
            front.finish()

    async def shutdown(self, timeout: float | None = None) -> None:  # noqa: ASYNC109 (aiohttp's)
        """In-flight requests get `timeout` seconds to be answered; then they are cancelled."""
        if self._sweeper is not None:
            self._sweeper.cancel()
        self._drained = asyncio.Event()
        self.check_drained()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                # A request already on its way over an idle keep-alive connection (a load
                # balancer's pooled one) is answered rather than cut; then the idle ones close.
                if any(not front.in_flight for front in self.fronts):
                    await asyncio.sleep(IDLE_GRACE)
                for front in list(self.fronts):
                    if not front.in_flight:
                        front.abort()
                await self._drained.wait()
        for task in list(self.lean.tasks):
            task.cancel()
        for front in list(self.fronts):
            front.abort()
        await super().shutdown(timeout)

    def check_drained(self) -> None:
        if self._drained is not None and not any(front.in_flight for front in self.fronts):
            self._drained.set()


class ProxyRunner(web.AppRunner):
    """An `AppRunner` whose server puts the lean path (`app[LEAN]`) in front of the app, both
    under `deadlines`."""

    def __init__(
        self, app: web.Application, *, deadlines: Deadlines | None = None, **kwargs: Any
    ) -> None:
        super().__init__(app, **kwargs)
        self.deadlines = deadlines if deadlines is not None else Deadlines()

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()  # starts the application
        lean = self.app.get(LEAN)
        if lean is None:
            return GuardedServer(
                server.request_handler,
                request_factory=server.request_factory,
                deadlines=self.deadlines,
                **self._kwargs,
            )
        return FrontServer(
            server.request_handler,
            request_factory=server.request_factory,
            lean=lean,
            deadlines=self.deadlines,
            **self._kwargs,
        )

"""The node's stop: answer every request in flight, the ones whose body is still arriving too.

aiohttp's own shutdown (`AppRunner.cleanup`) marks every connection closing first, and from then
on a connection drops what it reads: a request whose body was still arriving at SIGTERM waits
for bytes that never come, and is cancelled when the drain time is up. So the node drains first
by itself: it stops accepting, closes idle keep-alive connections, lets each request in flight
read its body and be answered (with `Connection: close`), and only then hands over to aiohttp's
cleanup, which closes what is left and runs the app's cleanup_ctx (the storage).
"""

from __future__ import annotations

import asyncio
import contextlib

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from ground.types import Handler

# aiohttp's own wait, after the drain: what is still running then is cancelled this soon.
AFTER_DRAIN = 0.5


class Drain:
    """The connections with a request in flight (through `middleware`, the app's outermost;
    aiohttp answers one request at a time per connection), and `stop`."""

    def __init__(self) -> None:
        self.busy: set[RequestHandler] = set()
        self.stopping = False
        self._idle = asyncio.Event()

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        connection = request.protocol
        self.busy.add(connection)
        self._idle.clear()
        try:
            response = await handler(request)
            if self.stopping:
                response.force_close()  # answered, then the connection closes
            return response
        finally:
            self.busy.discard(connection)
            if not self.busy:
                self._idle.set()

    async def stop(self, runner: web.AppRunner, timeout: float) -> None:  # noqa: ASYNC109
        """Stop accepting, answer the requests in flight within `timeout` seconds, clean up."""
        self.stopping = True
        for site in list(runner.sites):
            await site.stop()
        for connection in runner.server.connections if runner.server else ():
            if connection not in self.busy:
                connection.close()  # idle between two requests: it takes no new one
        if self.busy:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._idle.wait()
        await runner.cleanup()

"""The node's stop: answer every request in flight, the ones whose body is still arriving too.

aiohttp's own shutdown (`AppRunner.cleanup`) marks every connection closing first, and from then
on a connection drops what it reads: a request whose body was still arriving at SIGTERM waits
for bytes that never come, and is cancelled when the drain time is up; a request already on its
way over an idle keep-alive connection (a proxy's pooled one) is cut, and a proxy can only
answer a post sent that way "may or may not have been applied". So the node drains first by
itself, in order:

1. stop accepting new connections;
2. answer every request from now on with `Connection: close`, each request in flight reading
   its body to the end;
3. leave idle keep-alive connections open for `IDLE_GRACE` seconds, so a request already sent
   over one is answered rather than cut, then close those still idle;
4. wait for the requests in flight, until the drain time is up;
5. hand over to aiohttp's cleanup, which cancels what still runs and runs the app's cleanup_ctx
   (the storage closes last).
"""

from __future__ import annotations

import asyncio
import contextlib

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from ground.types import Handler

# aiohttp's own wait, after the drain: what is still running then is cancelled this soon.
AFTER_DRAIN = 0.5
IDLE_GRACE = 1.0  # seconds idle keep-alive connections stay open once the stop began


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
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        self.stopping = True
        for site in list(runner.sites):
            await site.stop()
        if self._idle_connections(runner):
            await asyncio.sleep(min(IDLE_GRACE, timeout))
        for connection in self._idle_connections(runner):
            connection.close()  # it takes no new request
        if self.busy:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout_at(deadline):
                    await self._idle.wait()
        await runner.cleanup()

    def _idle_connections(self, runner: web.AppRunner) -> list[RequestHandler]:
        connections = runner.server.connections if runner.server else []
        return [c for c in connections if c not in self.busy]

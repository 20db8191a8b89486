"""Ping and health: is this node's storage reachable."""

from __future__ import annotations

from aiohttp import web

from node.api.endpoint import Endpoint
from wire.answers import no_content, ok
from wire.errors import RETRY_AFTER

# The storage does not answer: retry later (the only meaning 503 has).
UNREACHABLE = {"Retry-After": RETRY_AFTER}


class Ping(Endpoint):
    async def get(self, request: web.Request) -> web.Response:
        if await self.storage.ping():
            return no_content()
        return web.Response(status=503, headers=UNREACHABLE)

    head = get


class Health(Endpoint):
    async def get(self, request: web.Request) -> web.Response:
        reachable = await self.storage.ping()
        return ok(
            {"storage_reachable": reachable, "partition": self.deps.partition},
            status=200 if reachable else 503,
            headers=None if reachable else UNREACHABLE,
        )

    async def head(self, request: web.Request) -> web.Response:
        if await self.storage.ping():
            return no_content()
        return web.Response(status=503, headers=UNREACHABLE)

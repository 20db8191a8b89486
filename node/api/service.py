"""Ping and health: is this node's storage reachable."""

from __future__ import annotations

from aiohttp import web

from node.api.endpoint import Endpoint
from wire.answers import no_content, ok


class Ping(Endpoint):
    async def get(self, request: web.Request) -> web.Response:
        if await self.storage.ping():
            return no_content()
        return web.Response(status=503)

    head = get


class Health(Endpoint):
    async def get(self, request: web.Request) -> web.Response:
        reachable = await self.storage.ping()
        return ok(
            {"storage_reachable": reachable, "partition": self.deps.partition},
            status=200 if reachable else 503,
        )

    async def head(self, request: web.Request) -> web.Response:
        return no_content() if await self.storage.ping() else web.Response(status=503)

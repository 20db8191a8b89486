"""A fake of the proxy's admin API: the documented contract over the in-memory catalog.

The CLI's tests drive it over real HTTP on 127.0.0.1. Catalog rules (idempotent add, no removal
of a partition that owns queues) come from `catalog.catalog.Catalog` itself, not re-written here.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from catalog.catalog import Catalog
from catalog.errors import NotFound, Refused
from catalog.memory import MemoryStore
from catalog.records import Partition, PartitionState


def _error(status: int, title: str, description: str) -> web.Response:
    return web.json_response({"title": title, "description": description}, status=status)


def _doc(p: Partition) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(p.to_json())
    return doc


def _project(raw: str) -> str:
    return "" if raw == "_" else raw


class FakeAdmin:
    def __init__(self) -> None:
        self.catalog = Catalog(MemoryStore())
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.unavailable = False
        self.health_status = 200
        self.health: dict[str, Any] = {
            "catalog": {"state": "live", "revision": 7},
            "partitions": {},
        }

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._guard])
        r = app.router
        r.add_get("/admin/partitions", self.list_partitions)
        r.add_put("/admin/partitions/{name}", self.put_partition)
        r.add_patch("/admin/partitions/{name}", self.patch_partition)
        r.add_delete("/admin/partitions/{name}", self.delete_partition)
        r.add_get("/admin/placements/{project}/{queue}", self.placement)
        r.add_get("/admin/pins", self.list_pins)
        r.add_put("/admin/pins/{project}", self.put_pin)
        r.add_delete("/admin/pins/{project}", self.delete_pin)
        r.add_get("/admin/health", self.get_health)
        return app

    @web.middleware
    async def _guard(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.requests.append((request.method, request.path, dict(request.headers)))
        if "admin" not in request.headers.get("X-Roles", "").split(","):
            return _error(403, "Forbidden", "The admin role is required.")
        if self.unavailable:
            return _error(503, "Service Unavailable", "The catalog is unreachable.")
        response: web.StreamResponse = await handler(request)
        return response

    async def list_partitions(self, request: web.Request) -> web.Response:
        partitions = await self.catalog.partitions()
        return web.json_response({"partitions": [_doc(p) for p in partitions]})

    async def put_partition(self, request: web.Request) -> web.Response:
        body = await request.json()
        if not body.get("nodes"):
            return _error(400, "Invalid API request", "A partition needs at least one node.")
        wanted = Partition(
            name=request.match_info["name"],
            nodes=tuple(body["nodes"]),
            weight=int(body.get("weight", 1)),
            state=PartitionState(body.get("state", "active")),
            storage=body.get("storage", ""),
        )
        try:
            existing = await self.catalog.partition(wanted.name)
        except NotFound:
            existing = None
        try:
            added = await self.catalog.add_partition(wanted)
        except Refused as exc:
            return _error(409, "Conflict", str(exc))
        return web.json_response(_doc(added), status=200 if existing else 201)

    async def patch_partition(self, request: web.Request) -> web.Response:
        body = await request.json()
        try:
            updated = await self.catalog.update_partition(
                request.match_info["name"],
                weight=body.get("weight"),
                state=PartitionState(body["state"]) if "state" in body else None,
                nodes=tuple(body["nodes"]) if "nodes" in body else None,
                storage=body.get("storage"),
            )
        except NotFound as exc:
            return _error(404, "Not Found", str(exc))
        return web.json_response(_doc(updated))

    async def delete_partition(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        try:
            await self.catalog.partition(name)
            await self.catalog.remove_partition(name)
        except NotFound as exc:
            return _error(404, "Not Found", str(exc))
        except Refused as exc:
            return _error(409, "Conflict", str(exc))
        return web.Response(status=204)

    async def placement(self, request: web.Request) -> web.Response:
        project = _project(request.match_info["project"])
        queue = request.match_info["queue"]
        found = await self.catalog.placement(project, queue)
        if found is None:
            # The fake's "policy": the first partition taking new queues.
            active = [p.name for p in await self.catalog.partitions() if p.accepts_new_queues]
            return web.json_response({"placed": False, "partition": active[0] if active else None})
        doc = json.loads(found.to_json())
        return web.json_response({**doc, "placed": True})

    async def list_pins(self, request: web.Request) -> web.Response:
        pins = await self.catalog.pins()
        return web.json_response(
            {"pins": [{"project": p.project, "partition": p.partition} for p in pins]}
        )

    async def put_pin(self, request: web.Request) -> web.Response:
        body = await request.json()
        project = _project(request.match_info["project"])
        try:
            await self.catalog.partition(body["partition"])
        except NotFound:  # as the proxy answers: the body names nothing known
            return _error(
                400, "Invalid request body", f"Partition {body['partition']} does not exist."
            )
        pin = await self.catalog.pin(project, body["partition"])
        return web.json_response({"project": pin.project, "partition": pin.partition})

    async def delete_pin(self, request: web.Request) -> web.Response:
        await self.catalog.unpin(_project(request.match_info["project"]))
        return web.Response(status=204)

    async def get_health(self, request: web.Request) -> web.Response:
        return web.json_response(self.health, status=self.health_status)

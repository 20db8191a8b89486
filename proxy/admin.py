"""The admin API (role `admin`): partitions, placements, pins and the health of every partition
(migrations, drain and rebalance: `proxy.admin_migrations`).

Paths name a project's queues with "_" for the project "" (v1 requests without a project).
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

from aiohttp import web

from catalog.cache import PlacementCache
from catalog.catalog import Catalog
from catalog.errors import NotFound, Refused
from catalog.records import Partition, PartitionState, node_url_problem, storage_uri_problem
from catalog.registry import Registry
from proxy.errors import BadRequest, NotAuthorized
from proxy.nodes import NodePools
from proxy.piles import PileReader
from proxy.routing import Router
from wire.answers import no_content, ok
from wire.errors import ApiError
from wire.limits import ApiLimits
from wire.request import param_bool, parse_json

NAME = re.compile(r"^[a-zA-Z0-9_\-.]{1,64}$")
STATES = ", ".join(s.value for s in PartitionState)


def _project(raw: str) -> str:
    return "" if raw == "_" else raw


def _storage(raw: Any) -> str:
    """A storage URI for migration workers (checked before it is stored), or empty."""
    problem = None if raw == "" else storage_uri_problem(raw)
    if problem is not None:
        raise BadRequest(f'"storage": {problem}.')
    assert isinstance(raw, str)
    return raw


def _partition_doc(p: Partition) -> dict[str, Any]:
    return {
        "name": p.name,
        "nodes": list(p.nodes),
        "weight": p.weight,
        "state": p.state.value,
        "storage": p.storage,
    }


async def read_body(request: web.Request) -> dict[str, Any]:
    try:
        document = parse_json(await request.read(), ApiLimits().max_json_depth)
    except ApiError as exc:
        raise BadRequest(exc.description) from None
    if not isinstance(document, dict):
        raise BadRequest("Request body must be a JSON object.")
    return document


def _nodes(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise BadRequest('"nodes" must be a non-empty list of http(s)://host[:port] URLs.')
    for url in value:
        problem = node_url_problem(url)
        if problem is not None:
            raise BadRequest(f'"nodes": {problem}.')
    return tuple(value)


def _weight(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise BadRequest('"weight" must be an integer of at least 0.')
    return value


def _state(value: Any) -> PartitionState:
    try:
        return PartitionState(value)
    except ValueError:
        raise BadRequest(f'"state" must be one of: {STATES}.') from None


def path_partition(request: web.Request) -> str:
    name = request.match_info["name"]
    if not NAME.match(name):
        raise BadRequest("A partition name has 1 to 64 letters, digits, '_', '-' or '.'.")
    return name


class Admin:
    def __init__(
        self,
        catalog: Catalog,
        cache: PlacementCache,
        router: Router,
        pools: NodePools,
        piles: PileReader,
    ) -> None:
        self.catalog = catalog
        self.cache = cache
        self.router = router
        self.pools = pools
        self.piles = piles
        self.registry = Registry(catalog)

    def routes(self) -> list[web.RouteDef]:
        p, partition = "/admin/partitions", "/admin/partitions/{name}"
        return [
            web.get(p, self.list_partitions, allow_head=False),
            web.put(partition, self.put_partition),
            web.patch(partition, self.patch_partition),
            web.delete(partition, self.delete_partition),
            web.get("/admin/placements/{project}/{queue}", self.placement, allow_head=False),
            web.get("/admin/pins", self.list_pins, allow_head=False),
            web.get("/admin/pins/{project}", self.get_pin, allow_head=False),
            web.put("/admin/pins/{project}", self.put_pin),
            web.delete("/admin/pins/{project}", self.delete_pin),
            web.get("/admin/health", self.health, allow_head=False),
        ]

    # --- partitions ------------------------------------------------------------------------------

    async def list_partitions(self, request: web.Request) -> web.Response:
        partitions = await self.catalog.partitions()
        return ok({"partitions": [_partition_doc(p) for p in partitions]})

    async def put_partition(self, request: web.Request) -> web.Response:
        name = path_partition(request)
        doc = await read_body(request)
        wanted = Partition(
            name=name,
            nodes=_nodes(doc.get("nodes")),
            weight=_weight(doc.get("weight", 1)),
            state=_state(doc.get("state", PartitionState.ACTIVE.value)),
            storage=_storage(doc.get("storage", "")),
        )
        try:
            existing = await self.catalog.partition(name)
        except NotFound:
            added = await self.catalog.add_partition(wanted)  # Refused (409) if a racer differs
            return ok(_partition_doc(added), status=201)
        if existing != wanted:
            raise Refused(f"Partition {name} already exists with other settings.")
        return ok(_partition_doc(existing))

    async def patch_partition(self, request: web.Request) -> web.Response:
        name = path_partition(request)
        doc = await read_body(request)
        unknown = set(doc) - {"weight", "state", "nodes", "storage"}
        if unknown or not doc:
            raise BadRequest(
                'Give any of "weight", "state", "nodes" and "storage", and nothing else.'
            )
        updated = await self.catalog.update_partition(
            name,
            weight=_weight(doc["weight"]) if "weight" in doc else None,
            state=_state(doc["state"]) if "state" in doc else None,
            nodes=_nodes(doc["nodes"]) if "nodes" in doc else None,
            storage=_storage(doc["storage"]) if "storage" in doc else None,
        )
        return ok(_partition_doc(updated))

    async def delete_partition(self, request: web.Request) -> web.Response:
        """409 while the partition is part of a migration, owns queues, or may hold dead
        letters in its piles (`proxy.piles`; `?force=true` removes it anyway, losing them)."""
        name = path_partition(request)
        partition = await self.catalog.partition(name)  # NotFound: 404
        if await self.registry.partition_in_use(name):
            raise Refused(f"Partition {name} is still part of a migration; wait for it to end.")
        # Queues first: a partition that owns none takes no claims, so piles no new letters
        # once they are read empty.
        if await self.catalog.count_placements(name, stop_at=1):
            raise Refused(f"Partition {name} still owns queues; drain it first.")
        if not param_bool(request, "force"):
            await self.piles.check_empty(partition)
        await self.catalog.remove_partition(name)  # Refused if it got a queue meanwhile: 409
        return no_content()

    # --- placements and pins ---------------------------------------------------------------------

    async def placement(self, request: web.Request) -> web.Response:
        project, queue = _project(request.match_info["project"]), request.match_info["queue"]
        found = await self.cache.refresh(project, queue)
        if found is None:
            return ok({"placed": False, "partition": self.router.choose(project, queue)})
        return ok(
            {
                "project": found.project,
                "queue": found.queue,
                "placed": True,
                "partition": found.partition,
                "epoch": found.epoch,
                "state": found.state.value,
            }
        )

    async def list_pins(self, request: web.Request) -> web.Response:
        pins = sorted(await self.catalog.pins(), key=lambda p: p.project)
        return ok({"pins": [{"project": p.project, "partition": p.partition} for p in pins]})

    async def get_pin(self, request: web.Request) -> web.Response:
        project = _project(request.match_info["project"])
        for pin in await self.catalog.pins():
            if pin.project == project:
                return ok({"project": pin.project, "partition": pin.partition})
        raise NotFound(f"project {project or '_'} is not pinned")

    async def put_pin(self, request: web.Request) -> web.Response:
        project = _project(request.match_info["project"])
        partition = (await read_body(request)).get("partition")
        if not isinstance(partition, str) or not NAME.match(partition):
            raise BadRequest('"partition" must name a partition.')
        try:
            await self.catalog.partition(partition)
        except NotFound:
            raise BadRequest(f"Partition {partition} does not exist.") from None
        pin = await self.catalog.pin(project, partition)
        return ok({"project": pin.project, "partition": pin.partition})

    async def delete_pin(self, request: web.Request) -> web.Response:
        await self.catalog.unpin(_project(request.match_info["project"]))
        return no_content()

    # --- health ----------------------------------------------------------------------------------

    async def health(self, request: web.Request) -> web.Response:
        """Each partition's nodes, and the dead letters waiting in its piles (what keeps it
        from being removed: `proxy.piles`)."""
        partitions: dict[str, Any] = {}
        known = list(self.cache.partitions.values())
        piles = await asyncio.gather(*(self.piles.report(p) for p in known))
        for partition, pile in zip(known, piles, strict=True):
            pool = self.pools.pool(partition)
            partitions[partition.name] = {
                "healthy": pool.healthy,
                "nodes": {
                    n.url: {"healthy": bool(n.healthy), "outstanding": n.outstanding}
                    for n in pool.nodes
                },
                "dead_letters": {"waiting": pile["waiting"], "more": pile["more"]},
            }
        return ok(
            {
                "catalog": {"state": self.cache.state.value, "revision": self.cache.revision},
                "partitions": partitions,
            }
        )


@web.middleware
async def admin_role(request: web.Request, handler: Any) -> web.StreamResponse:
    """Admin paths need the `admin` role in `X-Roles` (comma-separated, as Keystone sends it)."""
    if request.path.startswith("/admin/") or request.path == "/admin":
        roles = {r.strip().lower() for r in request.headers.get("X-Roles", "").split(",")}
        if "admin" not in roles:
            raise NotAuthorized()
    response: web.StreamResponse = await handler(request)
    return response

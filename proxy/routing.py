"""From a request to a partition: the proxy's route table and the placement rules.

Every API version is served at one endpoint. A route that names a queue is sent to the partition
holding the queue's placement (read through the cache, never from etcd per request). A request
that creates a queue (PUT queue in every version; a message post in v1.1 and v2, which create
queues lazily) first places a queue that has none: the policy chooses, and the catalog's
create-if-absent makes two racing proxies agree. Any other request for an unplaced queue goes to
the partition the policy would choose, without placing it.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web
from prometheus_client import Counter

from catalog.cache import PlacementCache
from catalog.catalog import Catalog
from catalog.records import Partition, Placement
from node.api import validation
from node.api.hooks import accepts_json, client_id
from node.errors import ApiError
from proxy.errors import PartitionUnavailable
from proxy.policy import PlacementPolicy

VERSIONS = ("v1", "v1.1", "v2")
VERSION = r"/{version:v1|v1\.1|v2}"
QUEUE = VERSION + "/queues/{queue_name}"
# Route templates under a queue (they become the metrics' route labels); anything else that
# names a queue falls to the last one.
QUEUE_ROUTES = (
    "",
    "/stats",
    "/metadata",
    "/purge",
    "/messages",
    "/messages/{message_id}",
    "/claims",
    "/claims/{claim_id}",
    "/{rest:.+}",
)
LAZY_CREATION = frozenset({"v1.1", "v2"})

PLACED = Counter("marconi_proxy_placements_total", "Queue placements this proxy asked for.")


@dataclass(frozen=True, slots=True)
class Target:
    """What a request that names a queue is about."""

    version: str
    project: str
    queue: str
    creates: bool  # may create the queue, so it is placed first
    deletes: bool  # deletes the queue, so its placement goes after a 204

    @classmethod
    def of(cls, request: web.Request) -> Target:
        version = request.match_info["version"]
        queue = request.match_info["queue_name"]
        resource = request.match_info.route.resource
        rest = resource.canonical if resource is not None else ""
        on_queue = rest.endswith("{queue_name}")
        creates = (request.method == "PUT" and on_queue) or (
            request.method == "POST" and rest.endswith("/messages") and version in LAZY_CREATION
        )
        return cls(
            version=version,
            project=request.headers.get("X-Project-ID", ""),
            queue=queue,
            creates=creates,
            deletes=request.method == "DELETE" and on_queue,
        )


def may_create(request: web.Request, target: Target) -> bool:
    """Whether the node's header and name checks would let this request through.

    A request the node will refuse outright is forwarded without placing its queue, so bad
    requests cost no catalog write. (A body the node refuses is undone after the fact.)
    """
    if not accepts_json(request.headers.get("Accept")):
        return False
    if request.headers.get("Content-Type", "").lower() == "application/x-www-form-urlencoded":
        return False
    project = request.headers.get("X-Project-ID")
    ids_required = target.version in LAZY_CREATION
    if project == "" or (ids_required and project is None):
        return False
    try:
        client_id(request, ids_required)
        validation.queue_identification(target.queue, target.project)
    except ApiError:
        return False
    return "/" not in target.project  # a project id is one catalog key segment


class Router:
    def __init__(self, catalog: Catalog, cache: PlacementCache, policy: PlacementPolicy) -> None:
        self.catalog = catalog
        self.cache = cache
        self.policy = policy

    async def placement(self, project: str, queue: str) -> Placement | None:
        return await self.cache.placement(project, queue)

    async def place(self, project: str, queue: str) -> Placement:
        """Create the queue's placement where the policy says, unless one exists (the winner)."""
        chosen = self.choose(project, queue)
        placement = await self.catalog.place(project, queue, chosen)
        PLACED.inc()
        self.cache.remember(placement)
        return placement

    async def unplace(self, project: str, queue: str) -> None:
        await self.catalog.unplace(project, queue)
        await self.cache.refresh(project, queue)  # forget it here now; the watch confirms

    def choose(self, project: str, queue: str) -> str:
        return self.policy.choose(project, queue, self.cache.partitions, self.cache.pins)

    def partition_for(self, project: str, queue: str, placement: Placement | None) -> Partition:
        """The partition that owns the queue, or that would get it."""
        name = placement.partition if placement is not None else self.choose(project, queue)
        return self.partition(name)

    def partition(self, name: str) -> Partition:
        found = self.cache.partitions.get(name)
        if found is None:
            raise PartitionUnavailable(f"Partition {name} is not in the catalog.")
        return found

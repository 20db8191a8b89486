"""From a request to a partition: the proxy's route table and the placement rules.

Every API version is served at one endpoint. A route that names a queue is sent to the partition
holding the queue's placement (read through the cache, never from etcd per request). A request
that creates a queue (PUT queue in every version; a message post in v1.1 and v2 and a
subscription in v2, which create queues lazily) first places a queue that has none: the policy
chooses, and the catalog's create-if-absent makes two racing proxies agree. Any other request for
an unplaced queue goes to the partition the policy would choose, without placing it.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from typing import NamedTuple

from aiohttp import web
from prometheus_client import Counter

from catalog.cache import HIT, LOOKUPS, PlacementCache
from catalog.catalog import Catalog
from catalog.records import Partition, Placement
from proxy.errors import PartitionUnavailable
from proxy.policy import PlacementPolicy
from wire import validation
from wire.checks import accepts_json
from wire.errors import ApiError
from wire.topics import container, is_topic, topic_name

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
    "/subscriptions",
    "/{rest:.+}",
)
# A topic (`/v2/topics/{name}`) is routed as its container (`wire.topics`): its own placement
# key, distinct from a queue of the same name, placed, moved and fenced as a queue is.
TOPIC = "/{version:v2}/topics/{topic_name}"
TOPIC_ROUTES = (
    "",
    "/stats",
    "/purge",
    "/messages",
    "/messages/{message_id}",
    "/subscriptions",
    "/{rest:.+}",
)
LAZY_CREATION = frozenset({"v1.1", "v2"})

PLACED = Counter("marconi_proxy_placements_total", "Queue placements this proxy asked for.")


class QueueRoute(NamedTuple):
    """Which queue route a path takes, as aiohttp's router would match it. (Tuples: the
    cheapest records to make, a few per request.)"""

    version: str
    queue: str  # a topic's container, for a topic route
    suffix: str  # one of QUEUE_ROUTES, or of TOPIC_ROUTES for a topic route

    @property
    def template(self) -> str:
        """The route's template, as aiohttp names it (the metrics' route label)."""
        if is_topic(self.queue):
            return TOPIC_TEMPLATES[self.suffix]
        return TEMPLATES[self.suffix]


def _canonical(template: str) -> str:
    """aiohttp's name of a route template (`{name:regex}` becomes `{name}`)."""
    return re.sub(r"\{(\w+):[^{}]*\}", r"{\1}", template)


TEMPLATES = {suffix: _canonical(QUEUE + suffix) for suffix in QUEUE_ROUTES}
TOPIC_TEMPLATES = {suffix: _canonical(TOPIC + suffix) for suffix in TOPIC_ROUTES}
SUFFIXES = {
    template: suffix
    for templates in (TEMPLATES, TOPIC_TEMPLATES)
    for suffix, template in templates.items()
}
_EXACT = frozenset(s for s in QUEUE_ROUTES if "{" not in s)


def match_queue_route(path: str) -> QueueRoute | None:
    """The queue route of a raw path (no query), or None for anything else or anything this
    plain reading might get wrong (escapes, braces, non-ASCII): aiohttp's router takes those."""
    parts = path.split("/", 4)
    topic = len(parts) >= 4 and parts[2] == "topics" and parts[1] == "v2"
    if (
        len(parts) < 4
        or parts[1] not in VERSIONS
        or (parts[2] != "queues" and not topic)
        or not parts[3]
        or not path.isascii()
        or "%" in path
        or "{" in path
        or "}" in path
        or "#" in path  # escapes and braces: left to aiohttp's router
    ):
        return None
    rest = "/" + parts[4] if len(parts) == 5 else ""
    if rest in _EXACT:
        suffix = rest
    elif rest.startswith("/messages/") and "/" not in rest[10:] and len(rest) > 10:
        suffix = "/messages/{message_id}"
    elif rest.startswith("/claims/") and "/" not in rest[8:] and len(rest) > 8:
        suffix = "/claims/{claim_id}"
    elif len(rest) > 1:
        suffix = "/{rest:.+}"
    else:
        return None  # "/v2/queues/q/": no queue route takes it
    if topic:
        return QueueRoute(parts[1], container(parts[3]), _topic_suffix(suffix))
    return QueueRoute(parts[1], parts[3], suffix)


def _topic_suffix(suffix: str) -> str:
    return suffix if suffix in TOPIC_ROUTES else "/{rest:.+}"


class Target(NamedTuple):
    """What a request that names a queue is about."""

    version: str
    project: str
    queue: str
    creates: bool  # may create the queue, so it is placed first
    deletes: bool  # deletes the queue, so its placement goes after a 204

    @classmethod
    def make(cls, method: str, route: QueueRoute, project: str) -> Target:
        on_queue = route.suffix == ""
        creates = (
            (method == "PUT" and on_queue)
            or (method == "POST" and route.suffix == "/messages" and route.version in LAZY_CREATION)
            or (method == "POST" and route.suffix == "/subscriptions" and route.version == "v2")
        )
        return cls(route.version, project, route.queue, creates, method == "DELETE" and on_queue)

    @classmethod
    def of(cls, request: web.Request) -> Target:
        """The target of a request aiohttp's router matched to a queue route."""
        resource = request.match_info.route.resource
        canonical = resource.canonical if resource is not None else ""
        topic = request.match_info.get("topic_name")
        route = QueueRoute(
            request.match_info["version"],
            request.match_info["queue_name"] if topic is None else container(topic),
            SUFFIXES.get(canonical, "/{rest:.+}"),
        )
        return cls.make(request.method, route, request.headers.get("X-Project-ID", ""))


def may_create(headers: Mapping[str, str], target: Target) -> bool:
    """Whether the node's header and name checks would let this request through.

    A request the node will refuse outright is forwarded without placing its queue, so bad
    requests cost no catalog write. (A body the node refuses is undone after the fact.)
    """
    if not accepts_json(headers.get("Accept")):
        return False
    if headers.get("Content-Type", "").lower() == "application/x-www-form-urlencoded":
        return False
    project = headers.get("X-Project-ID")
    ids_required = target.version in LAZY_CREATION
    if project == "" or (ids_required and project is None):
        return False
    client = headers.get("Client-ID")
    try:
        if client is not None:
            uuid.UUID(client)
        elif ids_required:
            return False
        if is_topic(target.queue):
            validation.topic_identification(topic_name(target.queue), target.project)
        else:
            validation.queue_identification(target.queue, target.project)
    except (ValueError, ApiError):
        return False
    return True


class Router:
    def __init__(self, catalog: Catalog, cache: PlacementCache, policy: PlacementPolicy) -> None:
        self.catalog = catalog
        self.cache = cache
        self.policy = policy

    def cached(self, project: str, queue: str) -> Placement | bool | None:
        """The cached placement, None if known absent, False if unknown (not counted: `placement`
        reads it from etcd and the cache counts the miss). Every hit is counted here."""
        found = self.cache.cached(project, queue)
        if found is not False:
            LOOKUPS.add(HIT)  # the cache's own count
        return found

    async def placement(self, project: str, queue: str) -> Placement | None:
        found = self.cached(project, queue)
        if found is None or isinstance(found, Placement):
            return found
        if not validation.utf8(project):
            return None  # no key can name it; the node answers the request 400
        return await self.cache.placement(project, queue)  # a cold queue: counted there

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
        if not validation.utf8(project):
            project = ""  # a project id that is not UTF-8 cannot be hashed; the node refuses it
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

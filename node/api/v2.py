"""API v2: the route table and its handlers. v1.1 reuses most of these through subclassing."""

from __future__ import annotations

import copy
from typing import Any, ClassVar

from aiohttp import web

from node.api import formatting as fmt
from node.api import validation
from node.api.deps import Deps
from node.api.formatting import dumps
from node.api.homedoc import Resource, home_document
from node.api.hooks import CLIENT_ID, PROJECT
from node.api.request import (
    json_body,
    optional_json_body,
    param_bool,
    param_int,
    param_list,
    param_str,
)
from node.errors import (
    ApiError,
    MessageDoesNotExist,
    QueueDoesNotExist,
    UnsupportedMediaType,
    ValidationFailed,
)
from node.models import Message

PREFIX = "/v2"
JSON = "application/json"
JSON_PATCH = "application/openstack-messaging-v2.0-json-patch"
DEFAULT_QUEUES_PER_PAGE = 10
DEFAULT_MESSAGES_PER_PAGE = 10
DEFAULT_MESSAGES_PER_CLAIM = 10


def ok(document: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=dumps(document), status=status, content_type=JSON, headers=headers)


def no_content(headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=204, headers=headers)


def scope(request: web.Request) -> tuple[str, str]:
    """(project, queue) of a queue route."""
    return request[PROJECT], request.match_info["queue_name"]


class Handler:
    """Base of the handlers: the partition's dependencies, and the version's path prefix."""

    prefix: ClassVar[str] = PREFIX

    def __init__(self, deps: Deps) -> None:
        self.deps = deps
        self.storage = deps.storage
        self.limits = deps.limits

    def queue_path(self, queue: str) -> str:
        return f"{self.prefix}/queues/{queue}"

    def format_message(
        self, m: Message, queue: str, now: float, claim_id: str | None = None
    ) -> dict[str, Any]:
        return fmt.message_v1_1(m, self.queue_path(queue), now, claim_id)


# --- queues --------------------------------------------------------------------------------------


RESERVED_DEFAULTS = ("_max_messages_post_size", "_default_message_ttl", "_default_message_delay")


class QueueCollection(Handler):
    async def get(self, request: web.Request) -> web.Response:
        params: dict[str, Any] = {}
        marker = param_str(request, "marker")
        limit = param_int(request, "limit")
        detailed = param_bool(request, "detailed")
        for key, value in (("marker", marker), ("limit", limit), ("detailed", detailed)):
            if value is not None:
                params[key] = value
        validation.queue_listing(limit, self.limits)
        queues = await self.storage.queues.list(
            request[PROJECT],
            marker=marker,
            limit=limit or DEFAULT_QUEUES_PER_PAGE,
            detailed=bool(detailed),
        )
        listed = []
        for q in queues:
            item: dict[str, Any] = {"name": q.name, "href": self.queue_path(q.name)}
            if detailed:
                item["metadata"] = q.metadata
            listed.append(item)
        links = []
        if queues:
            params["marker"] = queues[-1].name
            links.append({"rel": "next", "href": request.path + fmt.query_string(params)})
        return self.listed(listed, links)

    def listed(self, queues: list[dict[str, Any]], links: list[dict[str, str]]) -> web.Response:
        return ok({"queues": queues, "links": links})


class QueueItem(Handler):
    def reserved(self) -> dict[str, Any]:
        return {
            "_max_messages_post_size": self.limits.max_messages_post_size,
            "_default_message_ttl": self.limits.default_message_ttl,
            "_default_message_delay": self.limits.default_message_delay,
        }

    async def get(self, request: web.Request) -> web.Response:
        try:
            metadata = await self.storage.queues.get_metadata(*scope(request))
        except QueueDoesNotExist:
            metadata = {}  # queues are lazy: Zaqar answers a queue never created as empty
        for key, value in self.reserved().items():
            if not metadata.get(key):
                metadata[key] = value
        return ok(metadata)

    async def put(self, request: web.Request) -> web.Response:
        validation.queue_metadata_length(request.content_length, self.limits)
        metadata = None
        if request.content_length:
            metadata = await json_body(request)
            validation.document_type(metadata, dict)
        self.check_metadata(metadata)
        created = await self.storage.queues.create(*scope(request), metadata)
        headers = {"Location": request.path}
        return web.Response(status=201 if created else 204, headers=headers)

    def check_metadata(self, metadata: dict[str, Any] | None) -> None:
        validation.queue_metadata_putting(metadata, self.limits)

    async def delete(self, request: web.Request) -> web.Response:
        await self.storage.queues.delete(*scope(request))
        return no_content()

    async def patch(self, request: web.Request) -> web.Response:
        if request.content_type != JSON_PATCH:
            raise UnsupportedMediaType(f"Accepted media type for PATCH: {JSON_PATCH}.")
        validation.queue_metadata_length(request.content_length, self.limits)
        changes = validation.queue_patching(await json_body(request))
        project, queue = scope(request)
        metadata = await self.storage.queues.get_metadata(project, queue)
        reserved = self.reserved()
        for op, key, value in changes:
            if op == "replace" and key not in metadata and key not in reserved:
                raise _conflict(f"Can't replace non-existent object {key}.")
            if op == "remove":
                if key in metadata:
                    del metadata[key]
                elif key not in reserved:
                    raise _conflict(f"Can't remove non-existent object {key}.")
            else:
                metadata[key] = value
        validation.queue_metadata_putting(metadata, self.limits)
        await self.storage.queues.set_metadata(project, queue, metadata)
        shown = copy.deepcopy(metadata)
        for key, default in reserved.items():
            shown.setdefault(key, default)
        return ok(shown)


def _conflict(description: str) -> ApiError:
    error = ApiError(description, title="Resource conflict")
    error.status = 409
    return error


class QueueStats(Handler):
    async def get(self, request: web.Request) -> web.Response:
        project, queue = scope(request)
        try:
            stats = await self.storage.queues.stats(project, queue)
        except QueueDoesNotExist:
            return self.missing(project, queue)
        return ok(fmt.stats(stats, self.queue_path(queue), self.deps.clock()))

    def missing(self, project: str, queue: str) -> web.Response:
        """A queue that does not exist has empty stats."""
        return ok({"messages": {"claimed": 0, "free": 0, "total": 0}})


class QueuePurge(Handler):
    async def post(self, request: web.Request) -> web.Response:
        document = await optional_json_body(request)
        if document is None:
            document = {"resource_types": ["messages", "subscriptions"]}
        types = validation.queue_purging(document)
        project, queue = scope(request)
        if not await self.storage.queues.exists(project, queue):
            raise QueueDoesNotExist(project, queue)
        if "messages" in types:
            await self.storage.queues.purge(project, queue)
        return no_content()


# --- messages ------------------------------------------------------------------------------------


class MessageCollection(Handler):
    with_delay: ClassVar[bool] = True
    listing_flags: ClassVar[tuple[str, ...]] = ("echo", "include_claimed", "include_delayed")

    async def post(self, request: web.Request) -> web.Response:
        project, queue = scope(request)
        found = await self.queue_metadata(project, queue)
        metadata = found or {}
        validation.message_length(
            request.content_length, self.limits, metadata.get("_max_messages_post_size")
        )
        messages = validation.messages_to_post(
            self.message_documents(await json_body(request)),
            self.limits,
            default_ttl=metadata.get("_default_message_ttl") or self.limits.default_message_ttl,
            default_delay=metadata.get("_default_message_delay")
            or self.limits.default_message_delay,
            with_delay=self.with_delay,
        )
        if found is None:
            # Lazy queues (v1.1, v2): created on first post, once the post is known to be valid.
            await self.storage.queues.create(project, queue, None)
        ids = await self.storage.messages.post(project, queue, messages, request[CLIENT_ID])
        return self.posted(request, ids)

    async def queue_metadata(self, project: str, queue: str) -> dict[str, Any] | None:
        """The metadata that shapes a post, or None when the queue is yet to be created."""
        try:
            return await self.storage.queues.get_metadata(project, queue)
        except QueueDoesNotExist:
            return None

    def message_documents(self, document: Any) -> Any:
        """The posted messages within the body: `{"messages": [...]}`."""
        if not isinstance(document, dict) or "messages" not in document:
            raise ValidationFailed("No messages were found in the request body.")
        return document["messages"]

    def posted(self, request: web.Request, ids: list[str]) -> web.Response:
        return ok(
            {"resources": [f"{request.path}/{i}" for i in ids]},
            status=201,
            headers={"Location": f"{request.path}?ids={','.join(ids)}"},
        )

    async def get(self, request: web.Request) -> web.Response:
        ids = param_list(request, "ids")
        if ids is not None:
            return await self.get_by_ids(request, ids)
        return await self.list_messages(request)

    async def get_by_ids(self, request: web.Request, ids: list[str]) -> web.Response:
        project, queue = scope(request)
        validation.message_listing(len(ids), self.limits)
        found = await self.storage.messages.bulk_get(project, queue, ids)
        return self.by_ids(request, ids, found)

    def by_ids(self, request: web.Request, ids: list[str], found: list[Message]) -> web.Response:
        project, queue = scope(request)
        if not found:
            raise MessageDoesNotExist(project, queue, ", ".join(ids))
        now = self.deps.clock()
        return ok(
            {"messages": [self.format_message(m, queue, now, fmt.held_by(m, now)) for m in found]}
        )

    def listing_params(self, request: web.Request) -> dict[str, Any]:
        params: dict[str, Any] = {}
        readers = [("marker", param_str), ("limit", param_int)]
        for name, reader in readers + [(flag, param_bool) for flag in self.listing_flags]:
            value = reader(request, name)
            if value is not None:
                params[name] = value
        return params

    async def list_page(self, request: web.Request, params: dict[str, Any]) -> list[Message]:
        project, queue = scope(request)
        validation.message_listing(params.get("limit"), self.limits)
        try:
            marker = int(params["marker"]) if "marker" in params else None
        except ValueError:
            return []  # as Zaqar's storage: a marker it cannot read lists nothing
        return await self.storage.messages.list(
            project,
            queue,
            marker=marker,
            limit=params.get("limit") or DEFAULT_MESSAGES_PER_PAGE,
            echo=params.get("echo", False),
            include_claimed=params.get("include_claimed", False),
            include_delayed=params.get("include_delayed", False),
            client_id=request[CLIENT_ID],
        )

    async def list_messages(self, request: web.Request) -> web.Response:
        params = self.listing_params(request)
        return self.listed(request, params, await self.list_page(request, params))

    def listed(
        self, request: web.Request, params: dict[str, Any], found: list[Message]
    ) -> web.Response:
        links = []
        if found:
            params["marker"] = str(found[-1].marker)
            links.append({"rel": "next", "href": request.path + fmt.query_string(params)})
        now = self.deps.clock()
        queue = request.match_info["queue_name"]
        return ok(
            {
                "messages": [
                    self.format_message(m, queue, now, fmt.held_by(m, now)) for m in found
                ],
                "links": links,
            }
        )

    async def delete(self, request: web.Request) -> web.Response:
        ids = param_list(request, "ids")
        pop = param_int(request, "pop")
        validation.message_deletion(ids, pop, self.limits)
        project, queue = scope(request)
        if ids:
            claim_ids = param_list(request, "claim_ids")
            await self.storage.messages.bulk_delete(project, queue, ids, claim_ids)
            return no_content()
        assert pop is not None
        popped = await self.storage.messages.pop(project, queue, pop)
        now = self.deps.clock()
        return ok(
            {
                "messages": [
                    {"id": m.id, "ttl": m.ttl, "age": m.age(now), "body": m.body} for m in popped
                ]
            }
        )


class MessageItem(Handler):
    async def get(self, request: web.Request) -> web.Response:
        project, queue = scope(request)
        m = await self.storage.messages.get(project, queue, request.match_info["message_id"])
        now = self.deps.clock()
        return ok(self.format_message(m, queue, now, fmt.held_by(m, now)))

    async def delete(self, request: web.Request) -> web.Response:
        project, queue = scope(request)
        await self.storage.messages.delete(
            project, queue, request.match_info["message_id"], param_str(request, "claim_id")
        )
        return no_content()


# --- claims --------------------------------------------------------------------------------------


class ClaimCollection(Handler):
    async def post(self, request: web.Request) -> web.Response:
        project, queue = scope(request)
        limit = param_int(request, "limit")
        ttl, grace = await self.claim_metadata(request)
        validation.claim_creation(ttl, grace, limit, self.limits)
        claim, held = await self.storage.claims.create(
            project,
            queue,
            ttl=ttl,
            grace=grace,
            limit=limit or DEFAULT_MESSAGES_PER_CLAIM,
        )
        if not held:
            return no_content()
        now = self.deps.clock()
        return self.claimed(
            request, claim.id, [self.format_message(m, queue, now, claim.id) for m in held]
        )

    async def claim_metadata(self, request: web.Request) -> tuple[int, int]:
        """(ttl, grace) from the body; a missing body means the defaults."""
        document = await optional_json_body(request) if request.content_length else None
        if document is None:
            return self.limits.default_claim_ttl, self.limits.default_claim_grace
        return validation.claim_metadata(document, self.limits)

    def claimed(
        self, request: web.Request, claim_id: str, messages: list[dict[str, Any]]
    ) -> web.Response:
        return ok(
            {"messages": messages},
            status=201,
            headers={"Location": f"{request.path}/{claim_id}"},
        )


class ClaimItem(Handler):
    async def get(self, request: web.Request) -> web.Response:
        project, queue = scope(request)
        claim_id = request.match_info["claim_id"]
        claim, held = await self.storage.claims.get(project, queue, claim_id)
        now = self.deps.clock()
        return ok(
            {
                "age": claim.age(now),
                "ttl": claim.ttl,
                "messages": [self.format_message(m, queue, now, claim_id) for m in held],
                "href": request.path,
            }
        )

    async def patch(self, request: web.Request) -> web.Response:
        project, queue = scope(request)
        ttl, grace = await self.claim_metadata(request)
        validation.claim_ttl(ttl, self.limits)
        await self.storage.claims.update(
            project, queue, request.match_info["claim_id"], ttl=ttl, grace=grace
        )
        return no_content()

    async def claim_metadata(self, request: web.Request) -> tuple[int, int]:
        return validation.claim_metadata(await json_body(request), self.limits)

    async def delete(self, request: web.Request) -> web.Response:
        project, queue = scope(request)
        await self.storage.claims.delete(project, queue, request.match_info["claim_id"])
        return no_content()


# --- service -------------------------------------------------------------------------------------


class Ping(Handler):
    async def get(self, request: web.Request) -> web.Response:
        if await self.storage.ping():
            return no_content()
        return web.Response(status=503)

    head = get


class Health(Handler):
    async def get(self, request: web.Request) -> web.Response:
        reachable = await self.storage.ping()
        return ok(
            {"storage_reachable": reachable, "partition": self.deps.partition},
            status=200 if reachable else 503,
        )

    async def head(self, request: web.Request) -> web.Response:
        return no_content() if await self.storage.ping() else web.Response(status=503)


HOME_RESOURCES: list[Resource] = [
    (
        "queues",
        "/queues{?marker,limit,detailed}",
        {"marker": "param/marker", "limit": "param/queue_limit", "detailed": "param/detailed"},
        ["GET"],
    ),
    (
        "queue",
        "/queues/{queue_name}",
        {"queue_name": "param/queue_name"},
        ["GET", "PUT", "DELETE", "PATCH"],
    ),
    ("queue_stats", "/queues/{queue_name}/stats", {"queue_name": "param/queue_name"}, ["GET"]),
    ("queue_purge", "/queues/{queue_name}/purge", {"queue_name": "param/queue_name"}, ["POST"]),
    (
        "messages",
        "/queues/{queue_name}/messages{?marker,limit,echo,include_claimed}",
        {
            "queue_name": "param/queue_name",
            "marker": "param/marker",
            "limit": "param/messages_limit",
            "echo": "param/echo",
            "include_claimed": "param/include_claimed",
        },
        ["GET", "POST", "DELETE"],
    ),
    (
        "post_messages",
        "/queues/{queue_name}/messages",
        {"queue_name": "param/queue_name"},
        ["POST"],
    ),
    (
        "messages_delete",
        "/queues/{queue_name}/messages{?ids,pop}",
        {"queue_name": "param/queue_name", "ids": "param/ids", "pop": "param/pop"},
        ["DELETE"],
    ),
    (
        "message",
        "/queues/{queue_name}/messages/{message_id}",
        {"queue_name": "param/queue_name", "message_id": "param/message_id"},
        ["GET", "DELETE"],
    ),
    (
        "claim",
        "/queues/{queue_name}/claims{?limit}",
        {"queue_name": "param/queue_name", "limit": "param/claim_limit"},
        ["POST"],
    ),
    (
        "claim_item",
        "/queues/{queue_name}/claims/{claim_id}",
        {"queue_name": "param/queue_name", "claim_id": "param/claim_id"},
        ["GET", "PATCH", "DELETE"],
    ),
    ("ping", "/ping", {}, ["GET", "HEAD"]),
    ("health", "/health", {}, ["GET", "HEAD"]),
]


class Home(Handler):
    document: ClassVar[bytes] = dumps(home_document(PREFIX, HOME_RESOURCES))

    async def get(self, request: web.Request) -> web.Response:
        return web.Response(body=self.document, content_type="application/json-home")


def routes(deps: Deps) -> list[web.RouteDef]:
    """The v2 route table, paths relative to `/v2`."""
    q = "/queues/{queue_name}"
    queues, queue = QueueCollection(deps), QueueItem(deps)
    stats, purge = QueueStats(deps), QueuePurge(deps)
    messages, message = MessageCollection(deps), MessageItem(deps)
    claims, claim = ClaimCollection(deps), ClaimItem(deps)
    ping, health, home = Ping(deps), Health(deps), Home(deps)
    return [
        web.get("", home.get, allow_head=False),
        web.get("/", home.get, allow_head=False),
        web.get("/queues", queues.get, allow_head=False),
        web.get(q, queue.get, allow_head=False),
        web.put(q, queue.put),
        web.delete(q, queue.delete),
        web.patch(q, queue.patch),
        web.get(q + "/stats", stats.get, allow_head=False),
        web.post(q + "/purge", purge.post),
        web.post(q + "/messages", messages.post),
        web.get(q + "/messages", messages.get, allow_head=False),
        web.delete(q + "/messages", messages.delete),
        web.get(q + "/messages/{message_id}", message.get, allow_head=False),
        web.delete(q + "/messages/{message_id}", message.delete),
        web.post(q + "/claims", claims.post),
        web.get(q + "/claims/{claim_id}", claim.get, allow_head=False),
        web.patch(q + "/claims/{claim_id}", claim.patch),
        web.delete(q + "/claims/{claim_id}", claim.delete),
        web.get("/ping", ping.get, allow_head=False),
        web.head("/ping", ping.head),
        web.get("/health", health.get, allow_head=False),
        web.head("/health", health.head),
    ]

"""API v1 (Marconi v1.0): the v1.1 handlers with v1's shapes and statuses, and the route table.

Zaqar: `zaqar/transport/wsgi/v1_0/`. What differs from v1.1: no lazy queues, queue metadata at
`/metadata`, GET/HEAD on a queue tells whether it exists, empty pages answer 204, messages carry
no `id`, bodies are bare JSON arrays, claim bodies must name every field, Client-ID is required
only to list and post messages.
"""

from __future__ import annotations

from typing import Any, ClassVar

from aiohttp import web

from node.api import endpoint, v1_1, v2
from node.api import formatting as fmt
from node.api.deps import Deps
from node.api.endpoint import scope
from node.api.homedoc import Resource, home_document
from node.errors import QueueDoesNotExist
from node.models import Message
from wire import validation
from wire.answers import dumps, no_content, ok
from wire.checks import client_id
from wire.errors import ApiError
from wire.request import json_body, param_list

PREFIX = "/v1"


class QueueCollection(v1_1.QueueCollection):
    prefix = PREFIX

    def listed(self, queues: list[dict[str, Any]], links: list[dict[str, str]]) -> web.Response:
        """An empty page is 204."""
        return ok({"queues": queues, "links": links}) if queues else no_content()


class QueueItem(v1_1.QueueItem):
    prefix = PREFIX

    async def put(self, request: web.Request) -> web.Response:
        """Creates the queue; any body is ignored (metadata has its own resource)."""
        created = await self.storage.queues.create(*scope(request), None)
        return web.Response(status=201 if created else 204, headers={"Location": request.path})

    async def exists(self, request: web.Request) -> web.Response:
        """GET and HEAD: 204 if the queue exists, else a bare 404."""
        exists = await self.storage.queues.exists(*scope(request))
        return web.Response(
            status=204 if exists else 404, headers={"Content-Location": request.path}
        )


class QueueMetadata(endpoint.Endpoint):
    prefix = PREFIX

    async def get(self, request: web.Request) -> web.Response:
        return ok(await self.storage.queues.get_metadata(*scope(request)))

    async def put(self, request: web.Request) -> web.Response:
        validation.queue_metadata_length(request.content_length, self.limits)
        metadata = await json_body(request, self.limits.max_json_depth)
        validation.document_type(metadata, dict)
        if any(key.startswith("_") for key in metadata):
            raise ApiError(
                'Reserved queue attributes in metadata (which names start with "_") can not be '
                "set in API v1."
            )
        await self.storage.queues.set_metadata(*scope(request), metadata)
        return no_content(headers={"Location": request.path})


class QueueStats(v1_1.QueueStats):
    prefix = PREFIX

    def missing(self, project: str, queue: str) -> web.Response:
        raise QueueDoesNotExist(project, queue)


class MessageCollection(v1_1.MessageCollection):
    prefix = PREFIX

    def format_message(
        self, m: Message, queue: str, now: float, claim_id: str | None = None
    ) -> dict[str, Any]:
        """No `id`, and the href names no claim: only claim responses do."""
        return fmt.message_v1(m, self.queue_path(queue), now)

    async def queue_metadata(self, project: str, queue: str) -> dict[str, Any] | None:
        """Never None: v1 makes no queue, so posting to a missing one fails in storage (404)."""
        return await super().queue_metadata(project, queue) or {}

    async def post(self, request: web.Request) -> web.Response:
        client_id(request, required=True)
        return await super().post(request)

    def message_documents(self, document: Any) -> Any:
        """The body is the array itself, and each message must give its `ttl`.

        Checked as Zaqar's `sanitize` does: each message whole, in order, before the next.
        """
        validation.document_type(document, list)
        for message in document:
            validation.document_type(message, dict)
            validation.field(message, "ttl", int, None)
            validation.field(message, "body", None, None)
        return document

    def posted(self, request: web.Request, ids: list[str]) -> web.Response:
        """v1.1's answer plus `partial`, always false: a post is stored whole or not at all."""
        return ok(
            {"partial": False, "resources": [f"{request.path}/{i}" for i in ids]},
            status=201,
            headers={"Location": f"{request.path}?ids={','.join(ids)}"},
        )

    def by_ids(self, request: web.Request, ids: list[str], found: list[Message]) -> web.Response:
        """A bare array, or 204 when none is found."""
        now = self.deps.clock()
        queue = request.match_info["queue_name"]
        return ok([self.format_message(m, queue, now) for m in found]) if found else no_content()

    async def list_messages(self, request: web.Request) -> web.Response:
        client_id(request, required=True)
        return await super().list_messages(request)

    def listed(
        self, request: web.Request, params: dict[str, Any], found: list[Message]
    ) -> web.Response:
        """An empty page is 204."""
        return super().listed(request, params, found) if found else no_content()

    async def delete(self, request: web.Request) -> web.Response:
        """Only by ids: v1 has no pop."""
        ids = param_list(request, "ids")
        if ids is None:
            raise ApiError('The "ids" parameter is required.', title="Missing parameter")
        validation.message_listing(len(ids), self.limits)
        await self.storage.messages.bulk_delete(*scope(request), ids, None)
        return no_content()


class MessageItem(v1_1.MessageItem):
    prefix = PREFIX

    def format_message(
        self, m: Message, queue: str, now: float, claim_id: str | None = None
    ) -> dict[str, Any]:
        return fmt.message_v1(m, self.queue_path(queue), now)


async def claim_fields(
    request: web.Request, grace_default: int | None, max_depth: int
) -> tuple[int, int]:
    """(ttl, grace) from a v1 claim body: the body and its `ttl` are required, and so is
    `grace` when `grace_default` is None."""
    document = await json_body(request, max_depth)
    validation.document_type(document, dict)
    ttl = validation.field(document, "ttl", int, None)
    return ttl, validation.field(document, "grace", int, grace_default)


class ClaimCollection(v1_1.ClaimCollection):
    prefix = PREFIX

    def format_message(
        self, m: Message, queue: str, now: float, claim_id: str | None = None
    ) -> dict[str, Any]:
        return fmt.message_v1(m, self.queue_path(queue), now, claim_id)

    async def claim_metadata(self, request: web.Request) -> tuple[int, int]:
        return await claim_fields(request, None, self.limits.max_json_depth)

    def claimed(
        self, request: web.Request, claim_id: str, messages: list[dict[str, Any]]
    ) -> web.Response:
        """A bare array of the claimed messages."""
        return ok(messages, status=201, headers={"Location": f"{request.path}/{claim_id}"})


class ClaimItem(v1_1.ClaimItem):
    prefix = PREFIX

    def format_message(
        self, m: Message, queue: str, now: float, claim_id: str | None = None
    ) -> dict[str, Any]:
        return fmt.message_v1(m, self.queue_path(queue), now, claim_id)

    async def claim_metadata(self, request: web.Request) -> tuple[int, int]:
        return await claim_fields(request, 0, self.limits.max_json_depth)


class Health(v1_1.Ping):
    """GET and HEAD: 204 while the storage answers, else 503 (v1 has no ping)."""

    prefix = PREFIX


_Q = {"queue_name": "param/queue_name"}
HOME_RESOURCES: list[Resource] = [
    (
        "queues",
        "/queues{?marker,limit,detailed}",
        {"marker": "param/marker", "limit": "param/queue_limit", "detailed": "param/detailed"},
        ["GET"],
    ),
    ("queue", "/queues/{queue_name}", _Q, ["GET", "HEAD", "PUT", "DELETE"]),
    ("queue-metadata", "/queues/{queue_name}/metadata", _Q, ["GET", "PUT"]),
    ("queue-stats", "/queues/{queue_name}/stats", _Q, ["GET"]),
    (
        "messages",
        "/queues/{queue_name}/messages{?marker,limit,echo,include_claimed}",
        {
            **_Q,
            "marker": "param/marker",
            "limit": "param/messages_limit",
            "echo": "param/echo",
            "include_claimed": "param/include_claimed",
        },
        ["GET"],
    ),
    ("post-messages", "/queues/{queue_name}/messages", _Q, ["POST"]),
    (
        "claim",
        "/queues/{queue_name}/claims{?limit}",
        {**_Q, "limit": "param/claim_limit"},
        ["POST"],
    ),
]


class Home(v2.Home):
    document: ClassVar[bytes] = dumps(home_document(PREFIX, HOME_RESOURCES))


def routes(deps: Deps) -> list[web.RouteDef]:
    """The v1 route table, paths relative to `/v1`."""
    q = "/queues/{queue_name}"
    queues, queue, metadata = QueueCollection(deps), QueueItem(deps), QueueMetadata(deps)
    stats = QueueStats(deps)
    messages, message = MessageCollection(deps), MessageItem(deps)
    claims, claim = ClaimCollection(deps), ClaimItem(deps)
    health, home = Health(deps), Home(deps)
    return [
        web.get("", home.get, allow_head=False),
        web.get("/", home.get, allow_head=False),
        web.get("/queues", queues.get, allow_head=False),
        web.get(q, queue.exists, allow_head=False),
        web.head(q, queue.exists),
        web.put(q, queue.put),
        web.delete(q, queue.delete),
        web.get(q + "/metadata", metadata.get, allow_head=False),
        web.put(q + "/metadata", metadata.put),
        web.get(q + "/stats", stats.get, allow_head=False),
        web.post(q + "/messages", messages.post),
        web.get(q + "/messages", messages.get, allow_head=False),
        web.delete(q + "/messages", messages.delete),
        web.get(q + "/messages/{message_id}", message.get, allow_head=False),
        web.delete(q + "/messages/{message_id}", message.delete),
        web.post(q + "/claims", claims.post),
        web.get(q + "/claims/{claim_id}", claim.get, allow_head=False),
        web.patch(q + "/claims/{claim_id}", claim.patch),
        web.delete(q + "/claims/{claim_id}", claim.delete),
        web.get("/health", health.get, allow_head=False),
        web.head("/health", health.head),
    ]

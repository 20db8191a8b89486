"""Queue handlers (v2 shapes; v1.1 and v1 subclass them)."""

from __future__ import annotations

import copy
from typing import Any

from aiohttp import web

from node.api import formatting as fmt
from node.api.endpoint import Endpoint, scope
from node.errors import QueueDoesNotExist
from wire import validation
from wire.answers import no_content, ok
from wire.checks import PROJECT
from wire.errors import ApiError, UnsupportedMediaType
from wire.listing import queue_listing
from wire.request import (
    json_body,
    optional_json_body,
)

JSON_PATCH = "application/openstack-messaging-v2.0-json-patch"


RESERVED_DEFAULTS = ("_max_messages_post_size", "_default_message_ttl", "_default_message_delay")


class QueueCollection(Endpoint):
    async def get(self, request: web.Request) -> web.Response:
        listing = queue_listing(request, self.limits)
        queues = await self.storage.queues.list(
            request[PROJECT],
            marker=listing.marker,
            limit=listing.page_size,
            detailed=bool(listing.detailed),
        )
        listed = []
        for q in queues:
            item: dict[str, Any] = {"name": q.name, "href": self.queue_path(q.name)}
            if listing.detailed:
                item["metadata"] = q.metadata
            listed.append(item)
        return self.listed(listed, listing.links(request.path, [q.name for q in queues]))

    def listed(self, queues: list[dict[str, Any]], links: list[dict[str, str]]) -> web.Response:
        return ok({"queues": queues, "links": links})


class QueueItem(Endpoint):
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
            metadata = await json_body(request, self.limits.max_json_depth)
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
        changes = validation.queue_patching(await json_body(request, self.limits.max_json_depth))
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
    error = ApiError(description, title="Endpoint conflict")
    error.status = 409
    return error


class QueueStats(Endpoint):
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


class QueuePurge(Endpoint):
    async def post(self, request: web.Request) -> web.Response:
        document = await optional_json_body(request, self.limits.max_json_depth)
        if document is None:
            document = {"resource_types": ["messages", "subscriptions"]}
        types = validation.queue_purging(document)
        project, queue = scope(request)
        if not await self.storage.queues.exists(project, queue):
            raise QueueDoesNotExist(project, queue)
        if "messages" in types:
            await self.storage.queues.purge(project, queue)
        if "subscriptions" in types:
            await self.storage.subscriptions.purge(project, queue)
        return no_content()

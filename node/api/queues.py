"""Queue handlers (v2 shapes; v1.1 and v1 subclass them)."""

from __future__ import annotations

import copy
from typing import Any

from aiohttp import web

from node.api import formatting as fmt
from node.api.endpoint import Endpoint, scope
from node.encryption import ENCRYPTED, KEY_SETTING
from node.errors import QueueDoesNotExist
from wire import validation
from wire.answers import no_content, ok
from wire.checks import PROJECT
from wire.errors import ApiError, BadRequestBody, UnsupportedMediaType, ValidationFailed
from wire.limits import ApiLimits
from wire.listing import queue_listing
from wire.request import (
    json_body,
    optional_json_body,
)

JSON_PATCH = "application/openstack-messaging-v2.0-json-patch"


def reserved_defaults(limits: ApiLimits) -> dict[str, Any]:
    """The reserved attributes Zaqar 23 shows for a queue that leaves them unset (or falsy):
    three from the limits, the dead-letter ones null, encryption off."""
    return {
        "_max_messages_post_size": limits.max_messages_post_size,
        "_default_message_ttl": limits.default_message_ttl,
        "_default_message_delay": limits.default_message_delay,
        "_dead_letter_queue": None,
        "_dead_letter_queue_messages_ttl": None,
        "_max_claim_count": None,
        "_enable_encrypt_messages": False,
    }


def shown(metadata: dict[str, Any], reserved: dict[str, Any]) -> dict[str, Any]:
    """`metadata` as answered: each reserved attribute it leaves falsy takes its default."""
    for key, default in reserved.items():
        if not metadata.get(key):
            metadata[key] = default
    return metadata


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
                item["metadata"] = shown(dict(q.metadata or {}), self.reserved())
            listed.append(item)
        return self.listed(listed, listing.links(request.path, [q.name for q in queues]))

    def listed(self, queues: list[dict[str, Any]], links: list[dict[str, str]]) -> web.Response:
        return ok({"queues": queues, "links": links})

    def reserved(self) -> dict[str, Any]:
        return reserved_defaults(self.limits)


class QueueItem(Endpoint):
    def reserved(self) -> dict[str, Any]:
        return reserved_defaults(self.limits)

    async def get(self, request: web.Request) -> web.Response:
        try:
            metadata = await self.storage.queues.get_metadata(*scope(request))
        except QueueDoesNotExist:
            metadata = {}  # queues are lazy: Zaqar answers a queue never created as empty
        return ok(shown(metadata, self.reserved()))

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
        if metadata and metadata.get(ENCRYPTED) is True and self.deps.cipher is None:
            raise ValidationFailed(
                "_enable_encrypt_messages needs a message encryption key, and this server has "
                f"none ({KEY_SETTING}): messages would be stored in clear."
            )

    async def delete(self, request: web.Request) -> web.Response:
        await self.storage.queues.delete(*scope(request))
        return no_content()

    async def patch(self, request: web.Request) -> web.Response:
        # Zaqar answers every refusal of a PATCH body as "Invalid request body".
        try:
            validation.queue_metadata_length(request.content_length, self.limits)
        except ValidationFailed as exc:
            raise BadRequestBody(exc.description) from None
        if request.content_type != JSON_PATCH:
            raise UnsupportedMediaType(f"Accepted media type for PATCH: {JSON_PATCH}.")
        if not request.content_length and not request.body_exists:
            raise BadRequestBody("PATCH body could not be empty for update.")
        document = await json_body(request, self.limits.max_json_depth)
        validation.document_type(document, list)
        project, queue = scope(request)
        try:
            changes = validation.queue_patching(document)
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
            self.check_metadata(metadata)
        except ValidationFailed as exc:
            raise BadRequestBody(exc.description) from None
        await self.storage.queues.set_metadata(project, queue, metadata)
        return ok(shown(copy.deepcopy(metadata), reserved))


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

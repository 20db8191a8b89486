"""Topic handlers (`/v2/topics`), as Zaqar 23 serves them.

A topic is a queue without claims, kept in a container of its own kind (`wire.topics`): the
handlers below are the queue handlers over the topic's container, except where Zaqar answers a
topic differently (a missing topic is 404, not empty metadata; a purge of a missing topic is
204; listings say `topics`). The message and subscription handlers serve topics unchanged
(`endpoint.scope`).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from node.api.endpoint import Endpoint, scope
from node.api.queues import QueueItem, QueueStats
from wire import validation
from wire.answers import no_content, ok
from wire.checks import PROJECT
from wire.limits import ApiLimits
from wire.listing import queue_listing
from wire.request import optional_json_body
from wire.topics import topic_name


class TopicCollection(Endpoint):
    async def get(self, request: web.Request) -> web.Response:
        listing = queue_listing(request, self.limits)
        found = await self.storage.queues.list(
            request[PROJECT],
            marker=listing.marker,
            limit=listing.page_size,
            detailed=bool(listing.detailed),
            topics=True,
        )
        names = [topic_name(t.name) for t in found]
        listed = []
        for name, t in zip(names, found, strict=True):
            item: dict[str, Any] = {"name": name, "href": f"{self.prefix}/topics/{name}"}
            if listing.detailed:
                item["metadata"] = with_defaults(t.metadata or {}, reserved(self.limits))
            listed.append(item)
        return ok({"topics": listed, "links": listing.links(request.path, names)})


def reserved(limits: ApiLimits) -> dict[str, Any]:
    """A topic's reserved metadata: Zaqar 23's three, whatever queues gain."""
    return {
        "_max_messages_post_size": limits.max_messages_post_size,
        "_default_message_ttl": limits.default_message_ttl,
        "_default_message_delay": limits.default_message_delay,
    }


def with_defaults(metadata: dict[str, Any], reserved: dict[str, Any]) -> dict[str, Any]:
    """The metadata with each reserved key Zaqar fills in where it is missing or empty."""
    shown = dict(metadata)
    for key, value in reserved.items():
        if not shown.get(key):
            shown[key] = value
    return shown


class TopicItem(QueueItem):
    def reserved(self) -> dict[str, Any]:
        return reserved(self.limits)

    async def get(self, request: web.Request) -> web.Response:
        # Unlike a queue's, a missing topic's metadata is 404 (QueueDoesNotExist says "Topic").
        metadata = await self.storage.queues.get_metadata(*scope(request))
        return ok(with_defaults(metadata, self.reserved()))


class TopicStats(QueueStats):
    """As a queue's: a missing topic has empty stats; hrefs name the topic's messages."""


class TopicPurge(Endpoint):
    async def post(self, request: web.Request) -> web.Response:
        document = await optional_json_body(request, self.limits.max_json_depth)
        if document is None:
            document = {"resource_types": ["messages", "subscriptions"]}
        types = validation.queue_purging(document)
        project, name = scope(request)
        # Zaqar pops a topic's messages until none is left: a missing topic purges nothing.
        if "messages" in types and await self.storage.queues.exists(project, name):
            await self.storage.queues.purge(project, name)
        if "subscriptions" in types:
            await self.storage.subscriptions.purge(project, name)
        return no_content()

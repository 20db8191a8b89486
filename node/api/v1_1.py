"""API v1.1: the v2 handlers without what v2 added (delays, reserved queue attributes, PATCH,
purge), and the route table. Zaqar: `zaqar/transport/wsgi/v1_1/`."""

from __future__ import annotations

from typing import Any, ClassVar

from aiohttp import web

from node.api import claims, messages, queues, service, v2
from node.api.deps import Deps
from node.api.homedoc import Resource, home_document
from node.encryption import ENCRYPTED
from wire.answers import dumps

PREFIX = "/v1.1"


class QueueCollection(queues.QueueCollection):
    prefix = PREFIX

    def reserved(self) -> dict[str, Any]:
        return {}  # detailed listings show the stored metadata as it is


class QueueItem(queues.QueueItem):
    """GET answers the stored metadata as it is; PUT stores any metadata without checks."""

    prefix = PREFIX

    def reserved(self) -> dict[str, Any]:
        return {}

    def check_metadata(self, metadata: dict[str, Any] | None) -> None:
        pass


class QueueStats(queues.QueueStats):
    prefix = PREFIX


class MessageCollection(messages.MessageCollection):
    prefix = PREFIX
    with_delay = False
    listing_flags = ("echo", "include_claimed")

    async def queue_metadata(self, project: str, queue: str) -> dict[str, Any] | None:
        """v1.1 posts ignore the queue's reserved attributes but its encryption (set in v2:
        nothing is stored in clear that it says to encrypt); the queue is still made lazily."""
        found = await super().queue_metadata(project, queue)
        return None if found is None else {k: v for k, v in found.items() if k == ENCRYPTED}


class MessageItem(messages.MessageItem):
    prefix = PREFIX


class ClaimCollection(claims.ClaimCollection):
    prefix = PREFIX


class ClaimItem(claims.ClaimItem):
    prefix = PREFIX


class Ping(service.Ping):
    prefix = PREFIX


class Health(service.Health):
    prefix = PREFIX


_Q = {"queue_name": "param/queue_name"}
_CLAIM = {**_Q, "claim_id": "param/claim_id"}
HOME_RESOURCES: list[Resource] = [
    (
        "queues",
        "/queues{?marker,limit,detailed}",
        {"marker": "param/marker", "limit": "param/queue_limit", "detailed": "param/detailed"},
        ["GET"],
    ),
    ("queue", "/queues/{queue_name}", _Q, ["PUT", "DELETE"]),
    ("queue_stats", "/queues/{queue_name}/stats", _Q, ["GET"]),
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
    ("post_messages", "/queues/{queue_name}/messages", _Q, ["POST"]),
    (
        "messages_delete",
        "/queues/{queue_name}/messages{?ids,pop}",
        {**_Q, "ids": "param/ids", "pop": "param/pop"},
        ["DELETE"],
    ),
    (
        "message_delete",
        "/queues/{queue_name}/messages/{message_id}{?claim}",
        {**_Q, "message_id": "param/message_id", "claim": "param/claim_id"},
        ["DELETE"],
    ),
    ("claim", "/queues/{queue_name}/claims/{claim_id}", _CLAIM, ["GET"]),
    (
        "post_claim",
        "/queues/{queue_name}/claims{?limit}",
        {**_Q, "limit": "param/claim_limit"},
        ["POST"],
    ),
    ("patch_claim", "/queues/{queue_name}/claims/{claim_id}", _CLAIM, ["PATCH"]),
    ("delete_claim", "/queues/{queue_name}/claims/{claim_id}", _CLAIM, ["DELETE"]),
    ("ping", "/ping", {}, ["GET"]),
]


class Home(v2.Home):
    document: ClassVar[bytes] = dumps(home_document(PREFIX, HOME_RESOURCES))


def routes(deps: Deps) -> list[web.RouteDef]:
    """The v1.1 route table, paths relative to `/v1.1`: v2's without queue PATCH and purge."""
    q = "/queues/{queue_name}"
    queues, queue, stats = QueueCollection(deps), QueueItem(deps), QueueStats(deps)
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
        web.get("/ping", ping.get, allow_head=False),
        web.head("/ping", ping.head),
        web.get("/health", health.get, allow_head=False),
        web.head("/health", health.head),
    ]

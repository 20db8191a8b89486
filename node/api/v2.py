"""API v2: the route table and the home document. The handlers live in queues, messages,
claims, subscriptions and service; v1.1 and v1 subclass them (but subscriptions: v2 only)."""

from __future__ import annotations

from typing import ClassVar

from aiohttp import web

from node.api.claims import ClaimCollection, ClaimItem
from node.api.deps import Deps
from node.api.endpoint import V2_PREFIX, Endpoint
from node.api.homedoc import Resource, home_document
from node.api.messages import MessageCollection, MessageItem
from node.api.queues import QueueCollection, QueueItem, QueuePurge, QueueStats
from node.api.service import Health, Ping
from node.api.share import QueueShare
from node.api.subscriptions import SubscriptionCollection, SubscriptionConfirm, SubscriptionItem
from node.api.topics import TopicCollection, TopicItem, TopicPurge, TopicStats
from wire.answers import dumps

PREFIX = V2_PREFIX


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
    ("queue_share", "/queues/{queue_name}/share", {"queue_name": "param/queue_name"}, ["POST"]),
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
    (
        "subscriptions",
        "/queues/{queue_name}/subscriptions{?marker,limit}",
        {
            "queue_name": "param/queue_name",
            "marker": "param/marker",
            "limit": "param/subscription_limit",
        },
        ["GET", "POST"],
    ),
    (
        "subscription",
        "/queues/{queue_name}/subscriptions/{subscription_id}",
        {"queue_name": "param/queue_name", "subscription_id": "param/subscription_id"},
        ["GET", "PATCH", "DELETE"],
    ),
    (
        "subscription_confirm",
        "/queues/{queue_name}/subscriptions/{subscription_id}/confirm",
        {"queue_name": "param/queue_name", "subscription_id": "param/subscription_id"},
        ["PUT"],
    ),
    ("ping", "/ping", {}, ["GET", "HEAD"]),
    ("health", "/health", {}, ["GET", "HEAD"]),
]


class Home(Endpoint):
    document: ClassVar[bytes] = dumps(home_document(PREFIX, HOME_RESOURCES))

    async def get(self, request: web.Request) -> web.Response:
        return web.Response(body=self.document, content_type="application/json-home")


def routes(deps: Deps) -> list[web.RouteDef]:
    """The v2 route table, paths relative to `/v2`."""
    q = "/queues/{queue_name}"
    queues, queue = QueueCollection(deps), QueueItem(deps)
    stats, purge, share = QueueStats(deps), QueuePurge(deps), QueueShare(deps)
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
        web.post(q + "/share", share.post),
        *message_routes(deps, q),
        web.post(q + "/claims", claims.post),
        web.get(q + "/claims/{claim_id}", claim.get, allow_head=False),
        web.patch(q + "/claims/{claim_id}", claim.patch),
        web.delete(q + "/claims/{claim_id}", claim.delete),
        *subscription_routes(deps, q),
        *topic_routes(deps),
        web.get("/ping", ping.get, allow_head=False),
        web.head("/ping", ping.head),
        web.get("/health", health.get, allow_head=False),
        web.head("/health", health.head),
    ]


def topic_routes(deps: Deps) -> list[web.RouteDef]:
    """`/v2/topics`: a topic's routes are a queue's without claims; its messages and
    subscriptions are served by the queue's handlers, over the topic's container."""
    t = "/topics/{topic_name}"
    topics, topic = TopicCollection(deps), TopicItem(deps)
    stats, purge = TopicStats(deps), TopicPurge(deps)
    return [
        web.get("/topics", topics.get, allow_head=False),
        web.get(t, topic.get, allow_head=False),
        web.put(t, topic.put),
        web.delete(t, topic.delete),
        web.patch(t, topic.patch),
        web.get(t + "/stats", stats.get, allow_head=False),
        web.post(t + "/purge", purge.post),
        *message_routes(deps, t),
        *subscription_routes(deps, t),
    ]


def message_routes(deps: Deps, base: str) -> list[web.RouteDef]:
    """The messages of the queue or topic at `base`."""
    messages, message = MessageCollection(deps), MessageItem(deps)
    item = base + "/messages/{message_id}"
    return [
        web.post(base + "/messages", messages.post),
        web.get(base + "/messages", messages.get, allow_head=False),
        web.delete(base + "/messages", messages.delete),
        web.get(item, message.get, allow_head=False),
        web.delete(item, message.delete),
    ]


def subscription_routes(deps: Deps, base: str) -> list[web.RouteDef]:
    """The subscriptions of the queue or topic at `base`."""
    subscriptions, subscription = SubscriptionCollection(deps), SubscriptionItem(deps)
    confirm = SubscriptionConfirm(deps)
    item = base + "/subscriptions/{subscription_id}"
    return [
        web.get(base + "/subscriptions", subscriptions.get, allow_head=False),
        web.post(base + "/subscriptions", subscriptions.post),
        web.get(item, subscription.get, allow_head=False),
        web.patch(item, subscription.patch),
        web.delete(item, subscription.delete),
        web.put(item + "/confirm", confirm.put),
    ]

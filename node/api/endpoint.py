"""What every endpoint shares: its dependencies, response helpers, the request's scope."""

from __future__ import annotations

from typing import Any, ClassVar

from aiohttp import web

from node.api import formatting as fmt
from node.api.deps import Deps
from node.models import Message
from wire.checks import PROJECT
from wire.topics import container, is_topic, topic_name

V2_PREFIX = "/v2"
DEFAULT_MESSAGES_PER_PAGE = 10
DEFAULT_MESSAGES_PER_CLAIM = 10


def scope(request: web.Request) -> tuple[str, str]:
    """(project, queue) of a queue route; of a topic route, the topic's container as the queue
    (`wire.topics`), so the message handlers serve topics as they serve queues."""
    topic = request.match_info.get("topic_name")
    if topic is not None:
        return request[PROJECT], container(topic)
    return request[PROJECT], request.match_info["queue_name"]


class Endpoint:
    """Base of the endpoints: the partition's dependencies, and the version's path prefix."""

    prefix: ClassVar[str] = V2_PREFIX

    def __init__(self, deps: Deps) -> None:
        self.deps = deps
        self.storage = deps.storage
        self.limits = deps.limits

    def queue_path(self, queue: str) -> str:
        """The path of a queue, or of the topic whose container `queue` is."""
        if is_topic(queue):
            return f"{self.prefix}/topics/{topic_name(queue)}"
        return f"{self.prefix}/queues/{queue}"

    def format_message(
        self, m: Message, queue: str, now: float, claim_id: str | None = None
    ) -> dict[str, Any]:
        return fmt.message_v1_1(m, self.queue_path(queue), now, claim_id)

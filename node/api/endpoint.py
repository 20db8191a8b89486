"""What every endpoint shares: its dependencies, response helpers, the request's scope."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, ClassVar, TypeVar

from aiohttp import web

from node.api import formatting as fmt
from node.api.deps import Deps
from node.encryption import ENCRYPTED, KEY_SETTING, MessageCipher
from node.errors import MetadataChanged, QueueDoesNotExist
from node.models import Message, NewMessage
from node.storage.reading import reading
from wire.checks import PROJECT
from wire.errors import UNAVAILABLE_TITLE, ApiError
from wire.topics import container, is_topic, topic_name

V2_PREFIX = "/v2"
DEFAULT_MESSAGES_PER_PAGE = 10
DEFAULT_MESSAGES_PER_CLAIM = 10
# Times a request reads its queue's metadata and acts when the store finds it changed meanwhile
# (`Endpoint.shaped`); past them, MetadataChanged answers 503.
SHAPED_TRIES = 3
T = TypeVar("T")


class NoEncryptionKey(ApiError):
    """A queue encrypts its messages, but this server was given no key to do it with: nothing
    is stored in clear in its place, and nothing stored is answered as ciphertext."""

    status = 503
    title = UNAVAILABLE_TITLE

    def __init__(self) -> None:
        super().__init__(
            "This queue encrypts its messages (_enable_encrypt_messages), but the server has "
            f"no message encryption key ({KEY_SETTING}). Please try again later."
        )


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

    async def attributes(self, project: str, queue: str) -> dict[str, Any]:
        """The queue's metadata, which shapes posts and reads; {} for a queue yet to be made."""
        try:
            return await self.storage.queues.get_metadata(project, queue)
        except QueueDoesNotExist:
            return {}

    async def shaped(self, act: Callable[[], Awaitable[T]]) -> T:
        """Run `act`, which reads its queue's metadata and acts on the queue, in a reading
        (`node.storage.reading`): a store that answered the metadata from its own copy confirms
        it in the statement that acts, and when it changed meanwhile `act` runs again."""
        for tries in range(1, SHAPED_TRIES + 1):
            with reading():
                try:
                    return await act()
                except MetadataChanged:
                    if tries == SHAPED_TRIES:
                        raise
        raise AssertionError("unreachable")

    def cipher(self, metadata: dict[str, Any]) -> MessageCipher | None:
        """The cipher of a queue that encrypts its messages; None for one that does not."""
        if metadata.get(ENCRYPTED) is not True:
            return None
        if self.deps.cipher is None:
            raise NoEncryptionKey()
        return self.deps.cipher

    def sealed(self, messages: list[NewMessage], metadata: dict[str, Any]) -> list[NewMessage]:
        """Messages as the queue stores them: their bodies encrypted if it encrypts."""
        cipher = self.cipher(metadata)
        if cipher is None:
            return messages
        return [dataclasses.replace(m, body=cipher.encrypt(m.body)) for m in messages]

    def revealed(self, messages: Sequence[Message], metadata: dict[str, Any]) -> list[Message]:
        """Stored messages as answered: their bodies decrypted if the queue encrypts."""
        cipher = self.cipher(metadata)
        if cipher is None:
            return list(messages)
        return [dataclasses.replace(m, body=cipher.decrypt(m.body)) for m in messages]

    def queue_path(self, queue: str) -> str:
        """The path of a queue, or of the topic whose container `queue` is."""
        if is_topic(queue):
            return f"{self.prefix}/topics/{topic_name(queue)}"
        return f"{self.prefix}/queues/{queue}"

    def format_message(
        self, m: Message, queue: str, now: float, claim_id: str | None = None
    ) -> dict[str, Any]:
        return fmt.message_v1_1(m, self.queue_path(queue), now, claim_id)

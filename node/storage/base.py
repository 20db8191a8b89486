"""The storage seam: one protocol per controller, implemented once per backend.

Every method is scoped by `(project, queue)`; `project` is "" for v1 requests without a project.
Expired messages and claims are invisible to every method at once (queries filter on expiry);
`Storage.collect_garbage` removes them later. Drivers raise only `node.errors` types: backend
failures become `StorageUnavailable` at the driver's edge.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from node.models import Claim, Message, NewMessage, QueueInfo, QueueStats

# Aliases: the controllers have a method named `list`, which shadows the builtin inside them.
Messages = list[Message]
Queues = list[QueueInfo]
Ids = list[str]


class QueueStore(Protocol):
    async def create(self, project: str, queue: str, metadata: dict[str, Any] | None) -> bool:
        """Create the queue; True if it was created, False if it already existed.

        When it already existed and `metadata` is not None, the metadata is replaced (Zaqar's PUT).
        """

    async def exists(self, project: str, queue: str) -> bool: ...

    async def get_metadata(self, project: str, queue: str) -> dict[str, Any]:
        """Raises `QueueDoesNotExist`."""

    async def set_metadata(self, project: str, queue: str, metadata: dict[str, Any]) -> None:
        """Replace the metadata. Raises `QueueDoesNotExist`."""

    async def delete(self, project: str, queue: str) -> None:
        """Delete the queue with its messages and claims; a missing queue is not an error."""

    async def list(
        self, project: str, *, marker: str | None, limit: int, detailed: bool
    ) -> Queues:
        """Queues of `project` sorted by name, strictly after `marker`."""

    async def stats(self, project: str, queue: str) -> QueueStats:
        """Counts of live messages. Raises `QueueDoesNotExist`."""

    async def purge(self, project: str, queue: str) -> None:
        """Delete every message and claim of the queue, keeping the queue and its counter."""


class MessageStore(Protocol):
    async def post(
        self, project: str, queue: str, messages: Sequence[NewMessage], client_id: str
    ) -> Ids:
        """Append messages in order, atomically; return their new ids.

        Each message gets the next value of the queue's marker counter. Raises `QueueDoesNotExist`
        (callers that create queues lazily create it first).
        """

    async def list(
        self,
        project: str,
        queue: str,
        *,
        marker: int | None,
        limit: int,
        echo: bool,
        include_claimed: bool,
        include_delayed: bool,
        client_id: str,
    ) -> Messages:
        """Live messages with a marker above `marker`, in marker order.

        Messages posted by `client_id` are left out unless `echo`; claimed ones unless
        `include_claimed`; delayed ones unless `include_delayed`. A missing queue lists nothing.
        """

    async def get(self, project: str, queue: str, message_id: str) -> Message:
        """Raises `MessageDoesNotExist` (also for an expired or malformed id)."""

    async def bulk_get(self, project: str, queue: str, ids: Sequence[str]) -> Messages:
        """The live messages among `ids`; unknown ids are skipped."""

    async def delete(self, project: str, queue: str, message_id: str, claim_id: str | None) -> None:
        """Delete one message. A missing message is not an error.

        Raises `MessageIsClaimed` when it is under a live claim and `claim_id` is None or names
        another claim, `MessageNotClaimed` when `claim_id` is given but the message is not claimed,
        `InvalidClaim` when `claim_id` is malformed.
        """

    async def bulk_delete(
        self, project: str, queue: str, ids: Sequence[str], claim_ids: Sequence[str] | None
    ) -> None:
        """Delete the messages among `ids`; with `claim_ids`, only those held by those claims."""

    async def pop(self, project: str, queue: str, limit: int) -> Messages:
        """Atomically remove and return up to `limit` free messages, oldest first."""


class ClaimStore(Protocol):
    async def create(
        self, project: str, queue: str, *, ttl: int, grace: int, limit: int
    ) -> tuple[Claim, Messages]:
        """Claim up to `limit` free messages, oldest first.

        A message is held by at most one live claim. Each claimed message lives at least until
        the claim expires plus `grace`. Returns the claim and its messages (possibly none: the
        claim is then not stored).
        """

    async def get(self, project: str, queue: str, claim_id: str) -> tuple[Claim, Messages]:
        """Raises `ClaimDoesNotExist` (also when expired or malformed)."""

    async def update(
        self, project: str, queue: str, claim_id: str, *, ttl: int, grace: int
    ) -> None:
        """Renew the claim for `ttl` seconds from now. Raises `ClaimDoesNotExist`."""

    async def delete(self, project: str, queue: str, claim_id: str) -> None:
        """Release the claim's messages; a missing claim is not an error."""


class Storage(Protocol):
    """One partition's storage: the three controllers plus lifecycle."""

    @property
    def queues(self) -> QueueStore: ...

    @property
    def messages(self) -> MessageStore: ...

    @property
    def claims(self) -> ClaimStore: ...

    async def ping(self) -> bool:
        """True if the backend answers."""

    async def collect_garbage(self) -> int:
        """Remove expired messages and claims; return how many records went."""

    async def close(self) -> None: ...

"""The outbox seam: notifications owed to subscribers, stored in the partition with the queue.

A post to a queue with live subscriptions writes, in the same transaction (or, on MongoDB, the
same document write) as its messages, one `Delivery` per subscription: the post's
notifications, in order, and to whom. So a post that was acknowledged has its notifications on
record, and a post that was not has none.

Deliverers (`node.notify.deliverer`, one in every node process of the partition) take
deliveries by lease: `lease` marks up to `limit` due deliveries as held by `owner` until the
lease expires, atomically, so that one delivery is held by at most one deliverer at a time
across processes; a deliverer that dies (kill -9) leaves its leases to expire, and then
another takes them. A held delivery ends by `done` (sent, or given up) or `retry` (sent in part
or not at all: due again later). Both are refused, silently, to a deliverer whose lease has
expired meanwhile (another may hold it now): the next holder sends it again, which is what
at-least-once allows.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from node.models import NewMessage

NOTIFICATION = "Notification"  # Zaqar's MessageType.Notification.name
Deliveries = list["Delivery"]


@dataclass(frozen=True, slots=True)
class Delivery:
    """One post's notifications to one subscriber."""

    id: str  # the post's id and the subscription's: unique, kept when its queue moves
    project: str
    queue: str
    subscription_id: str
    subscriber: str  # http(s)://... or mailto:...
    options: dict[str, Any]  # the subscription's options at the time of the post
    confirmed: bool  # the subscription's, at the time of the post
    notices: list[dict[str, Any]]  # the bodies to send, in order
    posted: float  # when the post was written (for the delivery lag)
    due: float  # when it is next to be tried
    failures: int = 0  # failed attempts so far (the retry policy's position)
    sent: int = 0  # how many of `notices` were delivered already


class OutboxStore(Protocol):
    written: Nudge  # set by this process's posts that owe deliveries (see `wait`)

    async def lease(self, owner: str, *, limit: int, lasts: float) -> Deliveries:
        """Take up to `limit` deliveries that are due and not held (or whose lease expired),
        oldest due first, holding them for `owner` for `lasts` seconds; atomic across
        processes. Deliveries of a queue fenced on this partition are left alone (a migration
        is moving them with it)."""

    async def done(self, owner: str, ids: Sequence[str]) -> int:
        """Remove the deliveries among `ids` that `owner` holds; return how many went."""

    async def retry(
        self, owner: str, delivery_id: str, *, due: float, failures: int, sent: int
    ) -> bool:
        """Release a delivery `owner` holds, to be tried again at `due`, with its progress;
        False when `owner` no longer holds it."""

    async def enqueue(self, deliveries: Sequence[Delivery]) -> None:
        """Store deliveries written outside a post (a subscription's confirmation request)."""

    async def depth(self) -> int:
        """How many deliveries the partition holds, due or not."""

    async def wait(self, seconds: float) -> None:
        """Return once this process wrote a delivery since the last call, or after `seconds`:
        a deliverer's nap that a post nearby cuts short."""

    async def export_outbox(self, project: str, queue: str) -> Deliveries:
        """The queue's deliveries, held or not, for a migration (in id order)."""

    async def import_outbox(self, project: str, queue: str, deliveries: Sequence[Delivery]) -> int:
        """Upsert deliveries by id, unheld; return how many were new. Idempotent."""

    async def drop_outbox(self, project: str, queue: str) -> int:
        """Remove the queue's deliveries; return how many went."""


def notices(queue: str, messages: Sequence[NewMessage]) -> str:
    """The notifications of one post as the JSON array a `Delivery` stores. Zaqar 23
    (`zaqar/notification/notifier.py`, `tasks/webhook.py`) notifies each posted message as the
    client posted it after sanitizing (`ttl`, `body`), with `Message_Type` and then
    `queue_name` added."""
    return json.dumps(
        [
            {"ttl": m.ttl, "body": m.body, "Message_Type": NOTIFICATION, "queue_name": queue}
            for m in messages
        ]
    )


class Nudge:
    """The in-process wake-up behind `OutboxStore.wait`: a post that owes deliveries sets it
    once its write is committed, so the deliverer next to it need not wait for its next look."""

    def __init__(self) -> None:
        self._event = asyncio.Event()
        # Also told of each post: a node whose deliverer runs in a child process passes it on.
        self.listener: Callable[[], None] | None = None

    def set(self) -> None:
        self._event.set()
        if self.listener is not None:
            self.listener()

    async def wait(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._event.wait()
        self._event.clear()

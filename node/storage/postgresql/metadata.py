"""Queue metadata kept in the node process, confirmed by the statement that acts on it.

Issue 12 made the v2 list, get, claim and pop paths read their queue's metadata (its reserved
attributes) before they act: on PostgreSQL one more round trip per request, the largest share of
the node's CPU after the statement itself (BENCHMARKS.md, PostgreSQL driver). Inside a request's
reading (`node.storage.reading`) the driver answers from `Copies` instead, and the statement
that acts carries `SAME` (the stored text against what the request saw) in its own round trip: a
change made by any node of the partition is seen by the next statement, which then does nothing
and raises `MetadataChanged` with the copy refreshed, so the request acts again on fresh metadata.
"""

from __future__ import annotations

from typing import Any

from node.errors import MetadataChanged, QueueFrozen
from node.models import Fence
from node.storage.postgresql.schema import IN_FORCE
from node.storage.reading import Key, current

LIMIT = 10_000  # queues whose metadata one process keeps; all forgotten at once past it
QUEUE_AND_FENCE = (
    "SELECT (SELECT metadata FROM queues WHERE project = $1 AND name = $2),"
    f" (SELECT reason FROM fences WHERE project = $1 AND queue = $2 AND {IN_FORCE})"
)
UNSEEN = object()  # no reading saw the queue: nothing to confirm


def same(seen: str) -> str:
    """The condition that the queue's stored metadata is the text in parameter `seen`
    (None: the queue does not exist); `$1`, `$2` are the project and queue."""
    return (
        "(SELECT metadata FROM queues WHERE project = $1 AND name = $2)"
        f" IS NOT DISTINCT FROM {seen}::text"
    )


class Copies:
    """Each queue's metadata text as last read or confirmed here (None: no such queue)."""

    def __init__(self) -> None:
        self._texts: dict[Key, str | None] = {}

    def get(self, key: Key) -> object:
        return self._texts.get(key, UNSEEN)

    def put(self, key: Key, text: str | None) -> None:
        if len(self._texts) >= LIMIT and key not in self._texts:
            self._texts.clear()
        self._texts[key] = text

    def drop(self, key: Key) -> None:
        self._texts.pop(key, None)


def seen(project: str, queue: str) -> object:
    """The metadata text the current request's reading saw of the queue, or `UNSEEN`."""
    found = current()
    return UNSEEN if found is None else found.seen.get((project, queue), UNSEEN)


async def confirm(
    conn: Any, copies: Copies, project: str, queue: str, now: float, saw: object
) -> None:
    """After a statement that carried `same` acted on nothing: refuse a read of a moved queue,
    and raise `MetadataChanged` (the copy refreshed) if the metadata is not what was seen."""
    text, reason = await conn.fetchrow(QUEUE_AND_FENCE, project, queue, now)
    if reason == Fence.MOVED:
        raise QueueFrozen(project, queue, reason)
    if saw is not UNSEEN and text != saw:
        copies.put((project, queue), text)
        raise MetadataChanged(f"metadata of queue {queue!r} changed")

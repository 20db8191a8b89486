"""The MongoDB driver's fences (a queue frozen for a migration, or moved away).

Fences. A fenced queue has a document in `fences`, unique per queue, written only by `freeze` and
`unfreeze`; without a queue document it is a tombstone. The queue's own document carries a copy,
`fence`, so that `post` checks the fence in the very update that reserves its markers: on MongoDB
a post is either refused or has reserved its markers before the freeze, so every post that can
still land after `freeze` returned has a marker at or below the counter read after it. Every
write also reads the record in `fences` (alongside its own first step where that costs nothing)
and then acts: one that passed the check just before the freeze still lands, within one
request's time. Reads of a moved queue are refused the same way.

FerretDB 1.x applies an update as a read and a write of the whole document, so an update racing
`freeze` (a reservation, a metadata change, a counter repair after a marker collision) can write
the queue document back without the copy, or reserve after the copy was set; and the freeze's
own update can undo a racing reservation's increment of the counter. The record in `fences`,
which only `freeze` and `unfreeze` write, is what bounds this: a post that reads it after the
freeze is refused, whatever the copy says. `freeze` also reads the copy back after a short pause
and sets it again until it stays, and `export_queue` reports the highest marker stored when it
is above the counter; the migration worker's settle interval after the freeze covers the posts
that were in flight.

Most queues are never fenced: a node that found a queue without a fence believes it for `QUIET`
seconds without asking again (so the writes and reads of open queues pay no round trip for it),
and `freeze` waits that long before it returns, so that every write starting after it asks.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from node.errors import QueueFrozen, StorageUnavailable
from node.models import Fence
from node.storage.mongodb.documents import Doc, queue_key

T = TypeVar("T")
Clock = Callable[[], float]
# `freeze` reads the queue document's copy of the fence back after this pause, and sets it again
# (up to COPY_ATTEMPTS times) if a racing update on FerretDB wrote the document back without it.
COPY_SETTLE = 0.02
COPY_ATTEMPTS = 5
# Seconds a node takes a queue found without a fence to stay so. A freeze waits that long (while
# it sets the copy) and a migration bounds how long a freeze may take, so it is kept short: under
# load a queue still pays one read of its fence per node every QUIET seconds, not one per write.
QUIET = 0.05
QUIET_QUEUES = 10_000  # queues a node remembers as open, at most


async def alongside(check: Awaitable[None], op: Awaitable[T]) -> T:
    """Await `op` while `check` runs, in one round trip's time; the check's error wins."""
    checked, result = await asyncio.gather(check, op, return_exceptions=True)
    if isinstance(checked, BaseException):
        raise checked
    if isinstance(result, BaseException):
        raise result
    return result


def _scope(project: str, queue: str) -> Doc:
    """The documents of one queue, in `fences`, `messages` and `claims`."""
    return {"project": project, "queue": queue}


class Fences:
    """The partition's fences: the `fences` collection, and its copies on queue documents.

    A fence with a deadline (`until`, by the partition's clock) lifts itself then: its record
    counts as none from that instant, and the first post refused by the queue document's stale
    copy clears the copy (`refused`)."""

    def __init__(
        self, docs: AsyncCollection[Doc], queue_docs: AsyncCollection[Doc], clock: Clock
    ) -> None:
        self.docs = docs
        self._queue_docs = queue_docs
        self._clock = clock
        self._open: dict[tuple[str, str], float] = {}  # monotonic time it was asked

    async def in_force(self, project: str, queue: str) -> tuple[str, float | None] | None:
        """The fence's reason and the seconds until it lifts itself (None: never); None when
        the queue has no fence in force."""
        doc = await self.docs.find_one(_scope(project, queue), {"reason": 1, "until": 1})
        if doc is None:
            return None
        until = float(doc.get("until") or 0.0)
        if not until:
            return str(doc["reason"]), None
        lifts = until - self._clock()
        return (str(doc["reason"]), lifts) if lifts > 0 else None

    async def reason(self, project: str, queue: str) -> str | None:
        fence = await self.in_force(project, queue)
        return None if fence is None else fence[0]

    async def check_write(self, project: str, queue: str) -> None:
        fence = await self._checked(project, queue)
        if fence is not None:
            raise QueueFrozen(project, queue, fence[0], lifts=fence[1])

    async def check_read(self, project: str, queue: str) -> None:
        fence = await self._checked(project, queue)
        if fence is not None and fence[0] == Fence.MOVED:
            raise QueueFrozen(project, queue, Fence.MOVED)

    async def _checked(self, project: str, queue: str) -> tuple[str, float | None] | None:
        """The fence in force (as `in_force`), or None, believed for `QUIET` seconds when None."""
        key = (project, queue)
        asked = time.monotonic()
        if asked - self._open.get(key, -QUIET) < QUIET:
            return None
        fence = await self.in_force(project, queue)
        if fence is None:
            if len(self._open) >= QUIET_QUEUES:
                self._open = {k: t for k, t in self._open.items() if asked - t < QUIET}
            self._open[key] = asked  # as of when it was asked: the answer may be that old
        return fence

    async def refused(self, project: str, queue: str) -> bool:
        """Why a reservation matched no queue document: raises `QueueFrozen` if the queue is
        fenced; else True if the queue exists (it was unfenced meanwhile), False if it does not."""
        fence, record, doc = await asyncio.gather(
            self.in_force(project, queue),
            self.docs.find_one(_scope(project, queue), {"until": 1}),
            self._queue_docs.find_one(queue_key(project, queue), {"fence": 1}),
        )
        if fence is not None:
            raise QueueFrozen(project, queue, fence[0], lifts=fence[1])
        copied = (doc or {}).get("fence")
        if copied and record is not None and record.get("until"):
            # The fence lifted itself: its copy goes, unless it was set again meanwhile (then
            # the next try is refused by the record).
            await self._queue_docs.update_one(
                {**queue_key(project, queue), "fence": copied}, {"$set": {"fence": None}}
            )
            return True
        if copied:
            raise QueueFrozen(project, queue, copied)
        return doc is not None

    async def put(self, project: str, queue: str, reason: str, lasts: float | None) -> None:
        """The record first, then the copy: a copy never outlives its record."""
        key = _scope(project, queue)
        fields = {"reason": reason, "until": 0.0 if lasts is None else self._clock() + lasts}
        try:
            await self.docs.update_one(key, {"$set": fields}, upsert=True)
        except DuplicateKeyError:  # a concurrent freeze inserted it first
            await self.docs.update_one(key, {"$set": fields})
        self._open.pop((project, queue), None)
        # Until every node's belief that it is open has expired, which costs nothing beside the
        # copy's own settle and read back.
        await asyncio.gather(self._copy(project, queue, reason), asyncio.sleep(QUIET))

    async def extend(self, project: str, queue: str, lasts: float) -> bool:
        """Move the deadline of a fence still in force; False if it lapsed (or has none)."""
        now = self._clock()
        found = await self.docs.update_one(
            {**_scope(project, queue), "until": {"$gt": now}}, {"$set": {"until": now + lasts}}
        )
        return found.matched_count > 0

    async def lift(self, project: str, queue: str) -> None:
        """The copy first, then the record."""
        await self._queue_docs.update_one(queue_key(project, queue), {"$set": {"fence": None}})
        await self.docs.delete_one(_scope(project, queue))

    async def adopt(self, project: str, queue: str) -> None:
        """A queue document was just inserted: if a tombstone was laid meanwhile, the queue
        takes its fence and `QueueFrozen` is raised (the queue stays, fenced and empty)."""
        reason = await self.reason(project, queue)
        if reason is not None:
            await self._copy(project, queue, reason)
            raise QueueFrozen(project, queue, reason)

    async def _copy(self, project: str, queue: str, reason: str) -> None:
        key = queue_key(project, queue)
        for _ in range(COPY_ATTEMPTS):
            await self._queue_docs.update_one(key, {"$set": {"fence": reason}})
            await asyncio.sleep(COPY_SETTLE)
            doc = await self._queue_docs.find_one(key, {"fence": 1})
            if doc is None or doc.get("fence") == reason:
                return
        raise StorageUnavailable(f"the fence of queue {queue} did not hold")

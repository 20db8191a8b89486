"""The MongoDB driver's posts: a group commit per queue, markers checked against a floor.

Group commit. Posts to one queue in one process go in groups: a post joins the queue's line,
and whatever waits there when the line's turn comes goes together, in arrival order, as one
reservation of markers (`$inc` of the queue's counter by the group's size) and one ordered
`insert_many`. At most one reservation per queue is in flight per process, so a process never
races itself on the counter, and under load a post costs a fraction of those two round trips.

Markers. `(project, queue, marker)` is unique: that index arbitrates between processes, and with
imports of a migration. FerretDB 1.x applies `$inc` as a read followed by a write, so two
processes can be handed the same markers, or the counter can go back (an update lost). Each
process keeps a floor per queue: the highest marker it has handed out or seen, seeded by one
query the first time it posts to the queue (alongside that reservation) and again after a
collision; a migration's import, a raise of the counter or an unfreeze forgets it. A reservation
at or below the floor would place the group before a message already acknowledged (against its
producer's order): the counter is raised past the floor by a conditional `$set`, and the group
reserves again. A group whose insert collides takes back what went in, seeds its floor again,
and retries likewise. On MongoDB, where `$inc` is atomic, neither repair ever happens. On
FerretDB a reservation also logs its markers before they are used (see `reservations`): the
floor keeps one process's order, the log keeps a marker from going to two messages.

Known limitation: reserving markers and inserting the messages are two steps, so posts from two
processes to one queue may become visible out of marker order for an instant (marker 7 listed
before marker 6 is written); a client paging by marker then may step past 6. Within a process
the groups of a queue are stored one after the other, so this needs two processes. Claims, pops
and stats are unaffected. A single producer's posts are always in order.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

from pymongo import DESCENDING, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError

from node.errors import QueueDoesNotExist, StorageUnavailable
from node.storage.mongodb.blocks import Blocks, block_of
from node.storage.mongodb.changes import Tracking, stamped
from node.storage.mongodb.documents import Doc, backend, duplicates, queue_key
from node.storage.mongodb.fences import Fences, alongside
from node.storage.mongodb.outbox import MongoOutbox
from node.storage.mongodb.reservations import Reservations

ATTEMPTS = 8
# The most messages one group reserves and inserts; posts beyond wait for the next group.
GROUP = 1000

Key = tuple[str, str]


async def _same(value: bool) -> bool:
    return value


@dataclass
class _Post:
    docs: list[Doc]
    stored: asyncio.Future[None]


@dataclass
class _Line:
    """The posts waiting for a queue's next group, and the task storing its groups."""

    waiting: list[_Post] = field(default_factory=list)
    task: asyncio.Task[None] | None = None


class Posts:
    def __init__(
        self,
        queue_docs: AsyncCollection[Doc],
        message_docs: AsyncCollection[Doc],
        fences: Fences,
        tracking: Tracking,
        outbox: MongoOutbox,
        blocks: Blocks,
        reservations: Reservations,
    ) -> None:
        self._queues = queue_docs
        self._messages = message_docs
        self._fences = fences
        self._tracking = tracking
        self._outbox = outbox
        self._blocks = blocks
        self._reservations = reservations
        self._floors: dict[Key, int] = {}
        self._lines: dict[Key, _Line] = {}

    async def store(self, project: str, queue: str, docs: list[Doc]) -> None:
        """Store the message documents (complete but for `marker` and `stamp`, which are set
        here), after every post to the queue that this process acknowledged before.

        Raises `QueueDoesNotExist`, `QueueFrozen`, `StorageUnavailable`. If the caller is
        cancelled, the post may still be stored (as with any write whose answer was lost).
        """
        key = (project, queue)
        line = self._lines.setdefault(key, _Line())
        stored: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        line.waiting.append(_Post(docs, stored))
        if line.task is None:
            line.task = asyncio.create_task(self._drain(key, line))
        await stored

    def forget(self, project: str, queue: str) -> None:
        """The queue's markers changed outside this process's posts (an import, a raise of the
        counter, an unfreeze, the queue deleted): the next group seeds the floor again."""
        self._floors.pop((project, queue), None)
        self._blocks.forget(project, queue)

    async def close(self) -> None:
        """Stop storing groups; posts still waiting fail with `StorageUnavailable`."""
        for line in list(self._lines.values()):
            if line.task is not None:
                line.task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await line.task

    async def _drain(self, key: Key, line: _Line) -> None:
        group: list[_Post] = []
        try:
            await asyncio.sleep(0)  # the posts of this turn of the loop join the first group
            while line.waiting:
                group, size = [], 0
                while line.waiting and (not group or size + len(line.waiting[0].docs) <= GROUP):
                    post = line.waiting.pop(0)
                    group.append(post)
                    size += len(post.docs)
                try:
                    await self._store(key, [doc for post in group for doc in post.docs])
                except Exception as exc:
                    for post in group:
                        if not post.stored.done():
                            post.stored.set_exception(exc)
                else:
                    for post in group:
                        if not post.stored.done():  # else the caller was cancelled; it is stored
                            post.stored.set_result(None)
        except asyncio.CancelledError:
            for post in group + line.waiting:
                if not post.stored.done():
                    post.stored.set_exception(StorageUnavailable("the storage is closing"))
            line.waiting.clear()
            raise
        finally:
            line.task = None
            if self._lines.get(key) is line and not line.waiting:
                del self._lines[key]

    async def _store(self, key: Key, docs: list[Doc]) -> None:
        project, queue = key
        n = len(docs)
        now = float(docs[0]["created"])  # when the post was written, for the delivery lag
        owes: bool | None = None  # known once asked: the group's intent is written by then
        async with backend():
            for _ in range(ATTEMPTS):
                known = self._floors.get(key)
                # What the group owes the queue's subscriptions goes on record alongside the
                # reservation, before its messages (see `owed`).
                owing = self._outbox.owe(project, queue, docs, now) if owes is None else _same(owes)
                if known is None:
                    (top, stamp), floor, owes = await asyncio.gather(
                        self.reserve(project, queue, n),
                        self._highest_marker(project, queue),
                        owing,
                    )
                    self._floors[key] = floor
                else:
                    floor = known
                    (top, stamp), owes = await asyncio.gather(
                        self.reserve(project, queue, n), owing
                    )
                first = top - n + 1
                if first <= floor:
                    # The counter went back (an update lost on FerretDB): these markers would
                    # place the group before a message already acknowledged.
                    await self._raise_counter(project, queue, floor)
                    continue
                for i, doc in enumerate(docs):
                    doc["marker"] = first + i
                    doc["block"] = block_of(first + i)
                    doc.update(stamped(stamp))
                try:
                    await self._messages.insert_many(docs, ordered=True)
                except BulkWriteError as exc:
                    duplicates(exc)  # re-raises anything but a marker handed out twice
                else:
                    self._floors[key] = max(self._floors.get(key, 0), top)
                    if owes:
                        self._outbox.written.set()  # this process's deliverer decides it now
                    return
                # Another process holds some of these markers: take back what went in (only
                # the queue's: a deliverer may have blocked the group's first id, see `owed`).
                await self._messages.delete_many(
                    {"_id": {"$in": [doc["_id"] for doc in docs]}, "queue": queue}
                )
                self._floors[key] = floor = await self._highest_marker(project, queue)
                await self._raise_counter(project, queue, floor)
        raise StorageUnavailable(f"no free markers in queue {queue} after {ATTEMPTS} tries")

    async def reserve(self, project: str, queue: str, n: int) -> tuple[int, int]:
        """Advance the queue's marker counter by `n`; return its new value, and the stamp of
        the write that uses the markers.

        The fence is checked twice at once: as a condition of this very update (the queue
        document's copy: on MongoDB a post is refused or reserves its markers, atomically), and
        in the fence's own record, which no racing update can undo (FerretDB can undo the copy).
        Raises `QueueFrozen`, `QueueDoesNotExist`.
        """
        top, stamp = await alongside(
            self._fences.check_write(project, queue),
            asyncio.gather(
                self._reserve_unless_copied(project, queue, n),
                self._tracking.stamp(project, queue),
            ),
        )
        return top, stamp

    async def _reserve_unless_copied(self, project: str, queue: str, n: int) -> int:
        for _ in range(ATTEMPTS):
            doc = await self._queues.find_one_and_update(
                {**queue_key(project, queue), "fence": None},
                {"$inc": {"counter": n}},
                return_document=ReturnDocument.AFTER,
            )
            if doc is not None:
                top = int(doc["counter"])
                if await self._reservations.record(doc["_id"], top - n + 1, top):
                    return top
                # Handed out before: the counter went back (see `reservations`). Past them.
                await self._raise_counter(project, queue, top)
                continue
            # Refused: missing or fenced. Else it was unfenced meanwhile: try again.
            if not await self._fences.refused(project, queue):
                raise QueueDoesNotExist(project, queue)
        raise StorageUnavailable(f"no markers reserved in queue {queue} after {ATTEMPTS} tries")

    async def _highest_marker(self, project: str, queue: str) -> int:
        """The highest marker stored in the queue (0 when empty)."""
        top = await self._messages.find_one(
            {"project": project, "queue": queue}, {"marker": 1}, sort=[("marker", DESCENDING)]
        )
        return 0 if top is None else int(top["marker"])

    async def _raise_counter(self, project: str, queue: str, floor: int) -> None:
        await self._queues.update_one(
            {**queue_key(project, queue), "counter": {"$lt": floor}},
            {"$set": {"counter": floor}},
        )

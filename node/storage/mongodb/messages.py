"""The MongoDB driver's messages: post, list, get, delete, pop.

- Markers. `(project, queue, marker)` is unique. `post` reserves markers with `$inc` on the queue's
  counter; if the server hands a marker out twice, the insert collides, is taken back, the counter
  moves past every marker in use and the post is retried. A reservation at or below the highest
  marker stored (the counter went back: FerretDB lost an update of it) is retried the same way
  before anything is inserted, so a producer's next post never lands before its last.

Known limitation: reserving markers and inserting the messages are two steps. Two concurrent posts
to one queue may therefore become visible out of marker order for an instant (marker 7 is listed
before marker 6 is written). A client that pages by marker at that instant gets `next` past 6 and
never lists message 6; claims, pops and stats are unaffected. A single producer's posts are always
in order. On FerretDB 1.x, whose counter updates are not atomic, concurrent posts may also collide
and be retried, as above.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence

from bson import ObjectId
from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.errors import BulkWriteError

from node.errors import (
    InvalidClaim,
    MessageDoesNotExist,
    MessageIsClaimed,
    QueueDoesNotExist,
    StorageUnavailable,
)
from node.models import Message, NewMessage, is_id, new_id
from node.storage.base import Ids, Messages
from node.storage.mongodb.database import Database
from node.storage.mongodb.documents import (
    Doc,
    backend,
    duplicates,
    live_query,
    object_ids,
    queue_key,
    to_messages,
)
from node.storage.mongodb.fences import alongside
from node.storage.rules import check_delete

# How long a pop or a delete may hold messages before others may take them over (its process died).
REMOVAL_LEASE = 30.0
POST_ATTEMPTS = 8


class MongoMessages:
    def __init__(self, storage: Database) -> None:
        self._s = storage

    @backend()
    async def post(
        self, project: str, queue: str, messages: Sequence[NewMessage], client_id: str
    ) -> Ids:
        ids = [new_id() for _ in messages]
        oids = [ObjectId(i) for i in ids]
        bodies = [json.dumps(m.body) for m in messages]
        now = self._s.clock()
        if not messages:
            await self._reserve(project, queue, 0)  # still raises for a missing queue
            return []
        for _ in range(POST_ATTEMPTS):
            (top, stamp), highest = await asyncio.gather(
                self._reserve(project, queue, len(messages)), self._highest_marker(project, queue)
            )
            first = top - len(messages) + 1
            if first <= highest:
                # The counter went back (an update lost on FerretDB): these markers would place
                # this post before a message already acknowledged, against its producer's order.
                await self._skip_used_markers(project, queue)
                continue
            docs = [
                {
                    "_id": oids[i],
                    "project": project,
                    "queue": queue,
                    "marker": first + i,
                    "body": bodies[i],
                    "ttl": m.ttl,
                    "created": now,
                    "expires": now + m.ttl,
                    "delay_expires": now + m.delay if m.delay else 0.0,
                    "client_id": client_id,
                    "claim_id": None,
                    "claim_expires": 0.0,
                    "stamp": stamp,
                }
                for i, m in enumerate(messages)
            ]
            try:
                await self._s.message_docs.insert_many(docs)
                return ids
            except BulkWriteError as exc:
                duplicates(exc)
            # A marker was handed out twice (a non-atomic $inc): take back what went in.
            await self._s.message_docs.delete_many({"_id": {"$in": oids}})
            await self._skip_used_markers(project, queue)
        raise StorageUnavailable(f"no free markers in queue {queue} after {POST_ATTEMPTS} tries")

    async def _reserve(self, project: str, queue: str, n: int) -> tuple[int, int]:
        """Advance the queue's marker counter by `n`; return its new value, and the post's stamp.

        The fence is checked twice at once: as a condition of this very update (the queue
        document's copy: on MongoDB a post is refused or reserves its markers, atomically), and
        in the fence's own record, which no racing update can undo (FerretDB can undo the copy).
        The stamp is taken at the same time. Raises `QueueFrozen`, `QueueDoesNotExist`.
        """
        top, stamp = await alongside(
            self._s.fences.check_write(project, queue),
            asyncio.gather(
                self._reserve_unless_copied(project, queue, n),
                self._s.tracking.stamp(project, queue),
            ),
        )
        return top, stamp

    async def _reserve_unless_copied(self, project: str, queue: str, n: int) -> int:
        for _ in range(POST_ATTEMPTS):
            doc = await self._s.queue_docs.find_one_and_update(
                {**queue_key(project, queue), "fence": None},
                {"$inc": {"counter": n}},
                return_document=ReturnDocument.AFTER,
            )
            if doc is not None:
                return int(doc["counter"])
            # Refused: missing or fenced. Else it was unfenced meanwhile: try again.
            if not await self._s.fences.refused(project, queue):
                raise QueueDoesNotExist(project, queue)
        raise StorageUnavailable(f"queue {queue} was frozen and unfrozen {POST_ATTEMPTS} times")

    async def _highest_marker(self, project: str, queue: str) -> int:
        """The highest marker stored in the queue (0 when empty)."""
        top = await self._s.message_docs.find_one(
            {"project": project, "queue": queue}, {"marker": 1}, sort=[("marker", DESCENDING)]
        )
        return 0 if top is None else int(top["marker"])

    async def _skip_used_markers(self, project: str, queue: str) -> None:
        highest = await self._highest_marker(project, queue)
        if highest:
            await self._s.queue_docs.update_one(
                {**queue_key(project, queue), "counter": {"$lt": highest}},
                {"$set": {"counter": highest}},
            )

    @backend()
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
        if limit <= 0:  # MongoDB reads limit 0 as "no limit"
            await self._s.fences.check_read(project, queue)
            return []
        now = self._s.clock()
        query = {**live_query(project, queue, now), "marker": {"$gt": marker or 0}}
        if not echo:
            query["client_id"] = {"$ne": client_id}
        if not include_claimed:
            query["claim_expires"] = {"$lte": now}
        if not include_delayed:
            query["delay_expires"] = {"$lte": now}
        return await alongside(
            self._s.fences.check_read(project, queue),
            to_messages(self._s.message_docs.find(query).sort("marker", ASCENDING).limit(limit)),
        )

    @backend()
    async def get(self, project: str, queue: str, message_id: str) -> Message:
        found = await self.bulk_get(project, queue, [message_id])
        if not found:
            raise MessageDoesNotExist(project, queue, message_id)
        return found[0]

    @backend()
    async def bulk_get(self, project: str, queue: str, ids: Sequence[str]) -> Messages:
        oids = object_ids(ids)
        if not oids:
            await self._s.fences.check_read(project, queue)
            return []
        query = {**live_query(project, queue, self._s.clock()), "_id": {"$in": oids}}
        return await alongside(
            self._s.fences.check_read(project, queue),
            to_messages(self._s.message_docs.find(query).sort("marker", ASCENDING)),
        )

    @backend()
    async def delete(self, project: str, queue: str, message_id: str, claim_id: str | None) -> None:
        malformed_claim = claim_id is not None and not is_id(claim_id)
        if malformed_claim or not is_id(message_id):
            await self._s.fences.check_write(project, queue)
            if malformed_claim:
                raise InvalidClaim()
            return
        now = self._s.clock()
        mid = ObjectId(message_id)
        doc = await alongside(
            self._s.fences.check_write(project, queue),
            self._s.message_docs.find_one(
                {**live_query(project, queue, now), "_id": mid},
                {"claim_id": 1, "claim_expires": 1, "marker": 1},
            ),
        )
        if doc is None:
            return
        holder = doc["claim_id"] if doc["claim_expires"] > now else None
        check_delete(None if holder is None else str(holder), claim_id)
        if claim_id is None:
            # It looked free: hold it, so that a claim racing us either wins or finds it gone.
            token = ObjectId()
            until = now + REMOVAL_LEASE
            if not await self._s.holds.acquire(
                [mid], holder=token, claim=False, until=until, now=now
            ):
                if await self._s.holds.claimed(mid, now):
                    raise MessageIsClaimed()
                return  # a pop or another delete is removing it
        stamp = await self._s.tracking.stamp(project, queue)  # just before: see `Tracking`
        await asyncio.gather(
            self._s.message_docs.delete_one({"_id": mid}),
            self._s.tracking.bury(project, queue, stamp, [(mid, doc["marker"])], now),
        )

    @backend()
    async def bulk_delete(
        self, project: str, queue: str, ids: Sequence[str], claim_ids: Sequence[str] | None
    ) -> None:
        oids = object_ids(ids)
        if not oids:
            await self._s.fences.check_write(project, queue)
            return
        await self._s.fences.check_write(project, queue)
        query: Doc = {"project": project, "queue": queue, "_id": {"$in": oids}}
        if claim_ids is not None:
            query["claim_id"] = {"$in": object_ids(claim_ids)}
        if stamp := await self._s.tracking.stamp(project, queue):
            # Tracked: what goes leaves tombstones, so read it first.
            gone = [(d["_id"], d["marker"]) async for d in self._s.message_docs.find(query)]
            await self._s.tracking.bury(project, queue, stamp, gone, self._s.clock())
        await self._s.message_docs.delete_many(query)

    @backend()
    async def pop(self, project: str, queue: str, limit: int) -> Messages:
        now = self._s.clock()
        token = ObjectId()
        taken = await self._s.holds.take_unless_fenced(
            project,
            queue,
            holder=token,
            claim=False,
            until=now + REMOVAL_LEASE,
            limit=limit,
            now=now,
        )
        if not taken:
            return []
        ids = [doc["_id"] for doc in taken]
        popped = await to_messages(
            self._s.message_docs.find({"_id": {"$in": ids}}).sort("marker", ASCENDING)
        )
        gone = [(ObjectId(m.id), m.marker) for m in popped]
        stamp = await self._s.tracking.stamp(project, queue)
        await self._s.tracking.bury(project, queue, stamp, gone, now)
        await self._s.message_docs.delete_many({"_id": {"$in": ids}})
        await self._s.holds.docs.delete_many({"holder": token})
        return popped

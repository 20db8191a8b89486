"""The MongoDB driver's dead letters bound for another partition (`DeadLetterStore`).

`receive` and `release` are writes of the dead-letter queue, fenced and stamped as a post is
(`Posts.reserve` checks the fence with the markers it hands out). A message is one document, in
the pile or in the queue, never both: `receive` of a message piled on this very partition moves
it, and one inserted already (by id) is not inserted again.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence

from bson import ObjectId
from pymongo import ASCENDING, UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError, DuplicateKeyError

from node.models import Message, Outgoing
from node.storage.deadletters import MARK, SENT, bound_for, pile
from node.storage.mongodb.blocks import block_of
from node.storage.mongodb.changes import stamped
from node.storage.mongodb.database import Database
from node.storage.mongodb.documents import (
    Doc,
    backend,
    duplicates,
    object_ids,
    queue_key,
    to_message,
)


async def make_pile(queue_docs: AsyncCollection[Doc], project: str, name: str, now: float) -> None:
    """The record of an outgoing pile (its marker counter), made on first use."""
    fresh = {"counter": 0, "created": now, "fence": None, "metadata": "{}"}
    with contextlib.suppress(DuplicateKeyError):  # made meanwhile by another claim
        await queue_docs.update_one(queue_key(project, name), {"$setOnInsert": fresh}, upsert=True)


class MongoDeadLetters:
    def __init__(self, storage: Database) -> None:
        self._s = storage

    @backend()
    async def waiting(self, *, limit: int) -> list[Outgoing]:
        now = self._s.clock()
        piles = self._s.queue_docs.find({"name": {"$gte": MARK}}, {"project": 1, "name": 1})
        found: list[Outgoing] = []
        async for record in piles.sort([("name", ASCENDING), ("project", ASCENDING)]):
            project, name = record["project"], record["name"]
            docs = self._s.message_docs.find(
                {"project": project, "queue": name, "expires": {"$gt": now}}
            )
            async for doc in docs.sort("marker", ASCENDING).limit(limit - len(found)):
                message = to_message(doc)
                found.append(
                    Outgoing(project, bound_for(name), message, message.claim_expires >= SENT)
                )
            if len(found) >= limit:
                break
        return found

    @backend()
    async def receive(self, project: str, queue: str, messages: Sequence[Message]) -> int:
        if not messages:
            return 0
        await self._s.fences.check_write(project, queue)
        where = {
            str(doc["_id"]): doc["queue"]
            async for doc in self._s.message_docs.find(
                {"_id": {"$in": object_ids([m.id for m in messages])}, "project": project},
                {"queue": 1},
            )
        }
        new = [m for m in messages if where.get(m.id, pile(queue)) == pile(queue)]
        if not new:
            await self._s.posts.reserve(project, queue, 0)  # still raises for a missing queue
            return 0
        top, stamp = await self._s.posts.reserve(project, queue, len(new))
        self._s.posts.forget(project, queue)  # markers handed out outside its groups
        first = top - len(new) + 1
        landed = 0
        # The pile on this very partition (the dead-letter queue came here since): moved.
        moves = [
            UpdateOne(
                {"_id": ObjectId(m.id), "project": project, "queue": pile(queue)},
                {
                    "$set": {
                        "queue": queue,
                        "marker": first + i,
                        "block": block_of(first + i),
                        "delay_expires": 0.0,
                        "claim_id": _hold(m),
                        "claim_expires": m.expires,
                        **stamped(stamp),
                    }
                },
            )
            for i, m in enumerate(new)
            if m.id in where
        ]
        if moves:
            landed += (await self._s.message_docs.bulk_write(moves, ordered=False)).modified_count
        docs = [
            _doc(project, queue, first + i, stamp, m)
            for i, m in enumerate(new)
            if m.id not in where
        ]
        if docs:
            try:
                result = await self._s.message_docs.insert_many(docs, ordered=False)
                landed += len(result.inserted_ids)
            except BulkWriteError as exc:  # inserted meanwhile: one copy is all there is
                landed += len(docs) - len(duplicates(exc))
        return landed

    @backend()
    async def release(self, project: str, queue: str, messages: Sequence[Message]) -> int:
        if not messages:
            return 0
        await self._s.fences.check_write(project, queue)
        stamp = await self._s.tracking.stamp(project, queue)
        updates = [
            UpdateOne(
                {"_id": ObjectId(m.id), "project": project, "queue": queue, "claim_id": _hold(m)},
                {"$set": {"claim_id": None, "claim_expires": 0.0, **stamped(stamp)}},
            )
            for m in messages
        ]
        return (await self._s.message_docs.bulk_write(updates, ordered=False)).modified_count

    @backend()
    async def sent(self, project: str, queue: str, ids: Sequence[str]) -> int:
        result = await self._s.message_docs.update_many(
            _in_pile(project, queue, ids), {"$set": {"claim_expires": SENT}}
        )
        return result.modified_count

    @backend()
    async def discard(self, project: str, queue: str, ids: Sequence[str]) -> int:
        return await self._s.outbox.owed.remove(_in_pile(project, queue, ids), expected=len(ids))


def _in_pile(project: str, queue: str, ids: Sequence[str]) -> Doc:
    return {"_id": {"$in": object_ids(ids)}, "project": project, "queue": pile(queue)}


def _hold(message: Message) -> ObjectId | None:
    return None if message.claim_id is None else ObjectId(message.claim_id)


def _doc(project: str, queue: str, marker: int, stamp: int, m: Message) -> Doc:
    """The message's document in the dead-letter queue, held by its hold while it lives."""
    return {
        "_id": ObjectId(m.id),
        "project": project,
        "queue": queue,
        "marker": marker,
        "block": block_of(marker),
        "body": json.dumps(m.body),
        "ttl": m.ttl,
        "created": m.created,
        "expires": m.expires,
        "delay_expires": 0.0,
        "client_id": m.client_id,
        "claim_id": _hold(m),
        "claim_expires": m.expires,
        "claim_count": m.claim_count,
        **stamped(stamp),
    }

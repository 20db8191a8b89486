"""The MongoDB driver's messages: post (through `posts`), list, get, delete, pop.

Point operations go by `_id` alone, so that no server scans the queue for them: get and bulk get
read by `_id` and check the project, queue and expiry here; a delete with a claim id is one
conditional delete by `_id`, and a delete without one first holds the message (see `holds`), so
that a claim racing it either wins or finds it gone.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from bson import ObjectId

from node.errors import (
    InvalidClaim,
    MessageDoesNotExist,
    MessageIsClaimed,
)
from node.models import Message, NewMessage, is_id, new_id
from node.storage.base import Ids, Messages
from node.storage.mongodb.database import Database
from node.storage.mongodb.documents import (
    Doc,
    backend,
    live_query,
    object_ids,
    to_message,
)
from node.storage.mongodb.fences import alongside
from node.storage.mongodb.owed import NOT_OWING, OWING
from node.storage.rules import check_delete

# How long a pop or a delete may hold messages before others may take them over (its process died).
REMOVAL_LEASE = 30.0


class MongoMessages:
    def __init__(self, storage: Database) -> None:
        self._s = storage

    @backend()
    async def post(
        self, project: str, queue: str, messages: Sequence[NewMessage], client_id: str
    ) -> Ids:
        if not messages:
            await self._s.posts.reserve(project, queue, 0)  # still raises for a missing queue
            return []
        ids = [new_id() for _ in messages]
        now = self._s.clock()
        docs = [
            {
                "_id": ObjectId(ids[i]),
                "project": project,
                "queue": queue,
                "body": json.dumps(m.body),
                "ttl": m.ttl,
                "created": now,
                "expires": now + m.ttl,
                "delay_expires": now + m.delay if m.delay else 0.0,
                "client_id": client_id,
                "claim_id": None,
                "claim_expires": 0.0,
            }
            for i, m in enumerate(messages)
        ]
        await self._s.posts.store(project, queue, docs)
        return ids

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
        query = live_query(project, queue, now)
        if not echo:
            query["client_id"] = {"$ne": client_id}
        if not include_claimed:
            query["claim_expires"] = {"$lte": now}
        if not include_delayed:
            query["delay_expires"] = {"$lte": now}
        found = await alongside(
            self._s.fences.check_read(project, queue),
            self._s.blocks.find(project, queue, query, after=marker or 0, limit=limit, now=now),
        )
        return [to_message(doc) for doc in found]

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
        # By `_id` alone, so that no server scans the queue; the rest is checked here.
        found = await alongside(
            self._s.fences.check_read(project, queue), self._s.messages_by_ids(oids)
        )
        now = self._s.clock()
        mine = [doc for doc in found if _live_in(doc, project, queue, now)]
        return [to_message(doc) for doc in sorted(mine, key=lambda doc: int(doc["marker"]))]

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
        await self._s.fences.check_write(project, queue)  # no round trip while it stays open
        if claim_id is not None:
            # One conditional delete by `_id`; only if it finds nothing is the message read.
            held = {"claim_id": ObjectId(claim_id), "claim_expires": {"$gt": now}}
            if await self._remove(project, queue, {"_id": mid, **held}, now):
                return
        elif self._s.atomic:
            # It must be free: one conditional delete. A claim that holds it but has not marked
            # it yet finds it gone when it marks (its update matches nothing).
            if await self._remove(project, queue, {"_id": mid, **_unclaimed(now)}, now):
                return
        else:
            # It must be free: hold it first, so that a claim racing us either wins or finds it
            # gone (FerretDB reads a conditional delete's match, then deletes by `_id` alone,
            # so a claim could mark it in between). A hold of a message that turns out not to
            # be the queue's is given back.
            token = ObjectId()
            until = now + REMOVAL_LEASE
            if await self._s.holds.acquire([mid], holder=token, claim=False, until=until, now=now):
                if not await self._remove(project, queue, {"_id": mid}, now):
                    await self._s.holds.release(token)
                return
        doc = await self._s.message_docs.find_one(
            {"_id": mid}, {"project": 1, "queue": 1, "expires": 1, **_CLAIM_FIELDS}
        )
        if doc is None or not _live_in(doc, project, queue, now):
            return
        holder = doc["claim_id"] if doc["claim_expires"] > now else None
        if claim_id is None and holder is None:
            # Free, but held: a pop or another delete is removing it (or a claim is marking it).
            if await self._s.holds.claimed(mid, now):
                raise MessageIsClaimed()
            return
        check_delete(None if holder is None else str(holder), claim_id)
        # Its claim's: the claim was marked again between the delete and the read.
        await self._remove(project, queue, {"_id": mid, "claim_id": holder}, now)

    async def _remove(self, project: str, queue: str, query: Doc, now: float) -> bool:
        """Delete the message `query` finds, if it is the queue's; True if one was deleted."""
        stamp = await self._s.tracking.stamp(project, queue)  # just before: see `Tracking`
        query = {**query, "project": project, "queue": queue}
        # No projection: FerretDB 1.x does not take one in findAndModify.
        doc = await self._s.message_docs.find_one_and_delete({**query, **NOT_OWING})
        if doc is None:
            # The first message of a post that owes notifications: its evidence first.
            owing = await self._s.message_docs.find_one({**query, **OWING}, {"owes": 1})
            if owing is None:
                return False
            await self._s.outbox.owed.keep([owing])
            doc = await self._s.message_docs.find_one_and_delete(query)
            if doc is None:
                return False
        await self._s.tracking.bury(project, queue, stamp, [(doc["_id"], doc["marker"])], now)
        return True

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
            docs = await self._s.message_docs.find(query).to_list(None)
            gone = [(d["_id"], d["marker"]) for d in docs]
            await self._s.tracking.bury(project, queue, stamp, gone, self._s.clock())
            await self._s.outbox.owed.keep(docs)
            await self._s.message_docs.delete_many(query)
        else:
            await self._s.outbox.owed.remove(query, expected=len(oids))

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
        popped = [to_message(doc) for doc in taken]
        gone = [(ObjectId(m.id), m.marker) for m in popped]
        stamp = await self._s.tracking.stamp(project, queue)
        await self._s.tracking.bury(project, queue, stamp, gone, now)
        await self._s.outbox.owed.keep(taken)
        # The holds stay until collected: a taker that read these messages before they went
        # then finds them held, never free.
        await self._s.message_docs.delete_many({"_id": {"$in": ids}})
        return popped


_CLAIM_FIELDS = {"claim_id": 1, "claim_expires": 1}


def _unclaimed(now: float) -> Doc:
    return {"claim_expires": {"$lte": now}}  # a delayed message may be deleted


def _live_in(doc: Doc, project: str, queue: str, now: float) -> bool:
    """Is the message document, read by `_id`, the queue's and not expired?"""
    return bool(doc["project"] == project and doc["queue"] == queue and doc["expires"] > now)

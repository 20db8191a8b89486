"""The MongoDB driver's claims: messages taken through `holds`, then marked with the claim."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

from bson import ObjectId
from pymongo import ASCENDING, UpdateOne

from node.errors import ClaimDoesNotExist, QueueDoesNotExist, QueueFrozen
from node.models import Claim, DeadLetter, is_id, new_id
from node.storage.base import Messages
from node.storage.deadletters import pile
from node.storage.mongodb.blocks import block_of
from node.storage.mongodb.changes import stamped
from node.storage.mongodb.database import Database
from node.storage.mongodb.deadletters import make_pile
from node.storage.mongodb.documents import (
    Doc,
    backend,
    free_query,
    live_query,
    to_message,
    to_messages,
)
from node.storage.mongodb.fences import alongside

HOLD_SECONDS = 30.0  # how long a dead-letter move may hold its messages


class MongoClaims:
    def __init__(self, storage: Database) -> None:
        self._s = storage

    @backend()
    async def create(
        self, project: str, queue: str, *, ttl: int, grace: int, limit: int
    ) -> tuple[Claim, Messages]:
        now = self._s.clock()
        claim = Claim(id=new_id(), ttl=ttl, grace=grace, created=now, expires=now + ttl)
        cid = ObjectId(claim.id)
        record = {
            "_id": cid,
            "project": project,
            "queue": queue,
            "ttl": ttl,
            "grace": grace,
            "created": now,
            "expires": claim.expires,
        }
        # The claim's record goes in alongside the read of candidates: no round trip of its own
        # (the fence is checked first, at no cost while the queue stays open).
        await self._s.fences.check_write(project, queue)
        taken, inserted = await asyncio.gather(
            self._s.holds.take_unless_fenced(
                project, queue, holder=cid, claim=True, until=claim.expires, limit=limit, now=now
            ),
            self._s.claim_docs.insert_one(record),
            return_exceptions=True,
        )
        if isinstance(taken, BaseException) or isinstance(inserted, BaseException):
            await self._s.claim_docs.delete_one({"_id": cid})
            raise taken if isinstance(taken, BaseException) else inserted  # type: ignore[misc]
        if not taken:
            await self._s.claim_docs.delete_one({"_id": cid})
            return claim, []
        # Held now, so nobody else writes them: each is marked by `_id` in one command, and the
        # answer is what was read, as marked.
        lives_until = claim.expires + grace
        stamp = await self._s.tracking.stamp(project, queue)  # just before: see `Tracking`
        marked = []
        for doc in taken:
            changes: Doc = {
                "claim_id": cid,
                "claim_expires": claim.expires,
                **stamped(stamp),
                "claim_count": doc.get("claim_count", 0) + 1,  # held: nobody else writes it
            }
            if doc["expires"] < lives_until:
                changes.update(expires=lives_until, ttl=ttl + grace)
            marked.append(({**doc, **changes}, UpdateOne({"_id": doc["_id"]}, {"$set": changes})))
        writes: list[Awaitable[Any]] = [
            self._s.message_docs.bulk_write([update for _, update in marked], ordered=False)
        ]
        if stamp:  # the claim's own change, tracked as the messages' are (its record has none)
            writes.append(self._s.claim_docs.update_one({"_id": cid}, {"$set": stamped(stamp)}))
        result, *_ = await asyncio.gather(*writes)
        if result.matched_count < len(marked):  # some went meanwhile (a bulk delete)
            ids = [doc["_id"] for doc, _ in marked]
            left = {doc["_id"] async for doc in self._s.message_docs.find({"_id": {"$in": ids}})}
            marked = [(doc, update) for doc, update in marked if doc["_id"] in left]
        return claim, [to_message(doc) for doc, _ in marked]

    @backend()
    async def dead_letter(self, project: str, queue: str, policy: DeadLetter, *, limit: int) -> int:
        await self._s.fences.check_write(project, queue)
        if policy.queue == queue:
            return 0
        now = self._s.clock()
        query = {
            **live_query(project, queue, now),
            **free_query(now),
            "claim_count": {"$gte": policy.max_claims},
        }
        found = await self._s.blocks.find(project, queue, query, after=0, limit=limit, now=now)
        if not found:
            return 0
        # Held while they move, as a pop holds what it takes: no claim takes them meanwhile.
        token = ObjectId()
        until = now + HOLD_SECONDS
        won = set(
            await self._s.holds.acquire(
                [d["_id"] for d in found], holder=token, claim=False, until=until, now=now
            )
        )
        dead = [d for d in found if d["_id"] in won]
        try:
            if not dead:
                return 0
            dest, hold = policy.queue, None
            try:
                top, stamp = await self._s.posts.reserve(project, policy.queue, len(dead))
            except (QueueFrozen, QueueDoesNotExist):
                # Not here, or fenced: to the outgoing pile, under a hold, for the mover.
                dest, hold = pile(policy.queue), ObjectId()
                await make_pile(self._s.queue_docs, project, dest, now)
                top, stamp = await self._s.posts.reserve(project, dest, len(dead))
            first = top - len(dead) + 1
            moves = []
            for i, doc in enumerate(dead):
                changes: Doc = {
                    "queue": dest,
                    "marker": first + i,
                    "block": block_of(first + i),
                    "delay_expires": 0.0,
                    "claim_id": hold,
                    "claim_expires": 0.0,
                    **stamped(stamp),
                }
                if policy.ttl is not None:
                    changes.update(ttl=policy.ttl, expires=now + policy.ttl)
                # One document each: it is in one queue or the other, never both.
                moves.append(UpdateOne({"_id": doc["_id"], "queue": queue}, {"$set": changes}))
            await self._s.message_docs.bulk_write(moves, ordered=False)
            gone = [(d["_id"], d["marker"]) for d in dead]
            source_stamp = await self._s.tracking.stamp(project, queue)
            await self._s.tracking.bury(project, queue, source_stamp, gone, now)
            return len(dead)
        finally:
            await self._s.holds.release(token)

    @backend()
    async def get(self, project: str, queue: str, claim_id: str) -> tuple[Claim, Messages]:
        if not is_id(claim_id):
            await self._s.fences.check_read(project, queue)
            raise ClaimDoesNotExist(project, queue, claim_id)
        now = self._s.clock()
        cid = ObjectId(claim_id)
        doc = await alongside(
            self._s.fences.check_read(project, queue),
            self._s.claim_docs.find_one(
                {"_id": cid, "project": project, "queue": queue, "expires": {"$gt": now}}
            ),
        )
        if doc is None:
            raise ClaimDoesNotExist(project, queue, claim_id)
        held = self._s.message_docs.find({"claim_id": cid, "expires": {"$gt": now}})
        claim = Claim(claim_id, doc["ttl"], doc["grace"], doc["created"], doc["expires"])
        return claim, await to_messages(held.sort("marker", ASCENDING))

    @backend()
    async def update(
        self, project: str, queue: str, claim_id: str, *, ttl: int, grace: int
    ) -> None:
        if not is_id(claim_id):
            await self._s.fences.check_write(project, queue)
            raise ClaimDoesNotExist(project, queue, claim_id)
        await self._s.fences.check_write(project, queue)
        now = self._s.clock()
        cid = ObjectId(claim_id)
        stamp = await self._s.tracking.stamp(project, queue)
        doc = await self._s.claim_docs.find_one_and_update(
            {"_id": cid, "project": project, "queue": queue, "expires": {"$gt": now}},
            {"$set": {"ttl": ttl, "grace": grace, "expires": now + ttl, **stamped(stamp)}},
        )
        if doc is None:
            raise ClaimDoesNotExist(project, queue, claim_id)
        claim = Claim(claim_id, ttl, grace, doc["created"], now + ttl)
        await self._s.holds.docs.update_many({"holder": cid}, {"$set": {"expires": claim.expires}})
        await self._mark(project, queue, {"claim_id": cid, "expires": {"$gt": now}}, claim)

    @backend()
    async def delete(self, project: str, queue: str, claim_id: str) -> None:
        if not is_id(claim_id):
            await self._s.fences.check_write(project, queue)
            return
        stamp = await alongside(
            self._s.fences.check_write(project, queue), self._s.tracking.stamp(project, queue)
        )
        cid = ObjectId(claim_id)
        scope = {"project": project, "queue": queue}
        # Messages first, holds after: until then a message that looks free cannot be taken.
        released = await self._s.message_docs.update_many(
            {**scope, "claim_id": cid},
            {"$set": {"claim_id": None, "claim_expires": 0.0, **stamped(stamp)}},
        )
        if released.matched_count:  # the claim belongs to this queue
            await self._s.holds.docs.delete_many({"holder": cid})
        if (await self._s.claim_docs.delete_one({"_id": cid, **scope})).deleted_count:
            await self._s.tracking.bury_claims(project, queue, stamp, [cid], self._s.clock())

    async def _mark(
        self, project: str, queue: str, held: Doc, claim: Claim, *, extend: bool = True
    ) -> None:
        """Record `claim` on the `held` messages; each lives at least until it ends plus grace.
        `extend=False` says no held message expires before that, sparing the second update.
        Each update is stamped with a stamp taken just before it (see `Tracking`)."""
        cid = ObjectId(claim.id)
        lives_until = claim.expires + claim.grace
        stamp = await self._s.tracking.stamp(project, queue)
        await self._s.message_docs.update_many(
            held, {"$set": {"claim_id": cid, "claim_expires": claim.expires, **stamped(stamp)}}
        )
        if not extend:
            return
        # A second update stands in for `$max`, which not every server applies atomically.
        stamp = await self._s.tracking.stamp(project, queue)
        await self._s.message_docs.update_many(
            {"$and": [held, {"expires": {"$lt": lives_until}}]},
            {"$set": {"expires": lives_until, "ttl": claim.ttl + claim.grace, **stamped(stamp)}},
        )

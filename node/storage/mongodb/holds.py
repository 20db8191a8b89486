"""Exclusive holds on messages: what makes a message held by at most one live claim.

A message is taken (by a claim, a pop, or a delete) by inserting its document in `holds`, unique
per message; an expired hold is replaced by deleting that very document and inserting again. Only
the holder then writes the message's `claim_id`/`claim_expires`, which queries read. So a message
is held by at most one live claim, however many claimers race, on FerretDB 1.x too (no atomic
read-modify-write there: the unique index is the one primitive trusted on every server).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from bson import ObjectId
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError, DuplicateKeyError

from node.errors import QueueFrozen
from node.storage.mongodb.blocks import Blocks
from node.storage.mongodb.documents import Doc, duplicates, free_query, live_query
from node.storage.mongodb.fences import Fences, alongside

# How many candidates a take reads for each message it wants.
CANDIDATES = 3


class Holds:
    """Exclusive holds on messages, arbitrated by the unique index on `holds.message`.

    A hold names its `holder` (a claim id, or a token of one pop or delete), says whether the
    holder is a claim, and expires with it. Holds of deleted messages are left for
    `collect_garbage`: nobody asks for those messages again.
    """

    def __init__(
        self,
        docs: AsyncCollection[Doc],
        message_docs: AsyncCollection[Doc],
        fences: Fences,
        blocks: Blocks,
    ) -> None:
        self.docs = docs
        self._messages = message_docs
        self._fences = fences
        self._blocks = blocks

    async def take(
        self,
        project: str,
        queue: str,
        *,
        holder: ObjectId,
        claim: bool,
        until: float,
        limit: int,
        now: float,
    ) -> list[Doc]:
        """Hold up to `limit` free messages of the queue, oldest first.

        The candidates are read once (`CANDIDATES` times `limit` of them, so that racing takers
        find others when they lose the first ones), and held in turn until `limit` are. Returns
        the documents held, as read, in marker order.
        """
        query = {**live_query(project, queue, now), **free_query(now)}
        rest = await self._blocks.find(
            project, queue, query, after=0, limit=limit * CANDIDATES, now=now
        )
        taken: list[Doc] = []
        while rest and len(taken) < limit:
            batch, rest = rest[: limit - len(taken)], rest[limit - len(taken) :]
            mids = [doc["_id"] for doc in batch]
            won = set(await self.acquire(mids, holder=holder, claim=claim, until=until, now=now))
            taken += [doc for doc in batch if doc["_id"] in won]
        return sorted(taken, key=lambda doc: int(doc["marker"]))

    async def take_unless_fenced(
        self,
        project: str,
        queue: str,
        *,
        holder: ObjectId,
        claim: bool,
        until: float,
        limit: int,
        now: float,
    ) -> list[Doc]:
        """`take`, while the queue's fence is checked: if it is fenced, what was taken goes back
        and `QueueFrozen` is raised. The check costs no round trip of its own."""
        try:
            return await alongside(
                self._fences.check_write(project, queue),
                self.take(
                    project, queue, holder=holder, claim=claim, until=until, limit=limit, now=now
                ),
            )
        except QueueFrozen:
            await self.release(holder)
            raise

    async def acquire(
        self, mids: list[ObjectId], *, holder: ObjectId, claim: bool, until: float, now: float
    ) -> list[ObjectId]:
        """Hold each of `mids` that no live hold covers; return those held, in order."""

        def hold(mid: ObjectId) -> Doc:
            return {"message": mid, "holder": holder, "claim": claim, "expires": until}

        try:
            await self.docs.insert_many([hold(mid) for mid in mids], ordered=False)
            return mids
        except BulkWriteError as exc:
            busy = [mids[i] for i in duplicates(exc)]
        replaced = {
            old["message"]
            for old in await self._expired(busy, now)
            if await self._replace(old, hold)
        }
        return [mid for mid in mids if mid not in busy or mid in replaced]

    async def _expired(self, mids: list[ObjectId], now: float) -> list[Doc]:
        """The expired holds of `mids`. Where blocks are read (FerretDB over PostgreSQL, which
        filters an `$in` or a range itself, over every hold of the partition, but passes an
        equality down), each hold is read by its message, alone, all at once."""
        if not self._blocks.enabled:
            return await self.docs.find(
                {"message": {"$in": mids}, "expires": {"$lte": now}}
            ).to_list()
        found = await asyncio.gather(*(self.docs.find_one({"message": mid}) for mid in mids))
        return [old for old in found if old is not None and old["expires"] <= now]

    async def _replace(self, old: Doc, hold: Callable[[ObjectId], Doc]) -> bool:
        """Take over the message of the expired hold `old`; False if another taker was first."""
        # By its own _id: a hold another taker inserted meanwhile is never the one deleted.
        await self.docs.delete_one({"_id": old["_id"]})
        try:
            await self.docs.insert_one(hold(old["message"]))
        except DuplicateKeyError:
            return False
        return True

    async def release(self, holder: ObjectId) -> None:
        await self.docs.delete_many({"holder": holder})

    async def claimed(self, mid: ObjectId, now: float) -> bool:
        """True if a live claim holds the message."""
        hold = await self.docs.find_one({"message": mid, "expires": {"$gt": now}})
        return hold is not None and bool(hold["claim"])

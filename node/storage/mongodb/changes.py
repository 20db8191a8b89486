"""The MongoDB driver's change tracking (see `node.storage.base.TransferStore`).

A tracked queue has a document in `sequences` (its change sequence `stamp`, `forgotten`, and
`tracked`), apart from the queue's own document so that its increments never race the counter's
or the fence's updates there (FerretDB 1.x writes a whole document back). A write of a tracked
queue takes a stamp with one conditional `$inc`; a write of an untracked queue gets 0 and leaves
no trace. Deleted messages leave tombstones in `removed` (with `mid`), deleted claims too (with
`cid`); a claim document carries the stamp of its last write, as a message does. Most queues
are never tracked: a node that found a queue untracked believes it for `QUIET` seconds without
asking again (so untracked queues pay no round trip), and `track` waits that long before it
returns, so that every write starting after it asks.

A write takes its stamp just before the update (or the tombstone's insert) that carries it, and
then lands, so one in flight may land with a stamp at or below a position read meanwhile, within
one round trip (the worker reads changes after a position at least a settle interval old). Only a
post takes its stamp alongside its first step, the reservation of its markers: its insert follows
at once. A stamp taken any earlier (alongside a claim's first steps, say) could land several round
trips later on a busy server, past a position already taken as complete. FerretDB may hand a
stamp out twice, or step the sequence back, when increments race: `position` is lowered by
`MARGIN` to cover the writes racing at once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

from bson import ObjectId
from pymongo import ASCENDING, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from node.errors import ChangesLost
from node.models import Changes, Removed
from node.storage import transfer
from node.storage.mongodb.documents import Doc, to_claim, to_message

MARGIN = 64
# A message document carries its stamp's block of `STAMPS` stamps too (`stamp_block`; -1 for 0:
# untracked), and so do claim documents and tombstones. Where the server filters equalities but
# sorts in its own process (FerretDB over PostgreSQL: see `blocks`), the changes after a
# position are read a stamp block at a time, by equality (pushed down), a few at once: a sorted
# read of a range of stamps would decode every message, claim and tombstone of the queue there.
STAMPS = 64
WIDEST = 8  # stamp blocks read at once
QUIET = 0.5  # seconds a node takes a queue found untracked to stay so
QUIET_QUEUES = 10_000  # queues a node remembers as untracked, at most


def _scope(project: str, queue: str) -> Doc:
    return {"project": project, "queue": queue}


class Tracking:
    def __init__(
        self,
        db: AsyncDatabase[Doc],
        message_docs: AsyncCollection[Doc],
        claim_docs: AsyncCollection[Doc],
    ) -> None:
        self.sequences: AsyncCollection[Doc] = db["sequences"]
        self.removed: AsyncCollection[Doc] = db["removed"]
        self._messages = message_docs
        self._claims = claim_docs
        self._untracked: dict[tuple[str, str], float] = {}  # monotonic time it was asked
        self.by_stamp_block = False  # set by `Database.create_indexes` (see `STAMPS`)

    async def create_indexes(self) -> None:
        await self.sequences.create_index(
            [("project", ASCENDING), ("queue", ASCENDING)], unique=True
        )
        await self.removed.create_index(
            [("project", ASCENDING), ("queue", ASCENDING), ("stamp", ASCENDING)]
        )
        await self.removed.create_index("at")
        for docs in (self._messages, self._claims):
            await docs.create_index(
                [("project", ASCENDING), ("queue", ASCENDING), ("stamp", ASCENDING)]
            )

    # --- what writes call ------------------------------------------------------------------------

    async def stamp(self, project: str, queue: str) -> int:
        """The next value of a tracked queue's change sequence; 0 if it is not tracked."""
        key = (project, queue)
        asked = time.monotonic()
        if asked - self._untracked.get(key, -QUIET) < QUIET:
            return 0
        doc = await self.sequences.find_one_and_update(
            {**_scope(project, queue), "tracked": True},
            {"$inc": {"stamp": 1}},
            return_document=ReturnDocument.AFTER,
        )
        if doc is not None:
            return int(doc["stamp"])
        if len(self._untracked) >= QUIET_QUEUES:
            self._untracked = {k: t for k, t in self._untracked.items() if asked - t < QUIET}
        self._untracked[key] = asked  # as of when it was asked: the answer may be that old
        return 0

    async def bury(
        self, project: str, queue: str, stamp: int, gone: Sequence[tuple[ObjectId, int]], now: float
    ) -> None:
        """Tombstones for the messages `gone` (id, marker), when the write was stamped."""
        if stamp and gone:
            await self.removed.insert_many(
                [
                    {**_scope(project, queue), **stamped(stamp), "mid": mid, "marker": m, "at": now}
                    for mid, m in gone
                ]
            )

    async def bury_claims(
        self, project: str, queue: str, stamp: int, ids: Sequence[ObjectId], now: float
    ) -> None:
        """Tombstones for the claims `ids` deleted by a write stamped `stamp` (0: untracked)."""
        if stamp and ids:
            await self.removed.insert_many(
                [{**_scope(project, queue), **stamped(stamp), "cid": cid, "at": now} for cid in ids]
            )

    async def forget(self, project: str, queue: str) -> None:
        """The queue was purged: its changes so far can no longer be told."""
        stamp = await self.stamp(project, queue)
        if stamp:
            await self.sequences.update_one(
                {**_scope(project, queue), "forgotten": {"$lt": stamp}},
                {"$set": {"forgotten": stamp}},
            )

    async def end(self, project: str, queue: str) -> None:
        """The queue's record went: so does its tracking."""
        await self.sequences.delete_one(_scope(project, queue))

    async def collect(self, before: float) -> int:
        """Collect the tombstones from before `before`; positions they covered are forgotten."""
        tops: dict[tuple[str, str], int] = {}
        ids = []
        async for doc in self.removed.find({"at": {"$lte": before}}, {"stamp": 1, **_FIELDS}):
            key = (doc["project"], doc["queue"])
            tops[key] = max(tops.get(key, 0), int(doc["stamp"]))
            ids.append(doc["_id"])
        for (project, queue), stamp in tops.items():
            await self.sequences.update_one(
                {**_scope(project, queue), "forgotten": {"$lt": stamp}},
                {"$set": {"forgotten": stamp}},
            )
        if ids:
            await self.removed.delete_many({"_id": {"$in": ids}})
        return len(ids)

    # --- what the transfer calls -----------------------------------------------------------------

    async def track(self, project: str, queue: str, enabled: bool) -> None:
        key = _scope(project, queue)
        fresh = {"stamp": 0, "forgotten": 0}
        try:
            await self.sequences.update_one(
                key, {"$set": {"tracked": enabled}, "$setOnInsert": fresh}, upsert=True
            )
        except DuplicateKeyError:  # a concurrent call inserted it first
            await self.sequences.update_one(key, {"$set": {"tracked": enabled}})
        self._untracked.pop((project, queue), None)
        if enabled:  # until every node's belief that it is untracked has expired
            await asyncio.sleep(QUIET)

    async def position(self, project: str, queue: str) -> int:
        doc = await self.sequences.find_one(_scope(project, queue))
        return 0 if doc is None else _lowered(doc)

    async def changes(
        self, project: str, queue: str, since: int, limit: int, now: float
    ) -> Changes:
        doc = await self.sequences.find_one(_scope(project, queue))
        if doc is None or not doc["tracked"] or not doc["forgotten"] <= since <= doc["stamp"]:
            raise ChangesLost(f"changes of queue {queue} after {since} cannot be told")
        after = {**_scope(project, queue), "stamp": {"$gt": since}}
        # Four streams: messages written, messages deleted, claims written, claims deleted.
        streams: list[tuple[AsyncCollection[Doc], Doc]] = [
            (self._messages, {}),
            (self.removed, {"mid": {"$exists": True}}),
            (self._claims, {}),
            (self.removed, {"cid": {"$exists": True}}),
        ]
        if self.by_stamp_block:
            top = int(doc["stamp"])
            reads = [
                self._stamp_blocks(coll, project, queue, since, top, limit, kind)
                for coll, kind in streams
            ]
            pages = list(await asyncio.gather(*reads))
        else:
            pages = [await self._page(coll, {**after, **kind}, limit) for coll, kind in streams]
        full = [int(rows[-1]["stamp"]) for rows in pages if len(rows) == limit]
        upto, more = max(since, _lowered(doc)), bool(full)
        if more:
            # Up to the smaller last stamp of a full page, and all of that stamp's write.
            upto = min(full)
            exactly = {**_scope(project, queue), "stamp": upto}
            pages = [
                [d for d in rows if d["stamp"] < upto]
                + [d async for d in coll.find({**exactly, **kind})]
                for (coll, kind), rows in zip(streams, pages, strict=True)
            ]
        messages, removed, claims, released = pages
        return Changes(
            messages=tuple(transfer.exported(to_message(m), now) for m in messages),
            removed=tuple(Removed(str(r["mid"]), int(r["marker"])) for r in removed),
            upto=upto,
            more=more,
            claims=tuple(to_claim(c) for c in claims),
            released=tuple(str(r["cid"]) for r in released),
        )

    async def _stamp_blocks(
        self,
        coll: AsyncCollection[Doc],
        project: str,
        queue: str,
        since: int,
        top: int,
        limit: int,
        kind: Doc,
    ) -> list[Doc]:
        """The documents of `coll` (those with the fields `kind` names) written after `since`,
        in stamp order, up to `limit`, read by stamp blocks (see `STAMPS`); the sequence is at
        `top` (a stamp FerretDB stepped back is at most `MARGIN` above it)."""
        found: list[Doc] = []
        at, last = (since + 1) // STAMPS, (top + MARGIN) // STAMPS
        while at <= last and len(found) < limit:  # whole blocks: the first `limit` are in them
            blocks = range(at, min(at + WIDEST, last + 1))
            reads = [
                coll.find({**_scope(project, queue), "stamp_block": b}).to_list() for b in blocks
            ]
            found += [
                d
                for docs in await asyncio.gather(*reads)
                for d in docs
                if d["stamp"] > since and all(name in d for name in kind)
            ]
            at = blocks.stop
        return sorted(found, key=lambda d: int(d["stamp"]))[:limit]

    @staticmethod
    async def _page(coll: AsyncCollection[Doc], query: Doc, limit: int) -> list[Doc]:
        return [doc async for doc in coll.find(query).sort("stamp", ASCENDING).limit(limit)]


_FIELDS: dict[str, Any] = {"project": 1, "queue": 1}


def stamped(stamp: int) -> Doc:
    """The fields of a message document that say which write stamped it last (see `STAMPS`)."""
    return {"stamp": stamp, "stamp_block": stamp // STAMPS if stamp else -1}


def _lowered(doc: Doc) -> int:
    return max(int(doc["stamp"]) - MARGIN, int(doc["forgotten"]), 0)

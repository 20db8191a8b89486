"""The MongoDB driver's `TransferStore`: a queue copied out and in, over its fences
(`node.storage.mongodb.fences`) and change tracking (`node.storage.mongodb.changes`).

Imports and catch-up deletes on a tracked queue are stamped and leave tombstones like any write.

Imports compare what they bring with what is stored and write only the difference. A duplicate
`_id` on insert is an earlier import landing late (a timed-out write may still commit): it is
overwritten. Any other duplicate is a marker held by another message: `TransferConflict`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from bson import ObjectId
from pymongo import ASCENDING, ReplaceOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError, DuplicateKeyError

from node.errors import QueueDoesNotExist, TransferConflict
from node.models import (
    Changes,
    Claim,
    Message,
    MessageRow,
    QueueDigest,
    QueueExport,
    is_id,
)
from node.storage import transfer
from node.storage.mongodb.blocks import block_of
from node.storage.mongodb.changes import stamped
from node.storage.mongodb.database import Database
from node.storage.mongodb.documents import (
    Doc,
    backend,
    duplicates,
    live_query,
    queue_key,
    to_claim,
    to_message,
)


def _scope(project: str, queue: str) -> Doc:
    """The documents of one queue, in `fences`, `messages` and `claims`."""
    return {"project": project, "queue": queue}


def _message_doc(project: str, queue: str, m: MessageRow) -> Doc:
    return {
        "_id": ObjectId(m.id),
        "project": project,
        "queue": queue,
        "marker": m.marker,
        "block": block_of(m.marker),
        "body": m.body,
        "ttl": m.ttl,
        "created": m.created,
        "expires": m.expires,
        "delay_expires": m.delay_expires,
        "client_id": m.client_id,
        "claim_id": None if m.claim_id is None else ObjectId(m.claim_id),
        "claim_expires": m.claim_expires,
        "claim_count": m.claim_count,
    }


def _row(doc: Doc, now: float) -> MessageRow:
    """A stored message as a row; a claim that has expired is no claim (`transfer.exported`)."""
    claimed = doc.get("claim_id") is not None and doc["claim_expires"] > now
    return MessageRow(
        str(doc["_id"]),
        doc["marker"],
        doc["body"],
        doc["ttl"],
        doc["created"],
        doc["expires"],
        doc["client_id"],
        doc["delay_expires"],
        str(doc["claim_id"]) if claimed else None,
        doc["claim_expires"] if claimed else 0.0,
        doc.get("claim_count", 0),
    )


def _claim_doc(project: str, queue: str, c: Claim) -> Doc:
    return {
        "_id": ObjectId(c.id),
        "project": project,
        "queue": queue,
        "ttl": c.ttl,
        "grace": c.grace,
        "created": c.created,
        "expires": c.expires,
    }


Lookup = Callable[[list[Doc]], Awaitable[dict[Any, Doc]]]


async def _upsert(
    coll: AsyncCollection[Doc],
    project: str,
    queue: str,
    docs: list[Doc],
    stamp: Callable[[], Awaitable[int]] | None = None,
    lookup: Lookup | None = None,
) -> int:
    """Insert the documents that are new and replace those that differ; return how many. With
    `stamp`, what is written is stamped with what it gives (taken before the writes).

    The documents are inserted first: only those refused as duplicates are read back (with
    `lookup`, else by `_id`) and compared, so a bulk copy into an empty queue reads nothing
    (FerretDB filters an `_id` `$in` itself, over the whole partition)."""
    if not docs:
        return 0
    value = None if stamp is None else await stamp()
    fresh = docs if value is None else [{**doc, **stamped(value)} for doc in docs]
    try:
        try:
            await coll.insert_many(fresh, ordered=False)
            return len(docs)
        except BulkWriteError as exc:
            refused = sorted(duplicates(exc))
            if lookup is None:
                ids = [docs[i]["_id"] for i in refused]
                stored = {d["_id"]: d async for d in coll.find({"_id": {"$in": ids}})}
            else:
                stored = await lookup([docs[i] for i in refused])
            for i in refused:
                old = stored.get(docs[i]["_id"])
                if old is None:
                    message = f"{coll.name}: a marker belongs to another message"
                    raise TransferConflict(message) from exc
                if (old["project"], old["queue"]) != (project, queue):
                    raise TransferConflict(f"{old['_id']} belongs to queue {old['queue']}") from exc
            # A duplicate `_id` of this queue: an earlier import (maybe one landing late).
            changed = [
                fresh[i]
                for i in refused
                if any(stored[docs[i]["_id"]].get(k) != v for k, v in docs[i].items())
            ]
            if changed:
                await coll.bulk_write([ReplaceOne({"_id": d["_id"]}, d) for d in changed])
            return len(docs) - len(refused) + len(changed)
    except (BulkWriteError, DuplicateKeyError) as exc:
        raise TransferConflict(f"{coll.name}: {exc}") from exc


async def _delete(coll: AsyncCollection[Doc], project: str, queue: str, ids: Sequence[str]) -> int:
    oids = [ObjectId(i) for i in ids if is_id(i)]
    if not oids:
        return 0
    return (await coll.delete_many({**_scope(project, queue), "_id": {"$in": oids}})).deleted_count


class MongoTransfer:
    def __init__(self, storage: Database) -> None:
        self._s = storage

    @backend()
    async def freeze(
        self, project: str, queue: str, reason: str, *, lasts: float | None = None
    ) -> None:
        transfer.check_reason(reason)
        await self._s.fences.put(project, queue, reason, lasts)

    @backend()
    async def extend(self, project: str, queue: str, lasts: float) -> bool:
        return await self._s.fences.extend(project, queue, lasts)

    @backend()
    async def unfreeze(self, project: str, queue: str) -> None:
        await self._s.fences.lift(project, queue)
        self._s.posts.forget(project, queue)

    @backend()
    async def fence(self, project: str, queue: str) -> str | None:
        return await self._s.fences.reason(project, queue)

    @backend()
    async def track(self, project: str, queue: str, enabled: bool) -> None:
        if await self._s.queue_docs.find_one(queue_key(project, queue), {"_id": 1}) is None:
            raise QueueDoesNotExist(project, queue)
        await self._s.tracking.track(project, queue, enabled)

    @backend()
    async def sequence(self, project: str, queue: str) -> int:
        return await self._s.tracking.position(project, queue)

    @backend()
    async def changes(self, project: str, queue: str, *, since: int, limit: int) -> Changes:
        transfer.check_limit(limit)
        return await self._s.tracking.changes(project, queue, since, limit, self._s.clock())

    @backend()
    async def fingerprints(
        self, project: str, queue: str, *, after_marker: int, limit: int
    ) -> list[tuple[int, int]]:
        if limit <= 0:  # MongoDB reads limit 0 as "no limit"
            return []
        now = self._s.clock()
        fields = {
            "marker": 1,
            "body": 1,
            "expires": 1,
            "claim_id": 1,
            "claim_expires": 1,
            "claim_count": 1,
        }
        found = await self._s.blocks.ranged(
            project,
            queue,
            live_query(project, queue, now),
            after=after_marker,
            limit=limit,
            fields=fields,
        )
        return [
            (
                int(d["marker"]),
                transfer.fingerprint(
                    str(d["_id"]),
                    int(d["marker"]),
                    d["body"],
                    d["expires"],
                    None if d.get("claim_id") is None else str(d["claim_id"]),
                    d["claim_expires"],
                    now,
                    d.get("claim_count", 0),
                ),
            )
            for d in found
        ]

    @backend()
    async def export_queue(self, project: str, queue: str) -> QueueExport | None:
        doc, reason = await asyncio.gather(
            self._s.queue_docs.find_one(queue_key(project, queue)),
            self._s.fences.reason(project, queue),
        )
        if doc is None:
            return None
        # Past a lost update of the counter (FerretDB), the highest marker stored says more.
        above = await self._s.blocks.highest(project, queue, int(doc["counter"]))
        return QueueExport(
            metadata=json.loads(doc["metadata"]),
            counter=int(doc["counter"]) if above is None else above,
            created=doc["created"],
            fence=reason,
        )

    @backend()
    async def export_messages(
        self, project: str, queue: str, *, after_marker: int, limit: int
    ) -> list[Message]:
        if limit <= 0:  # MongoDB reads limit 0 as "no limit"
            return []
        now = self._s.clock()
        found = await self._s.blocks.ranged(
            project, queue, live_query(project, queue, now), after=after_marker, limit=limit
        )
        return [transfer.exported(to_message(doc), now) for doc in found]

    @backend()
    async def export_rows(
        self, project: str, queue: str, *, after_marker: int, limit: int
    ) -> list[MessageRow]:
        if limit <= 0:  # MongoDB reads limit 0 as "no limit"
            return []
        now = self._s.clock()
        found = await self._s.blocks.ranged(
            project, queue, live_query(project, queue, now), after=after_marker, limit=limit
        )
        return [_row(doc, now) for doc in found]

    @backend()
    async def export_claims(
        self, project: str, queue: str, *, ids: Sequence[str] | None = None
    ) -> list[Claim]:
        now = self._s.clock()
        if ids is not None and self._s.blocks.enabled:
            found = await self._claims_alone([ObjectId(i) for i in ids if is_id(i)])
            live = [
                d
                for d in found.values()
                if _scope(d["project"], d["queue"]) == _scope(project, queue) and d["expires"] > now
            ]
            return [to_claim(d) for d in sorted(live, key=lambda d: (d["created"], d["_id"]))]
        query = {**_scope(project, queue), "expires": {"$gt": now}}
        if ids is not None:
            query["_id"] = {"$in": [ObjectId(i) for i in ids if is_id(i)]}
        cursor = self._s.claim_docs.find(query).sort([("created", ASCENDING), ("_id", ASCENDING)])
        return [to_claim(d) async for d in cursor]

    async def _claims_alone(self, ids: Sequence[Any]) -> dict[Any, Doc]:
        """The claim documents with these `_id`s, each read alone, all at once: FerretDB filters
        an `$in` itself, over every claim of the partition, but passes an `_id` alone down."""
        found = await asyncio.gather(*(self._s.claim_docs.find_one({"_id": i}) for i in ids))
        return {doc["_id"]: doc for doc in found if doc is not None}

    @backend()
    async def import_queue(self, project: str, queue: str, export: QueueExport) -> None:
        key = queue_key(project, queue)
        fields = {"metadata": json.dumps(export.metadata), "created": export.created}
        # A tombstone here becomes a fenced queue: its fence is copied onto the new document.
        fresh = {"counter": export.counter, "fence": await self._s.fences.reason(project, queue)}
        try:
            await self._s.queue_docs.update_one(
                key, {"$set": fields, "$setOnInsert": fresh}, upsert=True
            )
        except DuplicateKeyError:  # inserted meanwhile: update it
            await self._s.queue_docs.update_one(key, {"$set": fields})
        await self._raise_counter(project, queue, export.counter)

    async def _raise_counter(self, project: str, queue: str, counter: int) -> None:
        self._s.posts.forget(project, queue)  # imported markers: this node's floor is stale
        key = queue_key(project, queue)
        doc = await self._s.queue_docs.find_one(key, {"counter": 1})
        if doc is None:
            raise QueueDoesNotExist(project, queue)
        if doc["counter"] < counter:
            await self._s.queue_docs.update_one(
                {**key, "counter": {"$lt": counter}}, {"$set": {"counter": counter}}
            )

    @backend()
    async def import_messages(self, project: str, queue: str, messages: Sequence[Message]) -> int:
        return await self.import_rows(project, queue, [transfer.row(m) for m in messages])

    @backend()
    async def import_rows(self, project: str, queue: str, messages: Sequence[MessageRow]) -> int:
        transfer.check_ids([m.id for m in messages])
        await self._raise_counter(project, queue, max((m.marker for m in messages), default=0))
        docs = [_message_doc(project, queue, m) for m in messages]

        def stamp() -> Awaitable[int]:
            return self._s.tracking.stamp(project, queue)

        def lookup(refused: list[Doc]) -> Awaitable[dict[Any, Doc]]:
            return self._s.blocks.holding(project, queue, refused)

        return await _upsert(self._s.message_docs, project, queue, docs, stamp, lookup)

    @backend()
    async def import_claims(self, project: str, queue: str, claims: Sequence[Claim]) -> int:
        transfer.check_ids([c.id for c in claims])
        docs = [_claim_doc(project, queue, c) for c in claims]

        def stamp() -> Awaitable[int]:
            return self._s.tracking.stamp(project, queue)

        def lookup(refused: list[Doc]) -> Awaitable[dict[Any, Doc]]:
            return self._claims_alone([doc["_id"] for doc in refused])

        alone = lookup if self._s.blocks.enabled else None
        return await _upsert(self._s.claim_docs, project, queue, docs, stamp, alone)

    @backend()
    async def delete_messages(self, project: str, queue: str, ids: Sequence[str]) -> int:
        oids = [ObjectId(i) for i in ids if is_id(i)]
        if self._s.blocks.enabled:
            return await self._delete_each(project, queue, oids)
        query = {**_scope(project, queue), "_id": {"$in": oids}}
        gone = [(d["_id"], d["marker"]) async for d in self._s.message_docs.find(query)]
        if not gone:
            return 0
        stamp = await self._s.tracking.stamp(project, queue)
        await self._s.tracking.bury(project, queue, stamp, gone, self._s.clock())
        return await _delete(self._s.message_docs, project, queue, [str(g[0]) for g in gone])

    async def _delete_each(self, project: str, queue: str, oids: list[ObjectId]) -> int:
        """`delete_messages` where the server filters an `$in` itself, over the whole partition
        (FerretDB), but passes equalities down: each id read, then deleted, alone, all at
        once."""
        scope = _scope(project, queue)
        docs = self._s.message_docs
        found = await asyncio.gather(
            *(docs.find_one({"_id": o, **scope}, {"marker": 1}) for o in oids)
        )
        gone = [(d["_id"], d["marker"]) for d in found if d is not None]
        if not gone:
            return 0
        stamp = await self._s.tracking.stamp(project, queue)
        await self._s.tracking.bury(project, queue, stamp, gone, self._s.clock())
        done = await asyncio.gather(*(docs.delete_one({"_id": g[0], **scope}) for g in gone))
        return sum(d.deleted_count for d in done)

    @backend()
    async def delete_claims(self, project: str, queue: str, ids: Sequence[str]) -> int:
        query = {**_scope(project, queue), "_id": {"$in": [ObjectId(i) for i in ids if is_id(i)]}}
        gone = [d["_id"] async for d in self._s.claim_docs.find(query, {"_id": 1})]
        if not gone:
            return 0
        stamp = await self._s.tracking.stamp(project, queue)
        await self._s.tracking.bury_claims(project, queue, stamp, gone, self._s.clock())
        return await _delete(self._s.claim_docs, project, queue, [str(g) for g in gone])

    async def _drop_blocks(self, project: str, queue: str, some: list[Doc], limit: int) -> int:
        """Delete up to `limit` of the queue's messages, among the blocks holding `some` of them:
        whole blocks by equality where they fit, else ids alone (FerretDB filters an `_id`
        `$in` itself, over the whole partition); how many went."""
        scope = _scope(project, queue)
        docs = self._s.message_docs
        blocks = sorted({doc["block"] for doc in some})
        read = await asyncio.gather(
            *(docs.find({**scope, "block": b}, {"_id": 1}).to_list() for b in blocks)
        )
        whole: list[int] = []
        alone: list[ObjectId] = []
        total = 0
        for b, held in zip(blocks, read, strict=True):
            if total + len(held) > limit:
                if not whole:  # the first block alone is more than `limit`
                    alone = [doc["_id"] for doc in held][:limit]
                break
            whole.append(b)
            total += len(held)
        await asyncio.gather(
            *(docs.delete_many({**scope, "block": b}) for b in whole),
            *(docs.delete_one({**scope, "_id": i}) for i in alone),
        )
        return total + len(alone)

    async def digest(self, project: str, queue: str) -> QueueDigest:
        return await transfer.digest(self, project, queue)

    @backend()
    async def drop(self, project: str, queue: str, *, limit: int) -> int:
        transfer.check_limit(limit)
        scope = _scope(project, queue)
        found = 0
        for coll in (self._s.message_docs, self._s.claim_docs):
            if found < limit:
                cursor = coll.find(scope, {"_id": 1, "block": 1}).limit(limit - found)
                some = [doc async for doc in cursor]
                numbered = all("block" in doc for doc in some)
                if some and numbered and coll is self._s.message_docs and self._s.blocks.enabled:
                    found += await self._drop_blocks(project, queue, some, limit - found)
                elif some:
                    await coll.delete_many({"_id": {"$in": [doc["_id"] for doc in some]}})
                    found += len(some)
        if found:  # counted as found: gone, whether this call or a concurrent one removed them
            return found
        # The queue's record last, with its few subscriptions.
        subscriptions = {"project": project, "source": queue}
        gone = (await self._s.subscription_docs.delete_many(subscriptions)).deleted_count
        gone += (await self._s.queue_docs.delete_one(queue_key(project, queue))).deleted_count
        await self._s.tracking.end(project, queue)
        return gone

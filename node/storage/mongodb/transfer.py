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

from bson import ObjectId
from pymongo import ASCENDING, DESCENDING, ReplaceOne
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
from node.storage.mongodb.database import Database
from node.storage.mongodb.documents import (
    Doc,
    backend,
    duplicates,
    live_query,
    queue_key,
    to_claim,
    to_messages,
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


async def _upsert(
    coll: AsyncCollection[Doc],
    project: str,
    queue: str,
    docs: list[Doc],
    stamp: Callable[[], Awaitable[int]] | None = None,
) -> int:
    """Insert the documents that are new and replace those that differ; return how many. With
    `stamp`, what is written is stamped with what it gives (called only if anything is)."""
    if not docs:
        return 0
    ids = [doc["_id"] for doc in docs]
    stored = {doc["_id"]: doc async for doc in coll.find({"_id": {"$in": ids}})}
    for old in stored.values():
        if (old["project"], old["queue"]) != (project, queue):
            raise TransferConflict(f"{old['_id']} belongs to queue {old['queue']}")
    changed = [
        doc
        for doc in docs
        if doc["_id"] in stored and any(stored[doc["_id"]].get(k) != v for k, v in doc.items())
    ]
    new = [doc for doc in docs if doc["_id"] not in stored]
    written = len(changed) + len(new)
    if stamp is not None and written:
        value = await stamp()
        changed = [{**doc, "stamp": value} for doc in changed]
        new = [{**doc, "stamp": value} for doc in new]
    try:
        if new:
            try:
                await coll.insert_many(new, ordered=False)
            except BulkWriteError as exc:
                refused = [new[i] for i in duplicates(exc)]
                late = {
                    doc["_id"]
                    async for doc in coll.find(
                        {"_id": {"$in": [d["_id"] for d in refused]}, **_scope(project, queue)},
                        {"_id": 1},
                    )
                }
                if any(doc["_id"] not in late for doc in refused):
                    message = f"{coll.name}: a marker belongs to another message"
                    raise TransferConflict(message) from exc
                changed += refused
        if changed:
            await coll.bulk_write([ReplaceOne({"_id": d["_id"]}, d) for d in changed])
    except (BulkWriteError, DuplicateKeyError) as exc:
        raise TransferConflict(f"{coll.name}: {exc}") from exc
    return written


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
        query = {**live_query(project, queue, now), "marker": {"$gt": after_marker}}
        fields = {
            "marker": 1,
            "body": 1,
            "expires": 1,
            "claim_id": 1,
            "claim_expires": 1,
            "claim_count": 1,
        }
        cursor = self._s.message_docs.find(query, fields).sort("marker", ASCENDING).limit(limit)
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
            async for d in cursor
        ]

    @backend()
    async def export_queue(self, project: str, queue: str) -> QueueExport | None:
        doc, top, reason = await asyncio.gather(
            self._s.queue_docs.find_one(queue_key(project, queue)),
            self._s.message_docs.find_one(
                _scope(project, queue), {"marker": 1}, sort=[("marker", DESCENDING)]
            ),
            self._s.fences.reason(project, queue),
        )
        if doc is None:
            return None
        return QueueExport(
            metadata=json.loads(doc["metadata"]),
            # Past a lost update of the counter (FerretDB), the highest marker stored says more.
            counter=max(int(doc["counter"]), 0 if top is None else int(top["marker"])),
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
        query = {**live_query(project, queue, now), "marker": {"$gt": after_marker}}
        cursor = self._s.message_docs.find(query).sort("marker", ASCENDING).limit(limit)
        return [transfer.exported(m, now) for m in await to_messages(cursor)]

    @backend()
    async def export_rows(
        self, project: str, queue: str, *, after_marker: int, limit: int
    ) -> list[MessageRow]:
        if limit <= 0:  # MongoDB reads limit 0 as "no limit"
            return []
        now = self._s.clock()
        query = {**live_query(project, queue, now), "marker": {"$gt": after_marker}}
        cursor = self._s.message_docs.find(query).sort("marker", ASCENDING).limit(limit)
        return [_row(doc, now) async for doc in cursor]

    @backend()
    async def export_claims(
        self, project: str, queue: str, *, ids: Sequence[str] | None = None
    ) -> list[Claim]:
        query = {**_scope(project, queue), "expires": {"$gt": self._s.clock()}}
        if ids is not None:
            query["_id"] = {"$in": [ObjectId(i) for i in ids if is_id(i)]}
        cursor = self._s.claim_docs.find(query).sort([("created", ASCENDING), ("_id", ASCENDING)])
        return [to_claim(d) async for d in cursor]

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

        return await _upsert(self._s.message_docs, project, queue, docs, stamp)

    @backend()
    async def import_claims(self, project: str, queue: str, claims: Sequence[Claim]) -> int:
        transfer.check_ids([c.id for c in claims])
        docs = [_claim_doc(project, queue, c) for c in claims]

        def stamp() -> Awaitable[int]:
            return self._s.tracking.stamp(project, queue)

        return await _upsert(self._s.claim_docs, project, queue, docs, stamp)

    @backend()
    async def delete_messages(self, project: str, queue: str, ids: Sequence[str]) -> int:
        oids = [ObjectId(i) for i in ids if is_id(i)]
        query = {**_scope(project, queue), "_id": {"$in": oids}}
        gone = [(d["_id"], d["marker"]) async for d in self._s.message_docs.find(query)]
        if not gone:
            return 0
        stamp = await self._s.tracking.stamp(project, queue)
        await self._s.tracking.bury(project, queue, stamp, gone, self._s.clock())
        return await _delete(self._s.message_docs, project, queue, [str(g[0]) for g in gone])

    @backend()
    async def delete_claims(self, project: str, queue: str, ids: Sequence[str]) -> int:
        query = {**_scope(project, queue), "_id": {"$in": [ObjectId(i) for i in ids if is_id(i)]}}
        gone = [d["_id"] async for d in self._s.claim_docs.find(query, {"_id": 1})]
        if not gone:
            return 0
        stamp = await self._s.tracking.stamp(project, queue)
        await self._s.tracking.bury_claims(project, queue, stamp, gone, self._s.clock())
        return await _delete(self._s.claim_docs, project, queue, [str(g) for g in gone])

    async def digest(self, project: str, queue: str) -> QueueDigest:
        return await transfer.digest(self, project, queue)

    @backend()
    async def drop(self, project: str, queue: str, *, limit: int) -> int:
        transfer.check_limit(limit)
        scope = _scope(project, queue)
        found = 0
        for coll in (self._s.message_docs, self._s.claim_docs):
            if found < limit:
                cursor = coll.find(scope, {"_id": 1}).limit(limit - found)
                ids = [doc["_id"] async for doc in cursor]
                if ids:
                    await coll.delete_many({"_id": {"$in": ids}})
                    found += len(ids)
        if found:  # counted as found: gone, whether this call or a concurrent one removed them
            return found
        # The queue's record last, with its few subscriptions.
        subscriptions = {"project": project, "source": queue}
        gone = (await self._s.subscription_docs.delete_many(subscriptions)).deleted_count
        gone += (await self._s.queue_docs.delete_one(queue_key(project, queue))).deleted_count
        await self._s.tracking.end(project, queue)
        return gone

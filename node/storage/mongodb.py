"""The MongoDB driver: one database per partition, over pymongo's native asyncio client.

It runs on MongoDB and on FerretDB 1.x, so correctness rests on no transactions, no TTL indexes
and no atomic read-modify-write: FerretDB 1.x applies `$inc`, or an `update_many` whose filter says
"still free", as a read followed by a blind write. Expiry is checked in every query against the
injected clock; `collect_garbage` deletes what has expired. The one primitive trusted on every
server is the unique index (an insert that collides fails), and it arbitrates twice:

- Holds. A message is taken (by a claim, a pop, or a delete) by inserting its document in
  `holds`, unique per message; an expired hold is replaced by deleting that very document and
  inserting again. Only the holder then writes the message's `claim_id`/`claim_expires`, which
  queries read. So a message is held by at most one live claim, however many claimers race.
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

Fences (a queue frozen for a migration, or moved away) live in `fences`, with a copy on the
queue's document that `post` checks in its reservation; see `node.storage.mongodb_transfer` for
what is atomic and what is not. Writes of a queue whose changes are tracked take a stamp just
before the update that carries it (`node.storage.mongodb_changes`).

Bodies and metadata are stored as JSON text: they round-trip exactly as in the SQLite driver,
whatever their keys (`$x`, `a.b`) or numbers (beyond 64 bits).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import parse_qs, urlsplit

from bson import ObjectId
from pymongo import ASCENDING, DESCENDING, AsyncMongoClient, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError, DuplicateKeyError

from node.errors import (
    ClaimDoesNotExist,
    InvalidClaim,
    MessageDoesNotExist,
    MessageIsClaimed,
    MessageNotClaimed,
    QueueDoesNotExist,
    QueueFrozen,
    StorageUnavailable,
)
from node.models import (
    Claim,
    Message,
    MessageSummary,
    NewMessage,
    QueueInfo,
    QueueStats,
    is_id,
    new_id,
)
from node.storage.base import Ids, Messages, Queues
from node.storage.mongodb_changes import Tracking
from node.storage.mongodb_documents import (
    Doc,
    backend,
    duplicates,
    free_query,
    live_query,
    object_ids,
    queue_key,
    to_messages,
)
from node.storage.mongodb_transfer import Fences, MongoTransfer, alongside
from node.storage.transfer import TOMBSTONE_RETENTION

Clock = Callable[[], float]

DEFAULT_DATABASE = "marconi"
# Applied unless the URI sets them: a dead server fails a request in seconds, not minutes.
CLIENT_DEFAULTS: Doc = {
    "serverSelectionTimeoutMS": 5000,
    "connectTimeoutMS": 5000,
    "socketTimeoutMS": 30000,
    "appname": "marconi-node",
}
# How long a pop or a delete may hold messages before others may take them over (its process died).
REMOVAL_LEASE = 30.0
POST_ATTEMPTS = 8


def _client_options(uri: str) -> Doc:
    given = {key.lower() for key in parse_qs(urlsplit(uri).query)}
    return {k: v for k, v in CLIENT_DEFAULTS.items() if k.lower() not in given}


class MongoStorage:
    """`node.storage.base.Storage` over one MongoDB database."""

    def __init__(self, client: AsyncMongoClient[Doc], database: str, clock: Clock) -> None:
        self.clock = clock
        self._client = client
        db = client[database]
        self.database = database
        self.queue_docs: AsyncCollection[Doc] = db["queues"]
        self.message_docs: AsyncCollection[Doc] = db["messages"]
        self.claim_docs: AsyncCollection[Doc] = db["claims"]
        self.holds = Holds(self, db["holds"])
        self.fences = Fences(db["fences"], self.queue_docs)
        self.tracking = Tracking(db, self.message_docs)
        self.queues = MongoQueues(self)
        self.messages = MongoMessages(self)
        self.claims = MongoClaims(self)
        self.transfer = MongoTransfer(self)

    @classmethod
    async def open(cls, uri: str, clock: Clock = time.time) -> MongoStorage:
        """Connect to `mongodb://host/database` ("marconi" when absent) and create the indexes."""
        async with backend():
            client: AsyncMongoClient[Doc] = AsyncMongoClient(uri, **_client_options(uri))
            storage = cls(client, client.get_default_database(DEFAULT_DATABASE).name, clock)
            try:
                await storage._create_indexes()
            except BaseException:
                await client.close()
                raise
            return storage

    async def _create_indexes(self) -> None:
        # Plain indexes only: expiry is enforced by the queries, never by a TTL index.
        await self.queue_docs.create_index(
            [("project", ASCENDING), ("name", ASCENDING)], unique=True
        )
        await self.message_docs.create_index(
            [("project", ASCENDING), ("queue", ASCENDING), ("marker", ASCENDING)], unique=True
        )
        await self.message_docs.create_index("claim_id")
        await self.message_docs.create_index("expires")
        await self.claim_docs.create_index("expires")
        await self.claim_docs.create_index([("project", ASCENDING), ("queue", ASCENDING)])
        await self.fences.docs.create_index(
            [("project", ASCENDING), ("queue", ASCENDING)], unique=True
        )
        await self.holds.docs.create_index("message", unique=True)
        await self.holds.docs.create_index("holder")
        await self.tracking.create_indexes()

    async def ping(self) -> bool:
        try:
            async with backend():
                await self._client[self.database].command("ping")
        except StorageUnavailable:
            return False
        return True

    @backend()
    async def collect_garbage(self) -> int:
        now = self.clock()
        expired = {"expires": {"$lte": now}}
        gone = (await self.message_docs.delete_many(expired)).deleted_count
        gone += (await self.claim_docs.delete_many(expired)).deleted_count
        await self.holds.docs.delete_many(expired)  # bookkeeping, not counted as records
        await self.tracking.collect(now - TOMBSTONE_RETENTION)  # bookkeeping too
        return gone

    async def close(self) -> None:
        async with backend():
            await self._client.close()


class Holds:
    """Exclusive holds on messages, arbitrated by the unique index on `holds.message`.

    A hold names its `holder` (a claim id, or a token of one pop or delete), says whether the
    holder is a claim, and expires with it. Holds of deleted messages are left for
    `collect_garbage`: nobody asks for those messages again.
    """

    def __init__(self, storage: MongoStorage, docs: AsyncCollection[Doc]) -> None:
        self._s = storage
        self.docs = docs

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

        Returns them in marker order as `{_id, marker, expires}` documents.
        """
        taken: list[Doc] = []
        after = 0
        while len(taken) < limit:
            query = {**live_query(project, queue, now), **free_query(now), "marker": {"$gt": after}}
            fields = {"marker": 1, "expires": 1}
            cursor = self._s.message_docs.find(query, fields).sort("marker", ASCENDING)
            batch = [doc async for doc in cursor.limit(limit - len(taken))]
            if not batch:
                break
            after = batch[-1]["marker"]
            # Candidates others took meanwhile are skipped; the next batch replaces them.
            mids = [doc["_id"] for doc in batch]
            won = await self.acquire(mids, holder=holder, claim=claim, until=until, now=now)
            taken += [doc for doc in batch if doc["_id"] in won]
        return taken

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
                self._s.fences.check_write(project, queue),
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
        expired = self.docs.find({"message": {"$in": busy}, "expires": {"$lte": now}})
        replaced = {old["message"] async for old in expired if await self._replace(old, hold)}
        return [mid for mid in mids if mid not in busy or mid in replaced]

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


class MongoQueues:
    def __init__(self, storage: MongoStorage) -> None:
        self._s = storage

    @backend()
    async def create(self, project: str, queue: str, metadata: dict[str, Any] | None) -> bool:
        await self._s.fences.check_write(project, queue)
        fresh = {"counter": 0, "created": self._s.clock(), "fence": None}
        meta = json.dumps(metadata or {})
        update: Doc = (
            {"$setOnInsert": {**fresh, "metadata": meta}}
            if metadata is None  # an existing queue keeps its metadata
            else {"$set": {"metadata": meta}, "$setOnInsert": fresh}
        )
        try:
            result = await self._s.queue_docs.update_one(
                queue_key(project, queue), update, upsert=True
            )
        except DuplicateKeyError:
            # A concurrent create inserted it first (the unique index said so): it existed.
            if metadata is not None:
                await self.set_metadata(project, queue, metadata)
            return False
        if result.upserted_id is None:
            return False
        # A tombstone laid between the check and the insert: the new queue takes its fence.
        await self._s.fences.adopt(project, queue)
        return True

    async def _find(self, project: str, queue: str, fields: Doc) -> Doc | None:
        return await alongside(
            self._s.fences.check_read(project, queue),
            self._s.queue_docs.find_one(queue_key(project, queue), fields),
        )

    @backend()
    async def exists(self, project: str, queue: str) -> bool:
        return await self._find(project, queue, {"_id": 1}) is not None

    @backend()
    async def get_metadata(self, project: str, queue: str) -> dict[str, Any]:
        doc = await self._find(project, queue, {"metadata": 1})
        if doc is None:
            raise QueueDoesNotExist(project, queue)
        metadata: dict[str, Any] = json.loads(doc["metadata"])
        return metadata

    @backend()
    async def set_metadata(self, project: str, queue: str, metadata: dict[str, Any]) -> None:
        await self._s.fences.check_write(project, queue)
        result = await self._s.queue_docs.update_one(
            queue_key(project, queue), {"$set": {"metadata": json.dumps(metadata)}}
        )
        if result.matched_count == 0:
            raise QueueDoesNotExist(project, queue)

    @backend()
    async def delete(self, project: str, queue: str) -> None:
        await self._s.fences.check_write(project, queue)
        # Contents first: a delete cut short leaves the queue, and retrying it finishes the job.
        await self._purge(project, queue)
        await self._s.queue_docs.delete_one(queue_key(project, queue))
        await self._s.tracking.end(project, queue)

    @backend()
    async def list(self, project: str, *, marker: str | None, limit: int, detailed: bool) -> Queues:
        if limit <= 0:  # MongoDB reads limit 0 as "no limit"
            return []
        fields = {"_id": 0, "name": 1, "metadata": 1} if detailed else {"_id": 0, "name": 1}
        query = {"project": project, "name": {"$gt": marker or ""}}
        cursor = self._s.queue_docs.find(query, fields).sort("name", ASCENDING).limit(limit)
        return [
            QueueInfo(doc["name"], json.loads(doc["metadata"]) if detailed else None)
            async for doc in cursor
        ]

    @backend()
    async def stats(self, project: str, queue: str) -> QueueStats:
        if not await self.exists(project, queue):
            raise QueueDoesNotExist(project, queue)
        now = self._s.clock()
        live = live_query(project, queue, now)
        count = self._s.message_docs.count_documents
        total = await count(live)
        if total == 0:
            return QueueStats(free=0, claimed=0)
        claimed = await count({**live, "claim_expires": {"$gt": now}})
        delayed = await count(
            {**live, "delay_expires": {"$gt": now}, "claim_expires": {"$lte": now}}
        )
        ends = []
        for order in (ASCENDING, DESCENDING):
            doc = await self._s.message_docs.find_one(
                live, {"created": 1}, sort=[("marker", order)]
            )
            if doc is None:  # everything expired or went between the counts and now
                return QueueStats(free=0, claimed=0)
            ends.append(MessageSummary(str(doc["_id"]), doc["created"]))
        return QueueStats(
            free=total - claimed - delayed,
            claimed=claimed,
            delayed=delayed,
            oldest=ends[0],
            newest=ends[1],
        )

    @backend()
    async def purge(self, project: str, queue: str) -> None:
        await self._s.fences.check_write(project, queue)
        # No tombstone for each message: changes from before the purge are forgotten.
        await self._s.tracking.forget(project, queue)
        await self._purge(project, queue)

    async def _purge(self, project: str, queue: str) -> None:
        contents = {"project": project, "queue": queue}
        await self._s.message_docs.delete_many(contents)
        await self._s.claim_docs.delete_many(contents)


class MongoMessages:
    def __init__(self, storage: MongoStorage) -> None:
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
        _check_delete(None if holder is None else str(holder), claim_id)
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


def _check_delete(held_by: str | None, claim_id: str | None) -> None:
    """Zaqar's rules for deleting a message held by `held_by` (None: free) with `claim_id`."""
    if claim_id is None:
        if held_by is not None:
            raise MessageIsClaimed()
    elif held_by is None:
        raise MessageNotClaimed()
    elif held_by != claim_id:
        raise MessageIsClaimed()


class MongoClaims:
    def __init__(self, storage: MongoStorage) -> None:
        self._s = storage

    @backend()
    async def create(
        self, project: str, queue: str, *, ttl: int, grace: int, limit: int
    ) -> tuple[Claim, Messages]:
        now = self._s.clock()
        claim = Claim(id=new_id(), ttl=ttl, grace=grace, created=now, expires=now + ttl)
        cid = ObjectId(claim.id)
        taken = await self._s.holds.take_unless_fenced(
            project, queue, holder=cid, claim=True, until=claim.expires, limit=limit, now=now
        )
        if not taken:
            return claim, []
        ids = [doc["_id"] for doc in taken]
        short_lived = any(doc["expires"] < claim.expires + grace for doc in taken)
        await self._mark(project, queue, {"_id": {"$in": ids}}, claim, extend=short_lived)
        await self._s.claim_docs.insert_one(
            {
                "_id": cid,
                "project": project,
                "queue": queue,
                "ttl": ttl,
                "grace": grace,
                "created": now,
                "expires": claim.expires,
            }
        )
        held = self._s.message_docs.find({"_id": {"$in": ids}, "claim_id": cid})
        return claim, await to_messages(held.sort("marker", ASCENDING))

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
        doc = await self._s.claim_docs.find_one_and_update(
            {"_id": cid, "project": project, "queue": queue, "expires": {"$gt": now}},
            {"$set": {"ttl": ttl, "grace": grace, "expires": now + ttl}},
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
            {"$set": {"claim_id": None, "claim_expires": 0.0, "stamp": stamp}},
        )
        if released.matched_count:  # the claim belongs to this queue
            await self._s.holds.docs.delete_many({"holder": cid})
        await self._s.claim_docs.delete_one({"_id": cid, **scope})

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
            held, {"$set": {"claim_id": cid, "claim_expires": claim.expires, "stamp": stamp}}
        )
        if not extend:
            return
        # A second update stands in for `$max`, which not every server applies atomically.
        stamp = await self._s.tracking.stamp(project, queue)
        await self._s.message_docs.update_many(
            {"$and": [held, {"expires": {"$lt": lives_until}}]},
            {"$set": {"expires": lives_until, "ttl": claim.ttl + claim.grace, "stamp": stamp}},
        )

"""The MongoDB driver's queues: create, metadata, list, stats, purge and delete.

Every post reads its queue's metadata first (it shapes the post), so a node believes what it
read for `QUIET` seconds: a post then costs no round trip for it. A change made through this
node is seen at once; one made through another node within that time.
"""

from __future__ import annotations

import json
import time
from typing import Any

from pymongo import ASCENDING, DESCENDING
from pymongo.errors import DuplicateKeyError

from node.errors import QueueDoesNotExist
from node.models import MessageSummary, QueueInfo, QueueStats
from node.storage.base import Queues
from node.storage.mongodb.database import Database
from node.storage.mongodb.documents import Doc, backend, live_query, queue_key
from node.storage.mongodb.fences import alongside
from wire.topics import name_range

QUIET = 0.25  # seconds a node believes the metadata it read
QUIET_QUEUES = 10_000  # queues whose metadata a node remembers, at most


class MongoQueues:
    def __init__(self, storage: Database) -> None:
        self._s = storage
        self._metadata: dict[tuple[str, str], tuple[float, str]] = {}  # when it was asked, JSON

    def _forget(self, project: str, queue: str) -> None:
        self._metadata.pop((project, queue), None)

    @backend()
    async def create(self, project: str, queue: str, metadata: dict[str, Any] | None) -> bool:
        await self._s.fences.check_write(project, queue)
        self._forget(project, queue)
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
        key = (project, queue)
        asked = time.monotonic()
        known = self._metadata.get(key)
        if known is not None and asked - known[0] < QUIET:
            await self._s.fences.check_read(project, queue)
            text = known[1]
        else:
            doc = await self._find(project, queue, {"metadata": 1})
            if doc is None:
                self._forget(project, queue)
                raise QueueDoesNotExist(project, queue)
            text = doc["metadata"]
            if len(self._metadata) >= QUIET_QUEUES:
                self._metadata = {k: v for k, v in self._metadata.items() if asked - v[0] < QUIET}
            self._metadata[key] = (asked, text)
        metadata: dict[str, Any] = json.loads(text)
        return metadata

    @backend()
    async def set_metadata(self, project: str, queue: str, metadata: dict[str, Any]) -> None:
        await self._s.fences.check_write(project, queue)
        self._forget(project, queue)
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
        await self._s.subscription_docs.delete_many({"project": project, "source": queue})
        await self._s.outbox.forget_owed(project, queue)
        await self._s.queue_docs.delete_one(queue_key(project, queue))
        await self._s.tracking.end(project, queue)
        self._s.posts.forget(project, queue)  # a queue created again counts from 0
        self._forget(project, queue)

    @backend()
    async def list(
        self, project: str, *, marker: str | None, limit: int, detailed: bool, topics: bool = False
    ) -> Queues:
        if limit <= 0:  # MongoDB reads limit 0 as "no limit"
            return []
        fields = {"_id": 0, "name": 1, "metadata": 1} if detailed else {"_id": 0, "name": 1}
        after, before = name_range(marker, topics=topics)
        query = {"project": project, "name": {"$gt": after, "$lt": before}}
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
        await self._s.outbox.owed.remove(contents)  # what owes keeps its evidence
        await self._s.claim_docs.delete_many(contents)

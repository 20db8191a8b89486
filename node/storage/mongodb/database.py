"""The MongoDB driver's database: the client, the partition's collections, and the parts that
the controllers share (fences, holds, change tracking).

Plain indexes only: expiry is enforced by the queries, never by a TTL index.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from urllib.parse import parse_qs, urlsplit

from bson import ObjectId
from pymongo import ASCENDING, AsyncMongoClient, UpdateOne
from pymongo.asynchronous.collection import AsyncCollection

from node.storage.mongodb.blocks import BLOCK, Blocks
from node.storage.mongodb.changes import Tracking, stamped
from node.storage.mongodb.documents import Doc, backend
from node.storage.mongodb.fences import Fences
from node.storage.mongodb.holds import Holds
from node.storage.mongodb.outbox import MongoOutbox
from node.storage.mongodb.posts import Posts
from node.storage.mongodb.reservations import Reservations

Clock = Callable[[], float]

DEFAULT_DATABASE = "marconi"
# Applied unless the URI sets them: a dead server fails a request in seconds, not minutes.
CLIENT_DEFAULTS: Doc = {
    "serverSelectionTimeoutMS": 5000,
    "connectTimeoutMS": 5000,
    "socketTimeoutMS": 30000,
    "appname": "marconi-node",
}


def client_options(uri: str) -> Doc:
    given = {key.lower() for key in parse_qs(urlsplit(uri).query)}
    return {k: v for k, v in CLIENT_DEFAULTS.items() if k.lower() not in given}


class Database:
    """One MongoDB database, a partition's: what the controllers share. `MongoStorage` opens it."""

    def __init__(self, client: AsyncMongoClient[Doc], database: str, clock: Clock) -> None:
        self.clock = clock
        # Does the server apply a conditional update or delete atomically? MongoDB does;
        # FerretDB 1.x reads what matches, then writes each document back by `_id` alone.
        # Until `create_indexes` asks, the driver assumes not.
        self.atomic = False
        self._client = client
        db = client[database]
        self.database = database
        self.queue_docs: AsyncCollection[Doc] = db["queues"]
        self.message_docs: AsyncCollection[Doc] = db["messages"]
        self.claim_docs: AsyncCollection[Doc] = db["claims"]
        self.subscription_docs: AsyncCollection[Doc] = db["subscriptions"]
        self._settings: AsyncCollection[Doc] = db["settings"]
        self.blocks = Blocks(self.message_docs, self.queue_docs)
        self.reservations = Reservations(db["reservations"], clock)
        self.fences = Fences(db["fences"], self.queue_docs, clock)
        self.holds = Holds(db["holds"], self.message_docs, self.fences, self.blocks)
        self.tracking = Tracking(db, self.message_docs, self.claim_docs)
        self.outbox = MongoOutbox(
            db["outbox"], self.subscription_docs, self.fences.docs, clock, self.message_docs
        )
        self.posts = Posts(
            self.queue_docs,
            self.message_docs,
            self.fences,
            self.tracking,
            self.outbox,
            self.blocks,
            self.reservations,
        )

    async def create_indexes(self) -> None:
        """Create the indexes every query needs (idempotent)."""
        await self.queue_docs.create_index(
            [("project", ASCENDING), ("name", ASCENDING)], unique=True
        )
        await self.message_docs.create_index(
            [("project", ASCENDING), ("queue", ASCENDING), ("marker", ASCENDING)], unique=True
        )
        await self.queue_docs.create_index("name")  # the outgoing piles of dead letters
        await self.message_docs.create_index("claim_id")
        await self.message_docs.create_index("expires")
        await self.claim_docs.create_index("expires")
        await self.claim_docs.create_index([("project", ASCENDING), ("queue", ASCENDING)])
        await self.fences.docs.create_index(
            [("project", ASCENDING), ("queue", ASCENDING)], unique=True
        )
        await self.holds.docs.create_index("message", unique=True)
        await self.holds.docs.create_index("holder")
        await self.holds.docs.create_index("expires")
        await self.tracking.create_indexes()
        await self.outbox.create_indexes()
        await self.reservations.create_indexes()
        ferretdb = "ferretdbVersion" in await self.message_docs.database.command("buildInfo")
        self.reservations.enabled = ferretdb  # MongoDB's `$inc` is atomic
        self.atomic = not ferretdb
        self.blocks.enabled = ferretdb and await self._pushes_down_equalities()
        self.tracking.by_stamp_block = self.blocks.enabled
        if self.tracking.by_stamp_block:
            await self._number_stamp_blocks()
        if self.blocks.enabled:
            await self._number_blocks()

    async def messages_by_ids(self, oids: list[ObjectId]) -> list[Doc]:
        """The message documents with these ids (of any queue)."""
        if self.atomic:  # MongoDB: its `_id` index serves `$in`
            return await self.message_docs.find({"_id": {"$in": oids}}).to_list()
        # FerretDB filters an `$in` itself, over the whole partition, but passes an `_id` alone
        # to its backend: one read each, all at once.
        found = await asyncio.gather(*(self.message_docs.find_one({"_id": o}) for o in oids))
        return [doc for doc in found if doc is not None]

    async def _pushes_down_equalities(self) -> bool:
        """Does the server (FerretDB) have its backend filter equalities (see `blocks`)?"""
        db = self.message_docs.database
        probe = {"find": self.message_docs.name, "filter": {"project": "", "block": 0}}
        explained = await db.command("explain", probe)
        return bool(explained.get("filterPushdown"))

    async def _number_blocks(self) -> None:
        """Give each message stored before blocks were read its `block`, once per database."""
        if await self._settings.find_one({"_id": "blocks"}) is not None:
            return
        unnumbered = self.message_docs.find({"block": {"$exists": False}}, {"marker": 1})
        updates = [
            UpdateOne({"_id": doc["_id"]}, {"$set": {"block": int(doc["marker"]) // BLOCK}})
            async for doc in unnumbered
        ]
        if updates:
            await self.message_docs.bulk_write(updates, ordered=False)
        await self._settings.update_one(
            {"_id": "blocks"}, {"$set": {"numbered": True}}, upsert=True
        )

    async def _number_stamp_blocks(self) -> None:
        """Give each stamped document written before changes were read by stamp blocks its
        `stamp_block` (see `changes`), once per database: a move in flight across the upgrade
        would miss their changes otherwise."""
        if await self._settings.find_one({"_id": "stamp_blocks"}) is not None:
            return
        for docs in (self.message_docs, self.claim_docs, self.tracking.removed):
            unnumbered = docs.find({"stamp_block": {"$exists": False}}, {"stamp": 1})
            updates = [
                UpdateOne(
                    {"_id": doc["_id"], "stamp_block": {"$exists": False}},
                    {"$set": {"stamp_block": stamped(int(doc.get("stamp") or 0))["stamp_block"]}},
                )
                async for doc in unnumbered
            ]
            if updates:
                await docs.bulk_write(updates, ordered=False)
        await self._settings.update_one(
            {"_id": "stamp_blocks"}, {"$set": {"numbered": True}}, upsert=True
        )

    async def close(self) -> None:
        await self.posts.close()
        await self.blocks.close()
        async with backend():
            await self._client.close()

"""`node.storage.base.Storage` over one MongoDB database per partition."""

from __future__ import annotations

import time

from pymongo import AsyncMongoClient

from node.errors import StorageUnavailable
from node.storage.mongodb.claims import MongoClaims
from node.storage.mongodb.database import DEFAULT_DATABASE, Clock, Database, client_options
from node.storage.mongodb.deadletters import MongoDeadLetters
from node.storage.mongodb.documents import Doc, backend
from node.storage.mongodb.messages import MongoMessages
from node.storage.mongodb.queues import MongoQueues
from node.storage.mongodb.subscriptions import MongoSubscriptions
from node.storage.mongodb.transfer import MongoTransfer
from node.storage.transfer import TOMBSTONE_RETENTION


class MongoStorage(Database):
    """`node.storage.base.Storage` over one MongoDB database."""

    def __init__(self, client: AsyncMongoClient[Doc], database: str, clock: Clock) -> None:
        super().__init__(client, database, clock)
        self.queues = MongoQueues(self)
        self.messages = MongoMessages(self)
        self.claims = MongoClaims(self)
        self.subscriptions = MongoSubscriptions(self)
        self.transfer = MongoTransfer(self)
        self.dead_letters = MongoDeadLetters(self)

    @classmethod
    async def open(cls, uri: str, clock: Clock = time.time) -> MongoStorage:
        """Connect to `mongodb://host/database` ("marconi" when absent) and create the indexes."""
        async with backend():
            client: AsyncMongoClient[Doc] = AsyncMongoClient(uri, **client_options(uri))
            storage = cls(client, client.get_default_database(DEFAULT_DATABASE).name, clock)
            try:
                await storage.create_indexes()
                await storage.subscriptions.create_indexes()
            except BaseException:
                await client.close()
                raise
            return storage

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
        gone = await self.outbox.owed.remove(expired)  # what owes keeps its evidence
        gone += (await self.claim_docs.delete_many(expired)).deleted_count
        gone += (await self.subscription_docs.delete_many(expired)).deleted_count
        await self.holds.docs.delete_many(expired)  # bookkeeping, not counted as records
        await self.tracking.collect(now - TOMBSTONE_RETENTION)  # bookkeeping too
        await self.reservations.collect()
        return gone

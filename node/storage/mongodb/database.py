"""The MongoDB driver's database: the client, the partition's collections, and the parts that
the controllers share (fences, holds, change tracking).

Plain indexes only: expiry is enforced by the queries, never by a TTL index.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import parse_qs, urlsplit

from pymongo import ASCENDING, AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection

from node.storage.mongodb.changes import Tracking
from node.storage.mongodb.documents import Doc, backend
from node.storage.mongodb.fences import Fences
from node.storage.mongodb.holds import Holds
from node.storage.mongodb.outbox import MongoOutbox
from node.storage.mongodb.posts import Posts

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
        self._client = client
        db = client[database]
        self.database = database
        self.queue_docs: AsyncCollection[Doc] = db["queues"]
        self.message_docs: AsyncCollection[Doc] = db["messages"]
        self.claim_docs: AsyncCollection[Doc] = db["claims"]
        self.subscription_docs: AsyncCollection[Doc] = db["subscriptions"]
        self.fences = Fences(db["fences"], self.queue_docs, clock)
        self.holds = Holds(db["holds"], self.message_docs, self.fences)
        self.tracking = Tracking(db, self.message_docs, self.claim_docs)
        self.outbox = MongoOutbox(db["outbox"], self.subscription_docs, self.fences.docs, clock)
        self.posts = Posts(
            self.queue_docs, self.message_docs, self.fences, self.tracking, self.outbox
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

    async def close(self) -> None:
        await self.posts.close()
        async with backend():
            await self._client.close()

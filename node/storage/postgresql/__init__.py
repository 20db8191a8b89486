"""The PostgreSQL driver: one database (or one schema of one) per partition.

`postgresql://user:password@host:port/database?pool_size=...` (settings: `connection`). Each
controller is a module of its own (`queues`, `messages`, `claims`, `subscriptions`, `transfer`)
over the pool in `connection` and the schema in `schema`, which the node creates or upgrades when
it opens the partition.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from ground.logs import get_logger
from node.errors import StorageUnavailable
from node.storage.postgresql.claims import PostgresClaims
from node.storage.postgresql.collector import collect_garbage
from node.storage.postgresql.connection import Database, PostgresSettings
from node.storage.postgresql.deadletters import PostgresDeadLetters
from node.storage.postgresql.messages import PostgresMessages
from node.storage.postgresql.metadata import Copies
from node.storage.postgresql.outbox import PostgresOutbox
from node.storage.postgresql.queues import PostgresQueues
from node.storage.postgresql.schema import VERSION, upgrade
from node.storage.postgresql.subscriptions import PostgresSubscriptions
from node.storage.postgresql.transfer import PostgresTransfer

log = get_logger("node.storage.postgresql")
Clock = Callable[[], float]


class PostgresStorage:
    """`node.storage.base.Storage` over one PostgreSQL database (or schema)."""

    def __init__(self, db: Database, clock: Clock = time.time) -> None:
        self.db = db
        self.clock = clock
        copies = Copies()  # queues' metadata, kept between requests (node.storage.reading)
        self.queues = PostgresQueues(db, clock, copies)
        self.outbox = PostgresOutbox(db, clock)
        self.messages = PostgresMessages(db, clock, self.outbox.written, copies)
        self.claims = PostgresClaims(db, clock, copies)
        self.subscriptions = PostgresSubscriptions(db, clock)
        self.transfer = PostgresTransfer(db, clock)
        self.dead_letters = PostgresDeadLetters(db, clock)

    @classmethod
    async def open(cls, uri: str, clock: Clock = time.time) -> PostgresStorage:
        """Connect, then create or upgrade the partition's schema."""
        db = Database(PostgresSettings.from_uri(uri))
        try:
            async with db.session() as conn:
                before = await upgrade(conn, db.settings.schema)
        except BaseException:
            await db.close()
            raise
        if before != VERSION:
            log.info("postgresql_schema_upgraded", schema=db.settings.schema, to=VERSION)
        return cls(db, clock)

    async def ping(self) -> bool:
        try:
            async with self.db.session() as conn:
                await conn.fetchval("SELECT 1")
        except StorageUnavailable:
            return False
        return True

    async def collect_garbage(self) -> int:
        return await collect_garbage(self.db, self.clock())

    async def close(self) -> None:
        await self.messages.wait_idle()
        await self.db.close()

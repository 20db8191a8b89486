"""The embedded driver: `node.storage.base.Storage` over one SQLite file per partition."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

from node.errors import StorageUnavailable
from node.storage.sqlite.claims import SqliteClaims
from node.storage.sqlite.database import WAL_LIMIT, Clock, Database, log, sqlite_path
from node.storage.sqlite.deadletters import SqliteDeadLetters
from node.storage.sqlite.messages import SqliteMessages
from node.storage.sqlite.outbox import SqliteOutbox
from node.storage.sqlite.queues import SqliteQueues
from node.storage.sqlite.subscriptions import SqliteSubscriptions
from node.storage.sqlite.transfer import SqliteTransfer
from node.storage.transfer import TOMBSTONE_RETENTION


class SqliteStorage(Database):
    """`node.storage.base.Storage` over one SQLite file."""

    def __init__(
        self,
        path: str,
        clock: Clock = time.time,
        checkpoint_interval: float = 1.0,
        wal_limit: int = WAL_LIMIT,
    ):
        super().__init__(path, clock, checkpoint_interval, wal_limit)
        self.queues = SqliteQueues(self)
        self.outbox = SqliteOutbox(self)
        self.messages = SqliteMessages(self, self.outbox)
        self.claims = SqliteClaims(self)
        self.subscriptions = SqliteSubscriptions(self)
        self.transfer = SqliteTransfer(self)
        self.dead_letters = SqliteDeadLetters(self)

    @classmethod
    async def open(
        cls,
        uri: str,
        clock: Clock = time.time,
        *,
        checkpoint_interval: float = 1.0,
        wal_limit: int = WAL_LIMIT,
    ) -> SqliteStorage:
        """Open the file `sqlite:///path` names, creating it (and its folder) if missing."""
        path = sqlite_path(uri)
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        storage = cls(path, clock, checkpoint_interval, wal_limit)
        await storage.run(storage._connect)
        if path != ":memory:":
            storage._checkpointer = asyncio.create_task(storage._checkpoint_forever())
        return storage

    async def ping(self) -> bool:
        try:
            await self.read(lambda c: c.execute("SELECT 1").fetchone())
        except StorageUnavailable:
            return False
        return True

    async def collect_garbage(self, batch: int = 1000) -> int:
        """Delete expired records in small batches, yielding the loop between them; then the
        tombstones past their retention (not counted: bookkeeping, not records)."""

        def collect(conn: sqlite3.Connection, table: str, now: float) -> int:
            gone: int = conn.execute(
                f"DELETE FROM {table} WHERE rowid IN "
                f"(SELECT rowid FROM {table} WHERE expires <= ? LIMIT ?)",
                (now, batch),
            ).rowcount
            return gone

        def forget(conn: sqlite3.Connection, before: float) -> int:
            gone = conn.execute(
                "DELETE FROM removed WHERE (project, queue, stamp, id) IN (SELECT project, queue,"
                " stamp, id FROM removed WHERE at <= ? LIMIT ?) RETURNING project, queue, stamp",
                (before, batch),
            ).fetchall()
            conn.executemany(
                "UPDATE queues SET forgotten = MAX(forgotten, ?) WHERE project = ? AND name = ?",
                [(stamp, project, queue) for project, queue, stamp in gone],
            )
            return len(gone)

        total = 0
        now = self.clock()
        for table in ("messages", "claims", "subscriptions"):
            while (gone := await self.write(collect, table, now)) > 0:
                total += gone
                await asyncio.sleep(0)
        forgotten = 0
        while (gone := await self.write(forget, now - TOMBSTONE_RETENTION)) > 0:
            forgotten += gone
            await asyncio.sleep(0)
        if forgotten:
            log.debug("sqlite_tombstones_collected", tombstones=forgotten)
        return total

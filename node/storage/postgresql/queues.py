"""The PostgreSQL driver's queue controller (`node.storage.base.QueueStore`)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from node.errors import QueueDoesNotExist, QueueFrozen
from node.models import Fence, MessageSummary, QueueInfo, QueueStats
from node.storage.deadletters import MARK as PILE
from node.storage.postgresql.connection import Database
from node.storage.postgresql.metadata import QUEUE_AND_FENCE, UNSEEN, Copies
from node.storage.postgresql.outbox import forget_owed
from node.storage.postgresql.schema import (
    LIVE,
    check_readable,
    check_row_fence,
    check_writable,
    unfenced,
)
from node.storage.postgresql.subscriptions import delete_all as delete_subscriptions
from node.storage.reading import current
from wire.topics import MARK, name_range

Queues = list[QueueInfo]
# Serializes the creation of a queue with fencing its name (a tombstone may stand for a queue
# that does not exist yet: no row to lock). Transaction-scoped: released at commit.
NAME_LOCK = "SELECT pg_advisory_xact_lock(hashtextextended($1 || '/' || $2, 0))"


class PostgresQueues:
    def __init__(self, db: Database, clock: Callable[[], float], copies: Copies) -> None:
        self._db = db
        self._clock = clock
        self._copies = copies  # node.storage.postgresql.metadata

    async def create(self, project: str, queue: str, metadata: dict[str, Any] | None) -> bool:
        meta = None if metadata is None else json.dumps(metadata)
        async with self._db.transaction() as conn:
            await conn.execute(NAME_LOCK, project, queue)
            now = self._clock()
            await check_writable(conn, project, queue, now)
            created = await conn.fetchval(
                "INSERT INTO queues (project, name, metadata, created) VALUES ($1, $2, $3, $4)"
                " ON CONFLICT DO NOTHING RETURNING true",
                project,
                queue,
                meta or "{}",
                now,
            )
            if created is None and meta is not None:
                await conn.execute(
                    "UPDATE queues SET metadata = $3 WHERE project = $1 AND name = $2",
                    project,
                    queue,
                    meta,
                )
        self._copies.drop((project, queue))
        return created is not None

    async def exists(self, project: str, queue: str) -> bool:
        return await self._metadata(project, queue) is not None

    async def get_metadata(self, project: str, queue: str) -> dict[str, Any]:
        reading, key = current(), (project, queue)
        found = UNSEEN if reading is None else self._copies.get(key)
        if found is UNSEEN:  # outside a reading, or not kept here: read (and keep)
            found = await self._metadata(project, queue)
            self._copies.put(key, found)
        assert found is None or isinstance(found, str)
        if reading is not None:  # the request's statement confirms it (node.storage.reading)
            reading.seen[key] = found
        if found is None:
            raise QueueDoesNotExist(project, queue)
        metadata: dict[str, Any] = json.loads(found)
        return metadata

    async def _metadata(self, project: str, queue: str) -> str | None:
        """The queue's metadata (JSON text), None when it does not exist; read with its fence
        in one statement (every post asks)."""
        async with self._db.session() as conn:
            row = await conn.fetchrow(QUEUE_AND_FENCE, project, queue, self._clock())
        if row[1] == Fence.MOVED:
            raise QueueFrozen(project, queue, row[1])
        return None if row[0] is None else str(row[0])

    async def set_metadata(self, project: str, queue: str, metadata: dict[str, Any]) -> None:
        now = self._clock()
        async with self._db.session() as conn:
            done = await conn.fetchval(
                "UPDATE queues SET metadata = $3 WHERE project = $1 AND name = $2"
                f" AND {unfenced('$4')} RETURNING true",
                project,
                queue,
                json.dumps(metadata),
                now,
            )
            if done is None:
                await check_writable(conn, project, queue, now)
                raise QueueDoesNotExist(project, queue)
        self._copies.drop((project, queue))

    async def delete(self, project: str, queue: str) -> None:
        now = self._clock()
        async with self._db.transaction() as conn:
            fence = await conn.fetchrow(
                "SELECT fence, fence_until FROM queues WHERE project = $1 AND name = $2 FOR UPDATE",
                project,
                queue,
            )
            if fence is None:
                await check_writable(conn, project, queue, now)
                return
            check_row_fence(project, queue, fence[0], fence[1], now)
            await conn.execute(
                "DELETE FROM messages WHERE project = $1 AND queue = $2", project, queue
            )
            await conn.execute(
                "DELETE FROM claims WHERE project = $1 AND queue = $2", project, queue
            )
            await delete_subscriptions(conn, project, queue)
            await forget_owed(conn, project, queue)
            await conn.execute(
                "DELETE FROM queues WHERE project = $1 AND name = $2", project, queue
            )
        self._copies.drop((project, queue))

    async def list(
        self, project: str, *, marker: str | None, limit: int, detailed: bool, topics: bool = False
    ) -> Queues:
        after, _ = name_range(marker, topics=topics)
        async with self._db.session() as conn:
            # A prefix test rather than a range: the database's collation may not order `MARK`.
            rows = await conn.fetch(
                "SELECT name, metadata FROM queues WHERE project = $1 AND name > $2"
                " AND starts_with(name, $4) = $5 AND NOT starts_with(name, $6)"
                " ORDER BY name LIMIT $3",
                project,
                after,
                limit,
                MARK,
                topics,
                PILE,
            )
        return [QueueInfo(name, json.loads(meta) if detailed else None) for name, meta in rows]

    async def stats(self, project: str, queue: str) -> QueueStats:
        now = self._clock()
        async with self._db.session() as conn:
            await check_readable(conn, project, queue, now)
            if not await conn.fetchval(
                "SELECT true FROM queues WHERE project = $1 AND name = $2", project, queue
            ):
                raise QueueDoesNotExist(project, queue)
            claimed, delayed, total = await conn.fetchrow(
                "SELECT count(*) FILTER (WHERE claim_id IS NOT NULL AND claim_expires > $3),"
                " count(*) FILTER (WHERE delay_expires > $3"
                " AND (claim_id IS NULL OR claim_expires <= $3)),"
                f" count(*) FROM messages WHERE {LIVE}",
                project,
                queue,
                now,
            )
            if total == 0:
                return QueueStats(free=0, claimed=0)
            ends = []
            for order in ("ASC", "DESC"):
                mid, created = await conn.fetchrow(
                    f"SELECT id, created FROM messages WHERE {LIVE}"
                    f" ORDER BY marker {order} LIMIT 1",
                    project,
                    queue,
                    now,
                )
                ends.append(MessageSummary(mid, created))
        return QueueStats(
            free=total - claimed - delayed,
            claimed=claimed,
            delayed=delayed,
            oldest=ends[0],
            newest=ends[1],
        )

    async def purge(self, project: str, queue: str) -> None:
        now = self._clock()
        async with self._db.transaction() as conn:
            # No tombstone for each message: changes from before the purge are forgotten.
            row = await conn.fetchrow(
                "UPDATE queues SET stamp = stamp + 1, forgotten = stamp + 1"
                " WHERE project = $1 AND name = $2 RETURNING fence, fence_until",
                project,
                queue,
            )
            if row is not None:
                check_row_fence(project, queue, row[0], row[1], now)
            else:
                await check_writable(conn, project, queue, now)
            await conn.execute(
                "DELETE FROM messages WHERE project = $1 AND queue = $2", project, queue
            )
            await conn.execute(
                "DELETE FROM claims WHERE project = $1 AND queue = $2", project, queue
            )

"""Expired records of the PostgreSQL driver, collected in small batches.

Each batch is one short statement that skips rows another transaction holds (a claim being
made, a delete): the collector never waits on a request, and a request waits on it at most one
batch. Tombstones past their retention go the same way, raising their queue's `forgotten`.
"""

from __future__ import annotations

import asyncio

from ground.logs import get_logger
from node.storage.postgresql.connection import Database
from node.storage.transfer import TOMBSTONE_RETENTION

log = get_logger("node.storage.postgresql")
BATCH = 1000

EXPIRED = """
DELETE FROM {table} WHERE id IN (
    SELECT id FROM {table} WHERE expires <= $1 LIMIT $2 FOR UPDATE SKIP LOCKED)
"""
FORGET = """
WITH gone AS (
    DELETE FROM removed WHERE (project, queue, stamp, id) IN (
        SELECT project, queue, stamp, id FROM removed WHERE at <= $1 LIMIT $2
        FOR UPDATE SKIP LOCKED)
    RETURNING project, queue, stamp),
top AS (SELECT project, queue, max(stamp) AS stamp FROM gone GROUP BY project, queue),
raised AS (
    UPDATE queues q SET forgotten = GREATEST(q.forgotten, top.stamp) FROM top
    WHERE q.project = top.project AND q.name = top.queue)
SELECT count(*) FROM gone
"""


async def collect_garbage(db: Database, now: float, batch: int = BATCH) -> int:
    """Delete expired messages, claims and subscriptions; return how many went. Then forget the
    tombstones past their retention (not counted: bookkeeping, not records)."""
    total = 0
    async with db.session() as conn:
        for table in ("messages", "claims", "subscriptions"):
            while True:
                status = await conn.execute(EXPIRED.format(table=table), now, batch)
                gone = int(status.split()[-1])
                total += gone
                if gone < batch:
                    break
                await asyncio.sleep(0)
        forgotten = 0
        while (gone := await conn.fetchval(FORGET, now - TOMBSTONE_RETENTION, batch)) > 0:
            forgotten += gone
            if gone < batch:
                break
    if forgotten:
        log.debug("postgresql_tombstones_collected", tombstones=forgotten)
    return total

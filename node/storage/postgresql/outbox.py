"""The PostgreSQL driver's outbox (`node.storage.outbox.OutboxStore`).

As in SQLite, a held delivery's `due` is its lease's expiry. A lease is one statement that
takes due rows `FOR UPDATE SKIP LOCKED`: deliverers of several processes leasing at once each
get other rows, and none waits on another.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from node.storage.outbox import Deliveries, Delivery, Nudge
from node.storage.postgresql.connection import Database

COLUMNS = (
    "id, project, queue, subscription, subscriber, options, confirmed, notices, posted, due,"
    " failures, sent"
)
LEASE = f"""
UPDATE outbox SET owner = $1, due = $3 WHERE id IN (
    SELECT id FROM outbox o WHERE due <= $2 AND NOT EXISTS (
        SELECT 1 FROM fences f WHERE f.project = o.project AND f.queue = o.queue
        AND (f.until = 0 OR f.until > $2))
    ORDER BY due LIMIT $4 FOR UPDATE SKIP LOCKED)
RETURNING {COLUMNS}
"""
INSERT = f"""
INSERT INTO outbox ({COLUMNS})
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                     $7::boolean[], $8::text[], $9::float8[], $10::float8[], $11::int[],
                     $12::int[])
ON CONFLICT (id) DO NOTHING
"""


def _delivery(row: Sequence[Any]) -> Delivery:
    return Delivery(
        id=row[0],
        project=row[1],
        queue=row[2],
        subscription_id=row[3],
        subscriber=row[4],
        options=json.loads(row[5]),
        confirmed=bool(row[6]),
        notices=json.loads(row[7]),
        posted=row[8],
        due=row[9],
        failures=row[10],
        sent=row[11],
    )


def _columns(deliveries: Sequence[Delivery]) -> list[list[Any]]:
    return [
        [d.id for d in deliveries],
        [d.project for d in deliveries],
        [d.queue for d in deliveries],
        [d.subscription_id for d in deliveries],
        [d.subscriber for d in deliveries],
        [json.dumps(d.options) for d in deliveries],
        [d.confirmed for d in deliveries],
        [json.dumps(d.notices) for d in deliveries],
        [d.posted for d in deliveries],
        [d.due for d in deliveries],
        [d.failures for d in deliveries],
        [d.sent for d in deliveries],
    ]


def _count(status: str) -> int:
    return int(status.split()[-1])


async def forget_owed(conn: Any, project: str, queue: str, subscription: str | None = None) -> int:
    """Inside the transaction that deletes a subscription (or all of a queue's): what is still
    owed to it goes with it, so a deleted subscription is sent nothing more."""
    if subscription is None:
        status = await conn.execute(
            "DELETE FROM outbox WHERE project = $1 AND queue = $2", project, queue
        )
    else:
        status = await conn.execute(
            "DELETE FROM outbox WHERE project = $1 AND queue = $2 AND subscription = $3",
            project,
            queue,
            subscription,
        )
    return _count(status)


class PostgresOutbox:
    def __init__(self, db: Database, clock: Callable[[], float]) -> None:
        self._db = db
        self._clock = clock
        self.written = Nudge()  # set by a post of this process that owes deliveries

    async def lease(self, owner: str, *, limit: int, lasts: float) -> Deliveries:
        now = self._clock()
        async with self._db.session() as conn:
            rows = await conn.fetch(LEASE, owner, now, now + lasts, limit)
        return sorted((_delivery(r) for r in rows), key=lambda d: (d.posted, d.id))

    async def done(self, owner: str, ids: Sequence[str]) -> int:
        if not ids:
            return 0
        async with self._db.session() as conn:
            status = await conn.execute(
                "DELETE FROM outbox WHERE id = ANY($1::text[]) AND owner = $2", list(ids), owner
            )
        return _count(status)

    async def retry(
        self, owner: str, delivery_id: str, *, due: float, failures: int, sent: int
    ) -> bool:
        async with self._db.session() as conn:
            status = await conn.execute(
                "UPDATE outbox SET due = $1, failures = $2, sent = $3, owner = ''"
                " WHERE id = $4 AND owner = $5",
                due,
                failures,
                sent,
                delivery_id,
                owner,
            )
        return _count(status) > 0

    async def enqueue(self, deliveries: Sequence[Delivery]) -> None:
        await self._insert(deliveries)
        self.written.set()

    async def _insert(self, deliveries: Sequence[Delivery]) -> int:
        if not deliveries:
            return 0
        async with self._db.session() as conn:
            status = await conn.execute(INSERT, *_columns(deliveries))
        return _count(status)

    async def depth(self) -> int:
        async with self._db.session() as conn:
            return int(await conn.fetchval("SELECT count(*) FROM outbox"))

    async def wait(self, seconds: float) -> None:
        await self.written.wait(seconds)

    async def export_outbox(self, project: str, queue: str) -> Deliveries:
        async with self._db.session() as conn:
            rows = await conn.fetch(
                f"SELECT {COLUMNS} FROM outbox WHERE project = $1 AND queue = $2 ORDER BY id",
                project,
                queue,
            )
        return [_delivery(r) for r in rows]

    async def import_outbox(self, project: str, queue: str, deliveries: Sequence[Delivery]) -> int:
        return await self._insert(deliveries)

    async def drop_outbox(self, project: str, queue: str) -> int:
        async with self._db.session() as conn:
            status = await conn.execute(
                "DELETE FROM outbox WHERE project = $1 AND queue = $2", project, queue
            )
        return _count(status)

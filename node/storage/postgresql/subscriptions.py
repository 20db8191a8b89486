"""The PostgreSQL driver's subscriptions (`node.storage.base.SubscriptionStore`).

A write holds the queue's row (`hold_queue`, as every write of the queue does), so it either
commits before a freeze or sees the fence; a source without a queue row is checked against
`fences` alone.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

import asyncpg

from node.errors import SubscriptionAlreadyExists, SubscriptionDoesNotExist, TransferConflict
from node.models import Subscription, new_id
from node.storage.base import Subscriptions
from node.storage.postgresql.connection import Database
from node.storage.postgresql.outbox import forget_owed
from node.storage.postgresql.schema import check_readable, hold_queue

COLUMNS = "id, source, subscriber, ttl, created, expires, options, confirmed"
# $1 project, $2 source, $3 now.
LIVE = "project = $1 AND source = $2 AND expires > $3"
CLEAR_EXPIRED = (
    "DELETE FROM subscriptions WHERE project = $1 AND source = $2 AND subscriber = $4"
    " AND expires <= $3"
)


def _subscription(row: Any) -> Subscription:
    return Subscription(
        id=row["id"],
        source=row["source"],
        subscriber=row["subscriber"],
        ttl=int(row["ttl"]),
        created=float(row["created"]),
        expires=float(row["expires"]),
        options=json.loads(row["options"]),
        confirmed=bool(row["confirmed"]),
    )


class PostgresSubscriptions:
    def __init__(self, db: Database, clock: Callable[[], float]) -> None:
        self._db = db
        self._clock = clock

    async def create(
        self, project: str, source: str, subscriber: str, ttl: int, options: dict[str, Any]
    ) -> str | None:
        now = self._clock()
        async with self._db.transaction() as conn:
            await hold_queue(conn, project, source, now, stamp=False)
            await conn.execute(CLEAR_EXPIRED, project, source, now, subscriber)
            sid = new_id()
            created = await conn.fetchval(
                f"INSERT INTO subscriptions ({COLUMNS}, project)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, false, $8)"
                " ON CONFLICT DO NOTHING RETURNING true",
                sid,
                source,
                subscriber,
                ttl,
                now,
                now + ttl,
                json.dumps(options),
                project,
            )
        return sid if created else None

    async def get(self, project: str, source: str, subscription_id: str) -> Subscription:
        found = await self._select(project, source, "id = $4", subscription_id)
        if not found:
            raise SubscriptionDoesNotExist(subscription_id)
        return found[0]

    async def find(self, project: str, source: str, subscriber: str) -> Subscription | None:
        found = await self._select(project, source, "subscriber = $4", subscriber)
        return found[0] if found else None

    async def list(
        self, project: str, source: str, *, marker: str | None, limit: int
    ) -> Subscriptions:
        return await self._select(project, source, "id > $4", marker or "", limit=limit)

    async def _select(
        self,
        project: str,
        source: str,
        condition: str,
        value: str,
        *,
        limit: int | None = None,
        fenced: bool = True,
    ) -> Subscriptions:
        now = self._clock()
        async with self._db.session() as conn:
            if fenced:
                await check_readable(conn, project, source, now)
            rows = await conn.fetch(
                f"SELECT {COLUMNS} FROM subscriptions WHERE {LIVE} AND {condition}"
                " ORDER BY id LIMIT $5",
                project,
                source,
                now,
                value,
                limit,
            )
        return [_subscription(row) for row in rows]

    async def update(
        self,
        project: str,
        source: str,
        subscription_id: str,
        *,
        subscriber: str | None = None,
        ttl: int | None = None,
        options: dict[str, Any] | None = None,
    ) -> None:
        now = self._clock()
        async with self._db.transaction() as conn:
            await hold_queue(conn, project, source, now, stamp=False)
            if subscriber is not None:
                await conn.execute(CLEAR_EXPIRED, project, source, now, subscriber)
            try:
                done = await conn.fetchval(
                    "UPDATE subscriptions SET subscriber = COALESCE($5, subscriber),"
                    " ttl = COALESCE($6, ttl), expires = COALESCE($3 + $6, expires),"
                    " options = COALESCE($7, options)"
                    f" WHERE id = $4 AND {LIVE} RETURNING true",
                    project,
                    source,
                    now,
                    subscription_id,
                    subscriber,
                    ttl,
                    None if options is None else json.dumps(options),
                )
            except asyncpg.UniqueViolationError:
                raise SubscriptionAlreadyExists() from None
        if not done:
            raise SubscriptionDoesNotExist(subscription_id)

    async def confirm(
        self, project: str, source: str, subscription_id: str, confirmed: bool
    ) -> None:
        now = self._clock()
        async with self._db.transaction() as conn:
            await hold_queue(conn, project, source, now, stamp=False)
            done = await conn.fetchval(
                f"UPDATE subscriptions SET confirmed = $5 WHERE id = $4 AND {LIVE} RETURNING true",
                project,
                source,
                now,
                subscription_id,
                confirmed,
            )
        if not done:
            raise SubscriptionDoesNotExist(subscription_id)

    async def delete(self, project: str, source: str, subscription_id: str) -> None:
        now = self._clock()
        async with self._db.transaction() as conn:
            await hold_queue(conn, project, source, now, stamp=False)
            await conn.execute(
                "DELETE FROM subscriptions WHERE project = $1 AND source = $2 AND id = $3",
                project,
                source,
                subscription_id,
            )
            await forget_owed(conn, project, source, subscription_id)

    async def purge(self, project: str, source: str) -> int:
        now = self._clock()
        async with self._db.transaction() as conn:
            await hold_queue(conn, project, source, now, stamp=False)
            await forget_owed(conn, project, source)
            return await delete_all(conn, project, source)

    async def live(self, project: str, source: str) -> Subscriptions:
        return await self._select(project, source, "id > $4", "", fenced=False)

    async def subscribed(self, project: str, source: str) -> bool:
        async with self._db.session() as conn:
            found = await conn.fetchval(
                f"SELECT true FROM subscriptions WHERE {LIVE} LIMIT 1",
                project,
                source,
                self._clock(),
            )
        return bool(found)

    async def export_subscriptions(self, project: str, source: str) -> Subscriptions:
        return await self.live(project, source)

    async def import_subscriptions(
        self, project: str, source: str, subscriptions: Sequence[Subscription]
    ) -> int:
        changed = 0
        async with self._db.transaction() as conn:
            for sub in subscriptions:
                row = await conn.fetchrow(
                    f"SELECT project, {COLUMNS} FROM subscriptions WHERE id = $1 FOR UPDATE",
                    sub.id,
                )
                if row is not None:
                    if (row["project"], row["source"]) != (project, source):
                        raise TransferConflict(f"subscription {sub.id} belongs to another queue")
                    if _subscription(row) == sub:
                        continue
                # The source's copy wins over another id holding the same subscriber here.
                await conn.execute(
                    "DELETE FROM subscriptions WHERE project = $1 AND source = $2"
                    " AND subscriber = $3 AND id != $4",
                    project,
                    source,
                    sub.subscriber,
                    sub.id,
                )
                await conn.execute(
                    f"INSERT INTO subscriptions ({COLUMNS}, project)"
                    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (id) DO UPDATE SET"
                    " subscriber = EXCLUDED.subscriber, ttl = EXCLUDED.ttl,"
                    " created = EXCLUDED.created, expires = EXCLUDED.expires,"
                    " options = EXCLUDED.options, confirmed = EXCLUDED.confirmed",
                    sub.id,
                    source,
                    sub.subscriber,
                    sub.ttl,
                    sub.created,
                    sub.expires,
                    json.dumps(sub.options),
                    sub.confirmed,
                    project,
                )
                changed += 1
        return changed

    async def delete_subscriptions(self, project: str, source: str, ids: Sequence[str]) -> int:
        if not ids:
            return 0
        async with self._db.session() as conn:
            status = await conn.execute(
                "DELETE FROM subscriptions WHERE project = $1 AND source = $2"
                " AND id = ANY($3::text[])",
                project,
                source,
                list(ids),
            )
        return int(status.split()[-1])


async def delete_all(conn: Any, project: str, source: str) -> int:
    """Delete every subscription of `source` (inside a caller's transaction: a queue's delete)."""
    status = await conn.execute(
        "DELETE FROM subscriptions WHERE project = $1 AND source = $2", project, source
    )
    return int(status.split()[-1])

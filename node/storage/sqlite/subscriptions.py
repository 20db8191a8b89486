"""The SQLite driver's subscriptions (`node.storage.base.SubscriptionStore`)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from typing import Any

from node.errors import SubscriptionAlreadyExists, SubscriptionDoesNotExist, TransferConflict
from node.models import Subscription, new_id
from node.storage.base import Subscriptions
from node.storage.sqlite.database import Database
from node.storage.sqlite.outbox import forget_owed
from node.storage.sqlite.schema import check_readable, check_writable, placeholders

COLUMNS = "id, source, subscriber, ttl, created, expires, options, confirmed"
OF_SOURCE = "project = ? AND source = ?"


def _subscription(row: Sequence[Any]) -> Subscription:
    sid, source, subscriber, ttl, created, expires, options, confirmed = row
    return Subscription(
        id=sid,
        source=source,
        subscriber=subscriber,
        ttl=ttl,
        created=created,
        expires=expires,
        options=json.loads(options),
        confirmed=bool(confirmed),
    )


def _clear_expired(
    conn: sqlite3.Connection, project: str, source: str, subscriber: str, now: float
) -> None:
    """Make room for `subscriber`: an expired subscription still holds its unique key."""
    conn.execute(
        f"DELETE FROM subscriptions WHERE {OF_SOURCE} AND subscriber = ? AND expires <= ?",
        (project, source, subscriber, now),
    )


class SqliteSubscriptions:
    def __init__(self, storage: Database) -> None:
        self._s = storage

    async def create(
        self, project: str, source: str, subscriber: str, ttl: int, options: dict[str, Any]
    ) -> str | None:
        def create(conn: sqlite3.Connection, now: float) -> str | None:
            check_writable(conn, project, source)
            _clear_expired(conn, project, source, subscriber, now)
            sid = new_id()
            inserted = conn.execute(
                "INSERT OR IGNORE INTO subscriptions"
                f" ({COLUMNS}, project) VALUES (?,?,?,?,?,?,?,0,?)",
                (sid, source, subscriber, ttl, now, now + ttl, json.dumps(options), project),
            ).rowcount
            return sid if inserted else None

        return await self._s.write(create, self._s.clock())

    async def get(self, project: str, source: str, subscription_id: str) -> Subscription:
        found = await self._select(project, source, "id = ?", subscription_id)
        if not found:
            raise SubscriptionDoesNotExist(subscription_id)
        return found[0]

    async def find(self, project: str, source: str, subscriber: str) -> Subscription | None:
        found = await self._select(project, source, "subscriber = ?", subscriber)
        return found[0] if found else None

    async def list(
        self, project: str, source: str, *, marker: str | None, limit: int
    ) -> Subscriptions:
        return await self._select(project, source, "id > ?", marker or "", limit=limit)

    async def _select(
        self,
        project: str,
        source: str,
        condition: str,
        value: str,
        *,
        limit: int = -1,
        fenced: bool = True,
    ) -> Subscriptions:
        def select(conn: sqlite3.Connection, now: float) -> Subscriptions:
            if fenced:
                check_readable(conn, project, source)
            rows = conn.execute(
                f"SELECT {COLUMNS} FROM subscriptions WHERE {OF_SOURCE} AND expires > ?"
                f" AND {condition} ORDER BY id LIMIT ?",
                (project, source, now, value, limit),
            ).fetchall()
            return [_subscription(row) for row in rows]

        return await self._s.read(select, self._s.clock())

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
        def update(conn: sqlite3.Connection, now: float) -> None:
            check_writable(conn, project, source)
            changes: dict[str, Any] = {}
            if subscriber is not None:
                changes["subscriber"] = subscriber
                _clear_expired(conn, project, source, subscriber, now)
            if ttl is not None:
                changes["ttl"] = ttl
                changes["expires"] = now + ttl
            if options is not None:
                changes["options"] = json.dumps(options)
            assignments = ", ".join(f"{name} = ?" for name in changes) or "id = id"
            try:
                updated = conn.execute(
                    f"UPDATE subscriptions SET {assignments}"
                    f" WHERE id = ? AND {OF_SOURCE} AND expires > ?",
                    (*changes.values(), subscription_id, project, source, now),
                ).rowcount
            except sqlite3.IntegrityError:
                raise SubscriptionAlreadyExists() from None
            if not updated:
                raise SubscriptionDoesNotExist(subscription_id)

        await self._s.write(update, self._s.clock())

    async def confirm(
        self, project: str, source: str, subscription_id: str, confirmed: bool
    ) -> None:
        def confirm(conn: sqlite3.Connection, now: float) -> int:
            check_writable(conn, project, source)
            return conn.execute(
                f"UPDATE subscriptions SET confirmed = ? WHERE id = ? AND {OF_SOURCE}"
                " AND expires > ?",
                (int(confirmed), subscription_id, project, source, now),
            ).rowcount

        if not await self._s.write(confirm, self._s.clock()):
            raise SubscriptionDoesNotExist(subscription_id)

    async def delete(self, project: str, source: str, subscription_id: str) -> None:
        def delete(conn: sqlite3.Connection) -> None:
            check_writable(conn, project, source)
            conn.execute(
                f"DELETE FROM subscriptions WHERE id = ? AND {OF_SOURCE}",
                (subscription_id, project, source),
            )
            forget_owed(conn, project, source, subscription_id)

        await self._s.write(delete)

    async def purge(self, project: str, source: str) -> int:
        def purge(conn: sqlite3.Connection) -> int:
            check_writable(conn, project, source)
            forget_owed(conn, project, source)
            return delete_all(conn, project, source)

        return await self._s.write(purge)

    async def live(self, project: str, source: str) -> Subscriptions:
        return await self._select(project, source, "id > ?", "", fenced=False)

    async def subscribed(self, project: str, source: str) -> bool:
        row = await self._s.read(
            lambda c, now: c.execute(
                f"SELECT 1 FROM subscriptions WHERE {OF_SOURCE} AND expires > ? LIMIT 1",
                (project, source, now),
            ).fetchone(),
            self._s.clock(),
        )
        return row is not None

    async def export_subscriptions(self, project: str, source: str) -> Subscriptions:
        return await self.live(project, source)

    async def import_subscriptions(
        self, project: str, source: str, subscriptions: Sequence[Subscription]
    ) -> int:
        def upsert(conn: sqlite3.Connection, now: float) -> int:
            changed = 0
            for sub in subscriptions:
                row = conn.execute(
                    f"SELECT project, {COLUMNS} FROM subscriptions WHERE id = ?", (sub.id,)
                ).fetchone()
                if row is not None:
                    if (row[0], row[2]) != (project, source):
                        raise TransferConflict(f"subscription {sub.id} belongs to another queue")
                    if _subscription(row[1:]) == sub:
                        continue
                # The source's copy wins over another id holding the same subscriber here.
                conn.execute(
                    f"DELETE FROM subscriptions WHERE {OF_SOURCE} AND subscriber = ? AND id != ?",
                    (project, source, sub.subscriber, sub.id),
                )
                conn.execute(
                    f"INSERT OR REPLACE INTO subscriptions ({COLUMNS}, project)"
                    " VALUES (?,?,?,?,?,?,?,?,?)",
                    (
                        sub.id,
                        source,
                        sub.subscriber,
                        sub.ttl,
                        sub.created,
                        sub.expires,
                        json.dumps(sub.options),
                        int(sub.confirmed),
                        project,
                    ),
                )
                changed += 1
            return changed

        return await self._s.write(upsert, self._s.clock())

    async def delete_subscriptions(self, project: str, source: str, ids: Sequence[str]) -> int:
        def delete(conn: sqlite3.Connection) -> int:
            gone: int = conn.execute(
                f"DELETE FROM subscriptions WHERE {OF_SOURCE} AND id IN ({placeholders(len(ids))})",
                (project, source, *ids),
            ).rowcount
            return gone

        return await self._s.write(delete) if ids else 0


def delete_all(conn: sqlite3.Connection, project: str, source: str) -> int:
    """Delete every subscription of `source` (inside a caller's write: a queue's delete)."""
    gone: int = conn.execute(
        f"DELETE FROM subscriptions WHERE {OF_SOURCE}", (project, source)
    ).rowcount
    return gone

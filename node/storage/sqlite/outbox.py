"""The SQLite driver's outbox (`node.storage.outbox.OutboxStore`).

A held delivery's `due` is its lease's expiry, so one index on `due` finds what is due, held
or not: a lease moves `due` forward, a retry sets it to the next attempt's time.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from typing import Any

from node.models import NewMessage, new_id
from node.storage.outbox import Deliveries, Delivery, Nudge, notices
from node.storage.sqlite.database import Database
from node.storage.sqlite.schema import placeholders

COLUMNS = (
    "id, project, queue, subscription, subscriber, options, confirmed, notices, posted, due,"
    " failures, sent"
)
UNFENCED = (
    "NOT EXISTS (SELECT 1 FROM fences WHERE fences.project = outbox.project"
    " AND fences.queue = outbox.queue AND (fences.until = 0 OR fences.until > now()))"
)


def _row(d: Delivery) -> tuple[Any, ...]:
    return (
        d.id,
        d.project,
        d.queue,
        d.subscription_id,
        d.subscriber,
        json.dumps(d.options),
        int(d.confirmed),
        json.dumps(d.notices),
        d.posted,
        d.due,
        d.failures,
        d.sent,
    )


def _delivery(row: Sequence[Any], decoded: dict[str, Any] | None = None) -> Delivery:
    """A row as a delivery; with `decoded`, each JSON text is decoded once for all the rows
    that share it (a post's notices for each subscriber, a subscription's options for each
    post); the deliverer only reads them."""
    did, project, queue, sid, subscriber, options, confirmed, notices, posted, due = row[:10]
    if decoded is None:
        decoded = {}
    if options not in decoded:
        decoded[options] = json.loads(options)
    if notices not in decoded:
        decoded[notices] = json.loads(notices)
    return Delivery(
        id=did,
        project=project,
        queue=queue,
        subscription_id=sid,
        subscriber=subscriber,
        options=decoded[options],
        confirmed=bool(confirmed),
        notices=decoded[notices],
        posted=posted,
        due=due,
        failures=row[10],
        sent=row[11],
    )


def record_post(
    conn: sqlite3.Connection,
    project: str,
    queue: str,
    messages: Sequence[NewMessage],
    now: float,
) -> int:
    """Inside a post's transaction: one delivery of its notices per live subscription of the
    queue; return how many. A queue without subscriptions costs one indexed probe."""
    subscribed = conn.execute(
        "SELECT 1 FROM subscriptions WHERE project = ? AND source = ? AND expires > ? LIMIT 1",
        (project, queue, now),
    ).fetchone()
    if subscribed is None:
        return 0
    post_id = new_id()
    return conn.execute(
        f"INSERT INTO outbox ({COLUMNS})"
        " SELECT ? || id, project, source, id, subscriber, options, confirmed, ?, ?, ?, 0, 0"
        " FROM subscriptions WHERE project = ? AND source = ? AND expires > ?",
        (post_id + ":", notices(queue, messages), now, now, project, queue, now),
    ).rowcount


def forget_owed(
    conn: sqlite3.Connection, project: str, queue: str, subscription: str | None = None
) -> int:
    """Inside the write that deletes a subscription (or all of a queue's): what is still owed
    to it goes with it, so a deleted subscription is sent nothing more."""
    sql = "DELETE FROM outbox WHERE project = ? AND queue = ?"
    args: tuple[str, ...] = (project, queue)
    if subscription is not None:
        sql, args = sql + " AND subscription = ?", (*args, subscription)
    gone: int = conn.execute(sql, args).rowcount
    return gone


class SqliteOutbox:
    def __init__(self, storage: Database) -> None:
        self._s = storage
        self.written = Nudge()  # set by a post of this process that owes deliveries

    async def lease(self, owner: str, *, limit: int, lasts: float) -> Deliveries:
        def lease(conn: sqlite3.Connection, now: float) -> Deliveries:
            rows = conn.execute(
                "UPDATE outbox SET owner = ?, due = ? WHERE id IN (SELECT id FROM outbox"
                f" WHERE due <= ? AND {UNFENCED} ORDER BY due LIMIT ?) RETURNING {COLUMNS}",
                (owner, now + lasts, now, limit),
            ).fetchall()
            decoded: dict[str, Any] = {}
            return [_delivery(r, decoded) for r in rows]

        now = self._s.clock()
        # A read first: an idle outbox costs its deliverers no write lock.
        if await self._s.read(self._any_due, now) is None:
            return []
        return await self._s.write(lease, now)

    @staticmethod
    def _any_due(conn: sqlite3.Connection, now: float) -> object:
        return conn.execute("SELECT 1 FROM outbox WHERE due <= ? LIMIT 1", (now,)).fetchone()

    async def done(self, owner: str, ids: Sequence[str]) -> int:
        def done(conn: sqlite3.Connection) -> int:
            gone: int = conn.execute(
                f"DELETE FROM outbox WHERE id IN ({placeholders(len(ids))}) AND owner = ?",
                (*ids, owner),
            ).rowcount
            return gone

        return await self._s.write(done) if ids else 0

    async def retry(
        self, owner: str, delivery_id: str, *, due: float, failures: int, sent: int
    ) -> bool:
        def retry(conn: sqlite3.Connection) -> bool:
            return (
                conn.execute(
                    "UPDATE outbox SET due = ?, failures = ?, sent = ?, owner = ''"
                    " WHERE id = ? AND owner = ?",
                    (due, failures, sent, delivery_id, owner),
                ).rowcount
                > 0
            )

        return await self._s.write(retry)

    async def enqueue(self, deliveries: Sequence[Delivery]) -> None:
        def enqueue(conn: sqlite3.Connection) -> None:
            conn.executemany(
                f"INSERT OR IGNORE INTO outbox ({COLUMNS}) VALUES ({placeholders(12)})",
                [_row(d) for d in deliveries],
            )

        await self._s.write(enqueue)
        self.written.set()

    async def depth(self) -> int:
        row = await self._s.read(lambda c: c.execute("SELECT COUNT(*) FROM outbox").fetchone())
        return int(row[0])

    async def wait(self, seconds: float) -> None:
        await self.written.wait(seconds)

    async def export_outbox(self, project: str, queue: str) -> Deliveries:
        rows = await self._s.read(
            lambda c: c.execute(
                f"SELECT {COLUMNS} FROM outbox WHERE project = ? AND queue = ? ORDER BY id",
                (project, queue),
            ).fetchall()
        )
        return [_delivery(r) for r in rows]

    async def import_outbox(self, project: str, queue: str, deliveries: Sequence[Delivery]) -> int:
        def upsert(conn: sqlite3.Connection) -> int:
            new = 0
            for d in deliveries:
                new += conn.execute(
                    f"INSERT OR IGNORE INTO outbox ({COLUMNS}) VALUES ({placeholders(12)})",
                    _row(d),
                ).rowcount
            return new

        return await self._s.write(upsert) if deliveries else 0

    async def drop_outbox(self, project: str, queue: str) -> int:
        def drop(conn: sqlite3.Connection) -> int:
            gone: int = conn.execute(
                "DELETE FROM outbox WHERE project = ? AND queue = ?", (project, queue)
            ).rowcount
            return gone

        return await self._s.write(drop)

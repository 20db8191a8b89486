"""The SQLite driver's messages: post (a counter update and an insert), list, get, delete, pop."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from typing import Any

from node.errors import InvalidClaim, MessageDoesNotExist, QueueDoesNotExist
from node.models import Message, NewMessage, is_id, new_id
from node.storage.base import Ids, Messages
from node.storage.rules import check_delete
from node.storage.sqlite.database import Database
from node.storage.sqlite.outbox import SqliteOutbox, record_post
from node.storage.sqlite.schema import (
    BY_ID,
    FREE,
    LIVE,
    MESSAGE_COLUMNS,
    bury,
    check_readable,
    check_writable,
    placeholders,
)
from node.storage.transfer import message_from_row


class SqliteMessages:
    def __init__(self, storage: Database, outbox: SqliteOutbox) -> None:
        self._s = storage
        self._outbox = outbox

    async def post(
        self, project: str, queue: str, messages: Sequence[NewMessage], client_id: str
    ) -> Ids:
        ids = [new_id() for _ in messages]
        bodies = [json.dumps(m.body) for m in messages]

        def post(conn: sqlite3.Connection, now: float) -> None:
            # The fence is one more condition on the counter's update, and the change sequence
            # one more column of it: no extra statement.
            row = conn.execute(
                "UPDATE queues SET counter = counter + ?, stamp = stamp + tracked"
                " WHERE project = ? AND name = ?"
                " AND NOT EXISTS (SELECT 1 FROM fences"
                " WHERE fences.project = queues.project AND fences.queue = queues.name"
                " AND (fences.until = 0 OR fences.until > now()))"
                " RETURNING counter, stamp * tracked",
                (len(messages), project, queue),
            ).fetchone()
            if row is None:
                check_writable(conn, project, queue)
                raise QueueDoesNotExist(project, queue)
            first, stamp = row[0] - len(messages) + 1, row[1]
            conn.executemany(
                "INSERT INTO messages (id, project, queue, marker, body, ttl, created, expires,"
                " delay_expires, client_id, stamp) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                [
                    (
                        ids[i],
                        project,
                        queue,
                        first + i,
                        bodies[i],
                        m.ttl,
                        now,
                        now + m.ttl,
                        now + m.delay if m.delay else 0,
                        client_id,
                        stamp,
                    )
                    for i, m in enumerate(messages)
                ],
            )
            if record_post(conn, project, queue, messages, now):
                self._outbox.written.set()  # wakes this process's deliverer once committed

        await self._s.write(post, self._s.clock())
        return ids

    async def list(
        self,
        project: str,
        queue: str,
        *,
        marker: int | None,
        limit: int,
        echo: bool,
        include_claimed: bool,
        include_delayed: bool,
        client_id: str,
    ) -> Messages:
        now = self._s.clock()
        where = [LIVE, "marker > ?"]
        args: list[Any] = [project, queue, now, marker or 0]
        if not echo:
            where.append("client_id != ?")
            args.append(client_id)
        if not include_claimed:
            where.append("(claim_id IS NULL OR claim_expires <= ?)")
            args.append(now)
        if not include_delayed:
            where.append("delay_expires <= ?")
            args.append(now)
        sql = (
            f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE {' AND '.join(where)} "
            "ORDER BY marker LIMIT ?"
        )
        args.append(limit)
        return await self._s.read(_messages, project, queue, sql, args)

    async def get(self, project: str, queue: str, message_id: str) -> Message:
        found = await self.bulk_get(project, queue, [message_id])
        if not found:
            raise MessageDoesNotExist(project, queue, message_id)
        return found[0]

    async def bulk_get(self, project: str, queue: str, ids: Sequence[str]) -> Messages:
        ids = [i for i in ids if is_id(i)]
        if not ids:
            await self._s.read(check_readable, project, queue)
            return []
        sql = (
            f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE id IN ({placeholders(len(ids))})"
            f" AND {BY_ID} AND expires > ? ORDER BY marker"
        )
        args = (*ids, project, queue, self._s.clock())
        return await self._s.read(_messages, project, queue, sql, args)

    async def delete(self, project: str, queue: str, message_id: str, claim_id: str | None) -> None:
        malformed_claim = claim_id is not None and not is_id(claim_id)
        if malformed_claim or not is_id(message_id):
            await self._s.read(check_writable, project, queue)
            if malformed_claim:
                raise InvalidClaim()
            return

        def delete(conn: sqlite3.Connection, now: float) -> None:
            check_writable(conn, project, queue)
            row = conn.execute(
                f"SELECT claim_id, claim_expires, marker FROM messages WHERE {LIVE} AND id = ?",
                (project, queue, now, message_id),
            ).fetchone()
            if row is None:
                return
            check_delete(row[0] if row[0] is not None and row[1] > now else None, claim_id)
            conn.execute("DELETE FROM messages WHERE id = ?", (message_id,))
            bury(conn, project, queue, [(message_id, row[2])], now)

        await self._s.write(delete, self._s.clock())

    async def bulk_delete(
        self, project: str, queue: str, ids: Sequence[str], claim_ids: Sequence[str] | None
    ) -> None:
        ids = [i for i in ids if is_id(i)]
        if not ids:
            await self._s.read(check_writable, project, queue)
            return
        sql = f"DELETE FROM messages WHERE id IN ({placeholders(len(ids))}) AND {BY_ID}"
        args: list[Any] = [*ids, project, queue]
        if claim_ids is not None:
            sql += f" AND claim_id IN ({placeholders(len(claim_ids))})"
            args.extend(claim_ids)
        sql += " RETURNING id, marker"

        def delete(conn: sqlite3.Connection, now: float) -> None:
            check_writable(conn, project, queue)
            bury(conn, project, queue, conn.execute(sql, args).fetchall(), now)

        await self._s.write(delete, self._s.clock())

    async def pop(self, project: str, queue: str, limit: int) -> Messages:
        def pop(conn: sqlite3.Connection, now: float) -> Messages:
            check_writable(conn, project, queue)
            rows = conn.execute(
                f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE {LIVE} AND {FREE} "
                "ORDER BY marker LIMIT ?",
                (project, queue, now, now, now, limit),
            ).fetchall()
            popped = [message_from_row(r) for r in rows]
            if popped:
                conn.execute(
                    f"DELETE FROM messages WHERE id IN ({placeholders(len(popped))})",
                    [m.id for m in popped],
                )
                bury(conn, project, queue, [(m.id, m.marker) for m in popped], now)
            return popped

        return await self._s.write(pop, self._s.clock())


def _messages(
    conn: sqlite3.Connection, project: str, queue: str, sql: str, args: Sequence[Any]
) -> Messages:
    """Run a read of the queue's messages, unless the queue has moved away."""
    check_readable(conn, project, queue)
    return [message_from_row(r) for r in conn.execute(sql, args).fetchall()]

"""The PostgreSQL driver's message controller (`node.storage.base.MessageStore`).

A post is one statement: the queue's counter raised with `UPDATE ... RETURNING` and the messages
inserted from it, in one implicit transaction. Concurrent posts to one queue in one node process
are grouped (group commit): while one statement runs, the posts that arrive wait for it and then
go together in the next one, so a busy queue costs one statement per round trip, not per post.
The queue's row lock orders the statements of several processes: markers commit in order.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from node.errors import InvalidClaim, MessageDoesNotExist, QueueDoesNotExist
from node.models import Message, NewMessage, is_id, new_id
from node.storage.outbox import Nudge
from node.storage.postgresql.connection import Database
from node.storage.postgresql.metadata import UNSEEN, Copies, confirm, same, seen
from node.storage.postgresql.schema import (
    FREE,
    IN_QUEUE,
    LIVE,
    LIVE_BY_KEY,
    MESSAGE_COLUMNS,
    NOT_MOVED,
    bury,
    check_writable,
    hold_queue,
    unfenced,
)
from node.storage.rules import check_delete
from node.storage.transfer import message_from_row

Messages = list[Message]
Ids = list[str]

# The outbox (node.storage.outbox) is written by the same statement: one delivery of the group's
# notices (Zaqar's, in marker order) per live subscription of the queue, `$10` naming the group.
# A queue without subscriptions costs one index probe; its notices are never rendered.
# With `$11`, nothing is posted unless the queue's metadata is `$12` (node.storage.reading).
POST = f"""
WITH q AS (
    UPDATE queues SET counter = counter + $3, stamp = stamp + tracked::int
    WHERE project = $1 AND name = $2 AND {unfenced("$4::float8")}
        AND (NOT $11::boolean OR metadata IS NOT DISTINCT FROM $12::text)
    RETURNING counter - $3 AS base, CASE WHEN tracked THEN stamp ELSE 0 END AS stamp),
posted AS (
    INSERT INTO messages (id, project, queue, marker, body, ttl, created, expires,
                          delay_expires, client_id, stamp)
    SELECT m.id, $1, $2, q.base + m.n, m.body, m.ttl, $4::float8, $4::float8 + m.ttl,
           CASE WHEN m.delay > 0 THEN $4::float8 + m.delay ELSE 0 END, m.client_id, q.stamp
    FROM q, unnest($5::text[], $6::text[], $7::int[], $8::int[], $9::text[])
         WITH ORDINALITY AS m(id, body, ttl, delay, client_id, n)
    RETURNING 1),
owed AS (
    INSERT INTO outbox (id, project, queue, subscription, subscriber, options, confirmed,
                        notices, posted, due)
    SELECT $10 || ':' || s.id, $1, $2, s.id, s.subscriber, s.options, s.confirmed,
           (SELECT json_agg(json_build_object('ttl', m.ttl, 'body', m.body::json,
                                              'Message_Type', 'Notification',
                                              'queue_name', $2::text) ORDER BY m.n)::text
            FROM unnest($6::text[], $7::int[]) WITH ORDINALITY AS m(body, ttl, n)),
           $4::float8, $4::float8
    FROM subscriptions s
    WHERE EXISTS (SELECT 1 FROM q) AND s.project = $1 AND s.source = $2 AND s.expires > $4
    RETURNING 1)
SELECT (SELECT count(*) FROM posted), (SELECT count(*) FROM owed)
"""
# The fast path of a delete under a claim, or of a free message with none: one statement, taken
# only when the queue is not tracked (the slow path stamps and buries). `$5` is the claim named.
DELETE_HELD = f"""
WITH q AS MATERIALIZED (
    SELECT 1 FROM queues WHERE project = $1 AND name = $2 AND {unfenced("$3")} AND NOT tracked
    FOR KEY SHARE)
DELETE FROM messages WHERE EXISTS (SELECT 1 FROM q) AND id = $4 AND {LIVE_BY_KEY}
    AND claim_id IS NOT DISTINCT FROM $5 AND ($5::text IS NULL OR claim_expires > $3)
    AND ($5::text IS NOT NULL OR claim_expires <= $3 OR claim_id IS NULL)
RETURNING marker
"""


@dataclass
class _Post:
    ids: list[str]
    bodies: list[str]
    ttls: list[int]
    delays: list[int]
    client_id: str
    done: asyncio.Future[None] = field(default_factory=asyncio.Future)


Batch = tuple[str, str, object]  # project, queue, the metadata its posts saw (or UNSEEN)


class PostgresMessages:
    def __init__(
        self, db: Database, clock: Callable[[], float], written: Nudge, copies: Copies
    ) -> None:
        self._db = db
        self._clock = clock
        self._written = written  # the outbox's: this process's deliverer, woken by a post
        self._copies = copies  # node.storage.postgresql.metadata
        self._waiting: dict[Batch, list[_Post]] = {}
        self._running: set[asyncio.Task[None]] = set()

    async def post(
        self, project: str, queue: str, messages: Sequence[NewMessage], client_id: str
    ) -> Ids:
        post = _Post(
            ids=[new_id() for _ in messages],
            bodies=[json.dumps(m.body) for m in messages],
            ttls=[m.ttl for m in messages],
            delays=[m.delay for m in messages],
            client_id=client_id,
        )
        key = (project, queue, seen(project, queue))
        waiting = self._waiting.get(key)
        if waiting is not None:
            waiting.append(post)
        else:
            self._waiting[key] = [post]
            task = asyncio.create_task(self._flush(key))
            self._running.add(task)
            task.add_done_callback(self._running.discard)
        await asyncio.shield(post.done)
        return post.ids

    async def _flush(self, key: Batch) -> None:
        """Post what waits for the queue, one statement at a time, until nothing waits."""
        try:
            while batch := self._waiting.get(key):
                self._waiting[key] = []
                try:
                    await self._insert(key, batch)
                except Exception as exc:
                    for post in batch:
                        post.done.set_exception(exc)
                else:
                    for post in batch:
                        post.done.set_result(None)
        finally:
            del self._waiting[key]

    async def _insert(self, key: Batch, batch: list[_Post]) -> None:
        project, queue, saw = key
        columns: list[list[Any]] = [[], [], [], [], []]
        for post in batch:
            columns[0] += post.ids
            columns[1] += post.bodies
            columns[2] += post.ttls
            columns[3] += post.delays
            columns[4] += [post.client_id] * len(post.ids)
        now = self._clock()
        async with self._db.session() as conn:
            checked = saw is not UNSEEN
            posted, owed = await conn.fetchrow(
                POST,
                project,
                queue,
                len(columns[0]),
                now,
                *columns,
                new_id(),
                checked,
                saw if checked else None,
            )
            if posted == 0:  # nothing inserted: no queue, a fenced one, or other metadata
                await check_writable(conn, project, queue, now)
                if checked:
                    await confirm(conn, self._copies, project, queue, now, saw)
                raise QueueDoesNotExist(project, queue)
        if owed:
            self._written.set()

    async def wait_idle(self) -> None:
        """Let the posts in flight finish (at close)."""
        if self._running:
            await asyncio.gather(*self._running, return_exceptions=True)

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
        # The limit is written into the statement (a page is at most 20 messages: a statement
        # per size): with `LIMIT $n` the server plans every list again (a generic plan looks
        # costlier than one for a known limit), which took half its CPU per list at depth
        # (BENCHMARKS.md, PostgreSQL driver); with a constant it reuses one plan.
        now = self._clock()
        where = [LIVE, "marker > $4", NOT_MOVED]
        args: list[Any] = [project, queue, now, marker or 0]
        if not echo:
            args.append(client_id)
            where.append(f"client_id <> ${len(args)}")
        if not include_claimed:
            where.append("(claim_id IS NULL OR claim_expires <= $3)")
        if not include_delayed:
            where.append("delay_expires <= $3")
        if (saw := seen(project, queue)) is not UNSEEN:
            args.append(saw)
            where.append(same(f"${len(args)}"))
        sql = (
            f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE {' AND '.join(where)}"
            f" ORDER BY marker LIMIT {int(limit)}"
        )
        async with self._db.session() as conn:
            rows = await conn.fetch(sql, *args)
            if not rows:
                await confirm(conn, self._copies, project, queue, now, saw)
        return [message_from_row(row) for row in rows]

    async def get(self, project: str, queue: str, message_id: str) -> Message:
        found = await self.bulk_get(project, queue, [message_id])
        if not found:
            raise MessageDoesNotExist(project, queue, message_id)
        return found[0]

    async def bulk_get(self, project: str, queue: str, ids: Sequence[str]) -> Messages:
        ids = [i for i in ids if is_id(i)]
        now = self._clock()
        async with self._db.session() as conn:
            await confirm(conn, self._copies, project, queue, now, seen(project, queue))
            if not ids:
                return []
            rows = await conn.fetch(
                f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE id = ANY($4::text[])"
                f" AND {LIVE_BY_KEY}"
                " ORDER BY marker",
                project,
                queue,
                now,
                ids,
            )
        return [message_from_row(row) for row in rows]

    async def delete(self, project: str, queue: str, message_id: str, claim_id: str | None) -> None:
        malformed_claim = claim_id is not None and not is_id(claim_id)
        if malformed_claim or not is_id(message_id):
            async with self._db.session() as conn:
                await check_writable(conn, project, queue, self._clock())
            if malformed_claim:
                raise InvalidClaim()
            return
        now = self._clock()
        async with self._db.session() as conn:
            if await conn.fetchval(DELETE_HELD, project, queue, now, message_id, claim_id):
                return
        async with self._db.transaction() as conn:
            stamp = await hold_queue(conn, project, queue, now)
            if stamp is None:
                return
            row = await conn.fetchrow(
                "SELECT claim_id, claim_expires, marker FROM messages"
                f" WHERE id = $4 AND {LIVE_BY_KEY}"
                " FOR UPDATE",
                project,
                queue,
                now,
                message_id,
            )
            if row is None:
                return
            check_delete(row[0] if row[0] is not None and row[1] > now else None, claim_id)
            await conn.execute("DELETE FROM messages WHERE id = $1", message_id)
            await bury(conn, project, queue, [(message_id, row[2])], now, stamp)

    async def bulk_delete(
        self, project: str, queue: str, ids: Sequence[str], claim_ids: Sequence[str] | None
    ) -> None:
        ids = [i for i in ids if is_id(i)]
        now = self._clock()
        async with self._db.transaction() as conn:
            stamp = await hold_queue(conn, project, queue, now)
            if stamp is None or not ids:
                return
            sql = f"DELETE FROM messages WHERE id = ANY($3::text[]) AND {IN_QUEUE}"
            args: list[Any] = [project, queue, ids]
            if claim_ids is not None:
                sql += " AND claim_id = ANY($4::text[])"
                args.append(list(claim_ids))
            gone = await conn.fetch(sql + " RETURNING id, marker", *args)
            await bury(conn, project, queue, [(r[0], r[1]) for r in gone], now, stamp)

    async def pop(self, project: str, queue: str, limit: int) -> Messages:
        now = self._clock()
        async with self._db.transaction() as conn:
            stamp = await hold_queue(conn, project, queue, now)
            if stamp is None:
                return []
            if (saw := seen(project, queue)) is not UNSEEN:
                await confirm(conn, self._copies, project, queue, now, saw)
            rows = await conn.fetch(
                f"DELETE FROM messages WHERE id IN (SELECT id FROM messages WHERE {LIVE}"
                f" AND {FREE} ORDER BY marker LIMIT $4 FOR UPDATE SKIP LOCKED)"
                f" RETURNING {MESSAGE_COLUMNS}",
                project,
                queue,
                now,
                limit,
            )
            popped = sorted((message_from_row(row) for row in rows), key=lambda m: m.marker)
            await bury(conn, project, queue, [(m.id, m.marker) for m in popped], now, stamp)
        return popped

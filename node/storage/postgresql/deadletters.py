"""The PostgreSQL driver's dead letters bound for another partition (`DeadLetterStore`).

`receive` and `release` are writes of the dead-letter queue: each takes its row (`hold_queue`,
against a freeze) and its stamp, as a post does. The pile's own writes need neither.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence

from node.errors import QueueDoesNotExist
from node.models import Message, Outgoing
from node.storage.deadletters import MARK, SENT, bound_for, pile
from node.storage.postgresql.connection import Database
from node.storage.postgresql.schema import MESSAGE_COLUMNS, hold_queue
from node.storage.transfer import message_from_row

COLUMNS = ", ".join(f"m.{c.strip()}" for c in MESSAGE_COLUMNS.split(","))
# $1 now, $2 limit, $3 the piles' mark; through the partial index `queues_piles`.
WAITING = f"""
SELECT q.project, q.name, {COLUMNS} FROM queues q CROSS JOIN LATERAL (
    SELECT * FROM messages m WHERE m.project = q.project AND m.queue = q.name
    AND m.expires > $1 ORDER BY m.marker LIMIT $2) m
WHERE starts_with(q.name, $3)
ORDER BY q.name, q.project, m.marker LIMIT $2
"""
# $1 project, $2 queue, $3 stamp, then per message: $4 id, $5 marker, $6 hold.
FROM_PILE = """
UPDATE messages m SET queue = $2, marker = u.marker, delay_expires = 0, claim_id = u.hold,
    claim_expires = m.expires, stamp = $3
FROM unnest($4::text[], $5::bigint[], $6::text[]) AS u(id, marker, hold)
WHERE m.id = u.id AND m.project = $1
"""
# $1 project, $2 queue, $3 stamp, then per message: $4 id, $5 marker, $6 body, $7 ttl,
# $8 created, $9 expires, $10 client id, $11 hold, $12 claim count.
INSERT = """
INSERT INTO messages (id, project, queue, marker, body, ttl, created, expires, delay_expires,
                      client_id, claim_id, claim_expires, stamp, claim_count)
SELECT u.id, $1, $2, u.marker, u.body, u.ttl, u.created, u.expires, 0, u.client_id, u.hold,
       u.expires, $3, u.claims
FROM unnest($4::text[], $5::bigint[], $6::text[], $7::int[], $8::float8[], $9::float8[],
            $10::text[], $11::text[], $12::int[])
     AS u(id, marker, body, ttl, created, expires, client_id, hold, claims)
ON CONFLICT (id) DO NOTHING
"""
RELEASE = """
UPDATE messages m SET claim_id = NULL, claim_expires = 0, stamp = $3
FROM unnest($4::text[], $5::text[]) AS u(id, hold)
WHERE m.id = u.id AND m.project = $1 AND m.queue = $2 AND m.claim_id = u.hold
"""


class PostgresDeadLetters:
    def __init__(self, db: Database, clock: Callable[[], float]) -> None:
        self._db = db
        self._clock = clock

    async def waiting(self, *, limit: int) -> list[Outgoing]:
        async with self._db.session() as conn:
            rows = await conn.fetch(WAITING, self._clock(), limit, MARK)
        found = []
        for row in rows:
            message = message_from_row(row[2:])
            sent = message.claim_expires >= SENT
            found.append(Outgoing(row[0], bound_for(row[1]), message, sent))
        return found

    async def receive(self, project: str, queue: str, messages: Sequence[Message]) -> int:
        if not messages:
            return 0
        now = self._clock()
        async with self._db.transaction() as conn:
            stamp = await hold_queue(conn, project, queue, now)  # QueueFrozen when fenced
            if stamp is None:
                raise QueueDoesNotExist(project, queue)
            where = dict(
                await conn.fetch(
                    "SELECT id, queue FROM messages WHERE project = $1 AND id = ANY($2::text[])",
                    project,
                    [m.id for m in messages],
                )
            )
            new = [m for m in messages if where.get(m.id, pile(queue)) == pile(queue)]
            if not new:
                return 0
            counter = await conn.fetchval(
                "UPDATE queues SET counter = counter + $3 WHERE project = $1 AND name = $2"
                " RETURNING counter",
                project,
                queue,
                len(new),
            )
            first = int(counter) - len(new) + 1
            # The pile on this very partition (the dead-letter queue came here since): moved.
            piled = [(first + i, m) for i, m in enumerate(new) if m.id in where]
            fresh = [(first + i, m) for i, m in enumerate(new) if m.id not in where]
            if piled:
                await conn.execute(
                    FROM_PILE,
                    project,
                    queue,
                    stamp,
                    [m.id for _, m in piled],
                    [marker for marker, _ in piled],
                    [m.claim_id for _, m in piled],
                )
            if fresh:
                await conn.execute(
                    INSERT,
                    project,
                    queue,
                    stamp,
                    [m.id for _, m in fresh],
                    [marker for marker, _ in fresh],
                    [json.dumps(m.body) for _, m in fresh],
                    [m.ttl for _, m in fresh],
                    [m.created for _, m in fresh],
                    [m.expires for _, m in fresh],
                    [m.client_id for _, m in fresh],
                    [m.claim_id for _, m in fresh],
                    [m.claim_count for _, m in fresh],
                )
        return len(new)

    async def release(self, project: str, queue: str, messages: Sequence[Message]) -> int:
        if not messages:
            return 0
        async with self._db.transaction() as conn:
            stamp = await hold_queue(conn, project, queue, self._clock())
            if stamp is None:
                return 0
            status = await conn.execute(
                RELEASE,
                project,
                queue,
                stamp,
                [m.id for m in messages],
                [m.claim_id for m in messages],
            )
        return _count(status)

    async def sent(self, project: str, queue: str, ids: Sequence[str]) -> int:
        return await self._pile_write(
            "UPDATE messages SET claim_expires = $4", project, queue, ids, SENT
        )

    async def discard(self, project: str, queue: str, ids: Sequence[str]) -> int:
        return await self._pile_write("DELETE FROM messages", project, queue, ids)

    async def _pile_write(
        self, statement: str, project: str, queue: str, ids: Sequence[str], *args: object
    ) -> int:
        if not ids:
            return 0
        async with self._db.session() as conn:
            status = await conn.execute(
                f"{statement} WHERE project = $1 AND queue = $2 AND id = ANY($3::text[])",
                project,
                pile(queue),
                list(ids),
                *args,
            )
        return _count(status)


def _count(status: str) -> int:
    """The rows a statement's status (`UPDATE 3`, `DELETE 0`) says it touched."""
    return int(status.rsplit(" ", 1)[-1])

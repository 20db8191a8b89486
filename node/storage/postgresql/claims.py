"""The PostgreSQL driver's claim controller (`node.storage.base.ClaimStore`).

A claim picks its messages with `FOR UPDATE SKIP LOCKED`: concurrent claimers of one queue each
take rows no other is taking and never wait on each other; a row another claim committed
meanwhile is checked again on its new version and left out. Claims of an untracked queue are one
statement, which takes the queue's row `FOR KEY SHARE` (against a freeze; claimers share it).
A claim of a tracked queue made, renewed or released takes the write's stamp, and a release
leaves a tombstone (`schema.bury`, `claim`), as a message's write does.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from node.errors import ClaimDoesNotExist
from node.models import Claim, DeadLetter, Message, is_id, new_id
from node.storage.deadletters import pile
from node.storage.postgresql.connection import Database
from node.storage.postgresql.metadata import UNSEEN, Copies, confirm, seen
from node.storage.postgresql.schema import (
    FREE,
    IN_QUEUE,
    LIVE,
    LIVE_BY_KEY,
    MESSAGE_COLUMNS,
    bury,
    check_writable,
    hold_queue,
    unfenced,
)
from node.storage.transfer import message_from_row

Messages = list[Message]

# $4 claim id, $5 claim expires, $6 the messages' least expiry (claim end + grace), $7 their
# ttl when extended to it, $8 the stamp, $9 claim ttl, $10 claim grace. The limit is written
# into the statement, as a list's is (`messages.list`): with `LIMIT $n` the server plans every
# claim again; with a constant it keeps one plan per connection and limit (a limit is at most
# the API's `max_messages_per_claim_or_pop`: a few statements).
PICK = f"""
picked AS (
    SELECT id FROM messages WHERE {LIVE} AND {FREE}
    ORDER BY marker LIMIT {{limit}} FOR UPDATE SKIP LOCKED),
held AS (
    UPDATE messages m SET claim_id = $4, claim_expires = $5, stamp = $8,
        claim_count = m.claim_count + 1,
        ttl = CASE WHEN m.expires < $6 THEN $7 ELSE m.ttl END,
        expires = GREATEST(m.expires, $6)
    FROM picked WHERE m.id = picked.id
    RETURNING {", ".join(f"m.{c.strip()}" for c in MESSAGE_COLUMNS.split(","))}),
made AS (
    INSERT INTO claims (id, project, queue, ttl, grace, created, expires, stamp)
    SELECT $4, $1, $2, $9, $10, $3, $5, $8 WHERE EXISTS (SELECT 1 FROM held))
SELECT * FROM held ORDER BY marker
"""
# Untracked: the queue's row shared against a freeze, stamp 0. The queue is found again on the
# row version a freeze committed, so `ready` is empty for a queue fenced meanwhile. With `$11`,
# it is empty unless the queue's metadata is `$12` (node.storage.reading).
CLAIM = f"""
WITH ready AS MATERIALIZED (
    SELECT 1 FROM queues WHERE project = $1 AND name = $2 AND {unfenced("$3")} AND NOT tracked
        AND (NOT $11::boolean OR metadata IS NOT DISTINCT FROM $12::text)
    FOR KEY SHARE),
{PICK.replace(f"WHERE {LIVE}", f"WHERE EXISTS (SELECT 1 FROM ready) AND {LIVE}", 1)}
"""
CLAIM_TRACKED = f"WITH {PICK}"


@functools.lru_cache(maxsize=128)
def with_limit(statement: str, limit: int) -> str:
    """`CLAIM` or `CLAIM_TRACKED` for claims of `limit` messages (the same text object each
    time: asyncpg finds its prepared statement by the text)."""
    return statement.replace("{limit}", str(int(limit)), 1)


# Markers in an outgoing pile of dead letters (`node.storage.deadletters`), its record made on
# first use: $4 markers, returned as (counter, stamp 0: a pile is never tracked).
PILE_MARKERS = """
INSERT INTO queues (project, name, created, counter) VALUES ($1, $2, $3, $4)
ON CONFLICT (project, name) DO UPDATE SET counter = queues.counter + $4
RETURNING counter, 0
"""


class PostgresClaims:
    def __init__(self, db: Database, clock: Callable[[], float], copies: Copies) -> None:
        self._db = db
        self._clock = clock
        self._copies = copies  # node.storage.postgresql.metadata

    async def create(
        self, project: str, queue: str, *, ttl: int, grace: int, limit: int
    ) -> tuple[Claim, Messages]:
        now = self._clock()
        claim = Claim(id=new_id(), ttl=ttl, grace=grace, created=now, expires=now + ttl)
        args: list[Any] = [
            project,
            queue,
            now,
            claim.id,
            claim.expires,
            claim.expires + grace,
            ttl + grace,
            0,
            ttl,
            grace,
        ]
        saw = seen(project, queue)
        async with self._db.session() as conn:
            rows = await conn.fetch(
                with_limit(CLAIM, limit), *args, saw is not UNSEEN, None if saw is UNSEEN else saw
            )
            if rows:
                return claim, [message_from_row(row) for row in rows]
        # Nothing claimed: no free message, or the queue is missing, fenced, tracked, or its
        # metadata is not what the request saw.
        async with self._db.transaction() as conn:
            stamp = await hold_queue(conn, project, queue, now)
            if saw is not UNSEEN:
                await confirm(conn, self._copies, project, queue, now, saw)
            if not stamp:
                return claim, []
            args[7] = stamp
            rows = await conn.fetch(with_limit(CLAIM_TRACKED, limit), *args)
        return claim, [message_from_row(row) for row in rows]

    async def dead_letter(self, project: str, queue: str, policy: DeadLetter, *, limit: int) -> int:
        if policy.queue == queue:
            return 0
        now = self._clock()
        async with self._db.transaction() as conn:
            stamp = await hold_queue(conn, project, queue, now)
            if stamp is None:
                return 0
            if (saw := seen(project, queue)) is not UNSEEN:  # the policy came from metadata
                await confirm(conn, self._copies, project, queue, now, saw)
            dead = await conn.fetch(
                f"SELECT id, marker, ttl, expires FROM messages WHERE {LIVE} AND {FREE}"
                " AND claim_count >= $4 ORDER BY marker LIMIT $5 FOR UPDATE SKIP LOCKED",
                project,
                queue,
                now,
                policy.max_claims,
                limit,
            )
            if not dead:
                return 0
            # The dead-letter queue's row, locked as a post locks it: here and unfenced, or
            # nothing moves. Its counter hands out the moved messages' markers.
            target = await conn.fetchrow(
                "UPDATE queues SET counter = counter + $4, stamp = stamp + tracked::int"
                f" WHERE project = $1 AND name = $2 AND {unfenced('$3')}"
                " RETURNING counter, CASE WHEN tracked THEN stamp ELSE 0 END",
                project,
                policy.queue,
                now,
                len(dead),
            )
            dest, hold = policy.queue, None
            if target is None:  # not here, or fenced: to the outgoing pile, under a hold
                dest, hold = pile(policy.queue), new_id()
                target = await conn.fetchrow(PILE_MARKERS, project, dest, now, len(dead))
            first, target_stamp = int(target[0]) - len(dead) + 1, int(target[1])
            ttls = [policy.ttl if policy.ttl is not None else int(r[2]) for r in dead]
            expires = [now + policy.ttl if policy.ttl is not None else r[3] for r in dead]
            await conn.execute(
                "UPDATE messages m SET queue = $2, marker = u.marker, ttl = u.ttl,"
                " expires = u.expires, delay_expires = 0, claim_id = $8, claim_expires = 0,"
                " stamp = $3"
                " FROM unnest($4::text[], $5::bigint[], $6::int[], $7::float8[])"
                " AS u(id, marker, ttl, expires) WHERE m.id = u.id AND m.project = $1",
                project,
                dest,
                target_stamp,
                [r[0] for r in dead],
                list(range(first, first + len(dead))),
                ttls,
                expires,
                hold,
            )
            await bury(conn, project, queue, [(r[0], int(r[1])) for r in dead], now, stamp)
        return len(dead)

    async def get(self, project: str, queue: str, claim_id: str) -> tuple[Claim, Messages]:
        now = self._clock()
        async with self._db.session() as conn:
            await confirm(conn, self._copies, project, queue, now, seen(project, queue))
            if not is_id(claim_id):
                raise ClaimDoesNotExist(project, queue, claim_id)
            row = await conn.fetchrow(
                "SELECT id, ttl, grace, created, expires FROM claims"
                f" WHERE id = $4 AND {LIVE_BY_KEY}",
                project,
                queue,
                now,
                claim_id,
            )
            if row is None:
                raise ClaimDoesNotExist(project, queue, claim_id)
            rows = await conn.fetch(
                f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE claim_id = $4 AND {LIVE_BY_KEY}"
                " ORDER BY marker",
                project,
                queue,
                now,
                claim_id,
            )
        return Claim(*row), [message_from_row(r) for r in rows]

    async def update(
        self, project: str, queue: str, claim_id: str, *, ttl: int, grace: int
    ) -> None:
        now = self._clock()
        if not is_id(claim_id):
            async with self._db.session() as conn:
                await check_writable(conn, project, queue, now)
            raise ClaimDoesNotExist(project, queue, claim_id)
        expires = now + ttl
        async with self._db.transaction() as conn:
            stamp = await hold_queue(conn, project, queue, now)
            if stamp is None:
                raise ClaimDoesNotExist(project, queue, claim_id)
            found = await conn.fetchval(
                "UPDATE claims SET ttl = $5, grace = $6, expires = $7, stamp = $8"
                f" WHERE id = $4 AND {LIVE_BY_KEY} RETURNING true",
                project,
                queue,
                now,
                claim_id,
                ttl,
                grace,
                expires,
                stamp,
            )
            if found is None:
                raise ClaimDoesNotExist(project, queue, claim_id)
            await conn.execute(
                "UPDATE messages SET claim_expires = $5, stamp = $6,"
                " ttl = CASE WHEN expires < $7 THEN $8 ELSE ttl END,"
                " expires = GREATEST(expires, $7)"
                f" WHERE claim_id = $4 AND {LIVE_BY_KEY}",
                project,
                queue,
                now,
                claim_id,
                expires,
                stamp,
                expires + grace,
                ttl + grace,
            )

    async def delete(self, project: str, queue: str, claim_id: str) -> None:
        now = self._clock()
        if not is_id(claim_id):
            async with self._db.session() as conn:
                await check_writable(conn, project, queue, now)
            return
        async with self._db.transaction() as conn:
            stamp = await hold_queue(conn, project, queue, now)
            if stamp is None:
                return
            await conn.execute(
                "UPDATE messages SET claim_id = NULL, claim_expires = 0, stamp = $4"
                f" WHERE claim_id = $3 AND {IN_QUEUE}",
                project,
                queue,
                claim_id,
                stamp,
            )
            status = await conn.execute(
                f"DELETE FROM claims WHERE id = $3 AND {IN_QUEUE}",
                project,
                queue,
                claim_id,
            )
            if status.split()[-1] != "0":
                await bury(conn, project, queue, [(claim_id, 0)], now, stamp, claim=True)

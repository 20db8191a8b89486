"""The PostgreSQL driver's `TransferStore`: fences, change tracking, a queue copied out and in.

`freeze` locks the queue's row `FOR UPDATE` and sets its fence there and in `fences`, in one
transaction: every write holds that row while it acts (`schema.hold_queue`, or the post's own
update), so once `freeze` has returned nothing lands. `track` locks the row the same way, so a
write that began untracked has committed before tracking starts. Stamps are taken while the
queue's row is held, so they commit in order, and `changes` reads in one repeatable-read
snapshot: it misses nothing. Imports write only what differs, in one transaction per call.
A fence's deadline (`lasts`) is the storage's clock plus `lasts`, kept in `fences.until` and on
the queue's row; `extend` moves it under the same row lock as `freeze`, only while it holds.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from node.errors import ChangesLost, QueueDoesNotExist
from node.models import Changes, Claim, Message, MessageRow, QueueDigest, QueueExport, Removed
from node.storage import transfer
from node.storage.postgresql.connection import Database
from node.storage.postgresql.queues import NAME_LOCK
from node.storage.postgresql.schema import (
    LIVE,
    MESSAGE_COLUMNS,
    bury,
    fence_of,
    next_stamp,
    unfenced,
)
from node.storage.postgresql.subscriptions import delete_all as delete_subscriptions
from node.storage.postgresql.upsert import (
    CLAIM_FIELDS,
    CLAIM_TYPES,
    MESSAGE_FIELDS,
    MESSAGE_TYPES,
    upsert,
)
from node.storage.transfer import message_from_row

CLAIM_COLUMNS = "id, ttl, grace, created, expires"
# A `MessageRow`, a claim that has expired reported as none (as `transfer.exported` does).
ROW = (
    "id, marker, body, ttl, created, expires, client_id, delay_expires,"
    " CASE WHEN claim_id IS NOT NULL AND claim_expires > $3 THEN claim_id END,"
    " CASE WHEN claim_id IS NOT NULL AND claim_expires > $3 THEN claim_expires ELSE 0 END"
)


class PostgresTransfer:
    def __init__(self, db: Database, clock: Callable[[], float]) -> None:
        self._db = db
        self._clock = clock

    async def freeze(
        self, project: str, queue: str, reason: str, *, lasts: float | None = None
    ) -> None:
        transfer.check_reason(reason)
        until = 0.0 if lasts is None else self._clock() + lasts
        await self._fence(project, queue, reason, until)

    async def unfreeze(self, project: str, queue: str) -> None:
        await self._fence(project, queue, None, 0.0)

    async def _fence(self, project: str, queue: str, reason: str | None, until: float) -> None:
        async with self._db.transaction() as conn:
            await conn.execute(NAME_LOCK, project, queue)
            await conn.execute(
                "SELECT 1 FROM queues WHERE project = $1 AND name = $2 FOR UPDATE", project, queue
            )
            if reason is None:
                await conn.execute(
                    "DELETE FROM fences WHERE project = $1 AND queue = $2", project, queue
                )
            else:
                await conn.execute(
                    "INSERT INTO fences (project, queue, reason, until) VALUES ($1, $2, $3, $4)"
                    " ON CONFLICT (project, queue) DO UPDATE SET reason = excluded.reason,"
                    " until = excluded.until",
                    project,
                    queue,
                    reason,
                    until,
                )
            await conn.execute(
                "UPDATE queues SET fence = $3, fence_until = $4 WHERE project = $1 AND name = $2",
                project,
                queue,
                reason,
                until,
            )

    async def extend(self, project: str, queue: str, lasts: float) -> bool:
        now = self._clock()
        async with self._db.transaction() as conn:
            await conn.execute(NAME_LOCK, project, queue)
            await conn.execute(
                "SELECT 1 FROM queues WHERE project = $1 AND name = $2 FOR UPDATE", project, queue
            )
            until = await conn.fetchval(
                "UPDATE fences SET until = $3 WHERE project = $1 AND queue = $2"
                " AND until > $4 RETURNING until",
                project,
                queue,
                now + lasts,
                now,
            )
            if until is None:
                return False
            await conn.execute(
                "UPDATE queues SET fence_until = $3 WHERE project = $1 AND name = $2",
                project,
                queue,
                until,
            )
        return True

    async def fence(self, project: str, queue: str) -> str | None:
        async with self._db.session() as conn:
            fence = await fence_of(conn, project, queue, self._clock())
        return None if fence is None else fence[0]

    async def track(self, project: str, queue: str, enabled: bool) -> None:
        async with self._db.transaction() as conn:
            found = await conn.fetchval(
                "SELECT true FROM queues WHERE project = $1 AND name = $2 FOR UPDATE",
                project,
                queue,
            )
            if found is None:
                raise QueueDoesNotExist(project, queue)
            await conn.execute(
                "UPDATE queues SET tracked = $3 WHERE project = $1 AND name = $2",
                project,
                queue,
                enabled,
            )

    async def sequence(self, project: str, queue: str) -> int:
        async with self._db.session() as conn:
            value = await conn.fetchval(
                "SELECT stamp FROM queues WHERE project = $1 AND name = $2", project, queue
            )
        return 0 if value is None else int(value)

    async def changes(self, project: str, queue: str, *, since: int, limit: int) -> Changes:
        transfer.check_limit(limit)
        now = self._clock()
        async with self._db.transaction("repeatable_read") as conn:
            row = await conn.fetchrow(
                "SELECT stamp, forgotten, tracked FROM queues WHERE project = $1 AND name = $2",
                project,
                queue,
            )
            if row is None or not row[2] or since > row[0] or since < row[1]:
                raise ChangesLost(f"changes of queue {queue} after {since} cannot be told")
            scope = " FROM {} WHERE project = $1 AND queue = $2"
            streams = (
                f"SELECT {MESSAGE_COLUMNS}, stamp" + scope.format("messages"),
                "SELECT id, marker, stamp" + scope.format("removed") + " AND NOT claim",
                f"SELECT {CLAIM_COLUMNS}, stamp" + scope.format("claims"),
                "SELECT id, stamp" + scope.format("removed") + " AND claim",
            )
            above = " AND stamp > 0 AND stamp > $3 ORDER BY stamp LIMIT $4"
            pages = [
                list(await conn.fetch(sql + above, project, queue, since, limit)) for sql in streams
            ]
            full = [rows[-1][-1] for rows in pages if len(rows) == limit]
            upto, more = int(row[0]), bool(full)
            if more:
                # Up to the smaller last stamp of a full page, and all of that stamp's write.
                upto = min(full)
                pages = [
                    [r for r in rows if r[-1] < upto]
                    + list(await conn.fetch(sql + " AND stamp = $3", project, queue, upto))
                    for sql, rows in zip(streams, pages, strict=True)
                ]
        messages, removed, claims, released = pages
        return Changes(
            messages=tuple(transfer.exported(message_from_row(m), now) for m in messages),
            removed=tuple(Removed(r[0], r[1]) for r in removed),
            upto=upto,
            more=more,
            claims=tuple(Claim(*c[:-1]) for c in claims),
            released=tuple(r[0] for r in released),
        )

    async def fingerprints(
        self, project: str, queue: str, *, after_marker: int, limit: int
    ) -> list[tuple[int, int]]:
        now = self._clock()
        async with self._db.session() as conn:
            rows = await conn.fetch(
                "SELECT id, marker, body, expires, claim_id, claim_expires FROM messages"
                f" WHERE {LIVE} AND marker > $4 ORDER BY marker LIMIT $5",
                project,
                queue,
                now,
                after_marker,
                limit,
            )
        return [
            (marker, transfer.fingerprint(mid, marker, body, expires, claim, claimed, now))
            for mid, marker, body, expires, claim, claimed in rows
        ]

    async def export_queue(self, project: str, queue: str) -> QueueExport | None:
        async with self._db.session() as conn:
            row = await conn.fetchrow(
                f"SELECT metadata, counter, created, CASE WHEN {unfenced('$3')} THEN NULL"
                " ELSE fence END FROM queues WHERE project = $1 AND name = $2",
                project,
                queue,
                self._clock(),
            )
        if row is None:
            return None
        return QueueExport(
            metadata=json.loads(row[0]), counter=row[1], created=row[2], fence=row[3]
        )

    async def export_messages(
        self, project: str, queue: str, *, after_marker: int, limit: int
    ) -> list[Message]:
        now = self._clock()
        async with self._db.session() as conn:
            rows = await conn.fetch(
                f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE {LIVE} AND marker > $4"
                " ORDER BY marker LIMIT $5",
                project,
                queue,
                now,
                after_marker,
                limit,
            )
        return [transfer.exported(message_from_row(row), now) for row in rows]

    async def export_rows(
        self, project: str, queue: str, *, after_marker: int, limit: int
    ) -> list[MessageRow]:
        async with self._db.session() as conn:
            rows = await conn.fetch(
                f"SELECT {ROW} FROM messages WHERE {LIVE} AND marker > $4 ORDER BY marker LIMIT $5",
                project,
                queue,
                self._clock(),
                after_marker,
                limit,
            )
        return [MessageRow._make(row) for row in rows]

    async def export_claims(
        self, project: str, queue: str, *, ids: Sequence[str] | None = None
    ) -> list[Claim]:
        sql = (
            f"SELECT {CLAIM_COLUMNS} FROM claims WHERE project = $1 AND queue = $2 AND expires > $3"
        )
        args: list[Any] = [project, queue, self._clock()]
        if ids is not None:
            sql += " AND id = ANY($4::text[])"
            args.append(list(ids))
        async with self._db.session() as conn:
            rows = await conn.fetch(sql + " ORDER BY created, id", *args)
        return [Claim(*row) for row in rows]

    async def import_queue(self, project: str, queue: str, export: QueueExport) -> None:
        async with self._db.transaction() as conn:
            await conn.execute(NAME_LOCK, project, queue)
            await conn.execute(
                "INSERT INTO queues (project, name, metadata, counter, created, fence, fence_until)"
                " VALUES ($1, $2, $3, $4, $5,"
                " (SELECT reason FROM fences WHERE project = $1 AND queue = $2),"
                " COALESCE((SELECT until FROM fences WHERE project = $1 AND queue = $2), 0))"
                " ON CONFLICT (project, name) DO UPDATE SET metadata = excluded.metadata,"
                " created = excluded.created,"
                " counter = GREATEST(queues.counter, excluded.counter)",
                project,
                queue,
                json.dumps(export.metadata),
                export.counter,
                export.created,
            )

    async def import_messages(self, project: str, queue: str, messages: Sequence[Message]) -> int:
        return await self.import_rows(project, queue, [transfer.row(m) for m in messages])

    async def import_rows(self, project: str, queue: str, messages: Sequence[MessageRow]) -> int:
        transfer.check_ids([m.id for m in messages])
        rows = [transfer.sql_values(project, queue, m) for m in messages]
        async with self._db.transaction() as conn:
            top = await conn.fetchval(
                "UPDATE queues SET counter = GREATEST(counter, $3)"
                " WHERE project = $1 AND name = $2 RETURNING counter",
                project,
                queue,
                max((m.marker for m in messages), default=0),
            )
            if top is None:
                raise QueueDoesNotExist(project, queue)
            stamp = await next_stamp(conn, project, queue)
            return await upsert(conn, "messages", MESSAGE_FIELDS, MESSAGE_TYPES, rows, stamp)

    async def import_claims(self, project: str, queue: str, claims: Sequence[Claim]) -> int:
        transfer.check_ids([c.id for c in claims])
        rows = [(c.id, project, queue, c.ttl, c.grace, c.created, c.expires) for c in claims]
        async with self._db.transaction() as conn:
            stamp = await next_stamp(conn, project, queue)
            return await upsert(conn, "claims", CLAIM_FIELDS, CLAIM_TYPES, rows, stamp)

    async def delete_messages(self, project: str, queue: str, ids: Sequence[str]) -> int:
        now = self._clock()
        async with self._db.transaction() as conn:
            await conn.execute(
                "SELECT 1 FROM queues WHERE project = $1 AND name = $2 FOR KEY SHARE",
                project,
                queue,
            )
            stamp = await next_stamp(conn, project, queue)
            gone = await conn.fetch(
                "DELETE FROM messages WHERE id = ANY($3::text[]) AND project = $1 AND queue = $2"
                " RETURNING id, marker",
                project,
                queue,
                list(ids),
            )
            await bury(conn, project, queue, [(r[0], r[1]) for r in gone], now, stamp)
        return len(gone)

    async def delete_claims(self, project: str, queue: str, ids: Sequence[str]) -> int:
        now = self._clock()
        async with self._db.transaction() as conn:
            await conn.execute(
                "SELECT 1 FROM queues WHERE project = $1 AND name = $2 FOR KEY SHARE",
                project,
                queue,
            )
            gone = await conn.fetch(
                "DELETE FROM claims WHERE id = ANY($3::text[]) AND project = $1 AND queue = $2"
                " RETURNING id",
                project,
                queue,
                list(ids),
            )
            if gone:
                stamp = await next_stamp(conn, project, queue)
                await bury(conn, project, queue, [(r[0], 0) for r in gone], now, stamp, claim=True)
        return len(gone)

    async def digest(self, project: str, queue: str) -> QueueDigest:
        return await transfer.digest(self, project, queue)

    async def drop(self, project: str, queue: str, *, limit: int) -> int:
        transfer.check_limit(limit)
        gone = 0
        async with self._db.transaction() as conn:
            for table in ("messages", "claims"):
                if gone < limit:
                    status = await conn.execute(
                        f"DELETE FROM {table} WHERE id IN (SELECT id FROM {table}"
                        " WHERE project = $1 AND queue = $2 LIMIT $3)",
                        project,
                        queue,
                        limit - gone,
                    )
                    gone += int(status.split()[-1])
            if gone == 0:  # the queue's record last, with its few subscriptions
                gone = await delete_subscriptions(conn, project, queue)
                status = await conn.execute(
                    "DELETE FROM queues WHERE project = $1 AND name = $2", project, queue
                )
                gone += int(status.split()[-1])
        return gone

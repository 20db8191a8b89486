"""The SQLite driver's `TransferStore`: fences, change tracking, and a queue copied out and in.

A fence is a row of `fences`, read by every write inside the transaction that applies it, so
`freeze` is atomic with every write: once it has returned, nothing lands. A row without a queue
is a tombstone. Stamps and message tombstones are written in the transaction of their write too
(`node.storage.sqlite.schema`), and `changes` reads in one transaction: it misses nothing.
Imports compare what they bring with what is stored and write only the difference, in one
transaction per call.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from typing import Any

from node.errors import ChangesLost, QueueDoesNotExist, TransferConflict
from node.models import Changes, Claim, Message, MessageRow, QueueDigest, QueueExport, Removed
from node.storage import transfer
from node.storage.sqlite.database import Database
from node.storage.sqlite.schema import (
    BY_ID,
    FENCE,
    LIVE,
    MESSAGE_COLUMNS,
    bury,
    bury_claims,
    next_stamp,
    placeholders,
)
from node.storage.sqlite.subscriptions import delete_all as delete_subscriptions
from node.storage.transfer import message_from_row

# Few enough parameters per statement for any SQLite build's limit.
CHUNK = 500
STORED_MESSAGE = (
    "id, project, queue, marker, body, ttl, created, expires, delay_expires, client_id,"
    " claim_id, claim_expires"
)
STORED_CLAIM = "id, project, queue, ttl, grace, created, expires"
CLAIM_COLUMNS = "id, ttl, grace, created, expires"
# A `MessageRow`, a claim that has expired reported as none (as `transfer.exported` does).
ROW = (
    "id, marker, body, ttl, created, expires, client_id, delay_expires,"
    " CASE WHEN claim_id IS NOT NULL AND claim_expires > ? THEN claim_id END,"
    " CASE WHEN claim_id IS NOT NULL AND claim_expires > ? THEN claim_expires ELSE 0.0 END"
)


def _chunks(items: Sequence[Any]) -> list[Sequence[Any]]:
    return [items[i : i + CHUNK] for i in range(0, len(items), CHUNK)]


def _stored(
    conn: sqlite3.Connection, table: str, columns: str, ids: Sequence[str]
) -> dict[str, Any]:
    """The rows of `table` with those ids, by id, whatever queue they are in."""
    found: dict[str, Any] = {}
    for chunk in _chunks(ids):
        sql = f"SELECT {columns} FROM {table} WHERE id IN ({placeholders(len(chunk))})"
        found.update((row[0], tuple(row)) for row in conn.execute(sql, chunk))
    return found


def _upsert(
    conn: sqlite3.Connection,
    table: str,
    columns: str,
    rows: Sequence[tuple[Any, ...]],
    stamp: int | None = None,
) -> int:
    """Insert the rows that are new and overwrite those that differ; rows are in `columns`
    order with id, project and queue first. With `stamp`, what is written is stamped with it.
    Returns how many were written."""
    stored = _stored(conn, table, columns, [row[0] for row in rows])
    for row in rows:
        old = stored.get(row[0])
        if old is not None and old[1:3] != row[1:3]:
            raise TransferConflict(f"{table[:-1]} {row[0]} belongs to queue {old[2]}")
    changed = [row for row in rows if row[0] in stored and stored[row[0]] != row]
    new = [row for row in rows if row[0] not in stored]
    names = [c.strip() for c in columns.split(",")]
    if stamp is not None:
        names.append("stamp")
        columns += ", stamp"
        changed = [(*row, stamp) for row in changed]
        new = [(*row, stamp) for row in new]
    try:
        if changed:
            assignments = ", ".join(f"{name} = ?" for name in names[3:])
            conn.executemany(
                f"UPDATE {table} SET {assignments} WHERE id = ?",
                [(*row[3:], row[0]) for row in changed],
            )
        if new:
            conn.executemany(
                f"INSERT INTO {table} ({columns}) VALUES ({placeholders(len(names))})", new
            )
    except sqlite3.IntegrityError as exc:  # the unique marker index: another message has it
        raise TransferConflict(f"{table}: {exc}") from exc
    return len(changed) + len(new)


def _delete(
    conn: sqlite3.Connection, table: str, project: str, queue: str, ids: Sequence[str]
) -> list[tuple[Any, ...]]:
    """Delete the rows of `table` among `ids`; return what went, as (id, marker) for messages."""
    returning = "id, marker" if table == "messages" else "id"
    gone: list[tuple[Any, ...]] = []
    for chunk in _chunks(ids):
        gone += conn.execute(
            f"DELETE FROM {table} WHERE id IN ({placeholders(len(chunk))}) AND {BY_ID}"
            f" RETURNING {returning}",
            (*chunk, project, queue),
        ).fetchall()
    return gone


def _changes(
    conn: sqlite3.Connection, project: str, queue: str, since: int, limit: int, now: float
) -> Changes:
    """`SqliteTransfer.changes`, inside one read transaction: one snapshot of the file."""
    row = conn.execute(
        "SELECT stamp, forgotten, tracked FROM queues WHERE project = ? AND name = ?",
        (project, queue),
    ).fetchone()
    if row is None or not row[2] or since > row[0] or since < row[1]:
        raise ChangesLost(f"changes of queue {queue} after {since} cannot be told")
    scope = "FROM {} WHERE project = ? AND queue = ?"
    streams = (
        f"SELECT {MESSAGE_COLUMNS}, stamp " + scope.format("messages"),
        "SELECT id, marker, stamp " + scope.format("removed") + " AND NOT claim",
        f"SELECT {CLAIM_COLUMNS}, stamp " + scope.format("claims"),
        "SELECT id, stamp " + scope.format("removed") + " AND claim",
    )
    above = " AND stamp > 0 AND stamp > ? ORDER BY stamp LIMIT ?"
    pages = [
        conn.execute(sql + above, (project, queue, since, limit)).fetchall() for sql in streams
    ]
    full = [rows[-1][-1] for rows in pages if len(rows) == limit]
    upto, more = row[0], bool(full)
    if more:
        # Up to the smaller last stamp of a full page, and all of that stamp's write.
        upto = min(full)
        pages = [
            [r for r in rows if r[-1] < upto]
            + conn.execute(sql + " AND stamp = ?", (project, queue, upto)).fetchall()
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


class SqliteTransfer:
    def __init__(self, storage: Database) -> None:
        self._s = storage

    async def freeze(
        self, project: str, queue: str, reason: str, *, lasts: float | None = None
    ) -> None:
        transfer.check_reason(reason)

        def freeze(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO fences (project, queue, reason, until)"
                " VALUES (?, ?, ?, CASE WHEN ? IS NULL THEN 0 ELSE now() + ? END)"
                " ON CONFLICT (project, queue) DO UPDATE SET reason = excluded.reason,"
                " until = excluded.until",
                (project, queue, reason, lasts, lasts),
            )

        await self._s.write(freeze)

    async def extend(self, project: str, queue: str, lasts: float) -> bool:
        def extend(conn: sqlite3.Connection) -> bool:
            return bool(
                conn.execute(
                    "UPDATE fences SET until = now() + ?"
                    " WHERE project = ? AND queue = ? AND until > now()",
                    (lasts, project, queue),
                ).rowcount
            )

        return await self._s.write(extend)

    async def unfreeze(self, project: str, queue: str) -> None:
        def unfreeze(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM fences WHERE project = ? AND queue = ?", (project, queue))

        await self._s.write(unfreeze)

    async def fence(self, project: str, queue: str) -> str | None:
        row = await self._s.read(lambda c: c.execute(FENCE, (project, queue)).fetchone())
        return None if row is None else str(row[0])

    async def track(self, project: str, queue: str, enabled: bool) -> None:
        def track(conn: sqlite3.Connection) -> None:
            if not conn.execute(
                "UPDATE queues SET tracked = ? WHERE project = ? AND name = ?",
                (int(enabled), project, queue),
            ).rowcount:
                raise QueueDoesNotExist(project, queue)

        await self._s.write(track)

    async def sequence(self, project: str, queue: str) -> int:
        row = await self._s.read(
            lambda c: c.execute(
                "SELECT stamp FROM queues WHERE project = ? AND name = ?", (project, queue)
            ).fetchone()
        )
        return 0 if row is None else int(row[0])

    async def changes(self, project: str, queue: str, *, since: int, limit: int) -> Changes:
        transfer.check_limit(limit)

        def changes(conn: sqlite3.Connection, now: float) -> Changes:
            conn.execute("BEGIN")
            try:
                return _changes(conn, project, queue, since, limit, now)
            finally:
                conn.execute("COMMIT")

        return await self._s.read(changes, self._s.clock())

    async def fingerprints(
        self, project: str, queue: str, *, after_marker: int, limit: int
    ) -> list[tuple[int, int]]:
        now = self._s.clock()
        rows = await self._s.read(
            lambda c: c.execute(
                "SELECT id, marker, body, expires, claim_id, claim_expires FROM messages"
                f" WHERE {LIVE} AND marker > ? ORDER BY marker LIMIT ?",
                (project, queue, now, after_marker, limit),
            ).fetchall()
        )
        return [
            (marker, transfer.fingerprint(mid, marker, body, expires, claim, claimed, now))
            for mid, marker, body, expires, claim, claimed in rows
        ]

    async def export_queue(self, project: str, queue: str) -> QueueExport | None:
        def export(conn: sqlite3.Connection) -> QueueExport | None:
            row = conn.execute(
                "SELECT metadata, counter, created FROM queues WHERE project = ? AND name = ?",
                (project, queue),
            ).fetchone()
            if row is None:
                return None
            fence = conn.execute(FENCE, (project, queue)).fetchone()
            return QueueExport(
                metadata=json.loads(row[0]),
                counter=row[1],
                created=row[2],
                fence=None if fence is None else fence[0],
            )

        return await self._s.read(export)

    async def export_messages(
        self, project: str, queue: str, *, after_marker: int, limit: int
    ) -> list[Message]:
        now = self._s.clock()
        rows = await self._s.read(
            lambda c: c.execute(
                f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE {LIVE} AND marker > ?"
                " ORDER BY marker LIMIT ?",
                (project, queue, now, after_marker, limit),
            ).fetchall()
        )
        return [transfer.exported(message_from_row(row), now) for row in rows]

    async def export_rows(
        self, project: str, queue: str, *, after_marker: int, limit: int
    ) -> list[MessageRow]:
        now = self._s.clock()
        rows = await self._s.read(
            lambda c: c.execute(
                f"SELECT {ROW} FROM messages WHERE {LIVE} AND marker > ? ORDER BY marker LIMIT ?",
                (now, now, project, queue, now, after_marker, limit),
            ).fetchall()
        )
        return [MessageRow._make(row) for row in rows]

    async def export_claims(
        self, project: str, queue: str, *, ids: Sequence[str] | None = None
    ) -> list[Claim]:
        now = self._s.clock()
        query = f"SELECT {CLAIM_COLUMNS} FROM claims WHERE "

        def export(conn: sqlite3.Connection) -> list[tuple[Any, ...]]:
            if ids is None:
                where = "project = ? AND queue = ? AND expires > ?"
                return conn.execute(query + where, (project, queue, now)).fetchall()
            rows: list[tuple[Any, ...]] = []
            for chunk in _chunks(ids):
                where = f"id IN ({placeholders(len(chunk))}) AND {BY_ID} AND expires > ?"
                rows += conn.execute(query + where, (*chunk, project, queue, now)).fetchall()
            return rows

        return sorted(
            (Claim(*row) for row in await self._s.read(export)), key=lambda c: (c.created, c.id)
        )

    async def import_queue(self, project: str, queue: str, export: QueueExport) -> None:
        def upsert(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO queues (project, name, metadata, counter, created) VALUES (?,?,?,?,?)"
                " ON CONFLICT (project, name) DO UPDATE SET metadata = excluded.metadata,"
                " created = excluded.created, counter = MAX(counter, excluded.counter)",
                (project, queue, json.dumps(export.metadata), export.counter, export.created),
            )

        await self._s.write(upsert)

    async def import_messages(self, project: str, queue: str, messages: Sequence[Message]) -> int:
        return await self.import_rows(project, queue, [transfer.row(m) for m in messages])

    async def import_rows(self, project: str, queue: str, messages: Sequence[MessageRow]) -> int:
        transfer.check_ids([m.id for m in messages])
        rows = [transfer.sql_values(project, queue, m) for m in messages]

        def upsert(conn: sqlite3.Connection) -> int:
            top = conn.execute(
                "UPDATE queues SET counter = MAX(counter, ?) WHERE project = ? AND name = ?"
                " RETURNING counter",
                (max((m.marker for m in messages), default=0), project, queue),
            ).fetchone()
            if top is None:
                raise QueueDoesNotExist(project, queue)
            return _upsert(conn, "messages", STORED_MESSAGE, rows, next_stamp(conn, project, queue))

        return await self._s.write(upsert)

    async def import_claims(self, project: str, queue: str, claims: Sequence[Claim]) -> int:
        transfer.check_ids([c.id for c in claims])
        rows = [(c.id, project, queue, c.ttl, c.grace, c.created, c.expires) for c in claims]

        def upsert(conn: sqlite3.Connection) -> int:
            return _upsert(conn, "claims", STORED_CLAIM, rows, next_stamp(conn, project, queue))

        return await self._s.write(upsert)

    async def delete_messages(self, project: str, queue: str, ids: Sequence[str]) -> int:
        def delete(conn: sqlite3.Connection, now: float) -> int:
            gone = _delete(conn, "messages", project, queue, ids)
            bury(conn, project, queue, [(row[0], row[1]) for row in gone], now)
            return len(gone)

        return await self._s.write(delete, self._s.clock())

    async def delete_claims(self, project: str, queue: str, ids: Sequence[str]) -> int:
        def delete(conn: sqlite3.Connection, now: float) -> int:
            gone = [row[0] for row in _delete(conn, "claims", project, queue, ids)]
            if gone:
                bury_claims(conn, project, queue, next_stamp(conn, project, queue), gone, now)
            return len(gone)

        return await self._s.write(delete, self._s.clock())

    async def digest(self, project: str, queue: str) -> QueueDigest:
        return await transfer.digest(self, project, queue)

    async def drop(self, project: str, queue: str, *, limit: int) -> int:
        transfer.check_limit(limit)

        def drop(conn: sqlite3.Connection) -> int:
            gone = 0
            for table in ("messages", "claims"):
                if gone < limit:
                    gone += conn.execute(
                        f"DELETE FROM {table} WHERE rowid IN (SELECT rowid FROM {table}"
                        " WHERE project = ? AND queue = ? LIMIT ?)",
                        (project, queue, limit - gone),
                    ).rowcount
            if gone == 0:  # the queue's record last, with its few subscriptions
                gone = delete_subscriptions(conn, project, queue)
                gone += conn.execute(
                    "DELETE FROM queues WHERE project = ? AND name = ?", (project, queue)
                ).rowcount
            return gone

        return await self._s.write(drop)

"""The SQLite driver's claims: a claim marks the messages it holds in the same transaction."""

from __future__ import annotations

import sqlite3
from typing import Any

from node.errors import ClaimDoesNotExist
from node.models import Claim, DeadLetter, is_id, new_id
from node.storage.base import Messages
from node.storage.deadletters import pile
from node.storage.sqlite.database import Database
from node.storage.sqlite.schema import (
    FENCE,
    FREE,
    LIVE,
    MESSAGE_COLUMNS,
    bury,
    bury_claims,
    check_readable,
    check_writable,
    next_stamp,
    placeholders,
)
from node.storage.transfer import message_from_row


class SqliteClaims:
    def __init__(self, storage: Database) -> None:
        self._s = storage

    async def create(
        self, project: str, queue: str, *, ttl: int, grace: int, limit: int
    ) -> tuple[Claim, Messages]:
        now = self._s.clock()
        claim = Claim(id=new_id(), ttl=ttl, grace=grace, created=now, expires=now + ttl)

        def create(conn: sqlite3.Connection) -> Messages:
            check_writable(conn, project, queue)
            ids = [
                r[0]
                for r in conn.execute(
                    f"SELECT id FROM messages WHERE {LIVE} AND {FREE} ORDER BY marker LIMIT ?",
                    (project, queue, now, now, now, limit),
                )
            ]
            if not ids:
                return []
            stamp = next_stamp(conn, project, queue)
            _hold(conn, claim, stamp, ids=ids)
            conn.execute(
                "INSERT INTO claims (id, project, queue, ttl, grace, created, expires, stamp)"
                " VALUES (?,?,?,?,?,?,?,?)",
                (claim.id, project, queue, ttl, grace, now, claim.expires, stamp),
            )
            rows = conn.execute(
                f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE claim_id = ? ORDER BY marker",
                (claim.id,),
            ).fetchall()
            return [message_from_row(r) for r in rows]

        return claim, await self._s.write(create)

    async def dead_letter(self, project: str, queue: str, policy: DeadLetter, *, limit: int) -> int:
        now = self._s.clock()

        def move(conn: sqlite3.Connection) -> int:
            check_writable(conn, project, queue)
            dead = conn.execute(
                f"SELECT id, marker, ttl, expires FROM messages WHERE {LIVE} AND {FREE}"
                " AND claim_count >= ? ORDER BY marker LIMIT ?",
                (project, queue, now, now, now, policy.max_claims, limit),
            ).fetchall()
            if not dead or policy.queue == queue:
                return 0
            # Not here, or fenced: to the outgoing pile, each under a hold, for the mover.
            target, hold = policy.queue, None
            if not _open(conn, project, policy.queue):
                target, hold = pile(policy.queue), new_id()
                conn.execute(
                    "INSERT OR IGNORE INTO queues (project, name, created) VALUES (?,?,?)",
                    (project, target, now),
                )
            # One transaction: each message leaves this queue and lands in the other with the
            # other's next marker, or neither happens.
            row = conn.execute(
                "UPDATE queues SET counter = counter + ? WHERE project = ? AND name = ?"
                " RETURNING counter",
                (len(dead), project, target),
            ).fetchone()
            first = int(row[0]) - len(dead) + 1
            stamp = next_stamp(conn, project, target)
            for i, (mid, _, ttl, expires) in enumerate(dead):
                if policy.ttl is not None:
                    ttl, expires = policy.ttl, now + policy.ttl
                conn.execute(
                    "UPDATE messages SET queue = ?, marker = ?, ttl = ?, expires = ?,"
                    " delay_expires = 0, claim_id = ?, claim_expires = 0, stamp = ?"
                    " WHERE id = ?",
                    (target, first + i, ttl, expires, hold, stamp, mid),
                )
            bury(conn, project, queue, [(mid, marker) for mid, marker, _, _ in dead], now)
            return len(dead)

        return await self._s.write(move)

    async def get(self, project: str, queue: str, claim_id: str) -> tuple[Claim, Messages]:
        def get(conn: sqlite3.Connection, now: float) -> tuple[Claim, Messages]:
            check_readable(conn, project, queue)
            if not is_id(claim_id):
                raise ClaimDoesNotExist(project, queue, claim_id)
            row = conn.execute(
                "SELECT id, ttl, grace, created, expires FROM claims"
                " WHERE id = ? AND project = ? AND queue = ? AND expires > ?",
                (claim_id, project, queue, now),
            ).fetchone()
            if row is None:
                raise ClaimDoesNotExist(project, queue, claim_id)
            rows = conn.execute(
                f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE claim_id = ? AND expires > ?"
                " ORDER BY marker",
                (claim_id, now),
            ).fetchall()
            return Claim(*row), [message_from_row(r) for r in rows]

        return await self._s.read(get, self._s.clock())

    async def update(
        self, project: str, queue: str, claim_id: str, *, ttl: int, grace: int
    ) -> None:
        if not is_id(claim_id):
            await self._s.read(check_writable, project, queue)
            raise ClaimDoesNotExist(project, queue, claim_id)
        now = self._s.clock()

        def update(conn: sqlite3.Connection) -> None:
            check_writable(conn, project, queue)
            stamp = next_stamp(conn, project, queue)  # undone with the rest if none matches
            row = conn.execute(
                "UPDATE claims SET ttl = ?, grace = ?, expires = ?, stamp = ?"
                " WHERE id = ? AND project = ? AND queue = ? AND expires > ?"
                " RETURNING created",
                (ttl, grace, now + ttl, stamp, claim_id, project, queue, now),
            ).fetchone()
            if row is None:
                raise ClaimDoesNotExist(project, queue, claim_id)
            claim = Claim(id=claim_id, ttl=ttl, grace=grace, created=row[0], expires=now + ttl)
            _hold(conn, claim, stamp, now=now)

        await self._s.write(update)

    async def delete(self, project: str, queue: str, claim_id: str) -> None:
        if not is_id(claim_id):
            await self._s.read(check_writable, project, queue)
            return

        def delete(conn: sqlite3.Connection, now: float) -> None:
            check_writable(conn, project, queue)
            stamp = next_stamp(conn, project, queue)
            conn.execute(
                "UPDATE messages SET claim_id = NULL, claim_expires = 0, stamp = ?"
                " WHERE claim_id = ? AND project = ? AND queue = ?",
                (stamp, claim_id, project, queue),
            )
            if conn.execute(
                "DELETE FROM claims WHERE id = ? AND project = ? AND queue = ?",
                (claim_id, project, queue),
            ).rowcount:
                bury_claims(conn, project, queue, stamp, [claim_id], now)

        await self._s.write(delete, self._s.clock())


def _open(conn: sqlite3.Connection, project: str, queue: str) -> bool:
    """Whether `queue` exists on this partition and takes writes (a dead-letter queue that is
    not here lives on another partition, or nowhere yet)."""
    if conn.execute(FENCE, (project, queue)).fetchone() is not None:
        return False
    found = conn.execute(
        "SELECT 1 FROM queues WHERE project = ? AND name = ?", (project, queue)
    ).fetchone()
    return found is not None


def _hold(
    conn: sqlite3.Connection,
    claim: Claim,
    stamp: int,
    *,
    ids: list[str] | None = None,
    now: float = 0.0,
) -> None:
    """Mark messages as held by `claim`; each lives at least until the claim ends plus grace.
    A new claim (`ids`) counts one more claim of each."""
    lives_until = claim.expires + claim.grace
    counted = " claim_count = claim_count + 1," if ids is not None else ""
    sql = (
        f"UPDATE messages SET claim_id = ?, claim_expires = ?, stamp = ?,{counted}"
        " ttl = CASE WHEN expires < ? THEN ? ELSE ttl END,"
        " expires = MAX(expires, ?) WHERE "
    )
    args: list[Any] = [
        claim.id,
        claim.expires,
        stamp,
        lives_until,
        claim.ttl + claim.grace,
        lives_until,
    ]
    if ids is not None:
        sql += f"id IN ({placeholders(len(ids))})"
        args.extend(ids)
    else:
        sql += "claim_id = ? AND expires > ?"
        args.extend([claim.id, now])
    conn.execute(sql, args)

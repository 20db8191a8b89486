"""The SQLite driver's dead letters bound for another partition (`DeadLetterStore`)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence

from node.errors import QueueDoesNotExist
from node.models import Message, Outgoing
from node.storage.deadletters import MARK, SENT, bound_for, pile
from node.storage.sqlite.database import Database
from node.storage.sqlite.schema import (
    MESSAGE_COLUMNS,
    check_writable,
    next_stamp,
    placeholders,
)
from node.storage.transfer import message_from_row

# The piles' queue records, through the partial index `queues_piles`.
PILES = "SELECT project, name FROM queues WHERE name >= char(127) ORDER BY name, project"


class SqliteDeadLetters:
    def __init__(self, storage: Database) -> None:
        self._s = storage

    async def waiting(self, *, limit: int) -> list[Outgoing]:
        def waiting(conn: sqlite3.Connection, now: float) -> list[Outgoing]:
            found: list[Outgoing] = []
            for project, name in conn.execute(PILES).fetchall():
                rows = conn.execute(
                    f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE project = ? AND queue = ?"
                    " AND expires > ? ORDER BY marker LIMIT ?",
                    (project, name, now, limit - len(found)),
                ).fetchall()
                for row in rows:
                    message = message_from_row(row)
                    sent = message.claim_expires >= SENT
                    found.append(Outgoing(project, bound_for(name), message, sent))
                if len(found) >= limit:
                    break
            return found

        assert chr(127) == MARK  # the `char(127)` of `PILES`
        return await self._s.read(waiting, self._s.clock())

    async def receive(self, project: str, queue: str, messages: Sequence[Message]) -> int:
        def receive(conn: sqlite3.Connection) -> int:
            check_writable(conn, project, queue)
            if not conn.execute(
                "SELECT 1 FROM queues WHERE project = ? AND name = ?", (project, queue)
            ).fetchone():
                raise QueueDoesNotExist(project, queue)
            ids = [m.id for m in messages]
            where = {
                r[0]: r[1]
                for r in conn.execute(
                    f"SELECT id, queue FROM messages WHERE project = ? AND id IN"
                    f" ({placeholders(len(ids))})",
                    (project, *ids),
                )
            }
            new = [m for m in messages if where.get(m.id, pile(queue)) == pile(queue)]
            if not new:
                return 0
            row = conn.execute(
                "UPDATE queues SET counter = counter + ? WHERE project = ? AND name = ?"
                " RETURNING counter",
                (len(new), project, queue),
            ).fetchone()
            first = int(row[0]) - len(new) + 1
            stamp = next_stamp(conn, project, queue)
            # The pile on this very partition (the dead-letter queue came here since): moved.
            piled = [(i, m) for i, m in enumerate(new) if m.id in where]
            conn.executemany(
                "UPDATE messages SET queue = ?, marker = ?, delay_expires = 0, claim_id = ?,"
                " claim_expires = expires, stamp = ? WHERE id = ?",
                [(queue, first + i, m.claim_id, stamp, m.id) for i, m in piled],
            )
            conn.executemany(
                "INSERT INTO messages (id, project, queue, marker, body, ttl, created, expires,"
                " delay_expires, client_id, claim_id, claim_expires, stamp, claim_count)"
                " VALUES (?,?,?,?,?,?,?,?,0,?,?,?,?,?)",
                [
                    (
                        m.id,
                        project,
                        queue,
                        first + i,
                        json.dumps(m.body),
                        m.ttl,
                        m.created,
                        m.expires,
                        m.client_id,
                        m.claim_id,
                        m.expires,  # held for as long as it lives, until released
                        stamp,
                        m.claim_count,
                    )
                    for i, m in enumerate(new)
                    if m.id not in where
                ],
            )
            return len(new)

        return await self._s.write(receive) if messages else 0

    async def release(self, project: str, queue: str, messages: Sequence[Message]) -> int:
        def release(conn: sqlite3.Connection) -> int:
            check_writable(conn, project, queue)
            stamp = next_stamp(conn, project, queue)
            return sum(
                conn.execute(
                    "UPDATE messages SET claim_id = NULL, claim_expires = 0, stamp = ?"
                    " WHERE id = ? AND project = ? AND queue = ? AND claim_id = ?",
                    (stamp, m.id, project, queue, m.claim_id),
                ).rowcount
                for m in messages
            )

        return await self._s.write(release) if messages else 0

    async def sent(self, project: str, queue: str, ids: Sequence[str]) -> int:
        return await self._pile_write(
            "UPDATE messages SET claim_expires = ?", (SENT,), project, queue, ids
        )

    async def discard(self, project: str, queue: str, ids: Sequence[str]) -> int:
        return await self._pile_write("DELETE FROM messages", (), project, queue, ids)

    async def _pile_write(
        self,
        statement: str,
        args: tuple[object, ...],
        project: str,
        queue: str,
        ids: Sequence[str],
    ) -> int:
        def write(conn: sqlite3.Connection) -> int:
            done: int = conn.execute(
                f"{statement} WHERE project = ? AND queue = ? AND id IN ({placeholders(len(ids))})",
                (*args, project, pile(queue), *ids),
            ).rowcount
            return done

        return await self._s.write(write) if ids else 0

"""The SQLite driver's queues: create, metadata, list, stats, purge and delete."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from node.errors import QueueDoesNotExist
from node.models import MessageSummary, QueueInfo, QueueStats
from node.storage.base import Queues
from node.storage.sqlite.database import Database
from node.storage.sqlite.outbox import forget_owed
from node.storage.sqlite.schema import LIVE, check_readable, check_writable
from node.storage.sqlite.subscriptions import delete_all as delete_subscriptions
from wire.topics import name_range


class SqliteQueues:
    def __init__(self, storage: Database) -> None:
        self._s = storage

    async def create(self, project: str, queue: str, metadata: dict[str, Any] | None) -> bool:
        def create(conn: sqlite3.Connection, meta: str | None, now: float) -> bool:
            check_writable(conn, project, queue)
            cur = conn.execute(
                "INSERT OR IGNORE INTO queues (project, name, metadata, created) VALUES (?,?,?,?)",
                (project, queue, meta or "{}", now),
            )
            if cur.rowcount == 0 and meta is not None:
                conn.execute(
                    "UPDATE queues SET metadata = ? WHERE project = ? AND name = ?",
                    (meta, project, queue),
                )
            return cur.rowcount == 1

        meta = None if metadata is None else json.dumps(metadata)
        return await self._s.write(create, meta, self._s.clock())

    async def exists(self, project: str, queue: str) -> bool:
        return await self._s.read(self._row, "1", project, queue) is not None

    async def get_metadata(self, project: str, queue: str) -> dict[str, Any]:
        row = await self._s.read(self._row, "metadata", project, queue)
        if row is None:
            raise QueueDoesNotExist(project, queue)
        metadata: dict[str, Any] = json.loads(row[0])
        return metadata

    @staticmethod
    def _row(conn: sqlite3.Connection, columns: str, project: str, queue: str) -> Any:
        check_readable(conn, project, queue)
        return conn.execute(
            f"SELECT {columns} FROM queues WHERE project = ? AND name = ?", (project, queue)
        ).fetchone()

    async def set_metadata(self, project: str, queue: str, metadata: dict[str, Any]) -> None:
        def update(conn: sqlite3.Connection) -> int:
            check_writable(conn, project, queue)
            return conn.execute(
                "UPDATE queues SET metadata = ? WHERE project = ? AND name = ?",
                (json.dumps(metadata), project, queue),
            ).rowcount

        if await self._s.write(update) == 0:
            raise QueueDoesNotExist(project, queue)

    async def delete(self, project: str, queue: str) -> None:
        def delete(conn: sqlite3.Connection) -> None:
            check_writable(conn, project, queue)
            args = (project, queue)
            conn.execute("DELETE FROM messages WHERE project = ? AND queue = ?", args)
            conn.execute("DELETE FROM claims WHERE project = ? AND queue = ?", args)
            delete_subscriptions(conn, project, queue)
            forget_owed(conn, project, queue)
            conn.execute("DELETE FROM queues WHERE project = ? AND name = ?", args)

        await self._s.write(delete)

    async def list(
        self, project: str, *, marker: str | None, limit: int, detailed: bool, topics: bool = False
    ) -> Queues:
        after, before = name_range(marker, topics=topics)
        rows = await self._s.read(
            lambda c: c.execute(
                "SELECT name, metadata FROM queues WHERE project = ? AND name > ? AND name < ? "
                "ORDER BY name LIMIT ?",
                (project, after, before, limit),
            ).fetchall()
        )
        return [QueueInfo(name, json.loads(meta) if detailed else None) for name, meta in rows]

    async def stats(self, project: str, queue: str) -> QueueStats:
        def stats(conn: sqlite3.Connection, now: float) -> QueueStats:
            check_readable(conn, project, queue)
            if not conn.execute(
                "SELECT 1 FROM queues WHERE project = ? AND name = ?", (project, queue)
            ).fetchone():
                raise QueueDoesNotExist(project, queue)
            claimed, delayed, total = conn.execute(
                "SELECT"
                " COALESCE(SUM(claim_id IS NOT NULL AND claim_expires > ?), 0),"
                " COALESCE(SUM(delay_expires > ? AND (claim_id IS NULL OR claim_expires <= ?)),"
                " 0), COUNT(*)"
                f" FROM messages WHERE {LIVE}",
                (now, now, now, project, queue, now),
            ).fetchone()
            if total == 0:
                return QueueStats(free=0, claimed=0)
            ends = []
            for order in ("ASC", "DESC"):
                mid, created = conn.execute(
                    f"SELECT id, created FROM messages WHERE {LIVE} "
                    f"ORDER BY marker {order} LIMIT 1",
                    (project, queue, now),
                ).fetchone()
                ends.append(MessageSummary(mid, created))
            return QueueStats(
                free=total - claimed - delayed,
                claimed=claimed,
                delayed=delayed,
                oldest=ends[0],
                newest=ends[1],
            )

        return await self._s.read(stats, self._s.clock())

    async def purge(self, project: str, queue: str) -> None:
        def purge(conn: sqlite3.Connection) -> None:
            check_writable(conn, project, queue)
            # No tombstone for each message: changes from before the purge are forgotten.
            conn.execute(
                "UPDATE queues SET stamp = stamp + 1, forgotten = stamp + 1"
                " WHERE project = ? AND name = ?",
                (project, queue),
            )
            conn.execute("DELETE FROM messages WHERE project = ? AND queue = ?", (project, queue))
            conn.execute("DELETE FROM claims WHERE project = ? AND queue = ?", (project, queue))

        await self._s.write(purge)

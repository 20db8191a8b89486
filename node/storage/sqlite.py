"""The embedded driver: one SQLite file per partition.

Operations run on the event loop's thread, each as one short function, inside `BEGIN IMMEDIATE`
when it writes: an indexed SQLite statement takes microseconds, far less than handing it to a
worker thread, and one thread makes every operation atomic for free. Writes from several node
processes sharing the file serialize through SQLite's lock. WAL mode keeps readers off writers'
backs, and a committed transaction survives a crash of the process. The one slow step, copying
the WAL back into the database (a checkpoint, with fsync), is taken off the loop: automatic
checkpoints are off and a background thread runs them on its own connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from ground.logs import get_logger
from node.errors import (
    ClaimDoesNotExist,
    InvalidClaim,
    MessageDoesNotExist,
    MessageIsClaimed,
    MessageNotClaimed,
    QueueDoesNotExist,
    StorageUnavailable,
)
from node.models import (
    Claim,
    Message,
    MessageSummary,
    NewMessage,
    QueueInfo,
    QueueStats,
    is_id,
    new_id,
)
from node.storage.sqlite_schema import (
    BY_ID,
    FREE,
    LIVE,
    MESSAGE_COLUMNS,
    bury,
    check_readable,
    check_writable,
    create_schema,
    next_stamp,
    placeholders,
    to_message,
)
from node.storage.sqlite_transfer import SqliteTransfer
from node.storage.transfer import TOMBSTONE_RETENTION

# Aliases: the controllers have a method named `list`, which shadows the builtin inside them.
Messages = list[Message]
Queues = list[QueueInfo]
Ids = list[str]

T = TypeVar("T")
log = get_logger("node.storage.sqlite")
Clock = Callable[[], float]


class SqliteStorage:
    """`node.storage.base.Storage` over one SQLite file."""

    def __init__(self, path: str, clock: Clock = time.time, checkpoint_interval: float = 1.0):
        self.path = path
        self.clock = clock
        self._conn: sqlite3.Connection | None = None
        self._checkpoint_interval = checkpoint_interval
        self._checkpointer: asyncio.Task[None] | None = None
        self._pending: list[tuple[Callable[..., Any], tuple[Any, ...], asyncio.Future[Any]]] = []
        self.queues = SqliteQueues(self)
        self.messages = SqliteMessages(self)
        self.claims = SqliteClaims(self)
        self.transfer = SqliteTransfer(self)

    @classmethod
    async def open(cls, uri: str, clock: Clock = time.time) -> SqliteStorage:
        """Open the file `sqlite:///path` names, creating it (and its folder) if missing."""
        path = sqlite_path(uri)
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        storage = cls(path, clock)
        await storage.run(storage._connect)
        if path != ":memory:":
            storage._checkpointer = asyncio.create_task(storage._checkpoint_forever())
        return storage

    def _connect(self) -> None:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA busy_timeout=5000")
        conn.execute("PRAGMA wal_autocheckpoint=0")
        create_schema(conn)
        self._conn = conn

    async def _checkpoint_forever(self) -> None:
        """Fold the WAL into the database now and then, on a thread, without blocking writers."""
        with sqlite3.connect(self.path, check_same_thread=False) as conn:
            conn.execute("PRAGMA busy_timeout=5000")
            while True:
                await asyncio.sleep(self._checkpoint_interval)
                try:
                    await asyncio.to_thread(conn.execute, "PRAGMA wal_checkpoint(PASSIVE)")
                except sqlite3.Error as exc:
                    log.warning("sqlite_checkpoint_failed", error=str(exc))

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn(*args)`, translating sqlite3 errors at this edge."""
        try:
            return fn(*args)
        except sqlite3.Error as exc:
            raise StorageUnavailable(f"sqlite: {exc}") from exc

    async def write(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn(conn, *args)` atomically; the result comes back once it is committed.

        Group commit: writes queued during one turn of the event loop share one transaction,
        each inside its own savepoint so that one failing write leaves the others intact.
        The commit is the expensive step (a write to the WAL), so concurrent writers pay it once.
        """
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.append((fn, args, future))
        if len(self._pending) == 1:
            asyncio.get_running_loop().call_soon(self._flush)
        result: T = await future
        return result

    async def read(self, fn: Callable[..., T], *args: Any) -> T:
        return await self.run(fn, self.conn, *args)

    def _flush(self) -> None:
        batch, self._pending = self._pending, []
        conn = self.conn
        outcomes: list[tuple[asyncio.Future[Any], Any, BaseException | None]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            for fn, args, future in batch:
                conn.execute("SAVEPOINT op")
                try:
                    outcomes.append((future, fn(conn, *args), None))
                except Exception as exc:
                    conn.execute("ROLLBACK TO op")
                    if isinstance(exc, sqlite3.Error):
                        exc = StorageUnavailable(f"sqlite: {exc}")
                    outcomes.append((future, None, exc))
                conn.execute("RELEASE op")
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            failure = StorageUnavailable(f"sqlite: {exc}")
            for _, _, future in batch:
                if not future.done():
                    future.set_exception(failure)
            return
        for future, result, error in outcomes:
            if future.done():  # the caller was cancelled; its write is committed all the same
                continue
            if error is None:
                future.set_result(result)
            else:
                future.set_exception(error)

    @property
    def conn(self) -> sqlite3.Connection:
        assert self._conn is not None, "storage is not open"
        return self._conn

    async def ping(self) -> bool:
        try:
            await self.read(lambda c: c.execute("SELECT 1").fetchone())
        except StorageUnavailable:
            return False
        return True

    async def collect_garbage(self, batch: int = 1000) -> int:
        """Delete expired records in small batches, yielding the loop between them; then the
        tombstones past their retention (not counted: bookkeeping, not records)."""

        def collect(conn: sqlite3.Connection, table: str, now: float) -> int:
            gone: int = conn.execute(
                f"DELETE FROM {table} WHERE rowid IN "
                f"(SELECT rowid FROM {table} WHERE expires <= ? LIMIT ?)",
                (now, batch),
            ).rowcount
            return gone

        def forget(conn: sqlite3.Connection, before: float) -> int:
            gone = conn.execute(
                "DELETE FROM removed WHERE (project, queue, stamp, id) IN (SELECT project, queue,"
                " stamp, id FROM removed WHERE at <= ? LIMIT ?) RETURNING project, queue, stamp",
                (before, batch),
            ).fetchall()
            conn.executemany(
                "UPDATE queues SET forgotten = MAX(forgotten, ?) WHERE project = ? AND name = ?",
                [(stamp, project, queue) for project, queue, stamp in gone],
            )
            return len(gone)

        total = 0
        now = self.clock()
        for table in ("messages", "claims"):
            while (gone := await self.write(collect, table, now)) > 0:
                total += gone
                await asyncio.sleep(0)
        forgotten = 0
        while (gone := await self.write(forget, now - TOMBSTONE_RETENTION)) > 0:
            forgotten += gone
            await asyncio.sleep(0)
        if forgotten:
            log.debug("sqlite_tombstones_collected", tombstones=forgotten)
        return total

    async def close(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._checkpointer
            self._checkpointer = None
        if self._conn is not None:
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._conn.close()
            self._conn = None


def sqlite_path(uri: str) -> str:
    """The file a `sqlite:` URI names (":memory:" for none)."""
    parts = urlsplit(uri)
    path = parts.path if parts.netloc == "" else parts.netloc + parts.path
    if path.startswith("//"):
        path = path[1:]
    return ":memory:" if path in ("", "/:memory:", ":memory:") else path


class SqliteQueues:
    def __init__(self, storage: SqliteStorage) -> None:
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
            conn.execute("DELETE FROM queues WHERE project = ? AND name = ?", args)

        await self._s.write(delete)

    async def list(self, project: str, *, marker: str | None, limit: int, detailed: bool) -> Queues:
        rows = await self._s.read(
            lambda c: c.execute(
                "SELECT name, metadata FROM queues WHERE project = ? AND name > ? "
                "ORDER BY name LIMIT ?",
                (project, marker or "", limit),
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


class SqliteMessages:
    def __init__(self, storage: SqliteStorage) -> None:
        self._s = storage

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
                " WHERE fences.project = queues.project AND fences.queue = queues.name)"
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
            held_by = row[0] if row[0] is not None and row[1] > now else None
            if claim_id is None and held_by is not None:
                raise MessageIsClaimed()
            if claim_id is not None:
                if held_by is None:
                    raise MessageNotClaimed()
                if held_by != claim_id:
                    raise MessageIsClaimed()
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
            popped = [to_message(r) for r in rows]
            if popped:
                conn.execute(
                    f"DELETE FROM messages WHERE id IN ({placeholders(len(popped))})",
                    [m.id for m in popped],
                )
                bury(conn, project, queue, [(m.id, m.marker) for m in popped], now)
            return popped

        return await self._s.write(pop, self._s.clock())


class SqliteClaims:
    def __init__(self, storage: SqliteStorage) -> None:
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
            _hold(conn, claim, next_stamp(conn, project, queue), ids=ids)
            conn.execute(
                "INSERT INTO claims (id, project, queue, ttl, grace, created, expires)"
                " VALUES (?,?,?,?,?,?,?)",
                (claim.id, project, queue, ttl, grace, now, claim.expires),
            )
            rows = conn.execute(
                f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE claim_id = ? ORDER BY marker",
                (claim.id,),
            ).fetchall()
            return [to_message(r) for r in rows]

        return claim, await self._s.write(create)

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
            return Claim(*row), [to_message(r) for r in rows]

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
            row = conn.execute(
                "UPDATE claims SET ttl = ?, grace = ?, expires = ?"
                " WHERE id = ? AND project = ? AND queue = ? AND expires > ?"
                " RETURNING created",
                (ttl, grace, now + ttl, claim_id, project, queue, now),
            ).fetchone()
            if row is None:
                raise ClaimDoesNotExist(project, queue, claim_id)
            claim = Claim(id=claim_id, ttl=ttl, grace=grace, created=row[0], expires=now + ttl)
            _hold(conn, claim, next_stamp(conn, project, queue), now=now)

        await self._s.write(update)

    async def delete(self, project: str, queue: str, claim_id: str) -> None:
        if not is_id(claim_id):
            await self._s.read(check_writable, project, queue)
            return

        def delete(conn: sqlite3.Connection) -> None:
            check_writable(conn, project, queue)
            conn.execute(
                "UPDATE messages SET claim_id = NULL, claim_expires = 0, stamp = ?"
                " WHERE claim_id = ? AND project = ? AND queue = ?",
                (next_stamp(conn, project, queue), claim_id, project, queue),
            )
            conn.execute(
                "DELETE FROM claims WHERE id = ? AND project = ? AND queue = ?",
                (claim_id, project, queue),
            )

        await self._s.write(delete)


def _messages(
    conn: sqlite3.Connection, project: str, queue: str, sql: str, args: Sequence[Any]
) -> Messages:
    """Run a read of the queue's messages, unless the queue has moved away."""
    check_readable(conn, project, queue)
    return [to_message(r) for r in conn.execute(sql, args).fetchall()]


def _hold(
    conn: sqlite3.Connection,
    claim: Claim,
    stamp: int,
    *,
    ids: list[str] | None = None,
    now: float = 0.0,
) -> None:
    """Mark messages as held by `claim`; each lives at least until the claim ends plus grace."""
    lives_until = claim.expires + claim.grace
    sql = (
        "UPDATE messages SET claim_id = ?, claim_expires = ?, stamp = ?,"
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

"""The SQLite driver's connection: one file per partition, written through group commits.

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
import os
import sqlite3
import time
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

from prometheus_client import Gauge

from ground.logs import get_logger
from node.errors import StorageUnavailable
from node.storage.sqlite.schema import create_schema

T = TypeVar("T")
# The write-ahead log is truncated to this size when it starts over (`journal_size_limit`), and
# a checkpoint that finds it larger is made to complete and truncate it: SQLite never shrinks
# the file by itself, and under sustained writes its passive checkpoints never let it restart.
WAL_LIMIT = 64 * 1024 * 1024
WAL_BYTES = Gauge(
    "marconi_node_sqlite_wal_bytes",
    "Size of a SQLite partition's write-ahead log file, after the last checkpoint.",
    ["path"],
)
log = get_logger("node.storage.sqlite")
Clock = Callable[[], float]


def _busy(exc: sqlite3.OperationalError) -> bool:
    text = str(exc)
    return "locked" in text or "busy" in text


class Database:
    """One SQLite file: the connection, its group commits and its checkpoints. The
    controllers share it; `SqliteStorage` opens it."""

    def __init__(
        self,
        path: str,
        clock: Clock = time.time,
        checkpoint_interval: float = 1.0,
        wal_limit: int = WAL_LIMIT,
    ):
        self.path = path
        self.clock = clock
        self._conn: sqlite3.Connection | None = None
        self._checkpoint_interval = checkpoint_interval
        self._wal_limit = wal_limit
        self._checkpointer: asyncio.Task[None] | None = None
        self._pending: list[tuple[Callable[..., Any], tuple[Any, ...], asyncio.Future[Any]]] = []

    def _connect(self, patience: float = 30.0) -> None:
        """Open the file, switch it to WAL and bring its schema up to date. Several processes
        (a node's workers, a partition's nodes) may do this on one new file at once: the busy
        timeout is set before anything else, and a "locked" answer where SQLite does not wait
        (switching the journal mode) is retried until `patience` runs out."""
        deadline = time.monotonic() + patience
        while True:
            conn = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=5.0
            )
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.execute("PRAGMA wal_autocheckpoint=0")
                conn.execute(f"PRAGMA journal_size_limit={int(self._wal_limit)}")
                conn.create_function("now", 0, self.clock)  # fences lift themselves by this clock
                create_schema(conn)
            except sqlite3.OperationalError as exc:
                conn.close()
                if not _busy(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
                continue
            self._conn = conn
            return

    async def _checkpoint_forever(self) -> None:
        """Fold the WAL into the database now and then, on a thread, without blocking writers;
        and keep the WAL file's size bounded (see `WAL_LIMIT`)."""
        with sqlite3.connect(self.path, check_same_thread=False) as conn:
            conn.execute("PRAGMA busy_timeout=5000")
            conn.execute(f"PRAGMA journal_size_limit={int(self._wal_limit)}")
            while True:
                await asyncio.sleep(self._checkpoint_interval)
                try:
                    await asyncio.to_thread(conn.execute, "PRAGMA wal_checkpoint(PASSIVE)")
                    if self.wal_bytes() > self._wal_limit:
                        # Under sustained writes a passive checkpoint never catches up with the
                        # log's end, so the log never starts over and only grows. The passive
                        # one just copied nearly everything: this one blocks writers only for
                        # the rest, then truncates the file.
                        await asyncio.to_thread(conn.execute, "PRAGMA wal_checkpoint(TRUNCATE)")
                except sqlite3.Error as exc:
                    log.warning("sqlite_checkpoint_failed", error=str(exc))
                WAL_BYTES.labels(self.path).set(self.wal_bytes())

    def wal_bytes(self) -> int:
        """The size of the write-ahead log file (0 when there is none)."""
        try:
            return os.path.getsize(self.path + "-wal")
        except OSError:
            return 0

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

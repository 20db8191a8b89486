"""The SQLite driver's schema and the row helpers its modules share.

The schema only ever grows by statements that are no-ops on a file that has them already
(`CREATE ... IF NOT EXISTS`, and `ALTER TABLE ... ADD COLUMN` for each column in `ADDED` that
`PRAGMA table_info` does not list), so opening a file written by an older node upgrades it in
place.

Change tracking (see `node.storage.base.TransferStore`): `queues.stamp` is the queue's change
sequence, raised by every write of a tracked queue (`queues.tracked`) in its own transaction;
`messages.stamp` is the sequence at the message's last write (0: written while untracked, and left
out of the index); `claims.stamp` likewise for a claim's last write (made, renewed); `removed`
holds the tombstones of a tracked queue's deleted messages, and of its deleted claims (`claim` 1,
marker 0).
`queues.forgotten` is the position at or below which changes can no longer be told (tombstones
collected, or the queue purged).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from node.errors import QueueFrozen
from node.models import Fence

SCHEMA = """
CREATE TABLE IF NOT EXISTS queues (
    project TEXT NOT NULL,
    name TEXT NOT NULL,
    metadata TEXT NOT NULL DEFAULT '{}',
    counter INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL,
    stamp INTEGER NOT NULL DEFAULT 0,
    forgotten INTEGER NOT NULL DEFAULT 0,
    tracked INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (project, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS messages (
    id TEXT PRIMARY KEY,
    project TEXT NOT NULL,
    queue TEXT NOT NULL,
    marker INTEGER NOT NULL,
    body TEXT NOT NULL,
    ttl INTEGER NOT NULL,
    created REAL NOT NULL,
    expires REAL NOT NULL,
    delay_expires REAL NOT NULL DEFAULT 0,
    client_id TEXT NOT NULL,
    claim_id TEXT,
    claim_expires REAL NOT NULL DEFAULT 0,
    stamp INTEGER NOT NULL DEFAULT 0,
    claim_count INTEGER NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX IF NOT EXISTS messages_by_marker ON messages (project, queue, marker);
CREATE INDEX IF NOT EXISTS messages_by_claim ON messages (claim_id) WHERE claim_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS messages_by_expiry ON messages (expires);
CREATE TABLE IF NOT EXISTS claims (
    id TEXT PRIMARY KEY,
    project TEXT NOT NULL,
    queue TEXT NOT NULL,
    ttl INTEGER NOT NULL,
    grace INTEGER NOT NULL,
    created REAL NOT NULL,
    expires REAL NOT NULL,
    stamp INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS claims_by_queue ON claims (project, queue, expires);
-- A fenced queue (see node.storage.base.TransferStore); a row without a queue is a tombstone.
-- `until`: when the fence lifts itself (the partition's clock; 0: never).
CREATE TABLE IF NOT EXISTS fences (
    project TEXT NOT NULL,
    queue TEXT NOT NULL,
    reason TEXT NOT NULL,
    until REAL NOT NULL DEFAULT 0,
    PRIMARY KEY (project, queue)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS removed (
    project TEXT NOT NULL,
    queue TEXT NOT NULL,
    stamp INTEGER NOT NULL,
    id TEXT NOT NULL,
    marker INTEGER NOT NULL,
    at REAL NOT NULL,
    claim INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (project, queue, stamp, id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS removed_by_age ON removed (at);
-- Subscriptions (node.storage.base.SubscriptionStore); `source` is a queue's name.
CREATE TABLE IF NOT EXISTS subscriptions (
    id TEXT PRIMARY KEY,
    project TEXT NOT NULL,
    source TEXT NOT NULL,
    subscriber TEXT NOT NULL,
    ttl INTEGER NOT NULL,
    created REAL NOT NULL,
    expires REAL NOT NULL,
    options TEXT NOT NULL DEFAULT '{}',
    confirmed INTEGER NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX IF NOT EXISTS subscriptions_by_subscriber
    ON subscriptions (project, source, subscriber);
CREATE INDEX IF NOT EXISTS subscriptions_by_source ON subscriptions (project, source, id);
CREATE INDEX IF NOT EXISTS subscriptions_by_expiry ON subscriptions (expires);
"""
# Columns later releases added, with their definitions; then what indexes them.
ADDED = {
    "queues": {
        "stamp": "INTEGER NOT NULL DEFAULT 0",
        "forgotten": "INTEGER NOT NULL DEFAULT 0",
        "tracked": "INTEGER NOT NULL DEFAULT 0",
    },
    "messages": {
        "stamp": "INTEGER NOT NULL DEFAULT 0",
        "claim_count": "INTEGER NOT NULL DEFAULT 0",
    },
    "claims": {"stamp": "INTEGER NOT NULL DEFAULT 0"},
    "removed": {"claim": "INTEGER NOT NULL DEFAULT 0"},
    "fences": {"until": "REAL NOT NULL DEFAULT 0"},
}
INDEXES = """
CREATE INDEX IF NOT EXISTS messages_by_stamp ON messages (project, queue, stamp) WHERE stamp > 0;
CREATE INDEX IF NOT EXISTS claims_by_stamp ON claims (project, queue, stamp) WHERE stamp > 0;
CREATE INDEX IF NOT EXISTS queues_piles ON queues (name, project) WHERE name >= char(127);
"""
# Notifications owed to subscribers (node.storage.outbox); see node.storage.sqlite.outbox.
OUTBOX = """
CREATE TABLE IF NOT EXISTS outbox (
    id TEXT PRIMARY KEY,
    project TEXT NOT NULL,
    queue TEXT NOT NULL,
    subscription TEXT NOT NULL,
    subscriber TEXT NOT NULL,
    options TEXT NOT NULL,
    confirmed INTEGER NOT NULL,
    notices TEXT NOT NULL,
    posted REAL NOT NULL,
    due REAL NOT NULL,
    failures INTEGER NOT NULL DEFAULT 0,
    sent INTEGER NOT NULL DEFAULT 0,
    owner TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS outbox_by_due ON outbox (due);
CREATE INDEX IF NOT EXISTS outbox_by_queue ON outbox (project, queue);
"""

MESSAGE_COLUMNS = (
    "id, marker, body, ttl, created, expires, client_id, delay_expires, claim_id, claim_expires,"
    " claim_count"
)
LIVE = "project = ? AND queue = ? AND expires > ?"
FREE = "delay_expires <= ? AND (claim_id IS NULL OR claim_expires <= ?)"
# A fence in force: its reason, and the seconds until it lifts itself (None: never). `now()` is
# the partition's clock (`Database` registers it on its connection).
FENCE = (
    "SELECT reason, CASE WHEN until > 0 THEN until - now() END FROM fences"
    " WHERE project = ? AND queue = ? AND (until = 0 OR until > now())"
)
# The queue's condition on a statement that names its rows by id: the unary `+` keeps SQLite's
# planner from scanning the whole queue through the (project, queue, ...) indexes instead of
# looking each id up, which it does from five ids on.
BY_ID = "+project = ? AND +queue = ?"


def create_schema(conn: sqlite3.Connection) -> None:
    """The schema on a new file, or an older file's upgraded in place."""
    conn.executescript(SCHEMA)
    # Another process may be upgrading the same file: the columns are read and added under
    # one write lock, so that only one of them adds each.
    conn.execute("BEGIN IMMEDIATE")
    try:
        for table, columns in ADDED.items():
            present = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
            for name, definition in columns.items():
                if name not in present:
                    conn.execute(f"ALTER TABLE {table} ADD COLUMN {name} {definition}")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    conn.executescript(INDEXES)
    conn.executescript(OUTBOX)


def next_stamp(conn: sqlite3.Connection, project: str, queue: str) -> int:
    """The stamp of one write of the queue: the next value of its change sequence if it is
    tracked, else 0 (an untracked write leaves no trace)."""
    row = conn.execute(
        "UPDATE queues SET stamp = stamp + 1 WHERE project = ? AND name = ? AND tracked"
        " RETURNING stamp",
        (project, queue),
    ).fetchone()
    return 0 if row is None else int(row[0])


def bury(
    conn: sqlite3.Connection, project: str, queue: str, gone: Sequence[tuple[str, int]], now: float
) -> None:
    """Tombstones for the messages `gone` (id, marker) of a tracked queue; none if untracked."""
    if gone:
        _tombstones(conn, project, queue, next_stamp(conn, project, queue), gone, now, claim=0)


def bury_claims(
    conn: sqlite3.Connection, project: str, queue: str, stamp: int, ids: Sequence[str], now: float
) -> None:
    """Tombstones for the claims `ids` deleted by a write stamped `stamp` (0: untracked)."""
    _tombstones(conn, project, queue, stamp, [(cid, 0) for cid in ids], now, claim=1)


def _tombstones(
    conn: sqlite3.Connection,
    project: str,
    queue: str,
    stamp: int,
    gone: Sequence[tuple[str, int]],
    now: float,
    *,
    claim: int,
) -> None:
    if stamp and gone:
        conn.executemany(
            "INSERT OR REPLACE INTO removed (project, queue, stamp, id, marker, at, claim)"
            " VALUES (?,?,?,?,?,?,?)",
            [(project, queue, stamp, mid, marker, now, claim) for mid, marker in gone],
        )


def placeholders(n: int) -> str:
    return ",".join("?" * n)


def check_writable(conn: sqlite3.Connection, project: str, queue: str) -> None:
    """Refuse a write to a fenced queue; called inside the write's own transaction."""
    row = conn.execute(FENCE, (project, queue)).fetchone()
    if row is not None:
        raise QueueFrozen(project, queue, row[0], lifts=row[1])


def check_readable(conn: sqlite3.Connection, project: str, queue: str) -> None:
    """Refuse a read of a queue that has moved to another partition."""
    row = conn.execute(FENCE, (project, queue)).fetchone()
    if row is not None and row[0] == Fence.MOVED:
        raise QueueFrozen(project, queue, row[0])

"""The SQLite driver's schema and the row helpers its modules share.

The schema only ever grows by statements that are no-ops on a file that has them already
(`CREATE ... IF NOT EXISTS`; a new column would be added by `ALTER TABLE ... ADD COLUMN` guarded by
`PRAGMA table_info`), so opening a file written by an older node upgrades it in place.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from node.errors import QueueFrozen
from node.models import Fence, Message

SCHEMA = """
CREATE TABLE IF NOT EXISTS queues (
    project TEXT NOT NULL,
    name TEXT NOT NULL,
    metadata TEXT NOT NULL DEFAULT '{}',
    counter INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL,
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
    claim_expires REAL NOT NULL DEFAULT 0
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
    expires REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS claims_by_queue ON claims (project, queue, expires);
-- A fenced queue (see node.storage.base.TransferStore); a row without a queue is a tombstone.
CREATE TABLE IF NOT EXISTS fences (
    project TEXT NOT NULL,
    queue TEXT NOT NULL,
    reason TEXT NOT NULL,
    PRIMARY KEY (project, queue)
) WITHOUT ROWID;
"""

MESSAGE_COLUMNS = (
    "id, marker, body, ttl, created, expires, client_id, delay_expires, claim_id, claim_expires"
)
LIVE = "project = ? AND queue = ? AND expires > ?"
FREE = "delay_expires <= ? AND (claim_id IS NULL OR claim_expires <= ?)"
FENCE = "SELECT reason FROM fences WHERE project = ? AND queue = ?"


def to_message(row: sqlite3.Row | tuple[Any, ...]) -> Message:
    return Message(
        id=row[0],
        marker=row[1],
        body=json.loads(row[2]),
        ttl=row[3],
        created=row[4],
        expires=row[5],
        client_id=row[6],
        delay_expires=row[7],
        claim_id=row[8],
        claim_expires=row[9],
    )


def placeholders(n: int) -> str:
    return ",".join("?" * n)


def check_writable(conn: sqlite3.Connection, project: str, queue: str) -> None:
    """Refuse a write to a fenced queue; called inside the write's own transaction."""
    row = conn.execute(FENCE, (project, queue)).fetchone()
    if row is not None:
        raise QueueFrozen(project, queue, row[0])


def check_readable(conn: sqlite3.Connection, project: str, queue: str) -> None:
    """Refuse a read of a queue that has moved to another partition."""
    row = conn.execute(FENCE, (project, queue)).fetchone()
    if row is not None and row[0] == Fence.MOVED:
        raise QueueFrozen(project, queue, row[0])

"""What is particular to the SQLite driver's fences: the schema upgrade, and the fence checked
inside the very transaction of each write."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from node.errors import QueueFrozen
from node.models import Fence, NewMessage
from node.storage.sqlite import SqliteStorage
from tests.conftest import FakeClock

P = "project-a"
Q = "orders"

# The schema as the first release wrote it, before fences.
FIRST_SCHEMA = """
CREATE TABLE queues (
    project TEXT NOT NULL,
    name TEXT NOT NULL,
    metadata TEXT NOT NULL DEFAULT '{}',
    counter INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL,
    PRIMARY KEY (project, name)
) WITHOUT ROWID;
CREATE TABLE messages (
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
CREATE UNIQUE INDEX messages_by_marker ON messages (project, queue, marker);
CREATE INDEX messages_by_claim ON messages (claim_id) WHERE claim_id IS NOT NULL;
CREATE INDEX messages_by_expiry ON messages (expires);
CREATE TABLE claims (
    id TEXT PRIMARY KEY,
    project TEXT NOT NULL,
    queue TEXT NOT NULL,
    ttl INTEGER NOT NULL,
    grace INTEGER NOT NULL,
    created REAL NOT NULL,
    expires REAL NOT NULL
);
"""


async def test_a_file_from_before_fences_is_upgraded_in_place(
    tmp_path: Path, clock: FakeClock
) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        conn.executescript(FIRST_SCHEMA)
        conn.execute("INSERT INTO queues VALUES (?, ?, '{\"a\": 1}', 1, ?)", (P, Q, clock() - 100))
        conn.execute(
            "INSERT INTO messages (id, project, queue, marker, body, ttl, created, expires,"
            " client_id) VALUES ('5f0c6b1e2a3b4c5d6e7f8091', ?, ?, 1, '\"old\"', 300, ?, ?, 'c')",
            (P, Q, clock() - 10, clock() + 290),
        )
    conn.close()

    for _ in range(2):  # opening an upgraded file again changes nothing
        storage = await SqliteStorage.open(f"sqlite:///{path}", clock)
        try:
            [old] = await storage.transfer.export_messages(P, Q, after_marker=0, limit=10)
            assert old.body == "old"
            await storage.transfer.freeze(P, Q, Fence.FROZEN)
            with pytest.raises(QueueFrozen):
                await storage.messages.post(P, Q, [NewMessage("new", 60)], "c")
            assert (await storage.transfer.digest(P, Q)).count == 1
            await storage.transfer.unfreeze(P, Q)
            # Change tracking works on the old rows too.
            await storage.transfer.track(P, Q, True)
            since = await storage.transfer.sequence(P, Q)
            await storage.messages.delete(P, Q, old.id, None)
            [new] = await storage.messages.post(P, Q, [NewMessage("new", 60)], "c")
            changes = await storage.transfer.changes(P, Q, since=since, limit=10)
            assert [m.id for m in changes.messages] == [new]
            assert [r.id for r in changes.removed] == [old.id]
            await storage.messages.delete(P, Q, new, None)
            await storage.messages.post(P, Q, [NewMessage("old", 300)], "c")
            await storage.transfer.track(P, Q, False)
        finally:
            await storage.close()
    with sqlite3.connect(path) as conn:
        names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
        columns = {row[1] for row in conn.execute("PRAGMA table_info(queues)")}
    conn.close()
    assert {"fences", "claims_by_queue", "removed", "messages_by_stamp"} <= names
    assert {"stamp", "forgotten", "tracked"} <= columns


async def test_a_freeze_is_ordered_with_the_writes_of_its_group_commit(tmp_path: Path) -> None:
    storage = await SqliteStorage.open(f"sqlite:///{tmp_path}/p.db")
    try:
        await storage.queues.create(P, Q, None)
        # Queued in one turn of the loop: one transaction, one savepoint each, in this order.
        before, _, after, claim = await asyncio.gather(
            storage.messages.post(P, Q, [NewMessage("before", 60)], "c"),
            storage.transfer.freeze(P, Q, Fence.FROZEN),
            storage.messages.post(P, Q, [NewMessage("after", 60)], "c"),
            storage.claims.create(P, Q, ttl=60, grace=60, limit=1),
            return_exceptions=True,
        )
        assert isinstance(before, list)
        assert isinstance(after, QueueFrozen)
        assert isinstance(claim, QueueFrozen)
        exported = await storage.transfer.export_messages(P, Q, after_marker=0, limit=10)
        assert [(m.body, m.claim_id) for m in exported] == [("before", None)]
    finally:
        await storage.close()


async def test_a_post_checks_the_fence_in_the_update_of_its_counter(tmp_path: Path) -> None:
    """The hot path: one UPDATE and the INSERT, no statement of its own for the fence."""
    storage = await SqliteStorage.open(f"sqlite:///{tmp_path}/p.db")
    try:
        await storage.queues.create(P, Q, None)
        statements: list[str] = []
        storage.conn.set_trace_callback(statements.append)
        await storage.messages.post(P, Q, [NewMessage("one", 60)], "c")
        storage.conn.set_trace_callback(None)
        work = [s.split()[0] for s in statements if "fences" in s or "messages" in s]
        assert work == ["UPDATE", "INSERT"]
        assert "fences" in statements[[s.split()[0] for s in statements].index("UPDATE")]
    finally:
        await storage.close()

"""What is particular to the SQLite driver: group commit and durability across a crash."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import urllib.request
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from node.errors import QueueDoesNotExist
from node.models import NewMessage
from node.storage.sqlite import SqliteStorage
from tests.services import node_process


async def test_failed_write_in_a_batch_leaves_the_others(tmp_path: Path) -> None:
    storage = await SqliteStorage.open(f"sqlite:///{tmp_path}/p.db")
    try:
        await storage.queues.create("p", "q", None)
        results = await asyncio.gather(
            storage.messages.post("p", "q", [NewMessage(1, 60)], "c"),
            storage.messages.post("p", "missing", [NewMessage(2, 60)], "c"),
            storage.messages.post("p", "q", [NewMessage(3, 60)], "c"),
            return_exceptions=True,
        )
        assert isinstance(results[1], QueueDoesNotExist)
        assert all(isinstance(r, list) for r in (results[0], results[2]))
        listed = await storage.messages.list(
            "p",
            "q",
            marker=None,
            limit=10,
            echo=True,
            include_claimed=True,
            include_delayed=True,
            client_id="c",
        )
        assert [m.body for m in listed] == [1, 3]
        assert [m.marker for m in listed] == [1, 2]
    finally:
        await storage.close()


@pytest.mark.slow
def test_acknowledged_messages_survive_kill_9(tmp_path: Path) -> None:
    """Every post answered 201 is on disk, even when the node dies without any shutdown."""
    db = tmp_path / "p.db"
    headers = {
        "Client-ID": "3b8a7c52-52f1-4a3b-9e7f-1d2c3b4a5f60",
        "X-Project-ID": "p",
        "Content-Type": "application/json",
    }
    acknowledged: list[str] = []
    with node_process(f"sqlite:///{db}") as node:
        for i in range(50):
            body = json.dumps({"messages": [{"body": i, "ttl": 600}]}).encode()
            req = urllib.request.Request(
                f"{node.url}/v2/queues/q/messages", data=body, headers=headers, method="POST"
            )
            with urllib.request.urlopen(req) as resp:
                assert resp.status == 201
                acknowledged.extend(json.loads(resp.read())["resources"])
        node.proc.send_signal(signal.SIGKILL)
        node.proc.wait()

    async def stored_ids() -> list[str]:
        storage = await SqliteStorage.open(f"sqlite:///{db}")
        try:
            found = await storage.messages.bulk_get(
                "p", "q", [href.rsplit("/", 1)[1] for href in acknowledged[:20]]
            )
            stats = await storage.queues.stats("p", "q")
            assert stats.total == 50
            return [m.id for m in found]
        finally:
            await storage.close()

    assert len(asyncio.run(stored_ids())) == 20


async def test_statements_naming_messages_by_id_look_each_id_up(tmp_path: Path) -> None:
    """From five ids on, SQLite's planner would rather scan the whole queue through its
    (project, queue, marker) index: a bulk get or delete on a large queue, or a catch-up's
    deletes, must look each id up instead."""
    storage = await SqliteStorage.open(f"sqlite:///{tmp_path}/p.db")
    try:
        await storage.queues.create("p", "q", None)
        ids = await storage.messages.post("p", "q", [NewMessage(n, 60) for n in range(20)], "c")
        statements: list[str] = []
        storage.conn.set_trace_callback(statements.append)
        await storage.messages.bulk_get("p", "q", ids[:10])
        await storage.messages.bulk_delete("p", "q", ids[:10], None)
        await storage.transfer.delete_messages("p", "q", ids[10:])
        storage.conn.set_trace_callback(None)
        by_id = [s for s in statements if " id IN (" in s]
        assert len(by_id) == 3
        for sql in by_id:
            plan = " ".join(row[3] for row in storage.conn.execute(f"EXPLAIN QUERY PLAN {sql}"))
            assert "(id=?)" in plan, (sql, plan)
    finally:
        await storage.close()


async def test_the_write_ahead_log_returns_under_its_bound_after_a_write_burst(
    tmp_path: Path,
) -> None:
    """SQLite never shrinks its log by itself, and under sustained writes its passive
    checkpoints never let the log start over: a burst would leave the file at its largest."""
    limit = 256 * 1024
    storage = await SqliteStorage.open(
        f"sqlite:///{tmp_path}/burst.db", checkpoint_interval=0.05, wal_limit=limit
    )
    try:
        await storage.queues.create("p", "q", None)
        body = {"text": "x" * 200}

        async def producer() -> None:
            for _ in range(150):
                await storage.messages.post("p", "q", [NewMessage(body, 300)] * 10, "c")

        await asyncio.gather(*(producer() for _ in range(8)))  # 12,000 messages, ~4 MB
        for _ in range(200):  # idle: the checkpoints bring it back within 10 s
            if storage.wal_bytes() <= limit:
                break
            await asyncio.sleep(0.05)
        assert storage.wal_bytes() <= limit
        metric = REGISTRY.get_sample_value(
            "marconi_node_sqlite_wal_bytes", {"path": f"{tmp_path}/burst.db"}
        )
        assert metric is not None and metric <= limit
        # The burst wrote far more than the bound: a log that kept it all would be over it.
        assert await asyncio.to_thread(os.path.getsize, f"{tmp_path}/burst.db") > 4 * limit
    finally:
        await storage.close()


def _open_and_post(path: str, start: object) -> str:
    """In a process of its own: wait for the others, open the new file, store one message."""

    async def run() -> str:
        storage = await SqliteStorage.open(f"sqlite:///{path}")
        try:
            await storage.queues.create("p", f"q{os.getpid()}", None)
            return "ok"
        finally:
            await storage.close()

    start.wait(timeout=60)  # type: ignore[attr-defined]
    return asyncio.run(run())


def test_processes_opening_one_new_file_at_once_all_start(tmp_path: Path) -> None:
    """A node's workers and a partition's nodes open the same file together: none of them may
    fail on the other's lock while the journal mode switches and the schema is created."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager, ProcessPoolExecutor(6, mp_context=context) as pool:
        for attempt in range(10):
            path = str(tmp_path / f"shared{attempt}.db")
            start = manager.Barrier(6)  # all six are running before any opens the file
            futures = [pool.submit(_open_and_post, path, start) for _ in range(6)]
            assert [f.result(timeout=60) for f in futures] == ["ok"] * 6

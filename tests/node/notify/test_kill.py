"""At least once across kill -9: two node processes share a partition; the one delivering is
killed mid-stream; the other takes its leases over. A real HTTP receiver and a real SMTP
server must each receive the notification of every acknowledged post."""

from __future__ import annotations

import asyncio
import json
import signal
from contextlib import ExitStack
from pathlib import Path

import aiohttp
import pytest

from node.storage.sqlite import SqliteStorage
from tests.node.notify.receivers import Mailbox, Receiver, eventually
from tests.services import node_process

POSTS = 1000
HEADERS = {"Client-ID": "3b8a7c52-52f1-4a3b-9e7f-1d2c3b4a5f60", "X-Project-ID": "p"}


async def post(session: aiohttp.ClientSession, url: str, n: int) -> bool:
    """One message; True when the node acknowledged it (201)."""
    document = {"messages": [{"body": {"n": n}, "ttl": 600}]}
    try:
        async with session.post(f"{url}/v2/queues/q/messages", json=document) as answer:
            return answer.status == 201
    except aiohttp.ClientError:
        return False


@pytest.mark.slow
async def test_every_acknowledged_post_is_notified_through_a_kill_9(
    tmp_path: Path, receiver: Receiver, mailbox: Mailbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MARCONI_NOTIFY_SMTP_PORT", str(mailbox.port))
    monkeypatch.setenv("MARCONI_NOTIFY_LEASE", "2")  # a dead holder's leases free up in 2 s
    storage = f"sqlite:///{tmp_path}/p.db"
    with ExitStack() as stack:
        a = stack.enter_context(node_process(storage, "p1", tmp_path))
        b = stack.enter_context(node_process(storage, "p1", tmp_path))
        async with aiohttp.ClientSession(headers=HEADERS) as session:
            for subscriber in (receiver.url(), "mailto:ops@example.org"):
                document = {"subscriber": subscriber, "ttl": 3600}
                async with session.post(f"{a.url}/v2/queues/q/subscriptions", json=document) as r:
                    assert r.status == 201
            acknowledged: set[int] = set()
            for start in range(0, POSTS, 25):
                if start == POSTS // 2:
                    a.proc.send_signal(signal.SIGKILL)  # mid-stream, leases held
                    a.proc.wait()
                batch = range(start, start + 25)
                url = a.url if start < POSTS // 2 and start % 50 == 0 else b.url
                results = await asyncio.gather(*(post(session, url, n) for n in batch))
                acknowledged |= {n for n, ok in zip(batch, results, strict=True) if ok}
            # Posts refused because they raced the kill are not owed anything; the rest are.
            assert len(acknowledged) >= POSTS - 25

        def hooked() -> set[int]:
            return {h.json()["body"]["n"] for h in receiver.hits}

        def mailed() -> set[int]:
            return {json.loads(str(m.get_payload()))["body"]["n"] for _, _, m in mailbox.mails}

        await eventually(lambda: acknowledged <= hooked() and acknowledged <= mailed(), 120)
        notice = receiver.hits[0].json()
        assert (notice["Message_Type"], notice["queue_name"], notice["ttl"]) == (
            "Notification",
            "q",
            600,
        )
        # Every delivery is settled in the end, the dead node's included once its leases
        # expired (it may have sent some before dying: those are sent again).
        store = await SqliteStorage.open(storage)
        try:
            for _ in range(300):  # 30 s: the dead node's 2 s leases, and then some
                if await store.outbox.depth() == 0:
                    break
                await asyncio.sleep(0.1)
            assert await store.outbox.depth() == 0
        finally:
            await store.close()

"""At least once across kill -9: two node processes share a partition; the one delivering is
killed mid-stream; the other takes its leases over. A real HTTP receiver and a real SMTP
server must each receive the notification of every acknowledged post, and of every message
stored (a post cut short by the kill stores its messages with their notifications, or not at
all), on SQLite and on MongoDB (FerretDB)."""

from __future__ import annotations

import asyncio
import json
import signal
from contextlib import ExitStack
from pathlib import Path

import aiohttp
import pytest

from node.storage import open_storage
from node.storage.base import Storage
from tests.conftest import storage_uri
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


async def stored(store: Storage) -> set[int]:
    """What queue q holds, whoever acknowledged it."""
    found: set[int] = set()
    marker = None
    while page := await store.messages.list(
        "p",
        "q",
        marker=marker,
        limit=100,
        echo=True,
        include_claimed=True,
        include_delayed=True,
        client_id="",
    ):
        found |= {m.body["n"] for m in page}
        marker = page[-1].marker
    return found


@pytest.mark.slow
@pytest.mark.parametrize("driver", ["sqlite", pytest.param("mongodb", marks=pytest.mark.mongodb)])
async def test_every_acknowledged_post_is_notified_through_a_kill_9(
    tmp_path: Path,
    receiver: Receiver,
    mailbox: Mailbox,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
    driver: str,
) -> None:
    monkeypatch.setenv("MARCONI_NOTIFY_SMTP_PORT", str(mailbox.port))
    monkeypatch.setenv("MARCONI_NOTIFY_LEASE", "2")  # a dead holder's leases free up in 2 s
    storage = storage_uri(driver, tmp_path, request)
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

        store = await open_storage(storage)
        try:
            owed = acknowledged | await stored(store)
            assert len(owed) <= POSTS
            await eventually(lambda: owed <= hooked() and owed <= mailed(), 120)
        finally:
            await store.close()
        notice = receiver.hits[0].json()
        assert (notice["Message_Type"], notice["queue_name"], notice["ttl"]) == (
            "Notification",
            "q",
            600,
        )
        # Every delivery is settled in the end, the dead node's included once its leases
        # expired (it may have sent some before dying: those are sent again).
        store = await open_storage(storage)
        try:
            for _ in range(300):  # 30 s: the dead node's 2 s leases, and then some
                if await store.outbox.depth() == 0:
                    break
                await asyncio.sleep(0.1)
            assert await store.outbox.depth() == 0
        finally:
            await store.close()

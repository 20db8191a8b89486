"""The deliverer in a child process of the node (node/notify/process.py): a real `marconi node`
starts it, relays its metrics, replaces it when it is killed, and stops it with itself."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import aiohttp
import pytest

from tests.node.notify.receivers import Receiver, eventually
from tests.services import node_process

HEADERS = {"Client-ID": "3b8a7c52-52f1-4a3b-9e7f-1d2c3b4a5f60", "X-Project-ID": "p"}


def children(pid: int) -> list[int]:
    """The processes whose parent is `pid`."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    """Running (a zombie waiting for its reaper is not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def command(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


async def post(session: aiohttp.ClientSession, url: str, n: int) -> None:
    document = {"messages": [{"body": {"n": n}, "ttl": 600}]}
    async with session.post(f"{url}/v2/queues/q/messages", json=document) as answer:
        assert answer.status == 201


async def subscribe(session: aiohttp.ClientSession, url: str, subscriber: str) -> None:
    document = {"subscriber": subscriber, "ttl": 3600}
    async with session.post(f"{url}/v2/queues/q/subscriptions", json=document) as answer:
        assert answer.status == 201


def delivered(metrics: str) -> float:
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("marconi_node_notifications_delivered_total{")
    )


async def test_the_child_delivers_and_the_node_serves_its_metrics(
    tmp_path: Path, receiver: Receiver
) -> None:
    with node_process(f"sqlite:///{tmp_path}/p.db", "p1", tmp_path) as node:
        await eventually(lambda: len(children(node.proc.pid)) == 1)
        [child] = children(node.proc.pid)
        assert "node.notify.process" in command(child)
        async with aiohttp.ClientSession(headers=HEADERS) as session:
            await subscribe(session, node.url, receiver.url())
            await asyncio.gather(*(post(session, node.url, n) for n in range(20)))
            await eventually(lambda: len(receiver.hits) >= 20)
            assert {h.json()["body"]["n"] for h in receiver.hits} == set(range(20))
            metrics = ""
            for _ in range(50):  # the child reports once a second
                async with session.get(f"{node.url}/metrics") as answer:
                    metrics = await answer.text()
                if delivered(metrics) >= 20:
                    break
                await asyncio.sleep(0.1)
            assert delivered(metrics) >= 20
            assert "marconi_node_notification_lag_seconds_count" in metrics


@pytest.mark.slow
async def test_a_killed_child_is_replaced_and_nothing_is_lost(
    tmp_path: Path, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MARCONI_NOTIFY_LEASE", "2")  # the dead child's leases free up in 2 s
    with node_process(f"sqlite:///{tmp_path}/p.db", "p1", tmp_path) as node:
        await eventually(lambda: len(children(node.proc.pid)) == 1)
        [first] = children(node.proc.pid)
        async with aiohttp.ClientSession(headers=HEADERS) as session:
            await subscribe(session, node.url, receiver.url())
            await asyncio.gather(*(post(session, node.url, n) for n in range(100)))
            os.kill(first, signal.SIGKILL)
            await asyncio.gather(*(post(session, node.url, n) for n in range(100, 200)))
            await eventually(lambda: children(node.proc.pid) not in ([], [first]), 15)
            await eventually(
                lambda: {h.json()["body"]["n"] for h in receiver.hits} >= set(range(200)), 30
            )
        assert node.proc.poll() is None  # the node itself kept serving


async def test_the_node_stops_its_child_with_itself(tmp_path: Path) -> None:
    with node_process(f"sqlite:///{tmp_path}/p.db", "p1", tmp_path) as node:
        await eventually(lambda: len(children(node.proc.pid)) == 1)
        [child] = children(node.proc.pid)
        node.proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(node.proc.wait, 30) == 0
        assert not alive(child)


async def test_the_child_dies_with_a_killed_node(tmp_path: Path) -> None:
    with node_process(f"sqlite:///{tmp_path}/p.db", "p1", tmp_path) as node:
        await eventually(lambda: len(children(node.proc.pid)) == 1)
        [child] = children(node.proc.pid)
        node.proc.send_signal(signal.SIGKILL)
        node.proc.wait()
        await eventually(lambda: not alive(child), 15)

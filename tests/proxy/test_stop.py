"""SIGTERM of a real `marconi proxy`, and of a node behind it, under real processes: each stops
accepting, answers what is in flight and exits 0; under load, the accounting is exact (every post
answered 201 is stored, and no post answered otherwise, or not at all, is)."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import urllib.request
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from catalog.catalog import Catalog
from catalog.etcd import EtcdStore
from catalog.keys import Keys
from catalog.records import Partition
from tests.conftest import unique_prefix
from tests.services import Etcd, free_port, node_process, stop, wait_for_port
from tests.stops import CLIENT, HalfPost


@contextmanager
def proxy_process(
    etcd: Etcd, prefix: str, log: Path, *flags: str
) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    port = free_port()
    argv = [
        *("proxy", "--catalog", etcd.url, "--catalog-prefix", prefix, "--port", str(port)),
        *("--log-json", *flags),
    ]
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "marconi.cli", *argv], stdout=out, stderr=out
        )
        try:
            wait_for_port(port, proc)
            yield port, proc
        finally:
            stop(proc)


async def register(etcd: Etcd, prefix: str, urls: tuple[str, ...]) -> None:
    store = EtcdStore(etcd.url)
    try:
        await Catalog(store, Keys(prefix)).add_partition(Partition("p1", urls))
    finally:
        await store.close()


def stored(url: str, queue: str) -> list[object]:
    """Every message of `queue` on the node at `url`, page after page."""
    bodies: list[object] = []
    path = f"/v2/queues/{queue}/messages?echo=true&include_claimed=true&limit=20"
    while True:
        request = urllib.request.Request(url + path, headers=CLIENT)
        with urllib.request.urlopen(request, timeout=10) as answer:
            raw = answer.read()
        page = json.loads(raw) if raw else {"messages": []}
        if not page["messages"]:
            return bodies
        bodies += [m["body"] for m in page["messages"]]
        path = next(link["href"] for link in page["links"] if link["rel"] == "next")


@pytest.mark.parametrize("flags", [(), ("--workers", "2")], ids=["one process", "two workers"])
async def test_sigterm_answers_the_post_in_flight_then_exits_0(
    tmp_path: Path, etcd_server: Etcd, flags: tuple[str, ...]
) -> None:
    prefix = unique_prefix()
    with node_process(f"sqlite:///{tmp_path}/p1.db", "p1", tmp_path) as node:
        await register(etcd_server, prefix, (node.url,))
        with proxy_process(etcd_server, prefix, tmp_path / "proxy.log", *flags) as (port, proc):
            post = await asyncio.to_thread(HalfPost, port, "orders", {"order": 7})
            await asyncio.sleep(0.3)  # the head is read: the request is in flight
            proc.send_signal(signal.SIGTERM)
            await asyncio.sleep(0.5)
            assert proc.poll() is None, "the proxy left with a request in flight"
            status, answer = await asyncio.to_thread(post.finish)
            assert status == 201, answer
            assert await asyncio.to_thread(proc.wait, 15) == 0
        assert await asyncio.to_thread(stored, node.url, "orders") == [{"order": 7}]


async def test_sigterm_waits_for_the_answer_of_a_slow_node(
    tmp_path: Path, etcd_server: Etcd
) -> None:
    """A node that answers a post only when the test says (real HTTP, in this process): the
    proxy, told to stop while it waits, still relays the answer, then exits 0."""
    release = asyncio.Event()

    async def node(request: web.Request) -> web.Response:
        if request.method == "POST":
            await release.wait()
            return web.json_response({"resources": ["/v2/queues/q/messages/1"]}, status=201)
        return web.Response(status=204)  # health checks, and anything else

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", node)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", free_port())
    await site.start()
    prefix = unique_prefix()
    try:
        await register(etcd_server, prefix, (site.name.rstrip("/"),))
        with proxy_process(etcd_server, prefix, tmp_path / "proxy.log") as (port, proc):
            async with aiohttp.ClientSession(headers=CLIENT) as session:
                posting = asyncio.create_task(
                    session.post(
                        f"http://127.0.0.1:{port}/v2/queues/q/messages",
                        json={"messages": [{"body": 1}]},
                    )
                )
                await asyncio.sleep(0.5)  # forwarded: the node holds it
                assert not posting.done()
                proc.send_signal(signal.SIGTERM)
                await asyncio.sleep(0.5)
                assert proc.poll() is None, "the proxy left with a request in flight"
                release.set()
                async with await posting as answer:
                    assert answer.status == 201, await answer.text()
            assert await asyncio.to_thread(proc.wait, 15) == 0
    finally:
        await runner.cleanup()


class Load:
    """Clients posting one message each, over keep-alive connections, every outcome counted."""

    def __init__(self, url: str, clients: int) -> None:
        self.url = url
        self.clients = clients
        self.outcomes: dict[int, str] = {}  # message number -> "201", "503", ... or "no answer"
        self.running = True
        self.next = 0
        self.counted = asyncio.Event()  # set at each outcome

    async def run(self) -> None:
        async with aiohttp.ClientSession(headers=CLIENT) as session:
            await asyncio.gather(*(self._client(session) for _ in range(self.clients)))

    async def _client(self, session: aiohttp.ClientSession) -> None:
        while self.running:
            number, self.next = self.next, self.next + 1
            body = {"messages": [{"body": {"n": number}, "ttl": 3600}]}
            try:
                async with session.post(f"{self.url}/v2/queues/load/messages", json=body) as answer:
                    await answer.read()
                    self.outcomes[number] = str(answer.status)
            except (aiohttp.ClientError, OSError):
                self.outcomes[number] = "no answer"
                await asyncio.sleep(0.01)
            self.counted.set()

    def answered(self, status: str) -> set[int]:
        return {n for n, outcome in self.outcomes.items() if outcome == status}


async def until_more(load: Load, status: str, more: int) -> None:
    """Until `more` posts more than now were answered `status` (30 s at most)."""
    target = len(load.answered(status)) + more
    async with asyncio.timeout(30):
        while len(load.answered(status)) < target:
            load.counted.clear()
            await load.counted.wait()


@pytest.mark.slow
async def test_sigterm_of_a_node_then_of_the_proxy_under_load_loses_and_doubles_nothing(
    tmp_path: Path, etcd_server: Etcd
) -> None:
    prefix = unique_prefix()
    storage = f"sqlite:///{tmp_path}/p1.db"  # two nodes of one partition share it
    with (
        node_process(storage, "p1", tmp_path) as first,
        node_process(storage, "p1", tmp_path) as second,
    ):
        await register(etcd_server, prefix, (first.url, second.url))
        with proxy_process(etcd_server, prefix, tmp_path / "proxy.log") as (port, proxy):
            load = Load(f"http://127.0.0.1:{port}", clients=8)
            running = asyncio.create_task(load.run())
            try:
                await until_more(load, "201", 200)
                first.proc.send_signal(signal.SIGTERM)
                assert await asyncio.to_thread(first.proc.wait, 15) == 0
                await until_more(load, "201", 200)  # the other node takes every post
                proxy.send_signal(signal.SIGTERM)
                assert await asyncio.to_thread(proxy.wait, 15) == 0
                await asyncio.sleep(0.2)  # posts refused: nothing listens
            finally:
                load.running = False
                await running
        bodies = await asyncio.to_thread(stored, second.url, "load")
    numbers = Counter(body["n"] for body in bodies)  # type: ignore[index]
    assert not [n for n, times in numbers.items() if times > 1], "stored twice"
    ok = load.answered("201")
    assert set(numbers) == ok, (
        f"answered 201 but not stored: {sorted(ok - set(numbers))}; "
        f"stored but answered {Counter(load.outcomes[n] for n in set(numbers) - ok)}"
    )
    # What the clients saw: mostly 201; when the proxy stopped, refusals (never sent).
    print(f"outcomes: {Counter(load.outcomes.values())}", file=sys.stderr)
    assert len(ok) >= 400

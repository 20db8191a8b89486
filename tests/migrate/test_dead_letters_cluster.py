"""Dead letters across partitions over real processes: etcd, two `marconi node`s over SQLite,
`marconi proxy` and `marconi worker`. A queue on p1 whose dead-letter queue is on p2: claims
through the proxy beyond `_max_claim_count` take the message out of its queue, and the worker
moves it into the dead-letter queue on p2, exactly once, also when it is killed (kill -9, by its
own test hook) right after any of its four steps and another worker resumes."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from catalog.catalog import Catalog
from catalog.etcd import EtcdStore
from catalog.keys import Keys
from catalog.records import Partition
from node.storage import open_storage
from tests.conftest import unique_prefix
from tests.services import Etcd, free_port, node_process, stop, wait_for_port

pytestmark = pytest.mark.slow

PROJECT = "graves"
HEADERS = {"Client-ID": "3b8a7c52-52f1-4a3b-9e7f-1d2c3b4a5f60", "X-Project-ID": PROJECT}
ADMIN = {"X-Roles": "admin"}
Q = "/v2/queues/orders"
DLQ = "/v2/queues/orders-dead"
POLICY = {"_max_claim_count": 2, "_dead_letter_queue": "orders-dead"}


@dataclass
class Cluster:
    url: str  # the proxy
    etcd: Etcd
    prefix: str
    uris: dict[str, str]
    logs: Path
    http: aiohttp.ClientSession

    async def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        async with self.http.request(method, self.url + path, json=body, headers=HEADERS) as answer:
            raw = await answer.read()
            return answer.status, (await answer.json() if raw else None)

    async def admin(self, method: str, path: str) -> tuple[int, Any]:
        async with self.http.request(method, self.url + path, headers=ADMIN) as answer:
            raw = await answer.read()
            return answer.status, (await answer.json() if raw else None)

    @contextmanager
    def worker(
        self, crash_after: int = 0, settings: dict[str, str] | None = None
    ) -> Iterator[subprocess.Popen[bytes]]:
        env = {
            **os.environ,
            "MARCONI_WORKER_METRICS_PORT": "0",
            "MARCONI_WORKER_DEAD_LETTER_INTERVAL": "0.1",
            "MARCONI_WORKER_LEASE_TTL": "2",
            "MARCONI_WORKER_DEAD_LETTER_CRASH_AFTER": str(crash_after),
            **{f"MARCONI_WORKER_{name.upper()}": v for name, v in (settings or {}).items()},
        }
        argv = ["worker", "--catalog", self.etcd.url, "--catalog-prefix", self.prefix]
        with (self.logs / "worker.log").open("ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "marconi.cli", *argv, "--log-json"],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        try:
            yield proc
        finally:
            stop(proc)

    async def claim_and_release(self, path: str = Q) -> list[Any]:
        status, body = await self.request("POST", f"{path}/claims", {"ttl": 60, "grace": 60})
        if status == 204:
            return []
        assert status == 201, body
        claim = body["messages"][0]["href"].split("claim_id=")[1]
        assert (await self.request("DELETE", f"{path}/claims/{claim}"))[0] == 204
        return [m["body"] for m in body["messages"]]

    async def dead(self) -> list[tuple[str, Any]]:
        """(id, body) of every message of the dead-letter queue, claimed or not."""
        status, body = await self.request("GET", f"{DLQ}/messages?echo=true&include_claimed=true")
        assert status == 200, body
        return [(m["id"], m["body"]) for m in body["messages"]]

    async def waiting(self) -> int:
        """Letters in p1's outgoing pile, read from its file as the worker reads it."""
        storage = await open_storage(self.uris["p1"])
        try:
            return len(await storage.dead_letters.waiting(limit=100))
        finally:
            await storage.close()


@contextmanager
def proxy_process(etcd: Etcd, prefix: str, logs: Path) -> Iterator[int]:
    port = free_port()
    argv = ["proxy", "--catalog", etcd.url, "--catalog-prefix", prefix, "--port", str(port)]
    with (logs / "proxy.log").open("ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "marconi.cli", *argv], stdout=log, stderr=subprocess.STDOUT
        )
    try:
        wait_for_port(port, proc)
        yield port
    finally:
        stop(proc)


@pytest.fixture
async def c(tmp_path: Path, etcd_server: Etcd) -> AsyncIterator[Cluster]:
    prefix = unique_prefix()
    uris = {name: f"sqlite:///{tmp_path}/{name}.db" for name in ("p1", "p2")}
    with ExitStack() as processes:
        nodes = {
            name: processes.enter_context(node_process(uri, name, tmp_path))
            for name, uri in uris.items()
        }
        store = EtcdStore(etcd_server.url)
        catalog = Catalog(store, Keys(prefix))
        try:
            for name, node in nodes.items():
                await catalog.add_partition(Partition(name, (node.url,), storage=uris[name]))
            await catalog.place(PROJECT, "orders", "p1")
            await catalog.place(PROJECT, "orders-dead", "p2")
        finally:
            await store.close()
        port = processes.enter_context(proxy_process(etcd_server, prefix, tmp_path))
        async with AsyncExitStack() as stack:
            http = await stack.enter_async_context(aiohttp.ClientSession())
            c = Cluster(f"http://127.0.0.1:{port}", etcd_server, prefix, uris, tmp_path, http)
            assert (await c.request("PUT", DLQ))[0] == 201
            assert (await c.request("PUT", Q, POLICY))[0] == 201
            yield c


async def dead_letter_one(c: Cluster) -> str:
    """Post one message and claim it through the proxy past the maximum: its id."""
    status, body = await c.request("POST", f"{Q}/messages", {"messages": [{"body": "m"}]})
    assert status == 201
    mid: str = body["resources"][0].rsplit("/", 1)[1]
    assert await c.claim_and_release() == ["m"]
    assert await c.claim_and_release() == ["m"]
    assert await c.claim_and_release() == []  # the third claim takes it out of the queue
    _, stats = await c.request("GET", f"{Q}/stats")
    assert stats["messages"]["total"] == 0
    return mid


async def until(check: Any) -> None:
    async with asyncio.timeout(30):
        while not await check():  # noqa: ASYNC110 - another process changes it
            await asyncio.sleep(0.1)


async def test_a_dead_letter_reaches_its_queue_on_another_partition_once(c: Cluster) -> None:
    mid = await dead_letter_one(c)
    assert await c.dead() == [] and await c.waiting() == 1  # no worker yet: it waits
    with c.worker():

        async def arrived() -> bool:
            return await c.waiting() == 0 and await c.dead() != []

        await until(arrived)
        await asyncio.sleep(0.5)  # more passes: still once
        assert await c.dead() == [(mid, "m")]
    _, stats = await c.request("GET", f"{DLQ}/stats")
    assert stats["messages"]["total"] == 1 and stats["messages"]["free"] == 1
    assert await c.claim_and_release(DLQ) == ["m"]


@pytest.mark.parametrize("step", [1, 2, 3, 4])
async def test_kill_9_of_the_worker_after_any_step_moves_it_exactly_once(
    c: Cluster, step: int
) -> None:
    mid = await dead_letter_one(c)
    with c.worker(crash_after=step) as crashing:
        await asyncio.to_thread(crashing.wait, 60)
        assert crashing.returncode == -9  # killed by its hook, right after `step`
    copies = await c.dead()
    assert copies == [(mid, "m")]  # one copy from step 1 on
    if step < 3:  # held: no consumer can take it before the pile knows it whole
        assert await c.claim_and_release(DLQ) == []
    else:  # released: a consumer takes and deletes it; no copy may come back
        status, body = await c.request("POST", f"{DLQ}/claims", {"ttl": 60})
        assert status == 201 and [m["body"] for m in body["messages"]] == ["m"]
        assert (await c.request("DELETE", body["messages"][0]["href"]))[0] == 204
    assert await c.waiting() == (0 if step == 4 else 1)
    with c.worker():

        async def resumed() -> bool:
            return await c.waiting() == 0

        await until(resumed)
        await asyncio.sleep(0.5)  # more passes: nothing more arrives
        assert await c.dead() == ([(mid, "m")] if step < 3 else [])
    if step < 3:
        assert await c.claim_and_release(DLQ) == ["m"]  # released by the resumed worker


async def test_a_drained_partition_stays_until_its_piled_letters_have_moved(c: Cluster) -> None:
    """p1 piles a letter for a dead-letter queue that is gone (so the mover defers it), then is
    drained: its queue moves, but the drain is not over and p1 may not be removed while the
    letter waits; once the dead-letter queue is back, the mover delivers it, the drain ends and
    p1 goes."""
    assert (await c.request("DELETE", DLQ))[0] == 204
    mid = await dead_letter_one(c)
    assert await c.waiting() == 1
    status, body = await c.admin("DELETE", "/admin/partitions/p1")
    assert status == 409 and "owns queues" in body["description"]
    fast = {"purge_grace": "0", "fence_grace": "0.1", "retry_pause": "0.1"}
    with c.worker(settings=fast):

        async def queues_moved() -> bool:
            status, report = await c.admin("POST", "/admin/partitions/p1/drain")
            assert status == 200, report
            return not report["remaining"] and not report["moving"]

        await until(queues_moved)
        _, report = await c.admin("POST", "/admin/partitions/p1/drain")
        piles = [{"project": PROJECT, "queue": "orders-dead", "waiting": 1}]
        assert report["dead_letters"] == {"waiting": 1, "more": False, "piles": piles}
        status, body = await c.admin("DELETE", "/admin/partitions/p1")
        assert status == 409 and set(body) == {"title", "description"}, body
        assert "1 dead letters waiting" in body["description"]
        assert f"1 for {PROJECT}/orders-dead" in body["description"]

        waited = await drain_command(c, "--wait-timeout", "0.5")
        assert waited.returncode == 4, waited.stderr  # the drain is not over
        assert (
            f"drain of p1: 0 queues left and 1 dead letters waiting to move (1 for {PROJECT}"
            "/orders-dead) after"
        ) in waited.stderr.decode()

        assert (await c.request("PUT", DLQ))[0] == 201  # placed on p2: p1 is draining
        drained = await drain_command(c)
        assert drained.returncode == 0, drained.stderr
        report = json.loads(drained.stdout)
        assert report["remaining"] == 0
        assert report["dead_letters"] == {"waiting": 0, "more": False, "piles": []}
    assert (await c.admin("DELETE", "/admin/partitions/p1"))[0] == 204
    assert await c.dead() == [(mid, "m")]


async def drain_command(c: Cluster, *flags: str) -> subprocess.CompletedProcess[bytes]:
    """`marconi drain p1 --wait --json` against the proxy, and how it ended."""
    argv = ["drain", "p1", "--wait", "--json", "--interval", "0.1", "--url", c.url, *flags]
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "marconi.cli", *argv],
        capture_output=True,
        timeout=30,
    )

"""A catalog larger than one etcd answer allows: a `marconi proxy`, a `marconi worker` and the CLI
started against it, each as its own process, with the etcd client's message limit and the page
size made small (MARCONI_ETCD_MAX_MESSAGE, MARCONI_CATALOG_PAGE) instead of writing millions of
keys. Before paging, the proxy's first load was one answer over the limit and it never started."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import aiohttp
import pytest

from catalog.catalog import Catalog
from catalog.errors import CatalogUnavailable
from catalog.etcd import EtcdStore
from catalog.keys import Keys
from catalog.records import Partition
from tests.conftest import unique_prefix
from tests.services import Etcd, free_port, node_process, stop, wait_for_port

QUEUES = 1500  # about 150 bytes each in etcd's answer: 225 KB, seven times the limit below
MAX_MESSAGE = 32 * 1024
PAGE = 50
PROJECT = "proj-real"


@contextmanager
def marconi(args: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "marconi.cli", *args], env=env, stdout=out, stderr=out
        )
        try:
            yield proc
        finally:
            stop(proc)


def cli(env: dict[str, str], *args: str) -> tuple[int, object]:
    done = subprocess.run(
        [sys.executable, "-m", "marconi.cli", *args, "--json"],
        env=env,
        capture_output=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr.decode()
    return done.returncode, json.loads(done.stdout)


async def write_catalog(url: str, keys: Keys, partitions: list[Partition]) -> None:
    store = EtcdStore(url)
    try:
        catalog = Catalog(store, keys)
        for partition in partitions:
            await catalog.add_partition(partition)
        for start in range(0, QUEUES, 100):
            await asyncio.gather(
                *(
                    catalog.place(f"proj-{i % 30:02d}", f"queue-{i:05d}", "p1")
                    for i in range(start, min(start + 100, QUEUES))
                )
            )
        await catalog.place("proj-07", "on-p2", "p2")
    finally:
        await store.close()
    small = EtcdStore(url, max_message=MAX_MESSAGE)
    try:  # the catalog is larger than one answer allows
        with pytest.raises(CatalogUnavailable, match=r"RESOURCE_EXHAUSTED|larger than max"):
            await small.range(keys.placements, "", QUEUES + 1)
    finally:
        await small.close()


async def listed(session: aiohttp.ClientSession, node: str, headers: dict[str, str]) -> list[str]:
    """The project's queues on one node (asked of the node itself, not through the proxy)."""
    async with session.get(f"{node}/v2/queues", headers=headers) as resp:
        if resp.status == 204:
            return []
        assert resp.status == 200
        return [q["name"] for q in (await resp.json())["queues"]]


async def ready(session: aiohttp.ClientSession, url: str, within: float) -> dict[str, object]:
    deadline = time.monotonic() + within
    while True:
        try:
            async with session.get(f"{url}/readyz") as resp:
                if resp.status == 200:
                    body: dict[str, object] = await resp.json()
                    return body
        except aiohttp.ClientError:
            pass
        assert time.monotonic() < deadline, "the proxy did not become ready"
        await asyncio.sleep(0.1)


@pytest.mark.slow
async def test_proxy_worker_and_cli_on_a_catalog_larger_than_one_answer(
    etcd_server: Etcd, tmp_path: Path
) -> None:
    keys = Keys(unique_prefix())
    uris = {name: f"sqlite:///{tmp_path}/{name}.db" for name in ("p1", "p2")}
    with node_process(uris["p1"], "p1") as n1, node_process(uris["p2"], "p2") as n2:
        partitions = [
            Partition("p1", (n1.url,), storage=uris["p1"]),
            Partition("p2", (n2.url,), storage=uris["p2"]),
        ]
        await write_catalog(etcd_server.url, keys, partitions)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        env = {
            **os.environ,
            "MARCONI_CATALOG_URL": etcd_server.url,
            "MARCONI_CATALOG_PREFIX": keys.prefix,
            "MARCONI_ETCD_MAX_MESSAGE": str(MAX_MESSAGE),
            "MARCONI_CATALOG_PAGE": str(PAGE),
            "MARCONI_REBALANCE_STATS_LIMIT": "100",  # a census, not the placements held whole
            "MARCONI_WORKER_PURGE_GRACE": "0.2",
            "MARCONI_URL": url,
        }
        proxy_args = ["proxy", "--port", str(port), "--migration-cooldown", "0"]
        with (
            marconi(proxy_args, env, tmp_path / "proxy.log") as proxy,
            marconi(["worker"], env, tmp_path / "worker.log"),
        ):
            async with aiohttp.ClientSession() as session:
                await exercise(session, env, url, proxy, n1.url, n2.url)


async def exercise(
    session: aiohttp.ClientSession,
    env: dict[str, str],
    url: str,
    proxy: subprocess.Popen[bytes],
    n1: str,
    n2: str,
) -> None:
    wait_for_port(int(url.rsplit(":", 1)[1]), proxy)
    await ready(session, url, 30)
    # A queue placed on p2 in the catalog is routed there, loaded or not yet.
    headers = {"Client-ID": "6d61726b-6f6e-4900-8000-000000000001"}
    placed = {**headers, "X-Project-ID": "proj-07"}
    async with session.put(f"{url}/v2/queues/on-p2", headers=placed) as resp:
        assert resp.status == 201
    assert await listed(session, n2, placed) == ["on-p2"]  # on p2's node only
    assert await listed(session, n1, placed) == []

    deadline = time.monotonic() + 30
    while not (body := await ready(session, url, 5))["placements_filled"]:
        assert time.monotonic() < deadline, "the placements never finished loading"
        await asyncio.sleep(0.1)
    assert body["placements_cached"] == QUEUES + 1

    # A new queue with a message, moved by the worker, the CLI following it.
    mine = {**headers, "X-Project-ID": PROJECT}
    async with session.put(f"{url}/v2/queues/real", headers=mine) as resp:
        assert resp.status == 201
    message = {"messages": [{"body": {"n": 1}, "ttl": 300}]}
    async with session.post(f"{url}/v2/queues/real/messages", json=message, headers=mine) as resp:
        assert resp.status == 201
    _, where = cli(env, "queues", "where", PROJECT, "real")
    source = where["partition"]  # type: ignore[index]
    target = "p2" if source == "p1" else "p1"
    _, moved = cli(env, "migrate", "move", PROJECT, "real", "--to", target, "--wait")
    assert moved["phase"] == "DONE"  # type: ignore[index]
    _, where = cli(env, "queues", "where", PROJECT, "real")
    assert where["partition"] == target  # type: ignore[index]
    async with session.get(f"{url}/v2/queues/real/messages?echo=true", headers=mine) as resp:
        assert resp.status == 200
        assert [m["body"] for m in (await resp.json())["messages"]] == [{"n": 1}]

    # A rebalance plan over the whole catalog, read a page at a time: p1 holds it all.
    _, plan = cli(env, "rebalance", "--dry-run", "--max-moves", "5")
    assert plan["measured"] == ["queues"]  # type: ignore[index]
    moves = plan["plan"]  # type: ignore[index]
    assert [(m["from"], m["to"]) for m in moves] == [("p1", "p2")] * 5
    # The first queues by name: the same plan as over the placements held whole.
    assert [(m["project"], m["queue"]) for m in moves] == [
        ("proj-00", f"queue-{30 * i:05d}") for i in range(5)
    ]
    loads = {s["partition"]: s["queues"] for s in plan["loads"]}  # type: ignore[index]
    assert sum(loads.values()) == QUEUES + 2

    # A drain of p2 (every queue there is a real one), read a page at a time on every call.
    _, drained = cli(env, "drain", "p2", "--wait", "--interval", "0.2", "--wait-timeout", "60")
    assert (drained["state"], drained["remaining"]) == ("draining", 0)  # type: ignore[index]
    assert await listed(session, n2, placed) == []
    assert await listed(session, n1, placed) == ["on-p2"]  # moved, messages and all

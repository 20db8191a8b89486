"""The official client, python-zaqarclient, through a proxy process in front of two partitions
(each a node process), over a real etcd: the proxy as `marconi dev` runs it."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from catalog.catalog import Catalog
from catalog.etcd import EtcdStore
from catalog.keys import Keys
from catalog.records import Partition
from tests.conftest import unique_prefix
from tests.node.test_zaqarclient import drive_subscriptions, make_client, queue_names
from tests.services import Etcd, free_port, node_process, stop, wait_for_port


async def register(etcd_url: str, prefix: str, partitions: dict[str, str]) -> None:
    store = EtcdStore(etcd_url)
    try:
        catalog = Catalog(store, Keys(prefix))
        for name, url in partitions.items():
            await catalog.add_partition(Partition(name, (url,)))
    finally:
        await store.close()


@pytest.fixture(scope="module")
def proxy_url(tmp_path_factory: pytest.TempPathFactory, etcd_server: Etcd) -> Iterator[str]:
    data: Path = tmp_path_factory.mktemp("proxy-zaqarclient")
    prefix = unique_prefix()
    with ExitStack() as stack:
        nodes = {
            name: stack.enter_context(node_process(f"sqlite:///{data}/{name}.db", name, data)).url
            for name in ("p1", "p2")
        }
        asyncio.run(register(etcd_server.url, prefix, nodes))
        port = free_port()
        env = {
            **os.environ,
            "MARCONI_CATALOG_URL": etcd_server.url,
            "MARCONI_CATALOG_PREFIX": prefix,
            "MARCONI_PROXY_PORT": str(port),
            "MARCONI_LOG_JSON": "true",
        }
        log = stack.enter_context(open(data / "proxy.log", "wb"))
        proc = subprocess.Popen(
            [sys.executable, "-m", "proxy.server"], env=env, stdout=log, stderr=subprocess.STDOUT
        )
        stack.callback(stop, proc)
        wait_for_port(port, proc)
        yield f"http://127.0.0.1:{port}"


def test_official_client_through_the_proxy(proxy_url: str) -> None:
    cli = make_client(proxy_url, 2)
    names = [f"jobs-{i}" for i in range(6)]
    for i, name in enumerate(names):
        cli.queue(name).post([{"body": {"job": i, "n": n}, "ttl": 600} for n in range(3)])
    assert set(names) <= set(queue_names(cli))
    for i, name in enumerate(names):
        queue = cli.queue(name)
        assert [m.body["n"] for m in queue.messages(echo=True)] == [0, 1, 2]
        claim = queue.claim(ttl=120, grace=120, limit=2)
        claimed = list(claim)
        assert [m.body["job"] for m in claimed] == [i, i]
        for message in claimed:
            message.delete()
        assert queue.stats["messages"]["total"] == 1
    for name in names:
        cli.queue(name).delete()
    assert not set(names) & set(queue_names(cli))


def test_official_client_metadata_through_the_proxy(proxy_url: str) -> None:
    cli = make_client(proxy_url, 2)
    queue = cli.queue("with-metadata")
    queue.ensure_exists(force_create=True)
    queue.metadata(new_meta={"color": "red"})
    assert queue.metadata(force_reload=True)["color"] == "red"
    queue.delete()


def test_official_client_subscriptions_through_the_proxy(proxy_url: str) -> None:
    cli = make_client(proxy_url, 2)
    for name in ("notified-a", "notified-b", "notified-c"):  # placed on either partition
        drive_subscriptions(cli, name)

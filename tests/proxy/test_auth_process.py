"""`marconi proxy --auth keystone` as deployed: its own process over a real etcd, a real node
process and the real Keystone, driven over HTTP and by the admin CLI. Its logs, and the node's,
at debug level and through error paths, never hold a token."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from catalog.catalog import Catalog
from catalog.etcd import EtcdStore
from catalog.keys import Keys
from catalog.records import Partition
from tests.conftest import unique_prefix
from tests.keystone import ALICE, OPERATOR, SERVICE, Keystone
from tests.proxy.conftest import CLIENT_ID
from tests.services import Etcd, free_port, node_process, stop, wait_for_port

pytestmark = [pytest.mark.keystone, pytest.mark.slow]

GARBAGE = "gAAAAABnot-a-token-but-shaped-like-one-0123456789"


@contextmanager
def proxy_process(
    etcd: Etcd, prefix: str, keystone: Keystone, log: Path
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    port = free_port()
    env = {**os.environ, "MARCONI_KEYSTONE_PASSWORD": SERVICE.password}
    argv = [
        *("proxy", "--catalog", etcd.url, "--catalog-prefix", prefix, "--port", str(port)),
        *("--auth", "keystone", "--keystone-url", keystone.url),
        *("--keystone-username", SERVICE.name, "--keystone-project", SERVICE.project),
        *("--log-level", "debug", "--log-json"),
    ]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "marconi.cli", *argv], env=env, stdout=out, stderr=out
        )
        try:
            wait_for_port(port, proc)
            yield f"http://127.0.0.1:{port}", proc
        finally:
            stop(proc)


async def request(
    session: aiohttp.ClientSession, method: str, url: str, token: str | None, **kw: Any
) -> int:
    headers = {"Client-ID": CLIENT_ID, **kw.pop("headers", {})}
    if token is not None:
        headers["X-Auth-Token"] = token
    async with session.request(method, url, headers=headers, **kw) as resp:
        await resp.read()
        return resp.status


def cli(url: str, token: str | None, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "MARCONI_AUTH_TOKEN"}
    if token is not None:
        env["MARCONI_AUTH_TOKEN"] = token
    return subprocess.run(
        [sys.executable, "-m", "marconi.cli", *argv, "--url", url],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def read_logs(folder: Path) -> str:
    return "".join(p.read_text() for p in sorted(folder.glob("*.log")))


async def test_the_proxy_process_authenticates_and_logs_no_token(
    tmp_path: Path, etcd_server: Etcd, keystone_server: Keystone
) -> None:
    prefix = unique_prefix()
    alice, operator = keystone_server.token(ALICE), keystone_server.token(OPERATOR)
    with node_process(f"sqlite:///{tmp_path}/p1.db", "p1", tmp_path) as node:
        store = EtcdStore(etcd_server.url)
        try:
            await Catalog(store, Keys(prefix)).add_partition(Partition("p1", (node.url,)))
        finally:
            await store.close()
        log = tmp_path / "proxy.log"
        with proxy_process(etcd_server, prefix, keystone_server, log) as (url, _):
            q = f"{url}/v2/queues/logged"
            async with aiohttp.ClientSession() as s:
                assert await request(s, "PUT", q, alice) == 201
                posted = {"messages": [{"body": {"n": 1}, "ttl": 300}]}
                assert await request(s, "POST", f"{q}/messages", alice, json=posted) == 201
                assert await request(s, "POST", f"{q}/messages", alice, data=b"{nope") == 400
                assert await request(s, "GET", q, None) == 401
                assert await request(s, "GET", q, GARBAGE) == 401
                beta = {"X-Project-ID": keystone_server.projects["beta"]}
                assert await request(s, "GET", q, alice, headers=beta) == 403
                assert await request(s, "GET", f"{url}/admin/partitions", alice) == 403

            # The admin CLI: the operator's token lists partitions; alice's is refused.
            listed = await asyncio.to_thread(cli, url, operator, "partitions", "list", "--json")
            assert listed.returncode == 0, listed.stderr
            assert "p1" in listed.stdout
            refused = await asyncio.to_thread(cli, url, alice, "partitions", "list")
            assert refused.returncode == 1 and "not authorized" in refused.stderr
            anonymous = await asyncio.to_thread(cli, url, None, "health")
            assert anonymous.returncode == 1 and "requires authentication" in anonymous.stderr

            # An error path: the partition's only node is gone.
            node.proc.kill()
            node.proc.wait()
            async with aiohttp.ClientSession() as s:
                assert await request(s, "GET", f"{q}/stats", alice) == 503
    logs = await asyncio.to_thread(read_logs, tmp_path)
    for event in ("proxy_started", "proxy_unavailable", "catalog_loaded"):
        assert event in logs  # the logs were captured, error paths included
    for token in (alice, operator, GARBAGE):  # nor any part of one
        assert not [
            token[i : i + 24] for i in range(0, len(token) - 23, 8) if token[i : i + 24] in logs
        ]

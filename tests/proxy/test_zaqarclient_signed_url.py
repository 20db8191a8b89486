"""python-zaqarclient's pre-signed URLs against a running cluster: a proxy process in front of
node processes over a real etcd, all given the same secret through the environment
(`MARCONI_SIGNED_URL_KEY`), under noauth and under `--auth keystone`. The owner asks for a
signed URL; a client built from it alone (the client's `signed-url` auth backend) posts and
reads, and nothing more."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
import requests
from zaqarclient.queues.v2 import client as zaqar
from zaqarclient.transport import errors

from tests.conftest import unique_prefix
from tests.keystone import ALICE, Keystone
from tests.node.test_zaqarclient import make_client
from tests.proxy.conftest import CLIENT_ID
from tests.proxy.test_auth_process import proxy_process
from tests.proxy.test_zaqarclient import register
from tests.services import Etcd, free_port, node_process, stop, wait_for_port

SECRET = "zaqarclient-signed-url-secret"


@pytest.fixture(scope="module")
def proxy_url(tmp_path_factory: pytest.TempPathFactory, etcd_server: Etcd) -> Iterator[str]:
    data: Path = tmp_path_factory.mktemp("proxy-signed-url")
    prefix = unique_prefix()
    with ExitStack() as stack, pytest.MonkeyPatch.context() as env:
        env.setenv("MARCONI_SIGNED_URL_KEY", SECRET)  # the nodes' and the proxy's
        nodes = {
            name: stack.enter_context(node_process(f"sqlite:///{data}/{name}.db", name, data)).url
            for name in ("p1", "p2")
        }
        asyncio.run(register(etcd_server.url, prefix, nodes))
        port = free_port()
        env.setenv("MARCONI_CATALOG_URL", etcd_server.url)
        env.setenv("MARCONI_CATALOG_PREFIX", prefix)
        env.setenv("MARCONI_PROXY_PORT", str(port))
        log = stack.enter_context(open(data / "proxy.log", "wb"))
        proc = subprocess.Popen(
            [sys.executable, "-m", "proxy.server"],
            env=dict(os.environ),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        stack.callback(stop, proc)
        wait_for_port(port, proc)
        yield f"http://127.0.0.1:{port}"


def signed_client(url: str, signed: dict[str, Any]) -> zaqar.Client:
    options = {
        "signature": signed["signature"],
        "expires": signed["expires"],
        "methods": signed["methods"],
        "paths": signed["paths"],
        "os_project_id": signed["project"],
    }
    conf = {"auth_opts": {"backend": "signed-url", "options": options}}
    return zaqar.Client(url, version=2, conf=conf)


def test_a_client_built_from_a_signed_url(proxy_url: str) -> None:
    owner = make_client(proxy_url, 2, project="owner-project")
    queue = owner.queue("shared")
    queue.post([{"body": {"from": "owner"}, "ttl": 600}])
    signed = queue.signed_url(paths=["messages"], ttl_seconds=600, methods=["GET", "POST"])
    assert signed["project"] == "owner-project"
    assert signed["paths"] == ["/v2/queues/shared/messages"]
    assert signed["methods"] == ["GET", "POST"]

    guest = signed_client(proxy_url, signed).queue("shared", auto_create=False)
    guest.post([{"body": {"from": "guest"}, "ttl": 600}])
    bodies = [m.body for m in guest.messages(echo=True)]
    assert bodies == [{"from": "owner"}, {"from": "guest"}]
    assert queue.stats["messages"]["total"] == 2  # the owner's queue, in the owner's project

    # Nothing beyond it: the queue's stats, another queue, a delete.
    with pytest.raises(errors.ResourceNotFound):
        _ = guest.stats
    other = signed_client(proxy_url, signed).queue("other", auto_create=False)
    with pytest.raises(errors.ResourceNotFound):
        list(other.messages(echo=True))
    with pytest.raises(errors.ResourceNotFound):
        guest.delete()
    assert queue.stats["messages"]["total"] == 2


def test_a_signed_url_for_reading_only(proxy_url: str) -> None:
    owner = make_client(proxy_url, 2, project="owner-project")
    queue = owner.queue("readonly")
    queue.post([{"body": 1, "ttl": 600}])
    signed = queue.signed_url(ttl_seconds=60)  # Zaqar's defaults: messages, GET
    guest = signed_client(proxy_url, signed).queue("readonly", auto_create=False)
    assert [m.body for m in guest.messages(echo=True)] == [1]
    with pytest.raises(errors.ResourceNotFound):
        guest.post([{"body": 2, "ttl": 600}])
    assert queue.stats["messages"]["total"] == 1


@pytest.mark.keystone
@pytest.mark.slow
def test_a_signed_url_needs_no_token_through_a_keystone_proxy_process(
    tmp_path: Path, etcd_server: Etcd, keystone_server: Keystone
) -> None:
    """`marconi proxy --auth keystone` and `marconi node` processes with one secret: the owner
    shares with its token; python-zaqarclient then uses the signed URL with no token at all."""
    prefix = unique_prefix()
    alice = keystone_server.token(ALICE)
    with ExitStack() as stack, pytest.MonkeyPatch.context() as env:
        env.setenv("MARCONI_SIGNED_URL_KEY", SECRET)
        node = stack.enter_context(node_process(f"sqlite:///{tmp_path}/p1.db", "p1", tmp_path))
        asyncio.run(register(etcd_server.url, prefix, {"p1": node.url}))
        url, _ = stack.enter_context(
            proxy_process(etcd_server, prefix, keystone_server, tmp_path / "proxy.log")
        )
        owner = {"X-Auth-Token": alice, "Client-ID": CLIENT_ID}
        q = f"{url}/v2/queues/shared"
        assert requests.put(q, headers=owner, timeout=30).status_code == 201
        answer = requests.post(
            f"{q}/share", json={"methods": ["GET", "POST"]}, headers=owner, timeout=30
        )
        assert answer.status_code == 200, answer.text
        signed = answer.json()
        assert signed["project"] == keystone_server.projects["alpha"]

        guest = signed_client(url, signed).queue("shared", auto_create=False)
        guest.post([{"body": "from a guest", "ttl": 600}])
        assert [m.body for m in guest.messages(echo=True)] == ["from a guest"]
        with pytest.raises(errors.ResourceNotFound):
            _ = guest.stats
        # Without the signature, the same client is just anonymous.
        anonymous = requests.get(f"{q}/messages", headers={"Client-ID": CLIENT_ID}, timeout=30)
        assert anonymous.status_code == 401
        stats = requests.get(f"{q}/stats", headers=owner, timeout=30).json()
        assert stats["messages"]["total"] == 1

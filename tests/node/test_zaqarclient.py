"""The official client, python-zaqarclient, driving a node that runs in its own process."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from zaqarclient.queues import client as zaqar

from tests.services import node_process


@pytest.fixture(scope="module")
def node_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    data = tmp_path_factory.mktemp("zaqarclient")
    with node_process(f"sqlite:///{data}/p1.db", log_dir=data) as node:
        yield node.url


def make_client(url: str, version: int, project: str = "client-project") -> zaqar.Client:
    """The current python-zaqarclient speaks v2 only; v1 and v1.1 are tested over plain HTTP."""
    conf = {"auth_opts": {"backend": "noauth", "options": {"os_project_id": project}}}
    return zaqar.Client(url, version=version, conf=conf)


def queue_names(cli: zaqar.Client) -> list[str]:
    listed, _count = cli.queues()
    return [q.name for q in listed]


def test_official_client_round_trip(node_url: str) -> None:
    """Create queue, post, list, claim, delete with claim, stats, queue delete."""
    cli = make_client(node_url, 2)
    name = "jobs"
    queue = cli.queue(name)
    queue.post([{"body": {"job": i}, "ttl": 600} for i in range(5)])
    assert name in queue_names(cli)

    listed = list(queue.messages(echo=True))
    assert [m.body["job"] for m in listed] == [0, 1, 2, 3, 4]

    stats = queue.stats["messages"]
    assert stats["total"] == 5 and stats["free"] == 5

    claim = queue.claim(ttl=120, grace=120, limit=3)
    claimed = list(claim)
    assert [m.body["job"] for m in claimed] == [0, 1, 2]
    assert queue.stats["messages"]["claimed"] == 3
    for message in claimed:
        message.delete()
    assert queue.stats["messages"]["total"] == 2

    rest = list(queue.messages(echo=True))
    assert [m.body["job"] for m in rest] == [3, 4]
    queue.delete()
    assert name not in queue_names(cli)


def test_official_client_metadata_v2(node_url: str) -> None:
    cli = make_client(node_url, 2)
    queue = cli.queue("with-metadata")
    queue.ensure_exists(force_create=True)
    queue.metadata(new_meta={"color": "red"})
    assert queue.metadata(force_reload=True)["color"] == "red"
    queue.delete()

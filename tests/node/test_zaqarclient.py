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


def drive_subscriptions(cli: zaqar.Client, name: str) -> None:
    """Subscribe (creating the queue), get, list across pages, update, delete, purge, with the
    official client's own calls."""
    made = [
        cli.subscription(name, subscriber=f"http://example.test/{i}", ttl=600, options={"n": i})
        for i in range(5)
    ]
    assert all(s.id for s in made) and len({s.id for s in made}) == 5
    assert name in queue_names(cli)
    got = cli.subscription(name, id=made[0].id, auto_create=False)
    got.ensure_exists()
    assert (got.subscriber, got.ttl, got.options, got.confirmed) == (
        "http://example.test/0",
        600,
        {"n": 0},
        False,
    )
    assert len(list(cli.subscriptions(name, limit=2))) == 2  # one page
    # Two to a page, streamed: the client follows the `next` links to the end.
    listed = list(cli.subscriptions(name, limit=2).stream())
    assert [s.id for s in listed] == sorted(s.id for s in made)
    assert [s.subscriber for s in listed] == [f"http://example.test/{i}" for i in range(5)]
    assert {s.queue_name for s in cli.queue(name).subscriptions(limit=20)} == {name}
    made[1].update({"ttl": 1200, "options": {"changed": True}})
    again = cli.subscription(name, id=made[1].id)
    assert (again.ttl, again.options) == (1200, {"changed": True})
    made[2].delete()
    assert made[2].id not in [s.id for s in cli.subscriptions(name)]
    cli.queue(name).purge(resource_types=["subscriptions"])
    assert list(cli.subscriptions(name)) == []
    cli.queue(name).delete()


def test_official_client_subscriptions(node_url: str) -> None:
    drive_subscriptions(make_client(node_url, 2), "notified")

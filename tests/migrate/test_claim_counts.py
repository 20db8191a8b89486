"""A migration moves each message's claim count with it: after the move, the queue's
dead-letter policy goes on counting from where the source left off."""

from __future__ import annotations

import asyncio
from pathlib import Path

from catalog.migrations import Phase
from tests.conftest import FakeClock
from tests.migrate.harness import PROJECT, QUEUE, MigrationCluster, migration_cluster
from tests.proxy.conftest import call
from tests.services import Etcd

Q = f"/v2/queues/{QUEUE}"


async def claim_once(c: MigrationCluster, path: str) -> list[object]:
    """Claim what there is, release the claim, and say what it held."""
    status, body, headers = await call(
        c.proxy, "POST", f"{path}/claims", json={"ttl": 60}, project=PROJECT
    )
    if status == 204:
        return []
    assert status == 201, body
    assert (await call(c.proxy, "DELETE", headers["Location"], project=PROJECT))[0] == 204
    return [m["body"] for m in body["messages"]]


async def test_claim_counts_move_with_the_queue(
    etcd_server: Etcd, tmp_path: Path, clock: FakeClock
) -> None:
    uris = {name: f"sqlite:///{tmp_path}/{name}.db" for name in ("p1", "p2")}
    async with migration_cluster(etcd_server.url, uris, clock) as c:
        await c.catalog.pin(PROJECT, "p1")
        await asyncio.sleep(0.3)  # the proxy's cache follows the catalog's watch
        assert (await call(c.proxy, "PUT", Q, project=PROJECT))[0] == 201
        post = {"messages": [{"body": "a"}, {"body": "b"}]}
        assert (await call(c.proxy, "POST", f"{Q}/messages", json=post, project=PROJECT))[0] == 201
        assert await claim_once(c, Q) == ["a", "b"]
        assert await claim_once(c, Q) == ["a", "b"]
        await c.worker()
        m = await c.move("p2")
        done = await c.wait_for(m.id, Phase.DONE, Phase.FAILED, Phase.CANCELLED)
        assert done.phase is Phase.DONE, done.error
        moved = await c.storage("p2").transfer.export_messages(
            PROJECT, QUEUE, after_marker=0, limit=10
        )
        assert [(x.body, x.claim_count) for x in moved] == [("a", 2), ("b", 2)]
        # On the target, the policy counts on: a dead-letter queue beside it there takes them.
        await c.catalog.pin(PROJECT, "p2")
        await asyncio.sleep(0.3)
        assert (await call(c.proxy, "PUT", "/v2/queues/failed", project=PROJECT))[0] == 201
        ops = [
            {"op": "add", "path": "/metadata/_max_claim_count", "value": 2},
            {"op": "add", "path": "/metadata/_dead_letter_queue", "value": "failed"},
        ]
        status, _, _ = await call(
            c.proxy,
            "PATCH",
            Q,
            json=ops,
            headers={"Content-Type": "application/openstack-messaging-v2.0-json-patch"},
            project=PROJECT,
        )
        assert status == 200
        assert await claim_once(c, Q) == []  # claimed twice already, on the source
        status, body, _ = await call(
            c.proxy, "GET", "/v2/queues/failed/messages?echo=true", project=PROJECT
        )
        assert [x["body"] for x in body["messages"]] == ["a", "b"]

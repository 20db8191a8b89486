"""Dead letters through the proxy: with `--placement-key project` a tenant's queues share a
partition, so a queue's dead-letter queue is always beside it and the node moves the messages
(README, dead letters)."""

from __future__ import annotations

from pathlib import Path

from proxy.settings import PlacementKey
from tests.conftest import FakeClock
from tests.proxy.cluster import cluster
from tests.proxy.conftest import call

PROJECTS = [f"tenant-{i}" for i in range(6)]


async def test_dead_letters_reach_a_queue_placed_by_project(
    tmp_path: Path, clock: FakeClock
) -> None:
    async with cluster(tmp_path, clock, placement_key=PlacementKey.PROJECT) as c:
        owners = set()
        for project in PROJECTS:
            metadata = {"_max_claim_count": 1, "_dead_letter_queue": "failed"}
            assert (await call(c.proxy, "PUT", "/v2/queues/failed", project=project))[0] == 201
            status, _, _ = await call(
                c.proxy, "PUT", "/v2/queues/jobs", json=metadata, project=project
            )
            assert status == 201
            post = {"messages": [{"body": project}]}
            status, _, _ = await call(
                c.proxy, "POST", "/v2/queues/jobs/messages", json=post, project=project
            )
            assert status == 201
            status, body, headers = await call(
                c.proxy, "POST", "/v2/queues/jobs/claims", json={"ttl": 60}, project=project
            )
            assert status == 201 and [m["body"] for m in body["messages"]] == [project]
            claim = headers["Location"]
            assert (await call(c.proxy, "DELETE", claim, project=project))[0] == 204
            status, _, _ = await call(
                c.proxy, "POST", "/v2/queues/jobs/claims", json={"ttl": 60}, project=project
            )
            assert status == 204  # claimed once already: dead-lettered, nothing to claim
            status, body, _ = await call(
                c.proxy, "GET", "/v2/queues/failed/messages?echo=true", project=project
            )
            assert [m["body"] for m in body["messages"]] == [project]
            placement = await c.catalog.placement(project, "jobs")
            assert placement is not None
            owners.add(placement.partition)
        assert owners == {"p1", "p2"}  # both partitions took part

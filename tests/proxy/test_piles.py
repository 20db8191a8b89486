"""A partition's piles of dead letters, read of its nodes by the admin API: no removal while a
letter waits there or nobody can tell, and a drain's answer says what waits."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.conftest import FakeClock
from tests.proxy.cluster import ADMIN, Cluster, cluster
from tests.proxy.conftest import PROJECT, call


async def admin(c: Cluster, method: str, path: str) -> tuple[int, Any]:
    status, body, _ = await call(c.proxy, method, path, headers=ADMIN)
    return status, body


async def pile_one(c: Cluster) -> None:
    """A letter in p1's pile for `failed` on p2; then `jobs` leaves p1 (as a drain moves it)."""
    await c.catalog.place(PROJECT, "jobs", "p1")
    await c.catalog.place(PROJECT, "failed", "p2")
    assert (await call(c.proxy, "PUT", "/v2/queues/failed"))[0] == 201
    policy = {"_max_claim_count": 1, "_dead_letter_queue": "failed"}
    assert (await call(c.proxy, "PUT", "/v2/queues/jobs", json=policy))[0] == 201
    post = {"messages": [{"body": 1}, {"body": 2}]}
    assert (await call(c.proxy, "POST", "/v2/queues/jobs/messages", json=post))[0] == 201
    status, _, headers = await call(c.proxy, "POST", "/v2/queues/jobs/claims", json={"ttl": 60})
    assert status == 201
    assert (await call(c.proxy, "DELETE", headers["Location"]))[0] == 204
    status, _, _ = await call(c.proxy, "POST", "/v2/queues/jobs/claims", json={"ttl": 60})
    assert status == 204  # claimed once already: both piled
    await c.catalog.unplace(PROJECT, "jobs")


async def test_a_partition_with_waiting_letters_is_not_removed(
    tmp_path: Path, clock: FakeClock
) -> None:
    async with cluster(tmp_path, clock) as c:
        await pile_one(c)
        status, body = await admin(c, "DELETE", "/admin/partitions/p1")
        assert status == 409, body
        assert body["title"] == "Resource conflict"
        assert body["description"].startswith(
            "Partition p1 still holds 2 dead letters waiting to move to their dead-letter"
            f" queues (2 for {PROJECT}/failed); the migration workers move them once it has a"
            " storage URI (marconi partitions set p1 --storage URI)."
        )
        _, health = await admin(c, "GET", "/admin/health")
        waiting = {n: p["dead_letters"] for n, p in health["partitions"].items()}
        assert waiting == {"p1": {"waiting": 2, "more": False}, "p2": {"waiting": 0, "more": False}}
        status, report = await admin(c, "POST", "/admin/partitions/p1/drain")
        assert status == 200 and report["remaining"] == 0
        assert report["dead_letters"] == {
            "waiting": 2,
            "more": False,
            "piles": [{"project": PROJECT, "queue": "failed", "waiting": 2}],
        }
        assert (await admin(c, "DELETE", "/admin/partitions/p1?force=true"))[0] == 204


async def test_a_partition_whose_nodes_do_not_answer_is_not_removed(
    tmp_path: Path, clock: FakeClock
) -> None:
    async with cluster(tmp_path, clock) as c:
        for server in c.partitions["p2"].servers:
            await server.close()
        status, body = await admin(c, "DELETE", "/admin/partitions/p2")
        assert status == 409, body
        assert "may still hold dead letters" in body["description"]
        _, health = await admin(c, "GET", "/admin/health")
        assert health["partitions"]["p2"]["dead_letters"] == {"waiting": None, "more": True}
        status, report = await admin(c, "POST", "/admin/partitions/p2/drain")
        assert status == 200 and report["dead_letters"]["waiting"] is None
        assert "no node of it answered" in report["dead_letters"]["unknown"]
        status, body = await admin(c, "DELETE", "/admin/partitions/p2?force=maybe")
        assert status == 400 and set(body) == {"title", "description"}
        assert (await admin(c, "DELETE", "/admin/partitions/p2?force=true"))[0] == 204


async def test_no_client_reaches_the_nodes_piles_through_the_proxy(
    tmp_path: Path, clock: FakeClock
) -> None:
    """`GET /piles` names other projects' queues: the proxy forwards it to no node."""
    async with cluster(tmp_path, clock) as c:
        await pile_one(c)
        for method in ("GET", "POST"):
            status, body, _ = await call(c.proxy, method, "/piles", headers=ADMIN)
            assert status == 404 and set(body) == {"title", "description"}, body

"""The admin API's migrations, drain and rebalance, over a real proxy on a real etcd.

No migration worker runs here: `tests.migrate.fake_worker` moves records along as one would.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from catalog.migrations import Migration, Phase
from catalog.records import PartitionState
from catalog.registry import Registry
from tests.conftest import FakeClock
from tests.migrate.fake_worker import advance, finish
from tests.proxy.cluster import ADMIN, Cluster, cluster
from tests.proxy.conftest import PROJECT, call
from tests.services import Etcd

ZAQAR_ERROR = {"title", "description"}


async def admin(c: Cluster, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    status, answer, _ = await call(c.proxy, method, path, json=body, headers=ADMIN)
    return status, answer


@pytest.fixture
async def c(tmp_path: Path, clock: FakeClock, etcd_server: Etcd) -> AsyncIterator[Cluster]:
    """Three partitions with storage URIs (a migration needs them), p1 taking every new queue."""
    async with cluster(
        tmp_path, clock, etcd_url=etcd_server.url, partitions=("p1", "p2", "p3")
    ) as made:
        for name in made.partitions:
            await made.catalog.update_partition(name, storage=f"sqlite:///{tmp_path}/{name}.db")
        await made.catalog.pin(PROJECT, "p1")
        cache = made.state().router.cache
        while PROJECT not in cache.pins:
            await cache.changed.wait()
        yield made


async def queues(c: Cluster, *names: str, messages: int = 0) -> None:
    for name in names:
        assert (await call(c.proxy, "PUT", f"/v2/queues/{name}"))[0] == 201
        for _ in range(messages):
            body = {"messages": [{"body": {"n": 1}}]}
            assert (await call(c.proxy, "POST", f"/v2/queues/{name}/messages", json=body))[0] == 201


async def owners(c: Cluster) -> dict[str, str]:
    names = await c.catalog.queue_names(PROJECT, None, 1000)
    found = {}
    for name in names:
        placement = await c.catalog.placement(PROJECT, name)
        assert placement is not None
        found[name] = placement.partition
    return found


async def move(c: Cluster, queue: str, to: str, project: str = PROJECT) -> tuple[int, Any]:
    body = {"project": project, "queue": queue, "to": to}
    return await admin(c, "POST", "/admin/migrations", body)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/admin/migrations"),
        ("GET", "/admin/migrations"),
        ("GET", "/admin/migrations/0123456789abcdef01234567"),
        ("DELETE", "/admin/migrations/0123456789abcdef01234567"),
        ("POST", "/admin/partitions/p1/drain"),
        ("POST", "/admin/rebalance"),
    ],
)
async def test_the_admin_role_is_required(c: Cluster, method: str, path: str) -> None:
    status, body, _ = await call(c.proxy, method, path, headers={"X-Roles": "member"})
    assert status == 403 and set(body) == ZAQAR_ERROR
    assert await Registry(c.catalog).list() == []


# --- migrations ----------------------------------------------------------------------------------


async def test_create_get_list_and_cancel_a_migration(c: Cluster) -> None:
    await queues(c, "orders")
    status, doc = await move(c, "orders", "p2")
    assert status == 201
    assert {k: doc[k] for k in ("project", "queue", "source", "target", "phase")} == {
        "project": PROJECT,
        "queue": "orders",
        "source": "p1",
        "target": "p2",
        "phase": "INIT",
    }
    assert doc["cancel_requested"] is False and doc["progress"]["copied"] == 0
    stored = (await Registry(c.catalog).get(doc["id"])).migration
    assert Migration.from_json(json.dumps(doc)) == stored  # the record's own JSON

    assert await admin(c, "GET", f"/admin/migrations/{doc['id']}") == (200, doc)
    assert await admin(c, "GET", "/admin/migrations") == (200, {"migrations": [doc]})

    status, cancelled = await admin(c, "DELETE", f"/admin/migrations/{doc['id']}")
    assert status == 202 and cancelled == {**doc, "cancel_requested": True}
    assert (await Registry(c.catalog).get(doc["id"])).migration.cancel_requested
    # The worker stops it; a finished migration leaves the active list, not the whole one.
    await advance(c.catalog, doc["id"], Phase.CANCELLED)
    assert (await admin(c, "GET", "/admin/migrations?active=true"))[1] == {"migrations": []}
    assert [m["phase"] for m in (await admin(c, "GET", "/admin/migrations"))[1]["migrations"]] == [
        "CANCELLED"
    ]
    assert (await admin(c, "GET", "/admin/migrations?active=maybe"))[0] == 400


async def test_cancel_after_the_switch_is_refused(c: Cluster) -> None:
    await queues(c, "orders")
    _, doc = await move(c, "orders", "p2")
    for phase in (Phase.COPYING, Phase.CATCHING_UP, Phase.FROZEN, Phase.SWITCHED):
        await advance(c.catalog, doc["id"], phase)
    status, body = await admin(c, "DELETE", f"/admin/migrations/{doc['id']}")
    assert status == 409 and set(body) == ZAQAR_ERROR
    assert "move it back" in body["description"]
    assert not (await Registry(c.catalog).get(doc["id"])).migration.cancel_requested


async def test_unknown_migrations_are_404(c: Cluster) -> None:
    for path in ("0123456789abcdef01234567", "not-an-id"):
        for method in ("GET", "DELETE"):
            status, body = await admin(c, method, f"/admin/migrations/{path}")
            assert status == 404 and set(body) == ZAQAR_ERROR


async def test_moves_the_registry_refuses(c: Cluster) -> None:
    await queues(c, "a", "b", "c")
    assert (await move(c, "missing", "p2"))[0] == 404  # not placed
    assert (await move(c, "a", "p9"))[0] == 404  # no such partition
    status, body = await move(c, "a", "p1")  # already there
    assert status == 409 and "already on p1" in body["description"]
    assert (await move(c, "a", "p2"))[0] == 201
    status, body = await move(c, "a", "p3")
    assert status == 409 and "already moving" in body["description"]
    status, body = await move(c, "b", "p3")
    assert status == 409 and "outgoing" in body["description"]
    assert len(await Registry(c.catalog).list()) == 1


async def test_the_limits_are_the_proxys_settings(
    tmp_path: Path, clock: FakeClock, etcd_server: Etcd
) -> None:
    """Two moves out of and into a partition at once, and no cool-down, when so configured."""
    async with cluster(
        tmp_path,
        clock,
        etcd_url=etcd_server.url,
        partitions=("p1", "p2"),
        migrations_out=2,
        migrations_in=2,
        migration_cooldown=0.0,
    ) as c:
        for name in c.partitions:
            await c.catalog.update_partition(name, storage=f"sqlite:///{tmp_path}/{name}.db")
        await c.catalog.pin(PROJECT, "p1")
        cache = c.state().router.cache
        while PROJECT not in cache.pins:
            await cache.changed.wait()
        await queues(c, "a", "b", "c")
        first, second = await move(c, "a", "p2"), await move(c, "b", "p2")
        assert (first[0], second[0]) == (201, 201)
        status, body = await move(c, "c", "p2")
        assert status == 409 and "outgoing" in body["description"]
        await finish(c.catalog, first[1]["id"])
        back = await move(c, "a", "p1")  # at once: no cool-down
        assert back[0] == 201, back


async def test_no_move_onto_a_partition_that_takes_no_queues(c: Cluster) -> None:
    await queues(c, "a")
    for state in ("draining", "read-only"):
        await c.catalog.update_partition("p2", state=PartitionState(state))
        status, body = await move(c, "a", "p2")
        assert status == 409 and state in body["description"]
    assert await Registry(c.catalog).list() == []


@pytest.mark.parametrize(
    "body",
    [
        {"queue": "a"},
        {"queue": "a", "to": 3},
        {"queue": "bad name!", "to": "p2"},
        {"project": 7, "queue": "a", "to": "p2"},
        {"project": "caf\udce9", "queue": "a", "to": "p2"},  # not UTF-8
        ["a", "p2"],
    ],
)
async def test_malformed_moves_are_400(c: Cluster, body: Any) -> None:
    status, answer = await admin(c, "POST", "/admin/migrations", body)
    assert status == 400 and set(answer) == ZAQAR_ERROR


# --- drain ---------------------------------------------------------------------------------------


async def test_drain_marks_the_partition_and_moves_one_queue_at_a_time(c: Cluster) -> None:
    names = [f"q{i}" for i in range(5)]
    await queues(c, *names)
    await c.catalog.update_partition("p3", weight=3)

    status, body = await admin(c, "POST", "/admin/partitions/p1/drain")
    assert status == 200
    assert (body["partition"], body["state"], body["remaining"]) == ("p1", "draining", 5)
    assert (await c.catalog.partition("p1")).state is PartitionState.DRAINING
    planned = body["planned"]
    assert sorted(m["queue"] for m in planned) == names
    assert {m["from"] for m in planned} == {"p1"}
    assert Counter(m["to"] for m in planned) == {"p2": 1, "p3": 4}  # spread by weight
    assert len(body["created"]) == 1  # one outgoing migration per partition at a time
    first = body["created"][0]
    assert (first["queue"], first["target"]) == (planned[0]["queue"], planned[0]["to"])
    assert body["moving"] == body["created"] and body["cancelled"] == []
    assert await owners(c) == dict.fromkeys(names, "p1")  # the worker moves them, not the API

    # Called again while the first moves: nothing new, the same plan for the rest.
    status, again = await admin(c, "POST", "/admin/partitions/p1/drain")
    assert again["created"] == [] and [m["id"] for m in again["moving"]] == [first["id"]]
    assert [m["queue"] for m in again["planned"]] == [m["queue"] for m in planned[1:]]

    # A draining partition gets no new queue.
    cache = c.state().router.cache
    while cache.partitions["p1"].state is not PartitionState.DRAINING:
        await cache.changed.wait()
    await c.catalog.unpin(PROJECT)
    while PROJECT in cache.pins:
        await cache.changed.wait()
    await queues(c, *(f"new{i}" for i in range(6)))
    assert "p1" not in {p for q, p in (await owners(c)).items() if q.startswith("new")}

    # As migrations finish, each call starts the next, until p1 owns nothing.
    created = [first]
    while True:
        await finish(c.catalog, created[-1]["id"])
        status, body = await admin(c, "POST", "/admin/partitions/p1/drain")
        assert status == 200
        if body["remaining"] == 0:
            break
        assert len(body["created"]) == 1, body
        created += body["created"]
    assert body["moving"] == [] and body["planned"] == [] and body["created"] == []
    assert sorted(m["queue"] for m in created) == names
    assert "p1" not in set((await owners(c)).values())
    assert (await admin(c, "DELETE", "/admin/partitions/p1"))[0] == 204


async def test_drain_turns_back_queues_on_their_way_in(c: Cluster) -> None:
    await queues(c, "a")
    _, incoming = await move(c, "a", "p2")
    status, body = await admin(c, "POST", "/admin/partitions/p2/drain")
    assert status == 200 and body["remaining"] == 0
    assert [m["id"] for m in body["cancelled"]] == [incoming["id"]]
    assert (await Registry(c.catalog).get(incoming["id"])).migration.cancel_requested


async def test_drain_waits_out_a_queue_cooling_down(c: Cluster) -> None:
    await queues(c, "a")
    _, doc = await move(c, "a", "p2")
    await finish(c.catalog, doc["id"])
    status, body = await admin(c, "POST", "/admin/partitions/p2/drain")
    assert status == 200
    assert (body["remaining"], body["cooling_down"], body["planned"]) == (1, 1, [])


async def test_drain_refusals(c: Cluster) -> None:
    await queues(c, "a")
    assert (await admin(c, "POST", "/admin/partitions/p9/drain"))[0] == 404
    assert (await admin(c, "POST", "/admin/partitions/bad%20name/drain"))[0] == 400
    for name in ("p2", "p3"):
        await c.catalog.update_partition(name, state=PartitionState.READ_ONLY)
    status, body = await admin(c, "POST", "/admin/partitions/p1/drain")
    assert status == 409 and set(body) == ZAQAR_ERROR
    assert (await c.catalog.partition("p1")).state is PartitionState.ACTIVE  # left as it was
    # A partition that owns nothing drains at once, receivers or not.
    status, body = await admin(c, "POST", "/admin/partitions/p2/drain")
    assert status == 200 and (body["state"], body["remaining"]) == ("draining", 0)


# --- rebalance -----------------------------------------------------------------------------------


async def test_rebalance_dry_run_plans_from_message_counts_and_changes_nothing(
    c: Cluster,
) -> None:
    await queues(c, "big", messages=6)
    await queues(c, "mid", messages=3)
    await queues(c, *(f"idle{i}" for i in range(4)))
    before = await owners(c)
    revision_before = (await c.catalog.store.snapshot(c.catalog.keys.prefix)).revision

    status, body = await admin(c, "POST", "/admin/rebalance", {"dry_run": True, "max_moves": 20})
    assert status == 200
    assert body["dry_run"] is True and body["created"] == []
    assert body["measured"] == ["queues", "messages"]
    loads = {p["partition"]: p for p in body["loads"]}
    assert (loads["p1"]["queues"], loads["p1"]["messages"]) == (6, 9)
    assert loads["p1"]["share"] == pytest.approx(1.0) and not loads["p1"]["within"]
    assert loads["p2"]["target"] == pytest.approx(1 / 3)
    plan = body["plan"]
    assert plan and {m["from"] for m in plan} == {"p1"} and {m["to"] for m in plan} == {"p2", "p3"}
    assert body["balanced"] is all(p["within"] for p in body["after"])
    after = {p["partition"]: p for p in body["after"]}
    assert sum(p["messages"] for p in after.values()) == 9
    assert max(abs(p["share"] - p["target"]) for p in after.values()) < 0.2

    assert await owners(c) == before
    assert await Registry(c.catalog).list() == []
    assert (await c.catalog.store.snapshot(c.catalog.keys.prefix)).revision == revision_before


async def test_rebalance_starts_what_the_limits_allow_and_counts_moving_queues_as_moved(
    c: Cluster,
) -> None:
    await queues(c, *(f"q{i}" for i in range(6)))
    status, body = await admin(c, "POST", "/admin/rebalance", {"tolerance": 0.1})
    assert status == 200 and body["dry_run"] is False
    assert len(body["plan"]) == 4  # two queues to each of p2 and p3
    assert len(body["created"]) == 1  # p1 sends one queue at a time
    started = body["created"][0]
    first = body["plan"][0]
    assert (started["queue"], started["target"]) == (first["queue"], first["to"])

    status, again = await admin(c, "POST", "/admin/rebalance", {})
    assert again["created"] == []  # p1 still sends
    assert started["queue"] not in {m["queue"] for m in again["plan"]}
    assert len(again["plan"]) == 3  # the moving queue already counts on its target

    # A move being cancelled leaves its queue where it is: the rest of p1 makes up for it.
    await Registry(c.catalog).request_cancel(started["id"])
    status, cancelling = await admin(c, "POST", "/admin/rebalance", {"dry_run": True})
    assert len(cancelling["plan"]) == 4
    assert started["queue"] not in {m["queue"] for m in cancelling["plan"]}

    await finish(c.catalog, started["id"])
    status, third = await admin(c, "POST", "/admin/rebalance", {})
    assert len(third["created"]) == 1 and len(third["plan"]) == 3
    assert started["queue"] not in {m["queue"] for m in third["plan"]}  # cooling down


async def test_rebalance_never_targets_a_draining_partition(c: Cluster) -> None:
    await queues(c, *(f"q{i}" for i in range(6)))
    await c.catalog.update_partition("p3", state=PartitionState.DRAINING)
    status, body = await admin(c, "POST", "/admin/rebalance", {"dry_run": True})
    assert status == 200 and len(body["plan"]) == 3
    assert {m["to"] for m in body["plan"]} == {"p2"}
    assert {p["partition"]: p["target"] for p in body["loads"]}["p3"] is None


@pytest.mark.parametrize(
    "body",
    [
        {"dry_run": "yes"},
        {"max_moves": 0},
        {"max_moves": 2.5},
        {"max_moves": True},
        {"tolerance": 2},
        {"tolerance": "0.1"},
    ],
)
async def test_malformed_rebalances_are_400(c: Cluster, body: Any) -> None:
    status, answer = await admin(c, "POST", "/admin/rebalance", body)
    assert status == 400 and set(answer) == ZAQAR_ERROR


async def test_a_recent_move_is_not_planned_again(c: Cluster) -> None:
    await queues(c, "a", "b")
    registry = Registry(c.catalog)
    m = await registry.create(PROJECT, "a", "p2")
    await finish(c.catalog, m.id)
    assert time.time() - (await registry.get(m.id)).migration.updated < registry.limits.cooldown
    status, body = await admin(c, "POST", "/admin/partitions/p2/drain")
    assert body["planned"] == [] and body["cooling_down"] == 1


async def test_a_partition_in_a_migration_is_not_removed(c: Cluster) -> None:
    await queues(c, "orders")
    status, doc = await move(c, "orders", "p2")
    assert status == 201
    status, body = await admin(c, "DELETE", "/admin/partitions/p2")  # owns no queue yet
    assert status == 409 and "migration" in body["description"]
    assert (await admin(c, "DELETE", f"/admin/migrations/{doc['id']}"))[0] == 202

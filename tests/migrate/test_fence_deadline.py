"""A freeze whose worker vanished ends on its own: the source's fence carries a deadline the node
enforces itself, the proxy releases the requests it held as soon as it passes, and a worker that
takes over never switches over writes it did not copy. Real etcd, SQLite and the proxy; the nodes'
clock is moved by hand to pass the deadline."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

from catalog.migrations import Migration, Phase
from catalog.registry import Registry
from migrate.steps import LiveSteps, Move
from tests.conftest import FakeClock
from tests.migrate.harness import PROJECT, QUEUE, MigrationCluster, Q, migration_cluster
from tests.proxy.conftest import call
from tests.services import Etcd

LASTS = 1.0  # seconds the vanished worker's fence lasts


def uris(tmp_path: Path) -> dict[str, str]:
    return {name: f"sqlite:///{tmp_path}/{name}.db" for name in ("p1", "p2")}


async def post(c: MigrationCluster, body: object) -> tuple[int, str]:
    status, answer, _ = await call(
        c.proxy, "POST", f"{Q}/messages", json={"messages": [{"body": body, "ttl": 3600}]}
    )
    return status, answer["resources"][0].rsplit("/", 1)[1] if status == 201 else ""


async def frozen_by_a_vanished_worker(c: MigrationCluster, *phases: Phase) -> Migration:
    """A queue of 10 messages copied and frozen, its record saved through `phases`, as a worker
    leaves it that stops acting right after freezing."""
    assert (await call(c.proxy, "PUT", Q))[0] == 201
    for n in range(10):
        assert (await post(c, n))[0] == 201
    source = (await c.placement()).partition
    m = await c.move("p2" if source == "p1" else "p1")
    steps = LiveSteps(
        Move.of(m), c.catalog, c.storage(m.source).transfer, c.storage(m.target).transfer
    )
    await steps.prepare_target()
    await steps.copy_queue()
    while (await steps.copy_batch(0, 100)).read == 100:
        pass
    await steps.catch_up()
    await steps.verify_baseline()
    await steps.freeze_source(LASTS)
    await steps.catch_up()
    digest = await steps.verify()
    registry = Registry(c.catalog)
    stored = await registry.get(m.id)
    progress = dataclasses.replace(m.progress, verified_marker=digest.max_marker)
    for phase in (Phase.COPYING, Phase.CATCHING_UP, *phases):
        stored = await registry.save(
            stored, stored.migration.to(phase, c.clock(), progress=progress)
        )
    return stored.migration


async def on_target(c: MigrationCluster, m: Migration) -> list[object]:
    found = await c.storage(m.target).transfer.export_messages(
        PROJECT, QUEUE, after_marker=0, limit=100
    )
    return [message.body for message in found]


async def test_a_vanished_workers_freeze_lifts_itself_and_releases_held_requests(
    etcd_server: Etcd, tmp_path: Path, clock: FakeClock
) -> None:
    async with migration_cluster(etcd_server.url, uris(tmp_path), clock) as c:
        m = await frozen_by_a_vanished_worker(c, Phase.FROZEN)
        held = asyncio.create_task(post(c, "late"))
        await asyncio.sleep(0.3)
        assert not held.done()  # the proxy holds it: the queue is frozen
        clock.advance(LASTS)  # the deadline passes on the nodes' clock
        # Released when the node said the fence would lift (1 s), not at the proxy's 3 s limit,
        # when it would have answered 503; and the write landed on the source, still the owner.
        status, late = await held
        assert status == 201
        assert await c.storage(m.source).transfer.fence(PROJECT, QUEUE) is None
        assert (await c.placement()).partition == m.source

        # A worker takes over: the freeze it finds is aborted, the queue moved with the late post.
        await c.worker()
        done = await c.wait_for(m.id, Phase.DONE, Phase.FAILED, Phase.CANCELLED)
        assert done.phase is Phase.DONE, done.error
        assert await on_target(c, m) == [*range(10), "late"]
        assert (await c.placement()).partition == m.target


async def test_a_worker_resuming_the_switch_after_the_fence_lapsed_copies_what_landed(
    etcd_server: Etcd, tmp_path: Path, clock: FakeClock
) -> None:
    """Past the point of no return, the worker vanished before the switch and its fence lifted:
    the source took a write after verify. The worker that resumes the switch finds the fence
    lapsed (`keep_fence`), freezes, catches up and verifies again before switching."""
    async with migration_cluster(etcd_server.url, uris(tmp_path), clock) as c:
        m = await frozen_by_a_vanished_worker(c, Phase.FROZEN, Phase.SWITCHED)
        clock.advance(LASTS)
        [third] = await c.storage(m.source).transfer.export_messages(
            PROJECT, QUEUE, after_marker=2, limit=1
        )
        assert (await call(c.proxy, "DELETE", f"{Q}/messages/{third.id}"))[0] == 204
        status, late = await post(c, "after verify")
        assert status == 201
        await c.worker()
        done = await c.wait_for(m.id, Phase.DONE, Phase.FAILED, Phase.CANCELLED)
        assert done.phase is Phase.DONE, done.error
        assert not done.progress.reverify
        # The delete is not undone, the post not lost: the target is the source as it was.
        assert await on_target(c, m) == [0, 1, *range(3, 10), "after verify"]
        status, found, _ = await call(c.proxy, "GET", f"{Q}/messages/{late}")
        assert status == 200 and found["body"] == "after verify"


async def test_a_worker_dying_while_it_verifies_again_leaves_that_to_the_next(
    etcd_server: Etcd, tmp_path: Path, clock: FakeClock
) -> None:
    """The fence lapsed and the source took a delete; a worker froze it again (a fence in
    force now) and died before its verify passed. The next must not trust that fence."""
    async with migration_cluster(etcd_server.url, uris(tmp_path), clock) as c:
        m = await frozen_by_a_vanished_worker(c, Phase.FROZEN, Phase.SWITCHED)
        clock.advance(LASTS)
        [third] = await c.storage(m.source).transfer.export_messages(
            PROJECT, QUEUE, after_marker=2, limit=1
        )
        assert (await call(c.proxy, "DELETE", f"{Q}/messages/{third.id}"))[0] == 204
        registry = Registry(c.catalog)
        stored = await registry.get(m.id)
        progress = dataclasses.replace(stored.migration.progress, reverify=True)
        await registry.save(stored, dataclasses.replace(stored.migration, progress=progress))
        await c.storage(m.source).transfer.freeze(PROJECT, QUEUE, "frozen", lasts=30)
        await c.worker()
        done = await c.wait_for(m.id, Phase.DONE, Phase.FAILED, Phase.CANCELLED)
        assert done.phase is Phase.DONE, done.error
        assert await on_target(c, m) == [0, 1, *range(3, 10)]
